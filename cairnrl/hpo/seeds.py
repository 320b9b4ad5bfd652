"""Tuning and test seeds, the seeds derived from them, and the check that the two sets never meet.

Every training run in :func:`cairnrl.hpo.tune` (a trial on a tuning seed, or the final phase on a test seed) is
fully determined by one *run seed* ``s``. From it:

* the model is built with ``seed=s``, which seeds Python, NumPy and torch;
* the training envs are reset with

  - cairnrl algorithms: ``spawn_seeds(s, n_envs, key=ENV_SEED_KEY)`` (SeedSequence children, see
    :class:`cairnrl.core.base.BaseAlgorithm`) and the action space with
    ``spawn_seeds(s, 1, key=ACTION_SPACE_SEED_KEY)``;
  - SB3 peers: ``s`` itself (SB3 seeds sub-env ``i`` with ``s + i``; cairnrl gives SB3 a single env);

* evaluation uses ``e = final_evaluation_seed(s)`` -- the same seed as the final evaluation of
  ``cairnrl train --seed s`` -- and :func:`cairnrl.evaluate` resets episode ``j`` with
  ``spawn_seeds(e, n_episodes, key=EPISODE_SEED_KEY)[j]``.

Because the derived seeds are SeedSequence children keyed by purpose, two different run seeds never share a
stream by construction, unlike ``s + i`` schemes where tuning seed 0's second env would be test seed 1's first.
The only ways for a test episode to repeat a tuning episode are equal run seeds, SB3's ``s + i`` rule, or a
31-bit collision between hashed children; :func:`check_seed_overlap` enumerates every integer seed listed above
(envs up to :data:`MAX_ENVS` per run, all evaluation episodes) for both sets and refuses any common value.
Algorithm-internal streams (SQIRL's per-episode reset seeds and exploration, keyed children of ``s``) are
distinct for distinct run seeds in the same way; they are not enumerated because their number depends on the
training run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cairnrl.core.evaluation import EPISODE_SEED_KEY, final_evaluation_seed
from cairnrl.core.seeding import ACTION_SPACE_SEED_KEY, ENV_SEED_KEY, check_seed, spawn_seeds
from cairnrl.exceptions import ConfigError

#: Training envs enumerated per run seed for cairnrl algorithms (children are prefix-stable, so any n_envs
#: up to this bound is covered).
MAX_ENVS = 64

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_seeds(text: str | Iterable[int], name: str = "seeds") -> tuple[int, ...]:
    """Seeds from ``"0-4"``, ``"0,2,5-7"`` or an iterable of ints; must be valid and distinct."""
    if isinstance(text, str):
        seeds: list[int] = []
        for part in text.split(","):
            match = _RANGE.match(part)
            if match is None:
                raise ConfigError(f"{name}: {part.strip()!r} is not a seed or a range like 0-4 (in {text!r})")
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise ConfigError(f"{name}: empty range {part.strip()!r}")
            seeds.extend(range(first, last + 1))
    else:
        try:
            seeds = list(text)
        except TypeError as error:
            raise ConfigError(f"{name} must be a sequence of integers or a string like '0-4', got {text!r}") from error
    result = tuple(check_seed(seed, name) for seed in seeds)
    if not result:
        raise ConfigError(f"{name} must not be empty")
    if len(set(result)) != len(result):
        raise ConfigError(f"{name} contain duplicates: {list(result)}")
    return result


def evaluation_seed(seed: int) -> int:
    """The seed :func:`cairnrl.evaluate` gets for the run with seed ``seed``."""
    return final_evaluation_seed(seed)


def derived_seeds(seed: int, *, sb3: bool, eval_episodes: int) -> set[int]:
    """Every integer seed a run with seed ``seed`` hands to an env or RNG (see the module docstring)."""
    derived = {seed}
    if not sb3:
        derived.update(spawn_seeds(seed, MAX_ENVS, key=ENV_SEED_KEY))
        derived.update(spawn_seeds(seed, 1, key=ACTION_SPACE_SEED_KEY))
    derived.update(spawn_seeds(evaluation_seed(seed), eval_episodes, key=EPISODE_SEED_KEY))
    return derived


def check_seed_overlap(
    tuning_seeds: Iterable[int], test_seeds: Iterable[int], *, sb3: bool, eval_episodes: int
) -> None:
    """Raise :class:`ConfigError` if a tuning run and a test run share a run seed or any derived seed."""
    tuning, test = tuple(tuning_seeds), tuple(test_seeds)
    common = sorted(set(tuning) & set(test))
    if common:
        raise ConfigError(f"tuning and test seeds overlap: {common}; test seeds must be unseen during tuning")
    origin: dict[int, int] = {}
    for seed in tuning:
        for value in derived_seeds(seed, sb3=sb3, eval_episodes=eval_episodes):
            origin.setdefault(value, seed)
    for seed in test:
        clashes = sorted(derived_seeds(seed, sb3=sb3, eval_episodes=eval_episodes) & set(origin))
        if clashes:
            raise ConfigError(
                f"test seed {seed} and tuning seed {origin[clashes[0]]} derive the same env/evaluation seed "
                f"{clashes[0]}; choose other test seeds"
            )
