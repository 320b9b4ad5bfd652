"""Contrastive UCB (Qiu et al., ICML 2022): contrastive low-rank features with an elliptical bonus."""

from cairnrl.algos.cucb.contrastive_ucb import ContrastiveUCB
from cairnrl.algos.cucb.deep import ATARI_100K, ContrastiveUCBDQN

__all__ = ["ATARI_100K", "ContrastiveUCB", "ContrastiveUCBDQN"]
