"""A fast approximate maximiser of ``Q([a, s])`` over a feasible set, batched over states.

Exact MILP solves cost 0.5-15 s each on open solvers at J = 20 (HiGHS, measured on a 2-core machine), too slow
for the 32 TD targets of every SEQUOIA gradient step, so the targets use this fast maximiser, checked against the
exact MILP (:class:`~cairnrl.mip.ArgmaxSolver`) on a fraction of batches. This is a departure from the paper, which
solved every target exactly (Xu et al., ICLR 2025, section 4.1). :func:`fast_argmax` handles every state of a
batch at once:

* **batched sampling**: ``n_samples`` random feasible actions per state, all states scored in one forward pass;
  the best ``n_starts`` distinct samples of each state start a local search;
* **batched local search**: every start moves to its best feasible neighbour (one component added, dropped or
  swapped for another) until none improves; the neighbours of every start of every state are scored in one
  forward pass per move, and the improving ones go to the feasible set's exact membership oracle best first, in
  windows of ``max_checks`` (then 4x, 16x, ... as many) per start, one batched oracle call per window;
* **kicks**: the best action of each state, with one component dropped and barred from returning, restarts the
  search from its ``kick_branches`` best neighbours (``n_kicks`` rounds), which reaches compound moves such as
  "drop one, add two" that no single move improves.

The network is a ``torch.nn.Module`` (evaluated in its own dtype and device, as SEQUOIA's target network) or a
:class:`~cairnrl.mip.encoding.ReluNetwork` (float64 numpy, as :class:`~cairnrl.mip.ArgmaxSolver` keeps it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from cairnrl.core.validation import check_bool, check_choice, check_int
from cairnrl.envs.cormab.feasible import FeasibleSet
from cairnrl.exceptions import ConfigError
from cairnrl.mip.encoding import INPUT_ORDERS, ReluNetwork, network_inputs

#: Defaults of :func:`fast_argmax`'s search options.
FAST_DEFAULTS = {"n_samples": 128, "n_starts": 8, "max_moves": 25, "max_checks": 8, "n_kicks": 2, "kick_branches": 3}
# Options that may be 0 (no moves, no kicks); the others must be positive.
_MAY_BE_ZERO = ("max_moves", "n_kicks")

Network = nn.Module | ReluNetwork


class FastOptions(TypedDict):
    """The integer search options of :func:`fast_argmax`, all present (as :func:`fast_options` returns them)."""

    n_samples: int
    n_starts: int
    max_moves: int
    max_checks: int
    n_kicks: int
    kick_branches: int
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def fast_options(options: dict[str, Any] | None = None, *, name: str = "options") -> FastOptions:
    """``options`` merged over :data:`FAST_DEFAULTS`, each a validated integer; errors name ``name``."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"{name} must be a dict or None, got {options!r}")
    unknown = set(options) - set(FAST_DEFAULTS)
    if unknown:
        raise ConfigError(f"{name} has unknown keys {sorted(unknown)}; valid: {sorted(FAST_DEFAULTS)}")
    merged = {
        key: check_int(f"{name}[{key!r}]", value, minimum=0 if key in _MAY_BE_ZERO else 1)
        for key, value in {**FAST_DEFAULTS, **options}.items()
    }
    return FastOptions(
        n_samples=merged["n_samples"],
        n_starts=merged["n_starts"],
        max_moves=merged["max_moves"],
        max_checks=merged["max_checks"],
        n_kicks=merged["n_kicks"],
        kick_branches=merged["kick_branches"],
    )


def q_values(network: Network, actions: np.ndarray, states: np.ndarray, input_order: str = "action_first",
             ) -> np.ndarray:
    """``Q([a_i, s_i])`` for matching rows of ``actions`` (n, N) and ``states`` (n, S), as float64.

    A torch network runs in its own dtype and device without gradients; a :class:`ReluNetwork` in float64.
    """
    if isinstance(network, ReluNetwork):
        return network.forward(network_inputs(actions, states, input_order))
    parameter = next(network.parameters())
    parts = (actions, states) if input_order == "action_first" else (states, actions)
    with torch.no_grad():
        output = network(torch.as_tensor(np.concatenate(parts, axis=1), dtype=parameter.dtype,
                                         device=parameter.device))
    return output.reshape(-1).to("cpu", torch.float64).numpy()


