"""Recipes that rebuild D4RL-style MuJoCo locomotion datasets locally (no download needed).

Names are ``<env>-<kind>`` with ``env`` in :data:`RECIPE_ENVS` (Gymnasium v5 envs) and ``kind`` one of

* ``random``: ``n_steps`` steps of uniformly random actions (D4RL used a randomly initialised SAC actor);
* ``medium`` / ``expert``: ``n_steps`` steps of the teacher's medium / expert SAC snapshot
  (see :mod:`cairnrl.data.teacher`), with stochastic SAC actions by default as in D4RL;
* ``medium-replay``: data like the teacher run's replay buffer up to the medium snapshot (see below);
* ``medium-expert``: ``medium`` followed by ``expert``;
* ``random+expert<N>`` / ``medium+expert<N>``: the suboptimal sets of ReCOIL's imitation protocol (Sikchi et al.,
  ICLR 2024, after SMODICE), the base data followed by the first ``N`` expert episodes, unmarked for the learner;
  ``metadata["parts"]`` says which episodes are expert;
* ``expert<N>``: ReCOIL's expert set, the first ``N * 1000`` expert transitions (``expert1``: 1000 transitions,
  one full-length episode), collected with the same seed as the mixtures' expert episodes, so they are the
  demonstrations the mixtures hide (as in the protocol, where both come from the start of ``expert-v2``).

**Teachers.** By default a recipe uses the published teacher committed in the repository under
``data/teachers/<env>`` (:func:`committed_teacher`), so every dataset is regenerated deterministically from a
seed in minutes; another published teacher can be passed instead. Without one, a SAC teacher is trained in-process
(:func:`obtain_teacher`, resumable in its work folder) and published first -- practical only at small budgets.

**medium-replay departs from D4RL.** D4RL's medium-replay is the replay buffer of the run that produced the medium
policy, up to that policy (Fu et al. 2020, the Gym-MuJoCo datasets). A 1M-step buffer is far too large to commit,
so it is regenerated instead: ``warmup_steps`` (SAC's ``learning_starts``) of uniformly random actions, as the run
began, then rollouts of each of the teacher's replay snapshots (evenly spaced up to the medium one) with stochastic
actions, each for an equal share of the remaining steps, ``medium_step`` steps in all. Behaviour inside each
share is that of one snapshot rather than of a policy changing at every gradient step, and each share's last
episode is cut by the step budget (marked truncated); the spread of skill from random to medium is kept.

The achieved returns of every part (an episode cut by the step budget excluded), their D4RL normalized score
and the teacher's description are recorded in the metadata.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.validation import check_int
from cairnrl.data.collection import collect
from cairnrl.data.dataset import Dataset, concatenate
from cairnrl.data.scores import normalized_score, reference_scores
from cairnrl.data.teacher import TEACHER_FILE, Teacher, publish_teacher, train_teacher
from cairnrl.exceptions import ConfigError

RECIPE_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "ant": "Ant-v5"}
KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")
_NAME = re.compile(
    r"^(?P<env>[a-z0-9]+)-(?:expert(?P<demos>\d+)|"
    r"(?P<kind>medium-replay|medium-expert|random|medium|expert)(?:\+expert(?P<n>\d+))?)$"
)
#: Steps per demonstration of an ``expert<N>`` set (the MuJoCo time limit).
DEMO_STEPS = 1000
_RECIPE_SEED_KEY, _REPLAY_SEED_KEY = 0xDA7A, 0xDA7B
#: Where published teachers are committed: ``data/teachers/<env>`` at the root of a cairnrl checkout.
TEACHERS_ROOT = Path(__file__).resolve().parents[2] / "data" / "teachers"


@dataclass(frozen=True)
class Recipe:
    """A parsed dataset name."""

    name: str
    env: str
    env_id: str
    kind: str
    n_expert: int | None = None
    demos: int | None = None

    @property
    def needs_teacher(self) -> bool:
        """Whether a SAC teacher must be trained (everything except plain ``random``)."""
        return self.kind != "random" or self.n_expert is not None


def parse_recipe(name: str) -> Recipe:
    """Parse ``hopper-medium``, ``walker2d-random+expert100``, ...; a :class:`ConfigError` lists what is valid."""
    match = _NAME.match(name) if isinstance(name, str) else None
    valid = (
        f"<env>-<kind> with env in {sorted(RECIPE_ENVS)} and kind in {list(KINDS)}, or <env>-random+expert<N> / "
        "<env>-medium+expert<N> / <env>-expert<N> (N >= 1)"
    )
    if match is None or match["env"] not in RECIPE_ENVS:
        raise ConfigError(f"unknown dataset recipe {name!r}; expected {valid}")
    if match["demos"] is not None:
        demos = int(match["demos"])
        if demos < 1:
            raise ConfigError(f"unknown dataset recipe {name!r}; expected {valid}")
        return Recipe(name=name, env=match["env"], env_id=RECIPE_ENVS[match["env"]], kind="expert", demos=demos)
    n_expert = None if match["n"] is None else int(match["n"])
    if n_expert is not None and (match["kind"] not in ("random", "medium") or n_expert < 1):
        raise ConfigError(f"unknown dataset recipe {name!r}; expected {valid}")
    return Recipe(name=name, env=match["env"], env_id=RECIPE_ENVS[match["env"]], kind=match["kind"], n_expert=n_expert)


def return_stats(dataset: Dataset, env: str) -> dict[str, Any]:
    """Return statistics of ``dataset``'s episodes, without a last episode cut short by the step budget."""
    returns = dataset.returns()
    if dataset.metadata.get("collection", {}).get("last_episode_cut") and len(returns) > 1:
        returns = returns[:-1]
    mean = float(returns.mean())
    return {
        "episodes": len(returns),
        "mean": mean,
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "normalized_mean": normalized_score(env, mean),
    }


