"""Path constraints (the path-constrained problem of Xu et al., ICLR 2025; the released ``RoutingRMAB``).

Arms are stations of a transit graph. A worker leaves the depot, walks at most ``L = 2B`` steps along edges and
returns; it may pull at most ``B`` of the stations it visits. So ``a`` is feasible iff ``sum(a) <= B`` and some
closed walk from the depot of length ``<= L`` visits every pulled station, i.e. the shortest tour through the
pulled stations in the hop metric has length ``<= L``. The env checks this exactly without a solver: Held-Karp
dynamic programming up to 12 stations, a pruned depth-first search over visiting orders beyond.

MILP (time-unrolled flow, as in the reference): binaries ``u_t(j, k)`` for each step ``t < L`` and each arc
``(j, k)`` or stay at the depot, exactly one per step, flow conservation between steps,
``a_j <= sum_t sum_i u_t(i, j)`` and ``sum a <= B``. Arcs that cannot lie on a closed walk of length L at step t
(too far from the depot) are left out, which also pins the start and the end at the depot. Stays make "length
exactly L" equal to "length at most L"; allowing them only at the depot and only as a suffix of the walk removes
symmetric copies of the same walk (the reference allowed a self-loop at every station). The reference used only
the budget row during training (``with_combinatorial=False``) and the full rows at evaluation;
``feasible_set(relaxed=True)`` is that training relaxation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cairnrl.core.validation import check_int
from cairnrl.envs.cormab.base import CoRMABEnv, CoRMABProblem, instance_rngs
from cairnrl.envs.cormab.chain import ArmChain, generate_chain
from cairnrl.envs.cormab.feasible import FeasibleSet, budget_set
from cairnrl.envs.cormab.graphs import TransitGraph, load_graph_json, transit_graph
from cairnrl.exceptions import ConfigError

_INSTANCE_KEY = 2
# Up to this many pulled stations the exact tour check is Held-Karp; beyond it a pruned search over orders.
_MAX_DP_STATIONS = 12


class PathProblem(CoRMABProblem):
    """Pull stations visited by one closed walk of bounded length from the depot."""

    name = "path constraints"

    def __init__(self, chain: ArmChain, graph: TransitGraph, budget: int, max_path_length: int | None = None) -> None:
        super().__init__()
        if graph.n_nodes != chain.n_arms:
            raise ConfigError(f"the graph has {graph.n_nodes} stations but there are {chain.n_arms} arms")
        self.chain = chain
        self.graph = graph
        self.budget = budget
        self.max_path_length = check_int(
            "max_path_length", 2 * budget if max_path_length is None else max_path_length, minimum=1
        )
        self.distance = graph.hop_distances()
        self.reachable = 2 * self.distance[graph.source] <= self.max_path_length
        adjacency = graph.adjacency().tolil()
        # neighbours[j] = [j, its neighbours..., -1 padding]: the moves available from j (staying included).
        lists = [[j, *adjacency.rows[j]] for j in range(graph.n_nodes)]
        width = max(len(moves) for moves in lists)
        self.moves = np.full((graph.n_nodes, width), -1, dtype=np.int64)
        for j, moves in enumerate(lists):
            self.moves[j, : len(moves)] = moves
        self._cache: dict[bytes, bool] = {}

    @classmethod
    def generate(
        cls,
        n_arms: int,
        budget: int,
        instance_seed: int,
        graph: TransitGraph | None = None,
        graph_seed: int = 0,
        max_path_length: int | None = None,
    ) -> PathProblem:
        """A random arm chain on ``graph`` (default: the seeded transit graph with ``n_arms`` stations)."""
        (chain_rng,) = instance_rngs(instance_seed, _INSTANCE_KEY, 1)
        chain = generate_chain(chain_rng, n_arms, budget)
        return cls(chain, graph if graph is not None else transit_graph(n_arms, graph_seed), budget, max_path_length)

    @property
    def n_actions(self) -> int:
        return self.n_arms

    @property
    def source(self) -> int:
        return self.graph.source

    def constraint_summary(self) -> str:
        return (
            f"at most {self.budget} stations, all on one closed walk of at most {self.max_path_length} steps "
            f"from depot station {self.source}"
        )

    def tour_length(self, stations: np.ndarray) -> int:
        """The shortest closed walk from the depot through ``stations`` (Held-Karp on hop distances)."""
        nodes = np.setdiff1d(np.asarray(stations, dtype=np.int64), [self.source])
        k = nodes.size
        if k == 0:
            return 0
        if k > _MAX_DP_STATIONS:
            raise ConfigError(f"exact tours are computed for at most {_MAX_DP_STATIONS} stations, got {k}")
        to_node = self.distance[self.source, nodes]
        between = self.distance[np.ix_(nodes, nodes)]
        best = np.full((1 << k, k), np.iinfo(np.int64).max // 4, dtype=np.int64)
        best[1 << np.arange(k), np.arange(k)] = to_node
        for mask in range(1, 1 << k):
            inside = (mask >> np.arange(k)) & 1
            ends = np.flatnonzero(inside)
            if ends.size < 2:
                continue
            for last in ends:
                previous = mask ^ (1 << last)
                best[mask, last] = np.min(best[previous, ends[ends != last]] + between[ends[ends != last], last])
        return int(np.min(best[(1 << k) - 1] + self.distance[nodes, self.source]))

    def is_feasible(self, actions: np.ndarray) -> np.ndarray:
        actions = np.atleast_2d(actions)
        result = np.zeros(actions.shape[0], dtype=bool)
        for row, action in enumerate(actions):
            stations = np.flatnonzero(action)
            if stations.size > self.budget or not np.all(self.reachable[stations]):
                continue
            key = np.packbits(action > 0).tobytes()
            if key not in self._cache:
                self._cache[key] = self._walk_exists(stations)
            result[row] = self._cache[key]
        return result

    def _walk_exists(self, stations: np.ndarray) -> bool:
        if self._greedy_tour(stations) <= self.max_path_length:
            return True
        if np.setdiff1d(stations, [self.source]).size <= _MAX_DP_STATIONS:
            return self.tour_length(stations) <= self.max_path_length
        return self._tour_within(stations, self.max_path_length)

    def _greedy_tour(self, stations: np.ndarray) -> int:
        """A nearest-neighbour tour length: an upper bound that settles most feasible actions without the DP."""
        remaining = list(np.setdiff1d(stations, [self.source]))
        position, length = self.source, 0
        while remaining:
            step = int(np.argmin(self.distance[position, remaining]))
            length += int(self.distance[position, remaining[step]])
            position = remaining.pop(step)
        return length + int(self.distance[position, self.source])

    def _tour_within(self, stations: np.ndarray, limit: int) -> bool:
        """Whether some closed walk from the depot of length ``<= limit`` visits every station (exact, any count).

        Depth-first over visiting orders, nearest station first. A partial tour ending at ``j`` is dropped when
        ``length + max_r (d(j, r) + d(r, depot)) > limit`` over the stations ``r`` still to visit (the triangle
        inequality makes this a lower bound on every completion), or when the same set of visited stations was
        already reached at ``j`` by a walk no longer than this one.
        """
        nodes = np.setdiff1d(np.asarray(stations, dtype=np.int64), [self.source])
        order = np.concatenate([[self.source], nodes])
        distance = self.distance[np.ix_(order, order)].tolist()  # index 0 is the depot
        k = nodes.size
        full = (1 << k) - 1
        shortest: dict[tuple[int, int], int] = {}
        stack = [(0, 0, 0)]  # (visited mask over nodes, current index in ``order``, walk length)
        while stack:
            mask, current, length = stack.pop()
            if mask == full:
                if length + distance[current][0] <= limit:
                    return True
                continue
            remaining = [i + 1 for i in range(k) if not mask >> i & 1]
            children = []
            for nxt in remaining:
                reach = length + distance[current][nxt]
                bound = max(distance[nxt][0], *(distance[nxt][r] + distance[r][0] for r in remaining))
                key = (mask | 1 << (nxt - 1), nxt)
                if reach + bound > limit or shortest.get(key, limit + 1) <= reach:
                    continue
                shortest[key] = reach
                children.append((reach, key))
            # Pushed farthest first, so the nearest station is explored first.
            for reach, (child_mask, nxt) in sorted(children, reverse=True):
                stack.append((child_mask, nxt, reach))
        return False

    def sample_feasible(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Random closed walks of ``L`` steps from the depot (each step a uniform move among those that can still
        return in time, staying included), then ``min(B, visited)`` uniformly chosen visited stations.

        The reference drew a random simple cycle through the depot; both give random feasible actions.
        """
        actions = np.zeros((n, self.n_arms), dtype=np.int8)
        if n == 0:
            return actions
        rows = np.arange(n)
        position = np.full(n, self.source)
        visited = np.zeros((n, self.n_arms), dtype=bool)
        visited[:, self.source] = True
        home = self.distance[:, self.source]
        for step in range(self.max_path_length):
            options = self.moves[position]  # (n, width)
            valid = options >= 0
            allowed = valid & (home[np.where(valid, options, 0)] <= self.max_path_length - step - 1)
            choice = np.where(allowed, rng.random(options.shape), -1.0).argmax(axis=1)
            position = options[rows, choice]
            visited[rows, position] = True
        keys = np.where(visited, rng.random(visited.shape), -1.0)
        order = np.argsort(-keys, axis=1)
        take = np.minimum(visited.sum(axis=1), self.budget)
        chosen = np.arange(self.n_arms)[None, :] < take[:, None]
        actions[np.repeat(rows, self.n_arms)[chosen.ravel()], order[chosen]] = 1
        return actions

    def _build_feasible_set(self, relaxed: bool) -> FeasibleSet:
        if relaxed:
            return budget_set(
                self.n_arms, self.budget, reward_scale=self.reward_scale,
                contains=lambda a: np.asarray(a).sum(axis=1) <= self.budget, sampler=self.sample_feasible,
                name="path constraints relaxed to the budget",
            )
        n_arms, length, source = self.n_arms, self.max_path_length, self.source
        edges = self.graph.edges
        # Arcs both ways plus one stay, at the depot only: any closed walk of length <= L is a closed walk
        # followed by waiting at the depot, and allowing stays elsewhere would only add symmetric copies.
        tails = np.concatenate([edges[:, 0], edges[:, 1], [source]])
        heads = np.concatenate([edges[:, 1], edges[:, 0], [source]])
        steps = np.arange(length)[:, None]
        # Arc (j, k) at step t lies on a closed walk of length L iff d(source, j) <= t and d(k, source) <= L-1-t.
        usable = (self.distance[source, tails][None, :] <= steps) & (
            self.distance[heads, source][None, :] <= length - 1 - steps
        )
        step_ids, arc_ids = np.nonzero(usable)
        n_u = step_ids.size
        u_cols = n_arms + np.arange(n_u)
        n_cols = n_arms + n_u
        u_tail, u_head = tails[arc_ids], heads[arc_ids]
        blocks = [sp.coo_matrix((np.ones(n_u), (step_ids, u_cols)), shape=(length, n_cols))]  # one move per step
        lower, upper = [np.ones(length)], [np.ones(length)]
        # Conservation: arrivals at j after step t equal departures from j at step t + 1.
        inflow = step_ids < length - 1
        outflow = step_ids > 0
        flow_row_in = step_ids[inflow] * n_arms + u_head[inflow]
        flow_row_out = (step_ids[outflow] - 1) * n_arms + u_tail[outflow]
        blocks.append(
            sp.coo_matrix(
                (
                    np.concatenate([np.ones(inflow.sum()), -np.ones(outflow.sum())]),
                    (np.concatenate([flow_row_in, flow_row_out]), np.concatenate([u_cols[inflow], u_cols[outflow]])),
                ),
                shape=((length - 1) * n_arms, n_cols),
            )
        )
        lower.append(np.zeros((length - 1) * n_arms))
        upper.append(np.zeros((length - 1) * n_arms))
        # a_j <= arrivals at j.
        blocks.append(
            sp.coo_matrix(
                (
                    np.concatenate([np.ones(n_arms), -np.ones(n_u)]),
                    (np.concatenate([np.arange(n_arms), u_head]), np.concatenate([np.arange(n_arms), u_cols])),
                ),
                shape=(n_arms, n_cols),
            )
        )
        lower.append(np.full(n_arms, -np.inf))
        upper.append(np.zeros(n_arms))
        # Waiting is a suffix: a stay at step t forces a stay at step t + 1 (removes more symmetric walks).
        stay_cols = u_cols[arc_ids == tails.size - 1]
        n_stay = stay_cols.size - 1
        if n_stay > 0:
            blocks.append(
                sp.coo_matrix(
                    (np.concatenate([np.ones(n_stay), -np.ones(n_stay)]),
                     (np.tile(np.arange(n_stay), 2), np.concatenate([stay_cols[:-1], stay_cols[1:]]))),
                    shape=(n_stay, n_cols),
                )
            )
            lower.append(np.full(n_stay, -np.inf))
            upper.append(np.zeros(n_stay))
        blocks.append(sp.coo_matrix(np.concatenate([np.ones(n_arms), np.zeros(n_u)])[None, :]))
        lower.append(np.array([-np.inf]))
        upper.append(np.array([float(self.budget)]))
        matrix = sp.vstack(blocks).tocsr()
        keep = np.diff(matrix.indptr) > 0  # drop conservation rows of stations no walk can reach at that step
        return FeasibleSet(
            n_actions=n_arms,
            matrix=matrix[keep],
            row_lower=np.concatenate(lower)[keep],
            row_upper=np.concatenate(upper)[keep],
            aux_lower=np.zeros(n_u),
            aux_upper=np.ones(n_u),
            aux_integer=np.ones(n_u, dtype=bool),
            action_upper=self.reachable.astype(float),
            max_cardinality=self.budget,
            reward_scale=self.reward_scale,
            contains=self.is_feasible,
            sampler=self.sample_feasible,
            name="path constraints",
        )


