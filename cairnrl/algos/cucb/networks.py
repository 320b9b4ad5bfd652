"""Feature maps of Contrastive UCB: the learned contrastive pair (phi, psi) and the oracle features of a block MDP."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from cairnrl.core.networks import make_encoder, mlp


class ContrastiveFeatures(nn.Module):
    """phi(s, a) on the simplex Delta^d and psi(s') >= 0, one network each, shared across levels with the level
    as input (Qiu et al., Section 3: P_h(s'|s, a) ~ phi_h(s, a)^T psi_h(s') P^-(s')).

    phi = softmax(MLP([s, onehot(h), onehot(a)])), psi = exp(MLP([s', onehot(h + 1)])); the odds of the contrastive
    classifier are f(s, a, s') = phi^T psi, computed in log space as logsumexp(log phi + log psi).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        horizon: int,
        n_actions: int,
        feature_dim: int,
        net_arch: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.horizon, self.n_actions, self.feature_dim = horizon, n_actions, feature_dim
        self.encoder, size = make_encoder(observation_space, "MlpPolicy")
        self.phi_net = mlp(size + horizon + n_actions, net_arch, feature_dim)
        self.psi_net = mlp(size + horizon + 1, net_arch, feature_dim)

    def log_phi(self, observation: torch.Tensor, level: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log phi_h(s, a), ``[n, d]``."""
        inputs = torch.cat(
            [
                self.encoder(observation).float(),
                F.one_hot(level.long(), self.horizon).float(),
                F.one_hot(action.long(), self.n_actions).float(),
            ],
            dim=-1,
        )
        return F.log_softmax(self.phi_net(inputs), dim=-1)

    def log_psi(self, next_observation: torch.Tensor, next_level: torch.Tensor) -> torch.Tensor:
        """log psi_h(s'), ``[n, d]`` (``next_level`` = h + 1)."""
        inputs = torch.cat(
            [self.encoder(next_observation).float(), F.one_hot(next_level.long(), self.horizon + 1).float()], dim=-1
        )
        return self.psi_net(inputs)

    def forward(self, observation: torch.Tensor, level: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.log_phi(observation, level, action).exp()


class OracleFeatures(nn.Module):
    """phi*(s, a) = onehot(z(s), a) in R^{|Z| |A|}: the true block-MDP features, with the latent z(s) read through a
    fixed linear decoder (``argmax(decoder @ s)``) that the env provides; an upper reference for learned features."""

    def __init__(self, decoder: torch.Tensor, n_actions: int) -> None:
        super().__init__()
        self.decoder: torch.Tensor
        self.register_buffer("decoder", decoder.detach().clone().float())
        self.n_actions = n_actions
        self.feature_dim = int(decoder.shape[0]) * n_actions

    def forward(self, observation: torch.Tensor, level: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        latent = (observation.float().flatten(1) @ self.decoder.T).argmax(dim=-1)
        return F.one_hot(latent * self.n_actions + action.long(), self.feature_dim).float()
