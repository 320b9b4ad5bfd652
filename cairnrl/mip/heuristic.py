"""A fast approximate maximiser of ``Q([a, s])`` over a feasible set: sampling plus local search.

Exact MILP solves cost 0.1-2 s each on open solvers (spec B.11), too slow for the 32 TD targets of every gradient
step; issue 6 section 5 asks for a fast maximiser for targets, checked against the exact MILP on a fraction of
batches. This is a departure from the paper, which solved every target exactly.

The search draws random feasible actions, keeps the best few as starting points and improves each by
best-improvement moves (add one component, drop one, or swap one for another). Neighbours are scored by the
network in one batch and only the improving ones are checked for feasibility, best first, so the exact (and
possibly slow) feasibility oracle runs a handful of times per move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cairnrl.core.validation import check_int
from cairnrl.exceptions import ConfigError
from cairnrl.mip.encoding import ReluNetwork, network_inputs
from cairnrl.mip.feasible import FeasibleSet


@dataclass(frozen=True)
class HeuristicResult:
    """The best action found, its network value, and the number of improving moves made."""

    action: np.ndarray
    value: float
    moves: int


def neighbours(action: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Every action one add, one drop or one swap away from ``action`` (components outside ``allowed`` stay 0)."""
    ones = np.flatnonzero(action)
    zeros = np.flatnonzero((action == 0) & allowed)
    n_moves = ones.size + zeros.size + ones.size * zeros.size
    result = np.repeat(action[None], n_moves, axis=0)
    rows = np.arange(n_moves)
    drops = np.concatenate([ones, np.full(zeros.size, -1), np.repeat(ones, zeros.size)])
    adds = np.concatenate([np.full(ones.size, -1), zeros, np.tile(zeros, ones.size)])
    result[rows[drops >= 0], drops[drops >= 0]] = 0
    result[rows[adds >= 0], adds[adds >= 0]] = 1
    return result


def local_search_argmax(
    network: ReluNetwork,
    state: np.ndarray,
    feasible_set: FeasibleSet,
    rng: np.random.Generator,
    *,
    n_samples: int = 256,
    n_starts: int = 8,
    max_moves: int = 50,
    input_order: str = "action_first",
    maximize: bool = True,
) -> HeuristicResult:
    """Approximately maximise (or minimise) the network over the feasible set at ``state``.

    :param n_samples: random feasible actions drawn to seed the search.
    :param n_starts: the best samples improved by local search.
    :param max_moves: improving moves per start at most.
    """
    check_int("n_samples", n_samples, minimum=1)
    check_int("n_starts", n_starts, minimum=1)
    check_int("max_moves", max_moves, minimum=0)
    if feasible_set.contains is None:
        raise ConfigError(f"local search needs an exact membership oracle, which {feasible_set.name} lacks")
    sign = 1.0 if maximize else -1.0
    state = np.asarray(state, dtype=np.float64).reshape(-1)

    def score(actions: np.ndarray) -> np.ndarray:
        return sign * network.forward(network_inputs(actions, state, input_order))

    samples = np.unique(feasible_set.sample(n_samples, rng), axis=0)
    sample_values = score(samples)
    allowed = feasible_set.action_upper > 0
    best_action, best_value, total_moves = samples[0], -np.inf, 0
    for start in np.argsort(-sample_values)[:n_starts]:
        current, value = samples[start].copy(), float(sample_values[start])
        for _ in range(max_moves):
            candidates = neighbours(current, allowed)
            values = score(candidates)
            improving = np.flatnonzero(values > value + 1e-12)
            moved = False
            for index in improving[np.argsort(-values[improving])]:
                if bool(feasible_set.is_feasible(candidates[index][None])[0]):
                    current, value, moved = candidates[index], float(values[index]), True
                    total_moves += 1
                    break
            if not moved:
                break
        if value > best_value:
            best_action, best_value = current, value
    return HeuristicResult(action=best_action.astype(np.int8), value=sign * best_value, moves=total_moves)