def committed_teacher(env: str) -> Path | None:
    """The folder of the teacher committed for recipe env ``env`` (``hopper``, ...), or ``None`` when absent
    (e.g. in an installed wheel, which does not ship the repository's ``data`` folder)."""
    folder = TEACHERS_ROOT / env
    return folder if (folder / TEACHER_FILE).is_file() else None


def obtain_teacher(
    env_id: str,
    budget: int,
    seed: int,
    work_dir: str | Path | None,
    *,
    n_replay: int = 8,
    **train_kwargs: Any,
) -> Teacher:
    """Train a SAC teacher in-process and publish it: ``work_dir/run`` is the (resumable) run directory and
    ``work_dir/teacher`` the published teacher, reused when it matches ``(env_id, budget, seed)``. Without
    ``work_dir`` everything happens in a temporary folder."""
    if work_dir is None:
        with tempfile.TemporaryDirectory() as folder:
            return obtain_teacher(env_id, budget, seed, folder, n_replay=n_replay, **train_kwargs)
    published = Path(work_dir) / "teacher"
    wanted = {"env": env_id, "budget": budget, "seed": seed}
    if (published / TEACHER_FILE).is_file():
        teacher = Teacher.load(published)
        found = {"env": teacher.env_id, **{key: teacher.info["run"].get(key) for key in ("budget", "seed")}}
        if found == wanted:
            return teacher
        raise ConfigError(f"{work_dir} holds a teacher for {found}, not {wanted}; use another teacher folder")
    train_teacher(env_id, budget, Path(work_dir) / "run", seed=seed, **train_kwargs)
    return publish_teacher(Path(work_dir) / "run", published, n_replay=n_replay, overwrite=True)


def replay_rollouts(env_id: str, teacher: Teacher, seed: int, *, progress_bar: bool = False) -> Dataset:
    """Medium-replay data regenerated from ``teacher``'s replay snapshots (see the module docstring)."""
    total = teacher.medium_step
    warmup = min(teacher.warmup_steps, total)
    replay = teacher.replay
    shares = np.diff(np.linspace(warmup, total, len(replay) + 1).round().astype(np.int64))
    seeds = spawn_seeds(seed, len(replay) + 1, key=_REPLAY_SEED_KEY)
    parts: dict[str, Dataset] = {}
    if warmup > 0:
        parts["warmup"] = collect(env_id, "random", n_steps=warmup, seed=seeds[0], progress_bar=progress_bar)
    for (step, actor), share, part_seed in zip(replay, shares, seeds[1:], strict=True):
        if share > 0:
            parts[f"step{step}"] = collect(env_id, actor, n_steps=int(share), seed=part_seed, deterministic=False,
                                           progress_bar=progress_bar)
    return next(iter(parts.values())) if len(parts) == 1 else concatenate(list(parts.values()), names=list(parts))


