"""Actor heads for continuous control shared by the offline algorithms, and advantage-weighted regression.

* :class:`GaussianActor` - the policy of IQL (Kostrikov et al., 2022) and of the Dual-RL methods: a ``tanh``-bounded
  mean, a state-independent log standard deviation, and the log-likelihood of the *untransformed* Gaussian (no tanh
  change of variables), which is what their policy-extraction losses maximise.
* :class:`DeterministicActor` - ``tanh``-bounded deterministic actions (TD3+BC, deterministic BC).
* :func:`awr_weights` - ``min(exp(beta * A), max_weight)``, the weights of advantage-weighted regression
  (Peng et al., 2019; IQL eq. 7).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cairnrl.core.networks import mlp

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


class GaussianActor(nn.Module):
    """``pi(a|s) = N(tanh(mu(s)), diag(exp(2 log_std)))`` with ``log_std`` a learned vector clipped to
    ``[log_std_min, log_std_max]`` (IQL's policy for MuJoCo)."""

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        hidden: tuple[int, ...],
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.mean_net = mlp(observation_dim, hidden, action_dim)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        """The mean action ``tanh(mu(s))`` (the deterministic action)."""
        return torch.tanh(self.mean_net(observation))

    def clipped_log_std(self) -> torch.Tensor:
        return self.log_std.clamp(self.log_std_min, self.log_std_max)

    def log_prob(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)`` of the untransformed diagonal Gaussian, summed over action dimensions: ``[batch]``."""
        log_std = self.clipped_log_std()
        z = (action - self(observation)) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - _HALF_LOG_TWO_PI).sum(dim=-1)

    def sample(self, observation: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sampled action, clipped to ``[-1, 1]``."""
        mean = self(observation)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return (mean + noise * self.clipped_log_std().exp()).clamp(-1.0, 1.0)


class DeterministicActor(nn.Module):
    """``a = tanh(mu(s))`` in ``[-1, 1]``."""

    def __init__(self, observation_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(observation_dim, hidden, action_dim)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(observation))


def awr_weights(advantage: torch.Tensor, beta: float, max_weight: float = 100.0) -> torch.Tensor:
    """``min(exp(beta * A), max_weight)``, computed without overflow (the clip is applied in log space)."""
    return torch.exp(torch.clamp(beta * advantage, max=math.log(max_weight)))
