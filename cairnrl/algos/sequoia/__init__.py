"""SEQUOIA (Xu, Wilder, Khalil, Tambe; ICLR 2025): deep Q-learning with a MILP argmax over combinatorial actions.

See :mod:`cairnrl.algos.sequoia.algorithm` and ``docs/reference-differences.md``. The fast maximiser
of its TD targets is :func:`cairnrl.mip.heuristic.fast_argmax`.
"""

from cairnrl.algos.sequoia.algorithm import SEQUOIA
from cairnrl.algos.sequoia.replay import ReplayMemory
from cairnrl.algos.sequoia.targets import TargetMaximizer, TargetStatistics
from cairnrl.algos.sequoia.warm_start import WarmStartData, fit_myopic, warm_start_dataset

__all__ = [
    "SEQUOIA",
    "ReplayMemory",
    "TargetMaximizer",
    "TargetStatistics",
    "WarmStartData",
    "fit_myopic",
    "warm_start_dataset",
]