class PathEnv(CoRMABEnv):
    """coRMAB with path constraints on a transit graph (registered as ``cairnrl/CoRMAB-Path-v0``).

    :param n_arms: J, the number of stations (default 20).
    :param budget: B, the most stations pulled (default 5); the walk may take ``max_path_length`` steps.
    :param horizon: H (default 20).
    :param max_path_length: L (default ``2 * budget``, as in the reference).
    :param graph_seed: seed of the generated transit graph (fixed across instances by default, like the
        reference's fixed tube network).
    :param graph_path: a JSON graph file (see :func:`~cairnrl.envs.cormab.graphs.load_graph_json`) instead.
    :param instance_seed: draws the arm chain.
    :param reward_mode: ``"expected"`` (default) or ``"sampled"``.
    :param init_prob: probability that an arm starts in state 1 at reset.
    """

    def __init__(
        self,
        n_arms: int = 20,
        budget: int = 5,
        horizon: int = 20,
        max_path_length: int | None = None,
        graph_seed: int = 0,
        graph_path: str | None = None,
        instance_seed: int = 0,
        reward_mode: str = "expected",
        init_prob: float = 0.5,
    ) -> None:
        check_int("n_arms", n_arms, minimum=2)
        check_int("budget", budget, minimum=1, maximum=n_arms)
        graph = load_graph_json(graph_path) if graph_path is not None else transit_graph(n_arms, graph_seed)
        problem = PathProblem.generate(n_arms, budget, instance_seed, graph=graph, max_path_length=max_path_length)
        super().__init__(problem, horizon, reward_mode, init_prob)
