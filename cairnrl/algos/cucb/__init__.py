"""Contrastive UCB (Qiu et al., ICML 2022): contrastive low-rank features with an elliptical bonus."""

from cairnrl.algos.cucb.contrastive_ucb import ContrastiveUCB

__all__ = ["ContrastiveUCB"]
