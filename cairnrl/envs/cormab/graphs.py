"""Transit-like planar graphs for the path-constrained coRMAB problem (Xu et al., ICLR 2025, section 3).

The reference used a pickled subgraph of the London Underground, which is not public and would need unpickling.
Instead the graph is generated deterministically from a seed: stations are uniform points in the unit square and
two stations are linked when they form a *relative neighbourhood graph* edge (no third station is closer to both
of them). That graph is planar, connected (it contains the Euclidean minimum spanning tree) and sparse, with
average degree about 2.5 like a metro map. The depot (source) is the station nearest the centre. A custom graph
can be loaded from plain JSON with :func:`load_graph_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, shortest_path

from cairnrl.core.seeding import check_seed
from cairnrl.exceptions import ConfigError


@dataclass(frozen=True, eq=False)
class TransitGraph:
    """An undirected graph on ``n_nodes`` stations with a depot ``source``; ``edges`` has shape (E, 2), u < v."""

    n_nodes: int
    edges: np.ndarray
    source: int
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges)
        if edges.ndim != 2 or edges.shape[1] != 2 or edges.shape[0] == 0:
            raise ConfigError(f"graph edges must be a non-empty list of [u, v] pairs, got shape {edges.shape}")
        if edges.min() < 0 or edges.max() >= self.n_nodes or np.any(edges[:, 0] == edges[:, 1]):
            raise ConfigError(f"graph edges must join two different nodes in [0, {self.n_nodes})")
        if not 0 <= self.source < self.n_nodes:
            raise ConfigError(f"graph source must lie in [0, {self.n_nodes}), got {self.source}")
        n_components, _ = connected_components(self.adjacency(), directed=False)
        if n_components != 1:
            raise ConfigError(f"graph must be connected, it has {n_components} components")

    def adjacency(self) -> coo_matrix:
        """The symmetric 0/1 adjacency matrix."""
        u, v = self.edges[:, 0], self.edges[:, 1]
        data = np.ones(2 * u.size)
        return coo_matrix((data, (np.concatenate([u, v]), np.concatenate([v, u]))), shape=(self.n_nodes,) * 2).tocsr()

    def hop_distances(self) -> np.ndarray:
        """All-pairs shortest path lengths in hops, as integers."""
        return shortest_path(self.adjacency(), unweighted=True, directed=False).astype(np.int64)

    def to_json(self) -> dict:
        """Plain JSON data (``load_graph_json`` reads it back)."""
        data = {"n_nodes": self.n_nodes, "edges": self.edges.tolist(), "source": self.source}
        if self.positions is not None:
            data["positions"] = self.positions.tolist()
        return data


def transit_graph(n_nodes: int, seed: int = 0) -> TransitGraph:
    """The relative neighbourhood graph of ``n_nodes`` seeded uniform points; the depot is nearest the centre."""
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 2:
        raise ConfigError(f"n_nodes must be an integer >= 2, got {n_nodes!r}")
    rng = np.random.default_rng(check_seed(seed, "graph_seed"))
    points = rng.random((n_nodes, 2))
    distance = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=2)
    # (u, v) is an edge unless some w is strictly closer to both u and v than they are to each other.
    blocked = (np.maximum(distance[:, None, :], distance[None, :, :]) < distance[:, :, None]).any(axis=2)
    u, v = np.nonzero(np.triu(~blocked, k=1))
    source = int(np.argmin(np.linalg.norm(points - 0.5, axis=1)))
    return TransitGraph(n_nodes=n_nodes, edges=np.stack([u, v], axis=1), source=source, positions=points)


def load_graph_json(path: str | Path) -> TransitGraph:
    """Read a graph written as ``{"n_nodes": int, "edges": [[u, v], ...], "source": int}`` (plain JSON)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read graph file {path}: {error}") from error
    for key in ("n_nodes", "edges", "source"):
        if not isinstance(data, dict) or key not in data:
            raise ConfigError(f"graph file {path} lacks the key {key!r} (needs n_nodes, edges, source)")
    try:
        edges = np.asarray(data["edges"], dtype=np.int64).reshape(-1, 2)
        n_nodes, source = int(data["n_nodes"]), int(data["source"])
        positions = np.asarray(data["positions"], dtype=np.float64) if "positions" in data else None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"graph file {path} is malformed: {error}") from error
    return TransitGraph(n_nodes, np.unique(np.sort(edges, axis=1), axis=0), source, positions)
