"""D4RL-style recipes with a tiny SAC teacher (a few hundred steps): resumable training, publishing, every kind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cairnrl.core.sb3_io import build_policy
from cairnrl.core.spaces import space_from_json
from cairnrl.data import Teacher, collect, make_dataset, parse_recipe, train_teacher
from cairnrl.data.recipes import RECIPE_ENVS, committed_teacher, obtain_teacher, return_stats
from cairnrl.data.teacher import choose_snapshots, publish_teacher, read_history, snapshot_path, table_row
from cairnrl.exceptions import CheckpointError, ConfigError

BUDGET = 300
SETTINGS = {"eval_every": 100, "eval_episodes": 2, "deterministic_eval_episodes": 1}
LAYOUT = {"run.json", "history.json", "snapshots", "resume", "resume/policy.safetensors", "resume/optim.pt",
          "resume/buffer.npz", "resume/meta.json"}


def _layout(run_dir: Path) -> set[str]:
    return {str(path.relative_to(run_dir)) for path in run_dir.rglob("*")
            if not path.parent.name == "snapshots"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A run trained in two calls: 150 steps, then the rest of its 300-step budget."""
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    first = train_teacher("Hopper-v5", BUDGET, run_dir, max_steps=150, **SETTINGS)
    state = {"first": first, "first_meta": json.loads((run_dir / "resume" / "meta.json").read_text()),
             "first_history": read_history(run_dir)}
    state["final"] = train_teacher("Hopper-v5", BUDGET, run_dir, **SETTINGS)
    state["run_dir"] = run_dir
    return state


@pytest.fixture(scope="module")
def teacher(run, tmp_path_factory) -> Teacher:
    return publish_teacher(run["run_dir"], tmp_path_factory.mktemp("published") / "hopper", n_replay=2)


def test_parse_recipe():
    recipe = parse_recipe("walker2d-random+expert100")
    assert (recipe.env_id, recipe.kind, recipe.n_expert, recipe.needs_teacher) == ("Walker2d-v5", "random", 100, True)
    assert parse_recipe("ant-medium-replay").kind == "medium-replay"
    assert not parse_recipe("halfcheetah-random").needs_teacher
    for bad in ("hopper-mediocre", "cartpole-random", "hopper-expert+expert3", "hopper-random+expert0"):
        with pytest.raises(ConfigError, match="unknown dataset recipe"):
            parse_recipe(bad)


def test_a_resumed_run_continues_the_step_count_and_the_history(run):
    first, final, run_dir = run["first"], run["final"], run["run_dir"]
    assert first.num_timesteps == 150 and not first.done
    assert [entry["step"] for entry in run["first_history"]] == [100]
    starts = json.loads((run_dir / "run.json").read_text())["hyperparameters"]["learning_starts"]
    assert run["first_meta"]["num_timesteps"] == 150 and run["first_meta"]["n_updates"] == 150 - starts
    assert final.done and final.num_timesteps == BUDGET
    assert [entry["step"] for entry in final.history] == [100, 200, 300]
    assert read_history(run_dir) == final.history
    assert final.history[0] == run["first_history"][0]  # the first chunk's evaluation is kept as it was
    assert all(set(entry) == {"step", "mean_return", "std_return", "det_return", "wall_s"} for entry in final.history)
    assert [entry["wall_s"] for entry in final.history] == sorted(entry["wall_s"] for entry in final.history)
    meta = json.loads((run_dir / "resume" / "meta.json").read_text())
    assert meta["num_timesteps"] == BUDGET and meta["n_updates"] == BUDGET - starts  # as many as in one go
    assert _layout(run_dir) == LAYOUT
    assert sorted(path.name for path in (run_dir / "snapshots").iterdir()) == [
        f"step_{step:07d}.safetensors" for step in (100, 200, 300)
    ]
    assert sorted(np.load(run_dir / "resume" / "buffer.npz").files) == sorted(
        ["observations", "next_observations", "actions", "rewards", "dones", "timeouts"]
    )
    assert len(np.load(run_dir / "resume" / "buffer.npz")["rewards"]) == BUDGET
    assert "--budget 300" in json.loads((run_dir / "run.json").read_text())["command"]
    again = train_teacher("Hopper-v5", BUDGET, run_dir, **SETTINGS)  # nothing left to train
    assert again.model is None and again.num_timesteps == BUDGET
    with pytest.raises(ConfigError, match="other settings.*'seed': \\(0, 1\\)"):
        train_teacher("Hopper-v5", BUDGET, run_dir, seed=1, **SETTINGS)


