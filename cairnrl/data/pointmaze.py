"""The Point Maze stitching dataset of MBRCSL (Zhou et al., ICLR 2024, section 5.1 and appendix), rebuilt locally.

In the maze :data:`~cairnrl.envs.pointmaze.STITCH_MAP` (start S, goal G; the best route is S -> M -> C -> G) a
scripted waypoint controller records trajectories of exactly 200 steps (never cut at ``terminated``) in four
equal groups: S -> M and stay at M (twice), the detour S -> A -> B -> G that keeps steering to G, and the same
detour followed by uniform random actions. Neither route in the data is optimal; only stitching the first half of
route 1 with the tail of route 2 gives S -> M -> C -> G.

The controller (as in the authors' data script): Q-value iteration on the cell grid (reward 1 on entering the
target cell, gamma 0.99, 50 sweeps) gives the cell path; each intermediate waypoint is the next cell's centre
minus ``U[0, 0.2)`` per axis, the last one the exact sub-goal; the next waypoint is taken within 0.1 of the
current one; the action is ``clip(10 (waypoint - p) - v, -1, 1)``. A sub-goal is the goal cell's centre plus
``U(-0.25, 0.25)`` (the env's own goal for G) and counts as reached within 0.5 with ``|vx|, |vy| <= 0.5`` (no
velocity check for the last sub-goal of a run that ends randomly).

``backend="cairnrl"`` uses the dependency-free :class:`~cairnrl.envs.pointmaze.PointMaze`;
``backend="gymnasium-robotics"`` uses Gymnasium-Robotics' ``PointMaze_UMazeDense-v3`` with the same map (the
``maze`` extra). Everything is drawn from one seed, so the dataset is regenerated bit for bit. Unlike the
authors' files, the 201st observation of each trajectory is kept, so all 200 transitions are usable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.validation import check_choice, check_int
from cairnrl.data.dataset import Dataset, Episode
from cairnrl.envs.pointmaze import STITCH_CELLS, STITCH_MAP, MazeGeometry, PointMaze
from cairnrl.exceptions import ConfigError

BACKENDS = ("cairnrl", "gymnasium-robotics")
#: Sub-goal sequences and what happens after the last one, per group (the authors' ``maze_default.json``).
GROUPS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("M",), "steer"),
    (("M",), "steer"),
    (("A", "B", "G"), "steer"),
    (("A", "B", "G"), "random"),
)
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))
_EPISODE_SEED_KEY = 0x3A2E  # trajectory i's reset seed and its own action generator


def next_cells(geometry: MazeGeometry, target: tuple[int, int], gamma: float = 0.99, sweeps: int = 50) -> dict:
    """For every free cell, the neighbouring cell a greedy policy of Q-value iteration towards ``target`` moves to
    (reward 1 on entering ``target``)."""
    free = [(i, j) for i in range(geometry.height) for j in range(geometry.width) if not geometry.walls[i, j]]
    values = dict.fromkeys(free, 0.0)

    def neighbours(cell: tuple[int, int]) -> list[tuple[int, int]]:
        return [(cell[0] + di, cell[1] + dj) for di, dj in _MOVES if (cell[0] + di, cell[1] + dj) in values]

    for _ in range(sweeps):
        values = {
            cell: max(((n == target) + gamma * values[n] for n in neighbours(cell)), default=0.0) for cell in free
        }
    return {
        cell: max(neighbours(cell), key=lambda n: (n == target) + gamma * values[n])
        for cell in free
        if cell != target and neighbours(cell)
    }


class WaypointController:
    """The scripted PD controller of the module docstring for one trajectory."""

    def __init__(
        self, geometry: MazeGeometry, subgoals: list[np.ndarray], ending: str, rng: np.random.Generator
    ) -> None:
        self.geometry, self.subgoals, self.ending, self.rng = geometry, subgoals, ending, rng
        self.stage = 0
        self.waypoints: list[np.ndarray] = []
        self.paths = {cell: next_cells(geometry, cell) for cell in {geometry.cell_of(g) for g in subgoals}}

    def _plan(self, position: np.ndarray) -> None:
        target = self.subgoals[self.stage]
        goal_cell, cell = self.geometry.cell_of(target), self.geometry.cell_of(position)
        steps = self.paths[goal_cell]
        self.waypoints = []
        while cell != goal_cell and len(self.waypoints) < self.geometry.height * self.geometry.width:
            cell = steps[cell]
            if cell != goal_cell:
                self.waypoints.append(self.geometry.cell_center(cell) - self.rng.uniform(0.0, 0.2, size=2))
        self.waypoints.append(target)

    def act(self, observation: np.ndarray) -> np.ndarray:
        position, velocity = observation[:2], observation[2:4]
        last = self.stage == len(self.subgoals) - 1
        if self.stage < len(self.subgoals):
            target = self.subgoals[self.stage]
            slow = bool(np.all(np.abs(velocity) <= 0.5)) or (last and self.ending == "random")
            if np.linalg.norm(position - target) <= 0.5 and slow and not (last and self.ending == "steer"):
                self.stage += 1
                self.waypoints = []
        if self.stage == len(self.subgoals):  # only a random ending gets here
            return self.rng.uniform(-1.0, 1.0, size=2)
        if not self.waypoints:
            self._plan(position)
        if len(self.waypoints) > 1 and np.linalg.norm(self.waypoints[0] - position) <= 0.1:
            self.waypoints.pop(0)
        return np.clip(10.0 * (self.waypoints[0] - position) - velocity, -1.0, 1.0)


def _make_env(backend: str) -> tuple[gym.Env, Callable[[Any], np.ndarray], Callable[[Any], np.ndarray]]:
    """The env, how to read the 4-D observation, and how to read the true goal from the reset observation (the
    built-in maze keeps its goal on the env instead)."""
    if backend == "cairnrl":
        maze = PointMaze(STITCH_MAP)
        return maze, lambda obs: np.asarray(obs, dtype=np.float64), lambda _: maze.goal.copy()
    try:
        import gymnasium_robotics
    except ImportError as error:
        raise ConfigError("backend='gymnasium-robotics' needs the maze extra: pip install -e .[maze]") from error
    gym.register_envs(gymnasium_robotics)
    maze_map = [list(row) for row in STITCH_MAP]
    env = gym.make("PointMaze_UMazeDense-v3", maze_map=maze_map, continuing_task=False, max_episode_steps=None)
    return env, lambda obs: np.asarray(obs["observation"], dtype=np.float64), lambda obs: obs["desired_goal"].copy()


def make_pointmaze_stitch(
    n_trajectories: int = 1000,
    horizon: int = 200,
    seed: int = 0,
    backend: str = "cairnrl",
    progress_bar: bool = False,
) -> Dataset:
    """The stitching dataset: ``n_trajectories`` (a multiple of 4: four equal groups, see the module docstring) of
    ``horizon`` steps each. Metadata records the recipe, the per-group returns and ``return_threshold`` (the best
    trajectory's return, MBRCSL's rollout filter)."""
    n_trajectories = check_int("n_trajectories", n_trajectories, minimum=4)
    if n_trajectories % len(GROUPS):
        raise ConfigError(
            f"n_trajectories must be a multiple of {len(GROUPS)} (four equal groups), got {n_trajectories}"
        )
    horizon = check_int("horizon", horizon, minimum=1)
    seed = check_seed(seed)
    check_choice("backend", backend, BACKENDS)
    env, read, goal_of = _make_env(backend)
    geometry = MazeGeometry(STITCH_MAP)
    episode_seeds = spawn_seeds(seed, n_trajectories, key=_EPISODE_SEED_KEY)
    per_group = n_trajectories // len(GROUPS)
    episodes, groups = [], []
    try:
        for index in tqdm(range(n_trajectories), desc="pointmaze-stitch", disable=not progress_bar):
            group = index // per_group
            names, ending = GROUPS[group]
            rng = np.random.default_rng(episode_seeds[index])
            raw, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
            goal = goal_of(raw)
            subgoals = [
                goal if name == "G" else geometry.cell_center(STITCH_CELLS[name]) + rng.uniform(-0.25, 0.25, 2)
                for name in names
            ]
            controller = WaypointController(geometry, subgoals, ending, rng)
            observations, actions, rewards = [read(raw)], [], []
            for _ in range(horizon):
                action = controller.act(observations[-1]).astype(np.float32)
                raw, reward, _, _, _ = env.step(action)
                observations.append(read(raw))
                actions.append(action)
                rewards.append(float(reward))
            truncations = np.zeros(horizon, dtype=bool)
            truncations[-1] = True
            episodes.append(
                Episode(
                    np.array(observations),
                    np.array(actions),
                    np.array(rewards),
                    np.zeros(horizon, dtype=bool),
                    truncations,
                    seed=episode_seeds[index],
                )
            )
            groups.append(group)
    finally:
        env.close()
    dataset = Dataset.from_episodes(
        episodes,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float64),
        action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        source=f"pointmaze-stitch(seed={seed})",
    )
    returns = dataset.returns()
    group_ids = np.array(groups)
    dataset.metadata = {
        "name": "pointmaze-stitch",
        "dataset_id": "cairnrl/pointmaze-stitch-v0",
        "env_id": "cairnrl/PointMazeStitch-v0" if backend == "cairnrl" else "PointMaze_UMazeDense-v3",
        "description": "MBRCSL's Point Maze stitching data: S->M and the detour S->A->B->G, 200 steps each",
        "recipe": {"n_trajectories": n_trajectories, "horizon": horizon, "seed": seed, "backend": backend},
        "groups": [
            {
                "subgoals": list(GROUPS[g][0]),
                "ending": GROUPS[g][1],
                "episodes": [g * per_group, (g + 1) * per_group],
                "return_mean": float(returns[group_ids == g].mean()),
            }
            for g in range(len(GROUPS))
        ],
        "return_threshold": float(returns.max()),
    }
    return dataset
