"""The SQIRL and speed benchmark scripts, end to end on tiny budgets."""

import csv
import math

import numpy as np
import pytest

import benchmarks.speed as speed
import benchmarks.sqirl as sqirl
from cairnrl.analysis.tabular_eval import ExactEvaluator
from cairnrl.bench import run_experiment
from cairnrl.exceptions import ConfigError


def test_lock_corridor_is_a_k1_task_with_cell_dependent_actions():
    mdp = sqirl.make_lock_corridor(length=6, n_actions=3, seed=0, sticky_p=0.0)
    evaluator = ExactEvaluator(mdp)
    assert evaluator.optimal_return() == pytest.approx(1.0)  # 6 new cells * 0.5 / 6 + goal bonus 0.5
    assert evaluator.expected_return(evaluator.observable_optimal_policy()) == pytest.approx(1.0)
    # Taking the cell's key everywhere is optimal; any single action everywhere is not.
    key = np.random.default_rng(0).integers(0, 3, size=6)
    _, position = np.tril_indices(6)
    assert evaluator.expected_return(np.append(key[position], 0)) == pytest.approx(1.0)
    for action in range(3):
        assert evaluator.expected_return(np.full(evaluator.n_states, action)) < 0.9
    info = sqirl.task_info("lock-5")
    assert info["min_k"] == 1 and info["optimal_return"] < 1.0 and info["random_return"] < 0.2  # sticky p = 0.25


def test_toy_text_tasks_step_exactly_as_gymnasium_with_sticky_actions():
    """The FrozenLake task is Gymnasium's FrozenLake (deterministic ground) under StickyActions, step for step."""
    import gymnasium as gym

    from cairnrl.envs import StickyActions

    ours = sqirl.make_task_env("frozenlake-4x4")
    theirs = gym.wrappers.TimeLimit(StickyActions(gym.make("FrozenLake-v1", is_slippery=False), p=0.25), 100)
    actions = np.random.default_rng(0).integers(0, 4, size=10_000)
    step, lengths = 0, []
    for episode in range(40):
        assert ours.reset(seed=episode)[0] == theirs.reset(seed=episode)[0]
        done, length = False, 0
        while not done:
            mine, reference = ours.step(int(actions[step])), theirs.step(int(actions[step]))
            assert mine[:4] == reference[:4]
            done, step, length = mine[2] or mine[3], step + 1, length + 1
        lengths.append(length)
    assert max(lengths) > 5  # episodes go past the first steps, so sticky repeats were exercised
    info = sqirl.task_info("frozenlake-4x4")
    assert info["optimal_return"] == pytest.approx(1.0) and info["random_return"] < 0.05
    assert info["min_k"] == 1 and 0 < info["gap"] < 0.01  # greedy on Q^random is optimal, by a tiny margin
    assert "frozenlake-4x4" in sqirl.QUICK_TASKS and {"frozenlake-8x8", "cliffwalking"} <= set(sqirl.FULL_TASKS)
    with pytest.raises(ConfigError, match="not a toy-text env"):
        sqirl.make_toy_text_mdp("CartPole-v1", horizon=10)


def test_declared_suites():
    quick = sqirl.runs(quick=True)
    assert len(quick) == len(sqirl.QUICK_TASKS) * 3 * len(sqirl.SEEDS["quick"])
    assert {spec.algorithm for spec in quick} == {"sqirl", "sb3-ppo", "sb3-dqn"}
    full = sqirl.runs(quick=False)
    assert "sqirl[planning_depth=3,episodes_per_timestep=256]" in {spec.algorithm for spec in full}
    assert {spec.family for spec in full} == {"sqirl", "sb3-ppo", "sb3-dqn"}
    assert all(spec.steps == sqirl.BUDGET["full"] for spec in full)
    pairs = [(spec.family, spec.seed) for spec in speed.runs(quick=True)]
    assert pairs[:4] == [("cairnrl", 0), ("peer", 0), ("peer", 1), ("cairnrl", 1)]  # interleaved, alternating


def test_minigrid_tasks_are_optional(monkeypatch):
    monkeypatch.setattr(sqirl, "minigrid_available", lambda: False)
    assert not [task for task in sqirl.available_tasks(sqirl.FULL_TASKS) if task.startswith("minigrid")]
    monkeypatch.setattr(sqirl, "minigrid_available", lambda: True)
    assert "minigrid-empty-5x5" in sqirl.available_tasks(sqirl.FULL_TASKS)


def test_unattainable_optimum_is_rejected(monkeypatch):
    monkeypatch.setitem(sqirl.TASKS, "fake", {"lock": {"length": 4, "seed": 0}})
    monkeypatch.setattr(ExactEvaluator, "observable_optimal_policy",
                        lambda self: np.zeros((self.horizon, self.n_states), dtype=np.int64))
    with pytest.raises(ConfigError, match="attains the optimum"):
        sqirl.task_info.__wrapped__("fake")