def test_a_run_without_run_json_is_adopted_and_a_damaged_resume_state_refused(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run["run_dir"], copy)
    (copy / "run.json").unlink()  # as written by the first ad-hoc runs of this layout
    adopted = train_teacher("Hopper-v5", BUDGET, copy, max_steps=0, **SETTINGS)
    assert adopted.num_timesteps == BUDGET and (copy / "run.json").is_file()
    # Those runs saved their resume state from a callback, before the gradient step of that env step: a
    # continuation makes that update first. (A longer budget needs a new run.json: its buffer size changes.)
    meta = json.loads((copy / "resume" / "meta.json").read_text())
    (copy / "resume" / "meta.json").write_text(json.dumps({"num_timesteps": meta["num_timesteps"],
                                                           "n_updates": meta["n_updates"]}))
    (copy / "run.json").unlink()
    longer = train_teacher("Hopper-v5", BUDGET + 50, copy, **SETTINGS)
    assert longer.num_timesteps == BUDGET + 50 and [entry["step"] for entry in longer.history] == [100, 200, 300, 350]
    assert json.loads((copy / "resume" / "meta.json").read_text())["n_updates"] == meta["n_updates"] + 1 + 50
    shutil.copytree(run["run_dir"], tmp_path / "longer")
    (tmp_path / "longer" / "run.json").unlink()
    (tmp_path / "longer" / "resume" / "buffer.npz").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="resume state is missing or damaged"):
        train_teacher("Hopper-v5", BUDGET + 100, tmp_path / "longer", **SETTINGS)


def test_choose_snapshots_from_a_hand_made_history():
    returns = {10: 20.0, 20: 300.0, 30: 900.0, 40: 1200.0, 50: 3100.0, 60: 2000.0, 70: 3100.0, 80: 1100.0}
    history = [{"step": step, "mean_return": value} for step, value in returns.items()]
    choice = choose_snapshots(history, random_return=10.0, n_replay=4)
    assert choice.expert_step == 70  # the best return; the later snapshot on a tie
    assert choice.medium_target == pytest.approx(10.0 + (3100.0 - 10.0) / 3)
    assert choice.medium_step == 30  # 900 is closest to 1040 among steps up to the expert (80's 1100 is later)
    assert choice.replay_steps == (10, 20, 30)  # targets 7.5, 15, 22.5, 30 snap to logged steps, no repeats
    assert choose_snapshots(history, 10.0, n_replay=1).replay_steps == (30,)
    with pytest.raises(ConfigError, match="empty"):
        choose_snapshots([], 0.0)


def test_published_teacher_round_trips_without_pickle(run, teacher):
    folder = teacher.path
    assert {path.suffix for path in folder.iterdir()} == {".json", ".safetensors"}
    assert sum(path.stat().st_size for path in folder.iterdir()) < 3e6
    info = json.loads((folder / "teacher.json").read_text())
    steps = {entry["step"]: entry["mean_return"] for entry in read_history(run["run_dir"])}
    assert info["expert"]["mean_return"] == max(steps.values()) == steps[teacher.expert_step]
    assert teacher.medium_step <= teacher.expert_step and info["command"].startswith("cairnrl data teacher train")
    assert info["random"]["normalized"] == pytest.approx(100 * (info["random"]["mean_return"] + 20.272305)
                                                         / (3234.3 + 20.272305))
    again = Teacher.load(folder)
    observations = collect("Hopper-v5", "random", n_steps=20, seed=3).observations
    for step, actor in again.actors.items():
        full = build_policy("SAC", space_from_json(info["observation_space"]),
                            space_from_json(info["action_space"]), info["policy_kwargs"])
        full.load_state_dict(load_file(str(snapshot_path(run["run_dir"], step))))
        np.testing.assert_array_equal(actor.predict(observations, deterministic=True)[0],
                                      full.predict(observations, deterministic=True)[0])
    assert [step for step, _ in again.replay] == [entry["step"] for entry in info["replay"]]
    with pytest.raises(ConfigError, match="already exists"):
        publish_teacher(run["run_dir"], folder)


