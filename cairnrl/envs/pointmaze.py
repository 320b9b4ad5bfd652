"""A dependency-free point-mass maze: Gymnasium-Robotics' dense PointMaze in spirit, without MuJoCo.

The agent is a ball of radius 0.1 in a grid maze of unit cells (``1`` = wall). Cell ``(i, j)`` has its centre at
``(x, y) = (j - (width - 1) / 2, (height - 1) / 2 - i)``, as in Gymnasium-Robotics. The observation is
``(x, y, vx, vy)``; the action is a 2-D force in ``[-1, 1]``. One step integrates
``v <- clip((1 - damping) v + gain * a, -5, 5)``, ``p <- p + dt * v`` with ``dt = 0.01``, ``gain = 0.238`` and
``damping = 0.0025``, constants measured on Gymnasium-Robotics' PointMaze (MuJoCo timestep 0.01): a force of 1
adds about 0.238 to the velocity per step. A move that would push the ball into a wall cell is cancelled along that
axis and that velocity component is zeroed (the ball's bounding square is checked against the wall cells).

The reward is dense, ``exp(-||p - goal||)``. Reset puts the ball at the start cell and the goal at the goal cell,
each with uniform noise of ``+-0.25`` per axis. Unlike Gymnasium-Robotics (where ``terminated`` fires within 0.45
of the goal), the episode never terminates: MBRCSL's Point Maze protocol ignores ``terminated`` and runs all 200
steps, so the return rewards reaching the goal early and staying (Zhou et al., 2024, Point Maze experiments).
``info["success"]`` says whether the ball is within 0.45 of the goal.

:data:`STITCH_MAP` is the map of MBRCSL's stitching task: start ``S`` at cell (1, 2), goal ``G`` at (2, 4); the
shortest route is S -> M (2, 2) -> C (2, 3) -> G.
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cairnrl.exceptions import ConfigError

#: MBRCSL's stitching maze (1 = wall, "r" = start, "g" = goal).
STITCH_MAP: tuple[tuple[int | str, ...], ...] = (
    (1, 1, 1, 1, 1, 1),
    (1, 0, "r", 1, 1, 1),
    (1, 0, 0, 0, "g", 1),
    (1, 1, 1, 1, 1, 1),
)
#: Named cells of :data:`STITCH_MAP` (row, column).
STITCH_CELLS = {"S": (1, 2), "A": (1, 1), "B": (2, 1), "M": (2, 2), "C": (2, 3), "G": (2, 4)}

DT, GAIN, DAMPING, MAX_SPEED, RADIUS = 0.01, 0.238, 0.0025, 5.0, 0.1
RESET_NOISE, SUCCESS_DISTANCE = 0.25, 0.45


class MazeGeometry:
    """Cells, walls and coordinates of a maze map (shared by the env and the scripted data controller)."""

    def __init__(self, maze_map: tuple[tuple[int | str, ...], ...] | list[list[int | str]]) -> None:
        rows = [list(row) for row in maze_map]
        if not rows or any(len(row) != len(rows[0]) for row in rows):
            raise ConfigError(f"maze_map must be a non-empty rectangular grid, got {maze_map!r}")
        allowed = {0, 1, "r", "g"}
        bad = [cell for row in rows for cell in row if cell not in allowed]
        if bad:
            raise ConfigError(f"maze_map cells must be 0, 1, 'r' or 'g', got {bad[0]!r}")
        self.height, self.width = len(rows), len(rows[0])
        self.walls = np.array([[cell == 1 for cell in row] for row in rows])
        starts = [(i, j) for i, row in enumerate(rows) for j, cell in enumerate(row) if cell == "r"]
        goals = [(i, j) for i, row in enumerate(rows) for j, cell in enumerate(row) if cell == "g"]
        if len(starts) != 1 or len(goals) != 1:
            raise ConfigError(f"maze_map needs exactly one 'r' (start) and one 'g' (goal) cell, got {starts}, {goals}")
        self.start_cell, self.goal_cell = starts[0], goals[0]

    def cell_center(self, cell: tuple[int, int]) -> np.ndarray:
        i, j = cell
        return np.array([j - (self.width - 1) / 2, (self.height - 1) / 2 - i])

    def cell_of(self, position: np.ndarray) -> tuple[int, int]:
        j = math.floor(position[0] + self.width / 2)
        i = math.floor(self.height / 2 - position[1])
        return min(max(i, 0), self.height - 1), min(max(j, 0), self.width - 1)

    def blocked(self, x: float, y: float) -> bool:
        """Whether the ball's bounding square at ``(x, y)`` overlaps a wall cell (or leaves the map)."""
        for px in (x - RADIUS, x + RADIUS):
            for py in (y - RADIUS, y + RADIUS):
                j = math.floor(px + self.width / 2)
                i = math.floor(self.height / 2 - py)
                if not (0 <= i < self.height and 0 <= j < self.width) or self.walls[i, j]:
                    return True
        return False


class PointMaze(gym.Env):
    """The point-mass maze described in the module docstring.

    :param maze_map: rows of ``0`` (free), ``1`` (wall), ``"r"`` (start) and ``"g"`` (goal); default
        :data:`STITCH_MAP`.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(self, maze_map: tuple[tuple[int | str, ...], ...] | list[list[int | str]] = STITCH_MAP) -> None:
        self.geometry = MazeGeometry(maze_map)
        self.observation_space = spaces.Box(-np.inf, np.inf, (4,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._state = np.zeros(4)
        self.goal = self.geometry.cell_center(self.geometry.goal_cell)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        noise = self.np_random.uniform(-RESET_NOISE, RESET_NOISE, size=4)
        self.goal = self.geometry.cell_center(self.geometry.goal_cell) + noise[2:]
        start = self.geometry.cell_center(self.geometry.start_cell) + noise[:2]
        self._state = np.array([start[0], start[1], 0.0, 0.0])
        return self._state.copy(), self._info()

    def _info(self) -> dict[str, Any]:
        distance = float(np.linalg.norm(self._state[:2] - self.goal))
        return {"success": distance <= SUCCESS_DISTANCE, "goal": self.goal.copy(), "distance": distance}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        force = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        x, y, vx, vy = (float(value) for value in self._state)
        vx = min(max((1.0 - DAMPING) * vx + GAIN * force[0], -MAX_SPEED), MAX_SPEED)
        vy = min(max((1.0 - DAMPING) * vy + GAIN * force[1], -MAX_SPEED), MAX_SPEED)
        if self.geometry.blocked(x + DT * vx, y):
            vx = 0.0
        else:
            x += DT * vx
        if self.geometry.blocked(x, y + DT * vy):
            vy = 0.0
        else:
            y += DT * vy
        self._state = np.array([x, y, vx, vy])
        info = self._info()
        return self._state.copy(), math.exp(-info["distance"]), False, False, info
