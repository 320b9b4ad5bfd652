"""The Dual-RL benchmark script end to end on a tiny teacher, tiny datasets and a few updates."""

import pytest

import benchmarks.dualrl as dualrl
from cairnrl.bench import run_experiment


def test_declared_suites(monkeypatch):
    monkeypatch.setenv(dualrl.SCALE_VARIABLE, "full")
    quick, full = dualrl.runs(quick=True), dualrl.runs(quick=False)
    assert {spec.task for spec in quick} == {"rl:hopper-medium", "il:hopper-random+expert5", "il:hopper-random"}
    assert len(full) == 5 * 3 * (3 * len(dualrl.OFFLINE_ALGORITHMS) + 2 * 3 * len(dualrl.IMITATION_ALGORITHMS))
    assert "il:walker2d-medium+expert200" in {spec.task for spec in full}
    imitation = next(spec for spec in full if spec.task == "il:halfcheetah-medium+expert30")
    assert imitation.config["expert_dataset"]["name"] == "halfcheetah-expert1"
    assert {spec.config["batch_size"] for spec in full} == {dualrl.BATCH}


def test_default_scale_uses_the_committed_teachers(monkeypatch):
    monkeypatch.delenv(dualrl.SCALE_VARIABLE, raising=False)
    default = dualrl.runs(quick=False)
    assert len(default) == 3 * 3 * (3 * len(dualrl.OFFLINE_ALGORITHMS) + 3 * len(dualrl.IMITATION_ALGORITHMS))
    assert {spec.task for spec in default if spec.task.startswith("il:hopper")} == {
        "il:hopper-random+expert30", "il:hopper-random", "il:hopper-medium+expert30"}
    medium = next(spec for spec in default if spec.task == "rl:walker2d-medium")
    assert medium.config["dataset"]["teacher"] == dualrl.committed_teacher_digest("walker2d")
    assert "teacher_budget" not in medium.config["dataset"]
    random = next(spec for spec in default if spec.task == "il:hopper-random+expert30")
    assert random.config["expert_dataset"]["teacher"] == dualrl.committed_teacher_digest("hopper")
    assert (random.config["updates"], random.config["precision"]) == (20_000, "bf16")
    assert medium.config["updates"] == 2_000 and "precision" not in medium.config
    monkeypatch.setenv(dualrl.SCALE_VARIABLE, "paper-ish")
    with pytest.raises(dualrl.ConfigError, match="CAIRNRL_DUALRL_SCALE"):
        dualrl.runs(quick=False)


@pytest.mark.slow
def test_dualrl_benchmark_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setitem(dualrl.TEACHER_BUDGET, "quick", 300)
    monkeypatch.setitem(dualrl.DATA_STEPS, "quick", 300)
    monkeypatch.setitem(dualrl.OFFLINE_KINDS, "quick", ["medium"])
    monkeypatch.setitem(dualrl.HIDDEN_EXPERTS, "quick", {"random": [2]})
    monkeypatch.setitem(dualrl.SEEDS, "quick", [0])
    monkeypatch.setitem(dualrl.UPDATES, "quick", 20)
    monkeypatch.setitem(dualrl.EVAL_EVERY, "quick", 10)
    monkeypatch.setitem(dualrl.IMITATION_UPDATES, "quick", 20)
    monkeypatch.setitem(dualrl.IMITATION_EVAL_EVERY, "quick", 10)
    monkeypatch.setitem(dualrl.EVAL_EPISODES, "quick", 1)
    monkeypatch.setattr(dualrl, "OFFLINE_ALGORITHMS", {"fdvl-chi2": dualrl.OFFLINE_ALGORITHMS["fdvl-chi2"],
                                                       "iql": dualrl.OFFLINE_ALGORITHMS["iql"]})
    results = run_experiment(dualrl.EXPERIMENT, tmp_path, quick=True, progress=False)
    assert len(results) == 2 + len(dualrl.IMITATION_ALGORITHMS)
    for result in results:
        assert result.result["updates"] == 20 and result.result["diverged"] is None
        assert [int(row["timesteps"]) for row in result.evaluations()] == [10, 20, 20]
    recoil = next(r for r in results if r.spec.algorithm == "recoil-official")
    assert recoil.result["max_q_abs"] > 0
    bc_expert = next(r for r in results if r.spec.algorithm == "bc-expert")
    assert bc_expert.result["dataset"]["steps"] == 1000  # hopper-expert1
    summary = dualrl.summarize(results, tmp_path, quick=True)
    assert set(summary.numbers["offline"]["aggregates"]) == {"fdvl-chi2", "iql"}
    assert summary.numbers["imitation"]["stability"]["recoil-paper"]["diverged"] == 0
    assert set(summary.numbers["imitation"]["iqm_by_mixture"]) == {"random+expert2"}
    assert "IQM per suboptimal set" in summary.markdown
    assert "fdvl-chi2: f='chi2', temperature=0.5" in summary.markdown
    assert "recoil-official: variant='official'" in summary.markdown and "bc-all:" not in summary.markdown
    assert {"offline_intervals.png", "imitation_profiles.png", "imitation_curves.png"} <= set(summary.files)


def test_mixture_aggregates_keep_each_number_of_hidden_experts_apart():
    import numpy as np

    tasks = ["il:hopper-random+expert30", "il:walker2d-random+expert30", "il:hopper-random"]
    matrix = np.array([[0.3, 0.1, 0.02], [0.5, 0.2, 0.04], [0.4, 0.3, 0.03]])  # seeds x tasks
    table = dualrl._mixture_aggregates({"recoil": matrix}, tasks)
    assert list(table) == ["random+expert30", "random"]
    assert table["random"]["recoil"][0] == pytest.approx(0.03)  # IQM of 0.02, 0.04, 0.03
    mixed = np.sort(matrix[:, :2].ravel())
    assert table["random+expert30"]["recoil"][0] == pytest.approx(mixed[1:-1].mean())  # both envs pooled


def test_settings_line_lists_the_recorded_overrides(tmp_path, monkeypatch):
    from cairnrl.bench.experiment import RunResult

    monkeypatch.delenv(dualrl.SCALE_VARIABLE, raising=False)
    specs = [spec for spec in dualrl.runs(quick=False) if spec.task == "rl:hopper-medium"]
    line = dualrl._settings([RunResult(spec, {}, tmp_path) for spec in specs])
    assert line.startswith("fdvl-chi2: f='chi2', temperature=0.5; fdvl-tv: f='tv', temperature=0.8; ")
    assert "iql:" not in line.replace("d3rlpy-iql:", "") and "d3rlpy-iql: batch_size=256" in line
