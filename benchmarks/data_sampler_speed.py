"""Batches per second of ``Dataset.sampler`` / ``Dataset.segment_sampler`` on HalfCheetah-sized data.

The data is synthetic but shaped like D4RL ``halfcheetah-*``: 1000 episodes x 1000 steps, 17-dim float32
observations, 6-dim actions in [-1, 1]. Run single-threaded on a quiet CPU::

    python benchmarks/data_sampler_speed.py [--batches 20000] [--device cpu] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from cairnrl.data import Dataset


def halfcheetah_sized(episodes: int = 1000, length: int = 1000, seed: int = 0) -> Dataset:
    """A synthetic dataset with D4RL HalfCheetah's sizes (no env needed)."""
    rng = np.random.default_rng(seed)
    steps = episodes * length
    truncations = np.zeros(steps, dtype=bool)
    truncations[length - 1 :: length] = True
    return Dataset(
        rng.standard_normal((steps + episodes, 17), dtype=np.float32),
        rng.uniform(-1.0, 1.0, (steps, 6)).astype(np.float32),
        rng.standard_normal(steps, dtype=np.float32),
        np.zeros(steps, dtype=bool),
        truncations,
        np.full(episodes, length),
    )


def rate(sample: Callable[[], object], batches: int) -> float:
    """Batches per second over ``batches`` calls, after a short warm-up."""
    for _ in range(100):
        sample()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        sample()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = halfcheetah_sized()
    built = time.perf_counter()
    transitions = dataset.sampler(args.batch_size, device=args.device, seed=0)
    build_seconds = time.perf_counter() - built
    segments = dataset.segment_sampler(20, args.batch_size // 4, device=args.device, seed=0)
    results = {
        "device": args.device,
        "threads": args.threads,
        "steps": dataset.num_steps,
        "batch_size": args.batch_size,
        "sampler_build_seconds": build_seconds,
        "transition_batches_per_second": rate(transitions.sample, args.batches),
        "segment_batches_per_second (64 x 20 steps)": rate(segments.sample, args.batches // 4),
    }
    print(json.dumps(results, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
