"""Seeding: one integer seed drives the env and every derived stream (Python's, NumPy's and torch's global
generators are seeded by :mod:`cairnrl.core.global_rng`).

Sub-seeds come from :class:`numpy.random.SeedSequence` so that runs with seeds 0 and 1 never share a stream
(``seed + i`` would make sub-env 1 of seed 0 equal sub-env 0 of seed 1).

Every derived stream in cairnrl goes through this module: :func:`spawn_seeds` (integer seeds),
:func:`seed_stream` (the same seeds one at a time) or :func:`seed_sequence` (a ``SeedSequence`` to build a NumPy
generator from); it needs NumPy only, so an env can derive its streams without loading torch.  Each consumer
names its purpose with a spawn key declared as a module constant, ``_<PURPOSE>_KEY = <int>``, so two consumers
of one master seed never draw the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cairnrl.exceptions import ConfigError

_MAX_SEED = 2**31 - 1

#: Spawn key of the reset seeds of a cairnrl algorithm's training sub-envs (one child per sub-env).
ENV_SEED_KEY = 1
#: Spawn key of the seed of a cairnrl algorithm's action space (its ``sample()``).
ACTION_SPACE_SEED_KEY = 2


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` as an int, or raise :class:`ConfigError` if it is not a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= _MAX_SEED:
        raise ConfigError(f"{name} must be an integer in [0, {_MAX_SEED}], got {seed!r}")
    return int(seed)


SpawnKey = int | tuple[int, ...]


def seed_sequence(seed: int | None, *, key: SpawnKey = ()) -> np.random.SeedSequence:
    """``SeedSequence(entropy=seed, spawn_key=key)``: the stream of purpose ``key`` under ``seed``.

    ``seed`` may be any non-negative integer (e.g. a Gymnasium ``reset`` seed), or None for fresh OS entropy.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")
    key_tuple = (key,) if isinstance(key, (int, np.integer)) else tuple(key)
    return np.random.SeedSequence(entropy=None if seed is None else int(seed), spawn_key=key_tuple)


def _child_seed(child: np.random.SeedSequence) -> int:
    return int(child.generate_state(1, dtype=np.uint32)[0] & _MAX_SEED)


def spawn_seeds(seed: int, n: int, *, key: SpawnKey = ()) -> list[int]:
    """Derive ``n`` independent integer seeds from ``seed``: the first ``n`` children of
    :func:`seed_sequence` ``(seed, key=key)``.

    ``key`` names a purpose (e.g. ``1`` for the training envs, ``2`` for the action space) so that different
    consumers of the same master seed get disjoint streams.
    """
    return [_child_seed(child) for child in seed_sequence(check_seed(seed), key=key).spawn(n)]


def seed_stream(seed: int, *, key: SpawnKey = ()) -> Iterator[int]:
    """:func:`spawn_seeds` one at a time, for a consumer that does not know ``n`` in advance: the ``k``-th seed it
    yields equals ``spawn_seeds(seed, n, key=key)[k]`` for every ``n > k``."""
    sequence = seed_sequence(check_seed(seed), key=key)
    while True:
        yield _child_seed(sequence.spawn(1)[0])


def generator_state(generator: np.random.Generator) -> dict:
    """A JSON-serialisable snapshot of a NumPy ``Generator`` (its bit generator state)."""
    return dict(generator.bit_generator.state)


def restore_generator(state: dict) -> np.random.Generator:
    """Rebuild a NumPy ``Generator`` from :func:`generator_state` output."""
    name = state.get("bit_generator")
    bit_generator_cls = getattr(np.random, str(name), None)
    if bit_generator_cls is None:
        raise ConfigError(f"unknown NumPy bit generator {name!r} in saved RNG state")
    bit_generator = bit_generator_cls()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
