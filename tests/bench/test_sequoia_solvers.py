"""The SEQUOIA solver benchmark, end to end on tiny instances: its MILP agrees with brute force, the fast maximiser
is checked against the optimum, and the summary states both goals."""

import csv
import json

import pytest

import benchmarks.sequoia_solvers as solvers
from cairnrl.bench import run_experiment


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(solvers.SIZES, "quick", [(8, 2)])
    monkeypatch.setitem(solvers.EXACT_STATES, "quick", {8: 2})
    monkeypatch.setitem(solvers.FAST_REPEATS, "quick", {8: 2})
    monkeypatch.setattr(solvers, "FAST_BATCH", 4)
    monkeypatch.setattr(solvers, "GOAL_ARMS", 8)
    monkeypatch.setattr(solvers, "WARM_START", {**solvers.WARM_START, "n_random_states": 5, "epochs": 1})
    monkeypatch.setattr(solvers, "FAST_SKIPPED", {("path", 8)})


def test_declared_suites():
    quick, full = solvers.runs(quick=True), solvers.runs(quick=False)
    assert len(quick) == len(solvers.PROBLEMS) * len(solvers.NETWORKS)
    assert len(full) == 3 * len(quick)
    assert {spec.config["kwargs"]["n_arms"] for spec in full} == {20, 40, 100}
    skipped = {(spec.config["problem"], spec.config["kwargs"]["n_arms"]) for spec in full
               if not spec.config["fast_repeats"]}
    assert skipped == solvers.FAST_SKIPPED
    interventions = [spec for spec in full if spec.config["problem"] == "interventions"]
    assert all(spec.config["kwargs"]["n_interventions"] == 2 * spec.config["kwargs"]["budget"]
               for spec in interventions)


def test_solver_benchmark_end_to_end(tmp_path, tiny):
    results = run_experiment(solvers.EXPERIMENT, tmp_path, quick=True, progress=False)
    assert len(results) == len(solvers.PROBLEMS) * len(solvers.NETWORKS)
    for result in results:
        data = result.result
        assert data["milp_matches_brute"] == 2  # J = 8: every state is checked by enumeration
        assert data["auto_method"] == "enumerate" and len(data["auto_times"]) == 2
        assert (result.spec.config["network"] == "myopic") == ("warm_start_loss" in data)
        if result.spec.config["problem"] == "path":  # skipped: no fast timing, nothing checked
            assert data["fast_time_per_state"] == [] and data["checked"] == data["matched"] == 0
            assert len(result.evaluations()) == 2
            continue
        assert data["checked"] == 2 and 0 <= data["matched"] <= 2
        assert len(data["fast_time_per_state"]) == 2 and min(data["fast_time_per_state"]) > 0
        # The fast value never beats the brute-force optimum.
        assert all(fast <= best + 1e-9 for fast, best in zip(data["fast_values"], data["brute_force"], strict=True))
        assert len(result.evaluations()) == 2 + 2
    summary = solvers.summarize(results, tmp_path, quick=True)
    goals = summary.numbers["goals"]
    assert goals["fast_checked"] == 2 * (len(results) - len(solvers.NETWORKS))
    assert goals["match_goal_met"] == (goals["fast_match_rate"] >= 0.95)
    assert goals["acting_goal_met"] == (goals["acting_median_s"] < 1.0)
    assert "Goal 1" in summary.markdown and "Goal 2" in summary.markdown and "not timed" in summary.markdown
    with (tmp_path / "sequoia_solvers.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results) and {row["brute_force_check"] for row in rows} == {"2/2"}
    assert {row["problem"] for row in rows if row["fast_median_s_per_state"] == "nan"} == {"path"}
    assert all((tmp_path / name).is_file() for name in summary.files)
    json.dumps(summary.numbers, allow_nan=True)
