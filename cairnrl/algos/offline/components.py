"""Pieces the offline algorithms share: twin critics with a Polyak target, reward scaling, optimisers."""

from __future__ import annotations

import copy
import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from cairnrl.core.ensemble import EnsembleMLP
from cairnrl.data import Dataset
from cairnrl.exceptions import DatasetError

RewardNormalization = Literal["return_range", "none"]
REWARD_NORMALIZATIONS = ("return_range", "none")


class TwinCritic(nn.Module):
    """Two Q-networks ``Q_i(s, a)`` evaluated in one batched forward (output ``[2, batch]``), with a frozen copy
    ``target`` that follows them by Polyak averaging (Fujimoto et al., 2018, clipped double-Q)."""

    def __init__(self, observation_dim: int, action_dim: int, hidden: tuple[int, ...], n_members: int = 2) -> None:
        super().__init__()
        self.online = EnsembleMLP(n_members, observation_dim + action_dim, hidden, 1)
        self.target = copy.deepcopy(self.online).requires_grad_(False)

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.online(torch.cat([observation, action], dim=-1))[..., 0]

    @torch.no_grad()
    def target_min(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``min_i Q_target_i(s, a)``: ``[batch]``."""
        return self.target(torch.cat([observation, action], dim=-1))[..., 0].min(dim=0).values

    def online_parameters(self) -> list[nn.Parameter]:
        return list(self.online.parameters())


def reward_scale(dataset: Dataset, normalization: RewardNormalization) -> float:
    """The factor rewards are multiplied by in the losses.

    ``"return_range"``: ``1000 / (max - min episode return)``, the MuJoCo reward normalisation of IQL (Kostrikov et
    al., 2022, appendix B) that f-DVL reuses; ``"none"``: 1.
    """
    if normalization == "none":
        return 1.0
    returns = dataset.returns()
    spread = float(np.max(returns) - np.min(returns))
    if not np.isfinite(spread) or spread <= 0.0:
        raise DatasetError(
            f"{dataset.source}: reward_normalization='return_range' needs episodes with different returns (all "
            f"{len(returns)} episode returns are {float(returns[0]):.4g}); use reward_normalization='none'"
        )
    return 1000.0 / spread


def adam(parameters: list[nn.Parameter] | list[torch.Tensor], learning_rate: float) -> torch.optim.Adam:
    """Adam with the fused (single-kernel) update where the parameters' device supports it."""
    return torch.optim.Adam(parameters, lr=learning_rate, fused=True)


def cosine_decay(optimizer: torch.optim.Optimizer, decay_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate ``lr * (1 + cos(pi * min(t, T) / T)) / 2``: from ``lr`` to 0 over ``T`` steps, then 0 (unlike
    ``CosineAnnealingLR``, which rises again after ``T``)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, decay_steps) / decay_steps))
    )