def test_sqirl_benchmark_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(sqirl, "QUICK_TASKS", ["trap-1", "lock-5"])
    monkeypatch.setitem(sqirl.SEEDS, "quick", [0])
    monkeypatch.setitem(sqirl.BUDGET, "quick", 1500)
    monkeypatch.setitem(sqirl.EVAL_FREQ, "quick", 500)
    # A grid of two SQIRL configurations: the sample complexity of a task is the better one's.
    grid = [{**sqirl.SQIRL, "planning_depth": k, "episodes_per_timestep": 16} for k in (1, 2)]
    monkeypatch.setitem(sqirl.ALGORITHMS, "quick", {**sqirl.ALGORITHMS["quick"], "sqirl": grid})
    results = run_experiment(sqirl.EXPERIMENT, tmp_path, quick=True, progress=False)
    assert len(results) == 8
    for result in results:
        assert result.result["n_evaluations"] >= 2
        rows = result.evaluations()
        assert int(rows[0]["timesteps"]) == 0 and int(rows[-1]["timesteps"]) == result.result["timesteps"]
        solved = [int(row["timesteps"]) for row in rows if row["solved"] == "True"]
        assert result.result["first_solved"] == (solved[0] if solved else None)
    summary = sqirl.summarize(results, tmp_path, quick=True)
    with (tmp_path / "sample_complexity.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 3
    for row in rows:
        if row["family"] == "sqirl":
            configs = [r for r in results if r.spec.task == row["task"] and r.spec.family == "sqirl"]
            best = min(math.inf if r.result["first_solved"] is None else r.result["first_solved"] for r in configs)
            assert float(row["median_sample_complexity"]) == best  # one seed: the median is the run's step
    assert set(summary.numbers["aggregates"]) == {"sqirl[planning_depth=1,episodes_per_timestep=16]",
                                                  "sqirl[planning_depth=2,episodes_per_timestep=16]",
                                                  "sb3-ppo", "sb3-dqn"}
    assert "Best configuration per task" in summary.markdown
    assert {"sample_complexity.png", "learning_curves.png", "final_score_intervals.png",
            "performance_profiles.png"} <= set(summary.files)
    assert set(summary.numbers["spearman"]) == {"sqirl vs sb3-ppo", "sqirl vs sb3-dqn", "sb3-ppo vs sb3-dqn"}
    for family, fraction in summary.numbers["fraction_solved"].items():
        assert 0.0 <= fraction <= 1.0, family
    assert "| trap-1 | 5 | 2 | 2 |" in summary.markdown


def test_speed_benchmark_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setitem(speed.ROUNDS, "quick", 2)
    monkeypatch.setitem(speed.STEPS, "quick", 800)
    monkeypatch.setattr(speed, "OFFLINE_ENTRIES", {})  # the offline pairs: test_speed_offline_pairs
    results = run_experiment(speed.EXPERIMENT, tmp_path, quick=True, progress=False)
    assert len(results) == 4
    for result in results:
        assert result.result["env_steps"] >= 800 and result.result["updates"] > 0
        assert 0 < result.result["train_seconds"] < result.result["seconds"]
    summary = speed.summarize(results, tmp_path, quick=True)
    numbers = summary.numbers["sqirl-vs-dqn"]
    for metric in speed.METRICS:
        assert numbers[metric]["ratio_min"] <= numbers[metric]["ratio_median"] <= numbers[metric]["ratio_max"]
        assert math.isfinite(numbers[metric]["ratio_median"]) and numbers[metric]["rounds"] == 2
    # Matched workloads: both sides make one gradient update per 4 env steps.
    for result in results:
        assert result.result["updates"] == pytest.approx(result.result["env_steps"] / 4, rel=0.2)


def test_speed_offline_pairs(tmp_path, monkeypatch):
    """Both sides of an offline pair are timed and paired per round; d3rlpy's side is stubbed (no venv in tests)."""
    import cairnrl.bench.d3rlpy_peer as d3rlpy_peer

    calls = []

    def fake_d3rlpy(algorithm, dataset, env_id, n_steps, seed, eval_episodes, out_dir, hyperparameters, **kwargs):
        calls.append((algorithm, n_steps, hyperparameters))
        return {"updates_per_second": 10.0 + seed}

    monkeypatch.setattr(d3rlpy_peer, "run_d3rlpy", fake_d3rlpy)
    monkeypatch.setattr(speed, "ENTRIES", {})
    monkeypatch.setattr(speed, "OFFLINE_ENTRIES", {"bc-vs-d3rlpy": speed.OFFLINE_ENTRIES["bc-vs-d3rlpy"]})
    monkeypatch.setitem(speed.OFFLINE_ROUNDS, "quick", 2)
    monkeypatch.setitem(speed.OFFLINE_UPDATES, "quick", 30)
    monkeypatch.setattr(speed, "OFFLINE_DATA", {"episodes": 20, "seed": 0})
    results = run_experiment(speed.EXPERIMENT, tmp_path, quick=True, progress=False)
    assert len(results) == 4 and len(calls) == 2
    assert all(call == ("bc", 30, {"batch_size": 256, "learning_rate": 3e-4}) for call in calls)
    summary = speed.summarize(results, tmp_path, quick=True)
    pair = summary.numbers["bc-vs-d3rlpy"]["updates_per_s"]
    assert pair["rounds"] == 2 and pair["peer"] == 10.5 and pair["cairnrl"] > 0
    assert pair["ratio_min"] <= pair["ratio_median"] <= pair["ratio_max"]


def test_speed_scales_select_their_pairs(monkeypatch):
    """quick/full: every pair on the CPU, the -bf16- ones in mixed precision, the -compiled- ones also compiled, the
    rows-matched ReCOIL pair at half the batch per set; gpu: the float32 offline pairs on CUDA."""
    quick = speed.runs(quick=True)
    assert all("device" not in spec.config for spec in quick)
    bf16 = [spec for spec in quick if "-bf16-" in spec.task]
    assert {spec.config["algorithm"] for spec in bf16 if spec.family == "cairnrl"} == {
        "iql", "td3bc", "bc", "fdvl", "recoil"}
    assert {spec.config["algorithm"] for spec in bf16 if "-compiled-" in spec.task and spec.family == "cairnrl"} == {
        "iql", "fdvl", "recoil"}
    for spec in bf16:
        plain = speed.OFFLINE_ENTRIES[spec.task.replace("-bf16", "").replace("-compiled", "").replace(
            "-rows-matched", "")]
        if spec.family == "peer":
            assert spec.config["hyperparameters"] == plain["peer"][1]  # d3rlpy's side unchanged
            continue
        expected = {**plain["cairnrl"][1], "precision": "bf16"}
        if "-compiled-" in spec.task:
            expected["compile_graph"] = True
        if "-rows-matched-" in spec.task:  # 128 from each of ReCOIL's two sets: the peer's 256 rows
            expected["batch_size"] = plain["peer"][1]["batch_size"] // 2
        assert spec.config["hyperparameters"] == expected
    monkeypatch.setenv(speed.SCALE_VARIABLE, "gpu")
    gpu = speed.runs(quick=False)
    assert gpu and all(spec.config.get("device") == "cuda" and "-bf16-" not in spec.task for spec in gpu)
    assert {spec.task for spec in gpu} == set(speed.offline_entries("gpu")) and len(gpu) == 2 * len(
        speed.offline_entries("gpu"))
    monkeypatch.setenv(speed.SCALE_VARIABLE, "tpu")
    with pytest.raises(ConfigError, match="CAIRNRL_SPEED_SCALE must be one of"):
        speed.runs(quick=False)


def test_offline_goal_check_flags_datasets_below_the_peers_ci():
    """d3rlpy's scores [seeds, datasets]: a constant 10 on "a" (CI [10, 10]) and 0/20/40 on "b" (CI within [0, 40]);
    cairnrl's mean 9 on "a" is below, 5 on "b" is inside, so only "a" is flagged, and only for the algorithm given."""
    import benchmarks.offline as offline

    peer = np.array([[10.0, 0.0], [10.0, 20.0], [10.0, 40.0]])
    ours = np.array([[9.0, 5.0], [9.0, 5.0], [9.0, 5.0]])
    below = offline.below_peer({"cairnrl-bc": ours, "d3rlpy-bc": peer, "cairnrl-iql": ours}, ["a", "b"])
    assert below == {"bc": ["a"]}
    assert offline.below_peer({"cairnrl-bc": peer, "d3rlpy-bc": peer}, ["a", "b"]) == {"bc": []}
    # Roles swapped: d3rlpy's mean 10 on "a" is above cairnrl's CI [9, 9]; 20 on "b" is above [5, 5] too.
    assert offline.below_peer({"cairnrl-bc": ours, "d3rlpy-bc": peer}, ["a", "b"], "d3rlpy", "cairnrl") == {"bc": []}
    assert offline.below_peer({"cairnrl-bc": peer, "d3rlpy-bc": ours}, ["a", "b"], "d3rlpy", "cairnrl") == {
        "bc": ["a"]}
