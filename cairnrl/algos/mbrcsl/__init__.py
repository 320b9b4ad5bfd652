"""MBRCSL (Zhou et al., ICLR 2024): trajectory stitching by model rollouts and return-conditioned supervised
learning."""

from cairnrl.algos.mbrcsl.algorithm import MBRCSL, evaluate_return_conditioned

__all__ = ["MBRCSL", "evaluate_return_conditioned"]
