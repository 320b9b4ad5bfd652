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


def test_rollout_fidelity_by_hand():
    """Two kept rollouts of two steps: one sits on the goal (true rewards 1), one steps into the wall at cell (0, 0)
    (true rewards exp(-distance)); the model claimed 2 per step everywhere."""
    import torch

    from cairnrl.envs.pointmaze import STITCH_MAP, MazeGeometry

    geometry = MazeGeometry(STITCH_MAP)
    goal, wall = geometry.cell_center(geometry.goal_cell), geometry.cell_center((0, 0))
    assert geometry.blocked(*wall) and not geometry.blocked(*goal)
    start = geometry.cell_center(geometry.start_cell)
    paths = np.array([[goal, goal, goal], [start, wall, wall]])
    observations = np.concatenate([paths, np.zeros_like(paths)], axis=-1)
    model = type("Kept", (), {"kept_observations": torch.tensor(observations), "kept_rewards": torch.full((2, 2), 2.0)})
    fidelity = mbrcsl.rollout_fidelity(model)
    wall_reward = np.exp(-np.linalg.norm(wall - goal))
    assert fidelity["in_wall_fraction"] == 2 / 6
    assert fidelity["model_return_median"] == 4.0
    assert np.isclose(fidelity["true_return_median"], (2.0 + 2 * wall_reward) / 2)
    assert np.isclose(fidelity["reward_abs_error"], (1.0 + 1.0 + 2 * (2.0 - wall_reward)) / 4)