def test_damaged_or_missing_teacher_files_are_refused(teacher, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(teacher.path, copy)
    weights = copy / f"actor_step_{teacher.expert_step:07d}.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        Teacher.load(copy)
    weights.unlink()
    with pytest.raises(CheckpointError, match="are missing"):
        Teacher.load(copy)
    (copy / "teacher.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Teacher.load(copy)
    with pytest.raises(CheckpointError, match="teacher.json is missing"):
        make_dataset("hopper-medium", teacher=tmp_path / "nowhere", n_steps=10)


def test_medium_replay_is_regenerated_deterministically_from_the_replay_snapshots(teacher, same):
    replay = make_dataset("hopper-medium-replay", teacher=teacher.path, seed=3)
    assert replay.num_steps == teacher.medium_step
    names = [part["name"] for part in replay.metadata["parts"]]
    assert names == ["warmup"] + [f"step{step}" for step, _ in teacher.replay]
    warmup = replay.metadata["parts"][0]["episodes"]
    assert replay.select(range(*warmup)).num_steps == min(teacher.warmup_steps, teacher.medium_step)
    same(make_dataset("hopper-medium-replay", teacher=teacher, seed=3), replay)
    other = make_dataset("hopper-medium-replay", teacher=teacher, seed=4)
    assert not np.array_equal(other.actions, replay.actions)


def test_teacher_dir_is_reused_only_for_the_same_run(teacher, tmp_path, monkeypatch):
    shutil.copytree(teacher.path, tmp_path / "t" / "teacher")

    def no_training(*args, **kwargs):
        raise AssertionError("the published teacher should have been reused")

    monkeypatch.setattr("cairnrl.data.recipes.train_teacher", no_training)
    assert obtain_teacher("Hopper-v5", BUDGET, 0, tmp_path / "t").expert_step == teacher.expert_step
    with pytest.raises(ConfigError, match="holds a teacher for .*'seed': 0.*not .*'seed': 1"):
        obtain_teacher("Hopper-v5", BUDGET, 1, tmp_path / "t")


def test_every_kind_with_recorded_returns(teacher, same):
    medium = make_dataset("hopper-medium", n_steps=150, teacher=teacher)
    assert medium.num_steps == 150 and medium.metadata["env_id"] == "Hopper-v5"
    assert medium.metadata["returns"]["medium"] == return_stats(
        collect("Hopper-v5", teacher.medium, n_steps=150, seed=_part_seed(1), deterministic=False), "hopper"
    )
    assert medium.metadata["teacher"]["medium"]["step"] == teacher.medium_step
    assert medium.metadata["recipe"]["budget"] == BUDGET
    both = make_dataset("hopper-medium-expert", n_steps=150, teacher=teacher)
    split = both.metadata["parts"][0]["episodes"][1]
    same(both.select(range(split)), medium, metadata=False)
    assert both.num_steps == 300 and [p["name"] for p in both.metadata["parts"]] == ["medium", "expert"]
    mixture = make_dataset("hopper-random+expert2", n_steps=100, teacher=teacher)
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
    demos = make_dataset("hopper-expert1", teacher=teacher)
    assert demos.num_steps == 1000 and demos.metadata["recipe"]["demos"] == 1
    mixture = make_dataset("hopper-random+expert2", n_steps=100, teacher=teacher)
    for index in range(2):  # the first demonstrations are the expert episodes hidden in the mixture
        hidden, shown = mixture.episode(mixture.metadata["parts"][1]["episodes"][0] + index), demos.episode(index)
        steps = min(len(hidden), len(shown))
        np.testing.assert_array_equal(hidden.actions[:steps], shown.actions[:steps])
        np.testing.assert_array_equal(hidden.observations[: steps + 1], shown.observations[: steps + 1])


def _part_seed(index: int) -> int:
    from cairnrl.core.seeding import spawn_seeds
    from cairnrl.data.recipes import _RECIPE_SEED_KEY

    return spawn_seeds(0, 3, key=_RECIPE_SEED_KEY)[index]


def test_the_committed_teacher_is_the_default(teacher, tmp_path, monkeypatch):
    shutil.copytree(teacher.path, tmp_path / "hopper")
    monkeypatch.setattr("cairnrl.data.recipes.TEACHERS_ROOT", tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("the committed teacher should have been used")

    monkeypatch.setattr("cairnrl.data.recipes.train_teacher", no_training)
    medium = make_dataset("hopper-medium", n_steps=50)
    assert medium.metadata["teacher"]["path"] == str(tmp_path / "hopper")
    assert medium.metadata["teacher"]["medium"]["step"] == teacher.medium_step


@pytest.mark.parametrize("env", ["hopper", "halfcheetah", "walker2d"])
def test_committed_teachers_load_and_match_the_readme_table(env):
    """Every committed teacher loads with its checksums verified, and the README's table row is the one
    ``cairnrl data teacher publish`` prints for it (so the numbers there are never typed by hand)."""
    folder = committed_teacher(env)
    assert folder is not None, f"data/teachers/{env} is not committed"
    teacher = Teacher.load(folder)
    assert teacher.env_id == RECIPE_ENVS[env]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert table_row(teacher) in readme.splitlines()