def make_dataset(
    name: str,
    *,
    n_steps: int = 1_000_000,
    seed: int = 0,
    teacher: Teacher | str | Path | None = None,
    budget: int = 1_000_000,
    teacher_dir: str | Path | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 5,
    deterministic: bool = False,
    device: str = "cpu",
    progress_bar: bool = False,
) -> Dataset:
    """Build the dataset ``name`` (see the module docstring) from a published teacher.

    :param n_steps: steps collected for each of the random / medium / expert parts (D4RL: 1M).
    :param teacher: a :class:`Teacher` or the folder of one; default: the committed teacher of the recipe's env
        (:func:`committed_teacher`), unless ``teacher_dir`` is given.
    :param budget: SAC training steps when a teacher has to be trained (D4RL: about 1M).
    :param teacher_dir: train (or reuse) a teacher in this work folder with :func:`obtain_teacher` instead of
        using the committed one; with neither a teacher nor a committed one, a teacher is trained in a
        temporary folder.
    :param eval_every: evaluation period of a teacher trained here (default ``budget // 20``: fewer evaluations
        than a long run's, which matter at the small budgets trained here).
    :param deterministic: act with the SAC mean instead of sampling when collecting medium/expert data
        (medium-replay is always collected with sampled actions, as SAC explores).
    """
    recipe = parse_recipe(name)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    budget = check_int("budget", budget, minimum=2)
    eval_every = max(1, budget // 20) if eval_every is None else eval_every
    seed = check_seed(seed)
    random_seed, medium_seed, expert_seed = spawn_seeds(seed, 3, key=_RECIPE_SEED_KEY)
    if isinstance(teacher, (str, Path)):
        teacher = Teacher.load(teacher)
    elif teacher is not None and not isinstance(teacher, Teacher):
        raise ConfigError(f"teacher must be a Teacher or the folder of a published one, got {type(teacher).__name__}")
    if recipe.needs_teacher and teacher is None:
        committed = committed_teacher(recipe.env) if teacher_dir is None else None
        teacher = Teacher.load(committed) if committed is not None else obtain_teacher(
            recipe.env_id, budget, seed, teacher_dir, eval_every=eval_every,
            eval_episodes=eval_episodes, device=device, progress_bar=progress_bar,
        )
    if teacher is not None and teacher.env_id != recipe.env_id:
        raise ConfigError(f"teacher was trained on {teacher.env_id}, recipe {name!r} needs {recipe.env_id}")

    def rollouts(policy: Any, part_seed: int, n_steps: int | None = None, n_episodes: int | None = None) -> Dataset:
        return collect(
            recipe.env_id, policy, seed=part_seed, deterministic=deterministic, progress_bar=progress_bar,
            n_steps=n_steps, n_episodes=n_episodes,
        )

    parts: dict[str, Dataset] = {}
    if recipe.kind == "random":
        parts["random"] = rollouts("random", random_seed, n_steps=n_steps)
    if teacher is not None:
        if recipe.kind in ("medium", "medium-expert"):
            parts["medium"] = rollouts(teacher.medium, medium_seed, n_steps=n_steps)
        if recipe.demos is not None:
            parts[f"expert{recipe.demos}"] = rollouts(teacher.expert, expert_seed, n_steps=DEMO_STEPS * recipe.demos)
        elif recipe.kind in ("expert", "medium-expert"):
            parts["expert"] = rollouts(teacher.expert, expert_seed, n_steps=n_steps)
        if recipe.kind == "medium-replay":
            parts["medium-replay"] = replay_rollouts(recipe.env_id, teacher, seed, progress_bar=progress_bar)
        if recipe.n_expert is not None:
            parts[f"expert{recipe.n_expert}"] = rollouts(teacher.expert, expert_seed, n_episodes=recipe.n_expert)
    dataset = next(iter(parts.values())) if len(parts) == 1 else concatenate(list(parts.values()), names=list(parts))
    low, high = reference_scores(recipe.env)
    dataset.metadata = {
        **({"parts": dataset.metadata["parts"]} if "parts" in dataset.metadata else {}),
        "name": recipe.name,
        "dataset_id": f"cairnrl/{recipe.name.replace('+', '_')}-v0",
        "env_id": recipe.env_id,
        "ref_min_score": low,
        "ref_max_score": high,
        "description": f"D4RL-style {recipe.name.split('-', 1)[1]} data for {recipe.env_id}, made locally by cairnrl",
        "recipe": {
            "kind": recipe.kind,
            "n_expert": recipe.n_expert,
            "demos": recipe.demos,
            "budget": teacher.info["run"]["budget"] if teacher is not None else None,
            "n_steps": n_steps,
            "seed": seed,
            "deterministic": deterministic,
        },
        "teacher": teacher.summary() if teacher is not None else None,
        "returns": {part: return_stats(data, recipe.env) for part, data in parts.items()},
        "return_mean": float(np.mean(dataset.returns())),
    }
    return dataset
