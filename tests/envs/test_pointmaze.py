"""The dependency-free point-mass maze and MBRCSL's Point Maze stitching dataset."""

import numpy as np
import pytest

from cairnrl.data.pointmaze import make_pointmaze_stitch, next_cells
from cairnrl.envs import make
from cairnrl.envs.pointmaze import STITCH_CELLS, STITCH_MAP, MazeGeometry, PointMaze
from cairnrl.exceptions import ConfigError


def test_geometry_matches_the_reference_coordinates():
    geometry = MazeGeometry(STITCH_MAP)
    assert np.allclose(geometry.cell_center(STITCH_CELLS["S"]), (-0.5, 0.5))
    assert np.allclose(geometry.cell_center(STITCH_CELLS["M"]), (-0.5, -0.5))
    assert np.allclose(geometry.cell_center(STITCH_CELLS["G"]), (1.5, -0.5))
    assert geometry.cell_of(np.array([1.4, -0.3])) == STITCH_CELLS["G"]
    # the greedy cell path from S to G is the short one, S -> M -> C -> G
    steps, cell, path = next_cells(geometry, STITCH_CELLS["G"]), STITCH_CELLS["S"], []
    while cell != STITCH_CELLS["G"]:
        cell = steps[cell]
        path.append(cell)
    assert path == [STITCH_CELLS["M"], STITCH_CELLS["C"], STITCH_CELLS["G"]]
    with pytest.raises(ConfigError, match="exactly one 'r'"):
        MazeGeometry([[1, 0, 1]])


def test_env_reward_walls_and_no_termination():
    env = make("cairnrl/PointMazeStitch-v0")
    assert env.spec.max_episode_steps == 200
    obs, info = env.reset(seed=3)
    assert np.all(np.abs(obs[:2] - (-0.5, 0.5)) <= 0.25) and np.all(obs[2:] == 0)
    assert np.all(np.abs(info["goal"] - (1.5, -0.5)) <= 0.25)
    steps = 0
    while True:  # push right from S: the wall at (1, 3) stops the ball inside cell S
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0]))
        steps += 1
        assert not terminated
        assert reward == pytest.approx(np.exp(-np.linalg.norm(obs[:2] - info["goal"])))
        if truncated:
            break
    assert steps == 200 and obs[0] <= 0.0 - 0.1 + 1e-9 and obs[2] == 0.0
    raw = PointMaze()
    raw.reset(seed=0)
    for _ in range(100):  # down from S into M, then M is open to the right
        obs, *_ = raw.step(np.array([0.0, -1.0]))
    assert obs[1] < -0.35


def test_stitching_dataset_groups_and_determinism():
    data = make_pointmaze_stitch(8, horizon=200, seed=1)
    again = make_pointmaze_stitch(8, horizon=200, seed=1)
    assert data.content_hash() == again.content_hash()
    assert data.content_hash() != make_pointmaze_stitch(8, horizon=200, seed=2).content_hash()
    assert data.num_episodes == 8 and set(data.episode_lengths) == {200} and not data.terminations.any()
    final = data.observations.reshape(8, 201, 4)[:, -1, :2]
    geometry = MazeGeometry(STITCH_MAP)
    assert all(geometry.cell_of(p) == STITCH_CELLS["M"] for p in final[:4])  # route 1 stays at M
    assert all(geometry.cell_of(p) == STITCH_CELLS["G"] for p in final[4:6])  # route 2 ends at G
    visited = {geometry.cell_of(p) for p in data.observations.reshape(8, 201, 4)[4, :, :2]}
    assert STITCH_CELLS["A"] in visited and STITCH_CELLS["B"] in visited
    returns = data.returns()
    assert data.metadata["return_threshold"] == pytest.approx(returns.max())
    assert returns[4:6].mean() > returns[:4].mean()
    with pytest.raises(ConfigError, match="multiple of 4"):
        make_pointmaze_stitch(6)


def test_gymnasium_robotics_backend_when_installed():
    pytest.importorskip("gymnasium_robotics")
    data = make_pointmaze_stitch(4, horizon=60, seed=0, backend="gymnasium-robotics")
    assert (
        data.content_hash() == make_pointmaze_stitch(4, horizon=60, seed=0, backend="gymnasium-robotics").content_hash()
    )
    assert data.observations.shape == (4 * 61, 4) and data.metadata["env_id"] == "PointMaze_UMazeDense-v3"
    geometry = MazeGeometry(STITCH_MAP)
    assert geometry.cell_of(data.observations[60]) == STITCH_CELLS["M"]  # route 1 reaches M within 60 steps


def test_data_make_pointmaze_stitch_command(tmp_path, capsys):
    from cairnrl.cli import main
    from cairnrl.data import load

    assert (
        main(["data", "make", "pointmaze-stitch", "--out", str(tmp_path), "--maze-trajectories", "4", "--no-progress"])
        == 0
    )
    assert "S->M then steer" in capsys.readouterr().out
    data = load(tmp_path / "pointmaze-stitch")
    assert data.num_episodes == 4 and data.content_hash() == make_pointmaze_stitch(4, seed=0).content_hash()
    assert main(["data", "make", "pointmaze-stitch", "--out", str(tmp_path), "--maze-trajectories", "4"]) == 2  # exists
