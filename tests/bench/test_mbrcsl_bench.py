"""The MBRCSL benchmark's d3rlpy CQL arm: declared with the BC arms' budget, evaluated on our side (d3rlpy stubbed)."""

from contextlib import contextmanager

import numpy as np

import benchmarks.mbrcsl as mbrcsl
from cairnrl.bench import d3rlpy_peer, run_experiment


def test_cql_is_declared_with_the_bc_budget():
    for quick in (True, False):
        specs = {(spec.algorithm, spec.seed): spec for spec in mbrcsl.runs(quick)}
        mode = "quick" if quick else "full"
        for seed in mbrcsl.SEEDS[mode]:
            cql, bc = specs[("cql", seed)], specs[("bc", seed)]
            assert cql.family == "d3rlpy" and cql.config["algorithm"] == "cql"
            assert cql.config["updates"] == bc.config["updates"] == mbrcsl.BC_SETTINGS[mode]["updates"]


def test_cql_runs_through_a_served_policy(tmp_path, monkeypatch):
    calls = []

    class Policy:
        result = None

        def __call__(self, observation):
            calls.append(np.asarray(observation).shape)
            return np.zeros(2, dtype=np.float32)

    @contextmanager
    def fake_serve(algorithm, dataset, n_steps, seed, out_dir, hyperparameters, **kwargs):
        assert (algorithm, n_steps, hyperparameters) == ("cql", 1000, {}) and kwargs["n_steps_per_epoch"] == 1000
        policy = Policy()
        yield policy
        policy.result = {"updates_per_second": 12.0}

    monkeypatch.setattr(d3rlpy_peer, "serve_d3rlpy", fake_serve)
    monkeypatch.setattr(mbrcsl, "ALGORITHMS", {"cql": mbrcsl.ALGORITHMS["cql"]})
    monkeypatch.setitem(mbrcsl.SEEDS, "quick", [0])
    monkeypatch.setitem(mbrcsl.BC_SETTINGS, "quick", {"updates": 1000})
    monkeypatch.setitem(mbrcsl.DATA, "quick", {"n_trajectories": 8, "seed": 0})
    (result,) = run_experiment(mbrcsl.EXPERIMENT, tmp_path, quick=True, progress=False)
    assert len(calls) == mbrcsl.EVAL_EPISODES * 200 and set(calls) == {(4,)}  # one observation per step
    assert result.result["updates_per_second"] == 12.0 and len(result.result["eval_returns"]) == mbrcsl.EVAL_EPISODES
