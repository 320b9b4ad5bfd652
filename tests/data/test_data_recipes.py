"""D4RL-style recipes with a tiny SAC teacher (a few hundred steps): snapshot choice, safe save, every kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cairnrl.data import Teacher, collect, make_dataset, parse_recipe, train_teacher
from cairnrl.data.recipes import obtain_teacher, return_stats
from cairnrl.exceptions import CheckpointError, ConfigError

BUDGET = 300


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    torch.set_num_threads(1)
    return train_teacher("Hopper-v5", BUDGET, seed=0, eval_every=100, eval_episodes=2)


def test_parse_recipe():
    recipe = parse_recipe("walker2d-random+expert100")
    assert (recipe.env_id, recipe.kind, recipe.n_expert, recipe.needs_teacher) == ("Walker2d-v5", "random", 100, True)
    assert parse_recipe("ant-medium-replay").kind == "medium-replay"
    assert not parse_recipe("halfcheetah-random").needs_teacher
    for bad in ("hopper-mediocre", "cartpole-random", "hopper-expert+expert3", "hopper-random+expert0"):
        with pytest.raises(ConfigError, match="unknown dataset recipe"):
            parse_recipe(bad)


def test_snapshot_choice_follows_the_evaluation_log(teacher):
    returns = {entry["step"]: entry["mean_return"] for entry in teacher.history}
    assert sorted(returns) == [100, 200, 300]
    assert returns[teacher.expert_step] == max(returns.values())
    target = teacher.random_return + (returns[teacher.expert_step] - teacher.random_return) / 3
    eligible = [step for step in returns if step <= teacher.expert_step]
    assert teacher.medium_step == min(eligible, key=lambda step: (abs(returns[step] - target), step))
    # medium-replay: exactly the transitions stored until the medium snapshot, in whole validated episodes
    assert teacher.replay.num_steps == teacher.medium_step
    assert np.abs(teacher.replay.actions).max() <= 1.0
    ends = teacher.replay.step_offsets[1:] - 1
    assert (teacher.replay.terminations | teacher.replay.truncations)[ends].all()


def test_teacher_saves_without_pickle_and_loads_identically(teacher, tmp_path):
    folder = teacher.save(tmp_path / "teacher")
    suffixes = {path.suffix for path in Path(folder).rglob("*") if path.is_file()}
    assert suffixes <= {".json", ".safetensors", ".hdf5"}
    again = Teacher.load(folder)
    observations = teacher.replay.observations[:20]
    for name in ("expert", "medium"):
        ours, theirs = getattr(teacher, name), getattr(again, name)
        np.testing.assert_array_equal(ours.predict(observations, deterministic=True)[0],
                                      theirs.predict(observations, deterministic=True)[0])
    assert again.summary() == teacher.summary()
    weights = Path(folder) / "policies" / "expert.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        Teacher.load(folder)


def test_teacher_dir_is_reused_only_for_the_same_run(teacher, tmp_path, monkeypatch):
    teacher.save(tmp_path / "t")

    def no_training(*args, **kwargs):
        raise AssertionError("the saved teacher should have been reused")

    monkeypatch.setattr("cairnrl.data.recipes.train_teacher", no_training)
    assert obtain_teacher("Hopper-v5", BUDGET, 0, tmp_path / "t").expert_step == teacher.expert_step
    with pytest.raises(ConfigError, match="holds a teacher for .*'seed': 0.*not .*'seed': 1"):
        obtain_teacher("Hopper-v5", BUDGET, 1, tmp_path / "t")
    with pytest.raises(ConfigError, match="'deterministic': False.*not .*'deterministic': True"):
        obtain_teacher("Hopper-v5", BUDGET, 0, tmp_path / "t", deterministic=True)


def test_every_kind_with_recorded_returns(teacher, same):
    medium = make_dataset("hopper-medium", budget=BUDGET, n_steps=150, teacher=teacher)
    assert medium.num_steps == 150 and medium.metadata["env_id"] == "Hopper-v5"
    assert medium.metadata["returns"]["medium"] == return_stats(
        collect("Hopper-v5", teacher.medium, n_steps=150, seed=_part_seed(1), deterministic=False), "hopper"
    )
    assert medium.metadata["teacher"]["medium_step"] == teacher.medium_step
    both = make_dataset("hopper-medium-expert", budget=BUDGET, n_steps=150, teacher=teacher)
    split = both.metadata["parts"][0]["episodes"][1]
    same(both.select(range(split)), medium, metadata=False)
    assert both.num_steps == 300 and [p["name"] for p in both.metadata["parts"]] == ["medium", "expert"]
    replay = make_dataset("hopper-medium-replay", budget=BUDGET, teacher=teacher)
    same(replay, teacher.replay, metadata=False)
    mixture = make_dataset("hopper-random+expert2", budget=BUDGET, n_steps=100, teacher=teacher)
    random_part, expert_part = mixture.metadata["parts"]
    assert expert_part["episodes"][1] - expert_part["episodes"][0] == 2
    random_only = make_dataset("hopper-random", n_steps=100)
    assert random_only.metadata["teacher"] is None
    same(mixture.select(range(*random_part["episodes"])), random_only, metadata=False)
    stats = mixture.metadata["returns"]["expert2"]
    assert stats["episodes"] == 2
    assert stats["mean"] == pytest.approx(mixture.select(range(*expert_part["episodes"])).returns().mean())
    assert stats["normalized_mean"] == pytest.approx(100 * (stats["mean"] + 20.272305) / (3234.3 + 20.272305))
    with pytest.raises(ConfigError, match="teacher was trained on Hopper-v5"):
        make_dataset("walker2d-expert", teacher=teacher, n_steps=10)


def test_expert_demonstrations_are_the_ones_the_mixtures_hide(teacher):
    recipe = parse_recipe("hopper-expert1")
    assert (recipe.kind, recipe.demos, recipe.n_expert, recipe.needs_teacher) == ("expert", 1, None, True)
    with pytest.raises(ConfigError, match="unknown dataset recipe"):
        parse_recipe("hopper-expert0")
    demos = make_dataset("hopper-expert1", budget=BUDGET, teacher=teacher)
    assert demos.num_steps == 1000 and demos.metadata["recipe"]["demos"] == 1
    mixture = make_dataset("hopper-random+expert2", budget=BUDGET, n_steps=100, teacher=teacher)
    for index in range(2):  # the first demonstrations are the expert episodes hidden in the mixture
        hidden, shown = mixture.episode(mixture.metadata["parts"][1]["episodes"][0] + index), demos.episode(index)
        steps = min(len(hidden), len(shown))
        np.testing.assert_array_equal(hidden.actions[:steps], shown.actions[:steps])
        np.testing.assert_array_equal(hidden.observations[: steps + 1], shown.observations[: steps + 1])


def _part_seed(index: int) -> int:
    from cairnrl.core.seeding import spawn_seeds
    from cairnrl.data.recipes import _RECIPE_SEED_KEY

    return spawn_seeds(0, 3, key=_RECIPE_SEED_KEY)[index]
