"""Recipes that rebuild D4RL-style MuJoCo locomotion datasets locally (no download needed).

Names are ``<env>-<kind>`` with ``env`` in :data:`RECIPE_ENVS` (Gymnasium v5 envs) and ``kind`` one of

* ``random``: ``n_steps`` steps of uniformly random actions (D4RL used a randomly initialised SAC actor);
* ``medium`` / ``expert``: ``n_steps`` steps of the teacher's medium / expert SAC snapshot
  (see :mod:`cairnrl.data.teacher`), with stochastic SAC actions by default as in D4RL;
* ``medium-replay``: the teacher run's replay buffer up to the medium snapshot;
* ``medium-expert``: ``medium`` followed by ``expert``;
* ``random+expert<N>`` / ``medium+expert<N>``: the suboptimal sets of ReCOIL's imitation protocol (Sikchi et al.,
  ICLR 2024, after SMODICE), the base data followed by the first ``N`` expert episodes, unmarked for the learner;
  ``metadata["parts"]`` says which episodes are expert;
* ``expert<N>``: ReCOIL's expert set, the first ``N * 1000`` expert transitions (``expert1``: 1000 transitions,
  one full-length episode), collected with the same seed as the mixtures' expert episodes, so they are the
  demonstrations the mixtures hide (as in the protocol, where both come from the start of ``expert-v2``).

The achieved returns of every part (an episode cut by the step budget excluded), their D4RL normalized score
and the teacher's training log are recorded in the metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.validation import check_int
from cairnrl.data.collect import collect
from cairnrl.data.dataset import Dataset, concatenate
from cairnrl.data.scores import normalized_score, reference_scores
from cairnrl.data.teacher import POLICIES_DIR, Teacher, train_teacher
from cairnrl.exceptions import ConfigError

RECIPE_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "ant": "Ant-v5"}
KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")
_NAME = re.compile(
    r"^(?P<env>[a-z0-9]+)-(?:expert(?P<demos>\d+)|"
    r"(?P<kind>medium-replay|medium-expert|random|medium|expert)(?:\+expert(?P<n>\d+))?)$"
)
#: Steps per demonstration of an ``expert<N>`` set (the MuJoCo time limit).
DEMO_STEPS = 1000
_RECIPE_SEED_KEY = 0xDA7A


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


def obtain_teacher(
    env_id: str,
    budget: int,
    seed: int,
    teacher_dir: str | Path | None,
    *,
    deterministic: bool = False,
    **train_kwargs: Any,
) -> Teacher:
    """Load the teacher saved in ``teacher_dir`` if it matches ``(env_id, budget, seed, deterministic)``, else
    train one (and save it there)."""
    wanted = {"env": env_id, "budget": budget, "seed": seed, "deterministic": deterministic}
    if teacher_dir is not None and (Path(teacher_dir) / POLICIES_DIR / "manifest.json").is_file():
        teacher = Teacher.load(teacher_dir)
        found = {"env": teacher.env_id, **{key: teacher.config.get(key) for key in ("budget", "seed", "deterministic")}}
        if found == wanted:
            return teacher
        raise ConfigError(f"{teacher_dir} holds a teacher for {found}, not {wanted}; use another teacher_dir")
    teacher = train_teacher(env_id, budget, seed=seed, deterministic=deterministic, **train_kwargs)
    if teacher_dir is not None:
        teacher.save(teacher_dir)
    return teacher


def make_dataset(
    name: str,
    *,
    budget: int = 1_000_000,
    n_steps: int = 1_000_000,
    seed: int = 0,
    teacher: Teacher | None = None,
    teacher_dir: str | Path | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 5,
    deterministic: bool = False,
    device: str = "cpu",
    progress_bar: bool = False,
) -> Dataset:
    """Build the dataset ``name`` (see the module docstring), training or reusing a SAC teacher as needed.

    :param budget: SAC training steps of the teacher (D4RL: about 1M).
    :param n_steps: steps collected for each of the random / medium / expert parts (D4RL: 1M).
    :param teacher: a trained :class:`Teacher` to reuse; otherwise one is loaded from or saved to
        ``teacher_dir`` (when given) or trained.
    :param deterministic: act with the SAC mean instead of sampling when collecting medium/expert data (and when
        evaluating the teacher's snapshots, so "medium" and "expert" describe the recorded behaviour).
    """
    recipe = parse_recipe(name)
    budget = check_int("budget", budget, minimum=2)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    seed = check_seed(seed)
    random_seed, medium_seed, expert_seed = spawn_seeds(seed, 3, key=_RECIPE_SEED_KEY)
    if recipe.needs_teacher and teacher is None:
        teacher = obtain_teacher(
            recipe.env_id, budget, seed, teacher_dir, deterministic=deterministic, eval_every=eval_every,
            eval_episodes=eval_episodes, device=device, progress_bar=progress_bar,
        )
    if teacher is not None and teacher.env_id != recipe.env_id:
        raise ConfigError(f"teacher was trained on {teacher.env_id}, recipe {name!r} needs {recipe.env_id}")
    trained = cast(Teacher, teacher)  # present whenever a part below uses it (recipe.needs_teacher)

    def rollouts(policy: Any, part_seed: int, n_steps: int | None = None, n_episodes: int | None = None) -> Dataset:
        return collect(
            recipe.env_id, policy, seed=part_seed, deterministic=deterministic, progress_bar=progress_bar,
            n_steps=n_steps, n_episodes=n_episodes,
        )

    parts: dict[str, Dataset] = {}
    if recipe.kind == "random":
        parts["random"] = rollouts("random", random_seed, n_steps=n_steps)
    if recipe.kind in ("medium", "medium-expert"):
        parts["medium"] = rollouts(trained.medium, medium_seed, n_steps=n_steps)
    if recipe.demos is not None:
        parts[f"expert{recipe.demos}"] = rollouts(trained.expert, expert_seed, n_steps=DEMO_STEPS * recipe.demos)
    elif recipe.kind in ("expert", "medium-expert"):
        parts["expert"] = rollouts(trained.expert, expert_seed, n_steps=n_steps)
    if recipe.kind == "medium-replay":
        parts["medium-replay"] = trained.replay
    if recipe.n_expert is not None:
        parts[f"expert{recipe.n_expert}"] = rollouts(trained.expert, expert_seed, n_episodes=recipe.n_expert)
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
            "budget": budget if recipe.needs_teacher else None,
            "n_steps": n_steps,
            "seed": seed,
            "deterministic": deterministic,
        },
        "teacher": teacher.summary() if teacher is not None else None,
        "returns": {part: return_stats(data, recipe.env) for part, data in parts.items()},
        "return_mean": float(np.mean(dataset.returns())),
    }
    return dataset
