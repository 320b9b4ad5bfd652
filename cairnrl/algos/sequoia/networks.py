"""SEQUOIA's Q-networks: the paper's ReLU MLP on ``[a, s]`` and its dueling decomposition.

The paper's network (Xu, Wilder, Khalil and Tambe, ICLR 2025, section 4.1) maps the concatenated action and state
``[a, s]`` to one scalar; the MILP of section 4 encodes it whole. The dueling form (Wang, Schaul, Hessel, van
Hasselt, Lanctot and de Freitas, "Dueling Network Architectures for Deep Reinforcement Learning", ICML 2016, eq. 8-9)
splits it into a state value and an action advantage,

    Q(s, a) = V(s) + A(s, a) - A(s, 0),

with the null action ``0`` (no arm pulled, feasible in every coRMAB problem) as the reference instead of the
paper's mean or maximum over actions, which a combinatorial set cannot afford. ``V`` carries the level that
bootstrapping builds up (about ``r / (1 - gamma)``) and ``A`` only the differences between actions. Both are ReLU
MLPs, ``V`` on ``s`` and ``A`` on ``[a, s]``. Since ``V(s) - A(s, 0)`` does not depend on ``a``,
``argmax_a Q(s, a) = argmax_a A(s, a)``: the maximisers (MILP, enumeration, local search) take :meth:`argmax_network`,
the advantage MLP alone, and stay exact.
"""

from __future__ import annotations

import torch
from torch import nn

from cairnrl.core.networks import mlp
from cairnrl.exceptions import ConfigError


class DuelingQNetwork(nn.Module):
    """``Q([a, s]) = V(s) + A([a, s]) - A([0, s])`` (module docstring); inputs ``(n, N + J)``, outputs ``(n, 1)``.

    :param n_actions: length N of the binary action vector (the first N input coordinates).
    :param n_arms: number J of arm states (the last J input coordinates).
    :param net_arch: hidden layer sizes of both the advantage and the value MLP.
    """

    def __init__(self, n_actions: int, n_arms: int, net_arch: tuple[int, ...]) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.advantage = mlp(n_actions + n_arms, net_arch, 1)
        self.value = mlp(n_arms, net_arch, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        states = inputs[:, self.n_actions:]
        null = torch.cat([torch.zeros_like(inputs[:, : self.n_actions]), states], dim=1)
        return self.value(states) + self.advantage(inputs) - self.advantage(null)


def q_network(n_actions: int, n_arms: int, net_arch: tuple[int, ...], dueling: bool) -> nn.Module:
    """The paper's MLP on ``[a, s]`` or, with ``dueling``, a :class:`DuelingQNetwork`."""
    if dueling:
        return DuelingQNetwork(n_actions, n_arms, net_arch)
    return mlp(n_actions + n_arms, net_arch, 1)


def argmax_network(network: nn.Module) -> nn.Sequential:
    """The MLP whose argmax over actions equals ``network``'s: the advantage of a dueling network, else itself."""
    if isinstance(network, DuelingQNetwork):
        return network.advantage
    if not isinstance(network, nn.Sequential):
        raise ConfigError(f"SEQUOIA's Q-network is an nn.Sequential or a DuelingQNetwork, got {type(network).__name__}")
    return network
