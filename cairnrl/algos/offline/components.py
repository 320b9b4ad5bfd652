"""Pieces the offline algorithms share: twin critics with a Polyak target, value networks, reward scaling,
optimisers, and the guard that stops a diverged run before a non-finite loss reaches the parameters."""

from __future__ import annotations

import copy
import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from cairnrl.core.ensemble import EnsembleMLP
from cairnrl.core.networks import OutputLinear
from cairnrl.data import Dataset
from cairnrl.exceptions import ConfigError, DatasetError

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

    def first_frozen(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``Q_1(s, a)`` (``[batch]``) with the critic's parameters detached: for an actor loss, whose gradient must
        reach the actor only."""
        return self.online.frozen_member(torch.cat([observation, action], dim=-1), 0)[:, 0]

    @torch.no_grad()
    def target_min(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``min_i Q_target_i(s, a)``: ``[batch]``."""
        return self.target(torch.cat([observation, action], dim=-1))[..., 0].min(dim=0).values

    def online_parameters(self) -> list[nn.Parameter]:
        return list(self.online.parameters())


class ValueNetwork(nn.Module):
    """``V(s)``: a ReLU MLP with one output (``[batch]``), optionally with LayerNorm after every hidden linear layer
    (before the activation), the value network of f-DVL and XQL."""

    def __init__(self, observation_dim: int, hidden: tuple[int, ...], layer_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = observation_dim
        for width in hidden:
            layers += [nn.Linear(size, width), *([nn.LayerNorm(width)] if layer_norm else []), nn.ReLU()]
            size = width
        layers.append(OutputLinear(size, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.net(observation)[:, 0]


def check_finite_losses(algorithm_name: str, update: int, losses: dict[str, torch.Tensor]) -> None:
    """Stop a diverged run *before* an optimiser step uses a non-finite loss: a :class:`ConfigError` names the
    loss and the update, and the parameters stay those of the last good update (``save()`` then writes a usable
    checkpoint). One device synchronisation per call."""
    if bool(torch.isfinite(torch.stack([value.detach() for value in losses.values()])).all()):
        return
    name, value = next((name, value) for name, value in losses.items() if not torch.isfinite(value).all())
    raise ConfigError(
        f"{algorithm_name} diverged: {name} is {float(value.detach())} at update {update}; the update was not "
        "applied, so the model keeps its last finite parameters (save() writes them). Lower the learning rate, raise "
        "the temperature, or enable layer normalisation of V"
    )


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
