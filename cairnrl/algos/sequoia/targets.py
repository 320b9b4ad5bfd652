"""SEQUOIA's TD-target maximiser ``argmax_{a in A} Q_target(s', a)`` for ``y = r + gamma * Q_target(s', a*)``.

The paper solves one MILP per target (32 per gradient step, with Gurobi; Xu et al., 2025, section 4.1). With
open-source solvers one exact solve of the 16-32 network costs 0.5-15 s at J = 20 (HiGHS, measured on a 2-core
machine), so by default the argmax of a target comes from the batched sampling + local-search maximiser
:func:`cairnrl.mip.heuristic.fast_argmax` scored by the target network. This is a departure from the paper, made
for speed; ``mode="exact"`` keeps the paper's behaviour.

On a fraction of batches (``check_interval``) the exact maximiser (:class:`~cairnrl.mip.ArgmaxSolver`: the MILP,
or enumeration of the feasible set where it is small) solves the same states; the gap between the two is logged
and the better action is used. ``mode="exact"`` solves every target exactly, the paper-faithful setting.

Answers are memoised by next state (the reference's memoizer); the memo is only valid for the target network
that produced it, and :class:`TargetMaximizer` leaves it to the caller to clear it when that network changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cairnrl.core.validation import check_choice
from cairnrl.envs.cormab.feasible import FeasibleSet
from cairnrl.mip.argmax import ArgmaxSolver
from cairnrl.mip.heuristic import FastOptions, fast_argmax, q_values

TARGET_MODES = ("fast", "exact")


@dataclass
class TargetStatistics:
    """Counters of the target maximiser (JSON-serialisable through :meth:`to_dict`)."""

    lookups: int = 0
    memo_hits: int = 0
    fast_solves: int = 0
    exact_solves: int = 0
    checked: int = 0
    matched: int = 0
    gap_sum: float = 0.0
    gap_max: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return dict(vars(self))

    @property
    def match_rate(self) -> float:
        """Fraction of checked states where the fast maximiser reached the exact optimum (nan before a check)."""
        return self.matched / self.checked if self.checked else float("nan")

    @property
    def mean_gap(self) -> float:
        """Mean of ``max(0, Q(exact) - Q(fast))`` over checked states (nan before a check)."""
        return self.gap_sum / self.checked if self.checked else float("nan")


class TargetMaximizer:
    """``argmax_a Q_target(s', a)`` for batches of next states: memo, fast maximiser, exact solver and checks.

    :param feasible_set: the set the targets maximise over.
    :param exact_solver: the exact maximiser (its network is synchronised by the caller).
    :param mode: ``"fast"`` or ``"exact"``.
    :param fast_options: keyword arguments of :func:`fast_argmax`.
    :param match_tolerance: the fast answer matches when ``Q(fast) >= Q(exact) - match_tolerance``.
    """

    def __init__(
        self,
        feasible_set: FeasibleSet,
        exact_solver: ArgmaxSolver,
        mode: str,
        fast_options: FastOptions,
        match_tolerance: float,
    ) -> None:
        self.feasible_set = feasible_set
        self.exact_solver = exact_solver
        self.mode = check_choice("target_maximizer", mode, TARGET_MODES)
        self.fast_options = fast_options
        self.match_tolerance = match_tolerance
        self.memo: dict[bytes, np.ndarray] = {}
        self.stats = TargetStatistics()
        self.last_check: dict[str, float] | None = None

    def clear(self) -> None:
        """Forget memoised answers (call whenever the target network changes)."""
        self.memo.clear()

    def _exact(self, states: np.ndarray) -> np.ndarray:
        self.stats.exact_solves += states.shape[0]
        return np.stack([self.exact_solver.solve(state).action for state in states]).astype(np.int8)

    def argmax(self, network: nn.Module, states: np.ndarray, rng: np.random.Generator, check: bool) -> np.ndarray:
        """Maximising actions ``(B, N)`` for the rows of ``states`` ``(B, J)`` under ``network``.

        With ``check`` (fast mode) every distinct state is also solved exactly; the gap is recorded in
        :attr:`stats` and :attr:`last_check`, and the better action of the two is used and memoised.
        """
        states = np.asarray(states, dtype=np.int8)
        unique, inverse = np.unique(states, axis=0, return_inverse=True)  # arm states are not binary
        inverse = inverse.reshape(-1)
        keys = [row.tobytes() for row in unique]
        self.stats.lookups += states.shape[0]
        if check and self.mode == "fast":
            actions = self._checked(network, unique, rng)
        else:
            actions = np.zeros((unique.shape[0], self.feasible_set.n_actions), dtype=np.int8)
            known = np.array([key in self.memo for key in keys], dtype=bool)
            self.stats.memo_hits += int(known[inverse].sum())
            for index in np.flatnonzero(known):
                actions[index] = self.memo[keys[index]]
            missing = np.flatnonzero(~known)
            if missing.size:
                if self.mode == "exact":
                    actions[missing] = self._exact(unique[missing])
                else:
                    self.stats.fast_solves += missing.size
                    actions[missing] = fast_argmax(network, unique[missing], self.feasible_set, rng,
                                                   **self.fast_options)[0]
        for key, action in zip(keys, actions, strict=True):
            self.memo[key] = action
        return actions[inverse]

    def select(self, network: nn.Module, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Fast maximising actions ``(B, N)`` under ``network`` without the memo: the online network of double-Q
        targets changes after every gradient step, so its answers cannot be reused."""
        states = np.asarray(states, dtype=np.int8)
        unique, inverse = np.unique(states, axis=0, return_inverse=True)
        self.stats.fast_solves += unique.shape[0]
        return fast_argmax(network, unique, self.feasible_set, rng, **self.fast_options)[0][inverse.reshape(-1)]

    def _checked(self, network: nn.Module, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        self.stats.fast_solves += states.shape[0]
        fast, fast_values = fast_argmax(network, states, self.feasible_set, rng, **self.fast_options)
        exact = self._exact(states)
        exact_values = q_values(network, exact, states)
        gaps = np.maximum(exact_values - fast_values, 0.0)
        matched = fast_values >= exact_values - self.match_tolerance
        self.stats.checked += states.shape[0]
        self.stats.matched += int(matched.sum())
        self.stats.gap_sum += float(gaps.sum())
        self.stats.gap_max = max(self.stats.gap_max, float(gaps.max()))
        self.last_check = {"match_rate": float(matched.mean()), "mean_gap": float(gaps.mean()),
                           "max_gap": float(gaps.max())}
        return np.where((exact_values > fast_values)[:, None], exact, fast).astype(np.int8)

    def memo_arrays(self, n_arms: int) -> tuple[np.ndarray, np.ndarray]:
        """The memo as arrays ``(states (M, J), actions (M, N))`` for a checkpoint."""
        if not self.memo:
            return np.zeros((0, n_arms), dtype=np.int8), np.zeros((0, self.feasible_set.n_actions), dtype=np.int8)
        states = np.stack([np.frombuffer(key, dtype=np.int8) for key in self.memo])
        return states, np.stack(list(self.memo.values())).astype(np.int8)

    def load_memo(self, states: np.ndarray, actions: np.ndarray) -> None:
        """Inverse of :meth:`memo_arrays`."""
        self.memo = {row.astype(np.int8).tobytes(): action.astype(np.int8) for row, action in zip(states, actions,
                                                                                                 strict=True)}


def td_targets(
    target_net: nn.Module,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    next_actions: torch.Tensor,
    next_obs: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """``y = r + gamma (1 - done) Q_target([a*, s'])`` (Xu et al., 2025, Algorithm 1), without gradient.

    ``Q_target`` is the whole target network: for a dueling network ``V(s') + A(s', a*) - A(s', 0)``, while
    ``a*`` came from its advantage alone (the same argmax).
    """
    with torch.no_grad():
        next_q = target_net(torch.cat([next_actions, next_obs], dim=1))[:, 0]
    return rewards + gamma * (1.0 - dones) * next_q