def top_per_group(groups: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``values`` within each group, ordered by group then value (descending)."""
    order = np.lexsort((-values, groups))
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    first_of_group = np.repeat(starts, np.diff(np.r_[starts, order.size]))
    return order[np.arange(order.size) - first_of_group < k]


def neighbours(current: np.ndarray, allowed: np.ndarray, max_cardinality: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Every action one flip (add or drop) or one swap away from each row of ``current``.

    Returns ``(rows, owner)``: the neighbours and the index of the row of ``current`` each came from. Components
    outside ``allowed`` stay 0 and neighbours with more than ``max_cardinality`` ones are left out.
    """
    n_rows = current.shape[0]
    allowed_idx = np.flatnonzero(allowed)
    flips = np.repeat(current, allowed_idx.size, axis=0)
    flips[np.arange(flips.shape[0]), np.tile(allowed_idx, n_rows)] ^= 1
    flip_owner = np.repeat(np.arange(n_rows), allowed_idx.size)
    on = current.astype(bool)
    off = ~on & allowed[None, :]
    owner, drop, add = np.nonzero(on[:, :, None] & off[:, None, :])
    swaps = current[owner]
    swaps[np.arange(owner.size), drop] = 0
    swaps[np.arange(owner.size), add] = 1
    rows = np.concatenate([flips, swaps])
    owners = np.concatenate([flip_owner, owner])
    if max_cardinality is not None:
        keep = rows.sum(axis=1) <= max_cardinality
        rows, owners = rows[keep], owners[keep]
    return rows, owners


def unique_rows(rows: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)`` of the distinct binary rows (per group, if given): ``rows[first]`` holds each distinct
    row once and ``rows[first][inverse]`` rebuilds ``rows``.

    Rows are packed into 64-bit words so the sort runs on integers (``np.unique(axis=0)`` sorts raw bytes, an
    order of magnitude slower on the neighbour sets of the local search).
    """
    packed = np.packbits(rows.astype(bool), axis=1)
    width = -(-packed.shape[1] // 8) * 8
    words = np.zeros((rows.shape[0], width), dtype=np.uint8)
    words[:, : packed.shape[1]] = packed
    keys = words.view(np.uint64)
    if groups is not None:
        keys = np.concatenate([np.asarray(groups, dtype=np.uint64)[:, None], keys], axis=1)
    order = np.lexsort(keys.T[::-1])
    ordered = keys[order]
    new = np.r_[True, np.any(ordered[1:] != ordered[:-1], axis=1)] if rows.shape[0] else np.zeros(0, dtype=bool)
    inverse = np.empty(rows.shape[0], dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


def _best_feasible(
    rows: np.ndarray, owner: np.ndarray, values: np.ndarray, candidates: np.ndarray, feasible_set: FeasibleSet,
    window: int, count: int = 1,
) -> np.ndarray:
    """For each owner, the positions of its ``count`` highest-valued feasible rows among ``candidates``, ordered
    by owner then value (descending).

    Rows are checked best first in windows of ``window``, ``4 window``, ... per owner, one batched oracle call per
    window, and an owner leaves once it has ``count`` feasible rows: the oracle sees few rows when the best moves
    are feasible, and every candidate when they are not.
    """
    order = candidates[np.lexsort((-values[candidates], owner[candidates]))]
    owners = owner[order]
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    chosen = np.zeros(order.size, dtype=bool)
    found = np.zeros(owner.max(initial=-1) + 1, dtype=np.int64)
    low, high = 0, window
    while low <= rank.max(initial=-1):
        in_window = np.flatnonzero((rank >= low) & (rank < high) & (found[owners] < count))
        if in_window.size == 0:
            break
        window_rows = rows[order[in_window]]
        first, inverse = unique_rows(window_rows)
        feasible = in_window[feasible_set.is_feasible(window_rows[first])[inverse]]
        if feasible.size:
            # Keep the best ``count - found`` feasible rows of each owner from this window.
            group_start = np.flatnonzero(np.r_[True, owners[feasible][1:] != owners[feasible][:-1]])
            within = np.arange(feasible.size) - np.repeat(group_start, np.diff(np.r_[group_start, feasible.size]))
            keep = feasible[within < count - found[owners[feasible]]]
            chosen[keep] = True
            np.add.at(found, owners[keep], 1)
        low, high = high, high + 4 * (high - low)
    return order[chosen]


def _local_search(
    score: Scorer,
    states: np.ndarray,
    current: np.ndarray,
    value: np.ndarray,
    owner_state: np.ndarray,
    feasible_set: FeasibleSet,
    max_moves: int,
    max_checks: int,
    tabu: np.ndarray | None = None,
) -> None:
    """Best-improvement moves for every row of ``current`` (the start of state ``owner_state``), in place.

    ``tabu[i] >= 0`` names a component that row ``i`` may not switch on (the one a kick just dropped).
    """
    allowed = feasible_set.action_upper > 0
    active = np.arange(current.shape[0])
    for _ in range(max_moves):
        rows, owner = neighbours(current[active], allowed, feasible_set.max_cardinality)
        if tabu is not None:
            banned = tabu[active][owner]
            keep = (banned < 0) | (rows[np.arange(rows.shape[0]), np.maximum(banned, 0)] == 0)
            rows, owner = rows[keep], owner[keep]
        if rows.shape[0] == 0:
            return
        row_values = score(rows, states[owner_state[active][owner]])
        base = value[active][owner]
        improving = np.flatnonzero(row_values > base + 1e-6 * (1.0 + np.abs(base)))
        if improving.size == 0:
            return
        best = _best_feasible(rows, owner, row_values, improving, feasible_set, max_checks)
        if best.size == 0:
            return
        movers = active[owner[best]]
        current[movers], value[movers] = rows[best], row_values[best]
        active = movers


def _branch(
    score: Scorer,
    states: np.ndarray,
    kicked: np.ndarray,
    kick_state: np.ndarray,
    tabu: np.ndarray,
    feasible_set: FeasibleSet,
    branches: int,
    max_checks: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``branches`` best feasible neighbours of each kicked row (the dropped component barred), as new starts
    ``(rows, state, tabu)``: following only the single best move after a kick mostly walks back into the local
    optimum the kick left."""
    rows, owner = neighbours(kicked, feasible_set.action_upper > 0, feasible_set.max_cardinality)
    keep = rows[np.arange(rows.shape[0]), tabu[owner]] == 0
    rows, owner = rows[keep], owner[keep]
    if rows.shape[0] == 0:
        return rows, owner, owner
    values = score(rows, states[kick_state[owner]])
    picked = _best_feasible(rows, owner, values, np.arange(rows.shape[0]), feasible_set, max_checks, branches)
    return rows[picked], kick_state[owner[picked]], tabu[owner[picked]]


def _as_states(states: Any) -> np.ndarray:
    """States as a 2-D array: int8 when they are small integers (coRMAB arm states; 8x less memory for the
    per-neighbour copies), else float64."""
    array = np.asarray(states)
    if array.ndim not in (1, 2) or array.size == 0 or array.dtype.kind not in "biuf":
        raise ConfigError(f"states must be one numeric state (S,) or a non-empty batch (n, S), got shape "
                          f"{array.shape} and dtype {array.dtype}")
    array = np.atleast_2d(array)
    if array.dtype.kind in "biu" and array.min() >= -128 and array.max() <= 127:
        return array.astype(np.int8)
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ConfigError("states must be finite")
    return array


def fast_argmax(
    network: Network,
    states: np.ndarray,
    feasible_set: FeasibleSet,
    rng: np.random.Generator,
    *,
    n_samples: int = FAST_DEFAULTS["n_samples"],
    n_starts: int = FAST_DEFAULTS["n_starts"],
    max_moves: int = FAST_DEFAULTS["max_moves"],
    max_checks: int = FAST_DEFAULTS["max_checks"],
    n_kicks: int = FAST_DEFAULTS["n_kicks"],
    kick_branches: int = FAST_DEFAULTS["kick_branches"],
    input_order: str = "action_first",
    maximize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate ``argmax_{a in A} Q([a, s])`` (or the argmin) for every row of ``states`` at once (see the module
    docstring).

    :param network: a ``torch.nn.Module`` or a :class:`~cairnrl.mip.encoding.ReluNetwork` mapping ``[a, s]`` to
        one value.
    :param states: one state ``(S,)`` or a batch ``(n, S)``.
    :param feasible_set: needs a random feasible sampler and an exact membership oracle.
    :param rng: draws the random feasible samples.
    :param n_samples: random feasible actions drawn per state.
    :param n_starts: the best distinct samples of each state that start a local search (plus the empty action
        when it is feasible, whose first moves are greedy additions).
    :param max_moves: improving moves per search at most.
    :param max_checks: first window of improving neighbours sent to the oracle per search and move.
    :param n_kicks: rounds of restarts from the best action of each state with one component dropped (and barred
        from coming back during that search); they reach compound improvements that single moves cannot, such as
        trading one costly arm for two cheap ones under capacities. A round that improves no state ends the kicks.
    :param kick_branches: searches per kicked action, one from each of its best feasible neighbours.
    :param input_order: ``"action_first"`` (SEQUOIA's ``[a, s]``) or ``"state_first"``.
    :param maximize: ``False`` minimises (the reference's cost-valued network).

    Returns the actions ``(n, N)`` (int8, always feasible: every start is feasible and every move is checked by
    the exact oracle) and their network values ``(n,)`` (float64); a single state gives ``n = 1``.
    """
    if feasible_set.sampler is None or feasible_set.contains is None:
        raise ConfigError(f"the fast maximiser needs a sampler and an exact oracle, which {feasible_set.name} lacks")
    fast_options({"n_samples": n_samples, "n_starts": n_starts, "max_moves": max_moves, "max_checks": max_checks,
                  "n_kicks": n_kicks, "kick_branches": kick_branches}, name="fast_argmax options")
    check_choice("input_order", input_order, INPUT_ORDERS)
    sign = 1.0 if check_bool("maximize", maximize) else -1.0
    if not isinstance(network, (nn.Module, ReluNetwork)):
        raise ConfigError(f"network must be a torch.nn.Module or a ReluNetwork, got {type(network).__name__}")
    states = _as_states(states)
    if isinstance(network, ReluNetwork) and network.input_dim != feasible_set.n_actions + states.shape[1]:
        raise ConfigError(f"network takes {network.input_dim} inputs, but actions ({feasible_set.n_actions}) and "
                          f"states ({states.shape[1]}) make {feasible_set.n_actions + states.shape[1]}")

    def score(actions: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return sign * q_values(network, actions, rows, input_order)

    n_states = states.shape[0]
    samples = feasible_set.sample(n_states * n_samples, rng).astype(np.int8)
    sample_state = np.repeat(np.arange(n_states), n_samples)
    sample_values = score(samples, states[sample_state])
    distinct = np.sort(unique_rows(samples, sample_state)[0])
    starts = distinct[top_per_group(sample_state[distinct], sample_values[distinct], n_starts)]
    current, value, owner_state = samples[starts], sample_values[starts], sample_state[starts]
    empty = np.zeros((n_states, feasible_set.n_actions), dtype=np.int8)
    if bool(feasible_set.is_feasible(empty[:1])[0]):
        current = np.concatenate([current, empty])
        value = np.concatenate([value, score(empty, states)])
        owner_state = np.concatenate([owner_state, np.arange(n_states)])
    _local_search(score, states, current, value, owner_state, feasible_set, max_moves, max_checks)
    winners = top_per_group(owner_state, value, 1)
    best, best_value = current[winners], value[winners]
    for _ in range(n_kicks):
        kick_state, drop = np.nonzero(best)
        kicked = best[kick_state]
        kicked[np.arange(drop.size), drop] = 0
        feasible = feasible_set.is_feasible(kicked) if kicked.size else np.zeros(0, dtype=bool)
        kicked, kick_state, drop = kicked[feasible], kick_state[feasible], drop[feasible]
        if kick_state.size == 0:
            break
        kicked, kick_state, drop = _branch(score, states, kicked, kick_state, drop, feasible_set, kick_branches,
                                           max_checks)
        if kick_state.size == 0:
            break
        kick_value = score(kicked, states[kick_state])
        _local_search(score, states, kicked, kick_value, kick_state, feasible_set, max_moves, max_checks, drop)
        top = top_per_group(kick_state, kick_value, 1)
        improved = kick_value[top] > best_value[kick_state[top]] + 1e-6 * (1.0 + np.abs(best_value[kick_state[top]]))
        if not improved.any():
            break
        best[kick_state[top[improved]]] = kicked[top[improved]]
        best_value[kick_state[top[improved]]] = kick_value[top[improved]]
    return best.astype(np.int8), sign * best_value
