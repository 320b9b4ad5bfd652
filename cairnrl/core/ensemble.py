"""Ensembles of MLPs with stacked weights: twin critics, value ensembles and dynamics models in one forward.

An :class:`EnsembleMLP` keeps each layer's weights as one ``[n_members, in, out]`` tensor, so a forward pass over
all members is one batched matrix multiply per layer (``torch.baddbmm``) instead of a Python loop over networks,
and one optimiser step updates every member. Members are initialised independently exactly as ``nn.Linear`` would
initialise them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from cairnrl.core.networks import in_float32
from cairnrl.core.validation import check_int, check_int_tuple


class EnsembleLinear(nn.Module):
    """``n_members`` independent affine maps: ``[n, batch, in] -> [n, batch, out]`` (a shared ``[batch, in]`` input
    is broadcast to every member).

    :param full_precision: compute in float32 even inside an autocast region (an ensemble's output layer, as
        :class:`~cairnrl.core.networks.OutputLinear`).
    """

    def __init__(self, n_members: int, in_features: int, out_features: int, full_precision: bool = False) -> None:
        super().__init__()
        self.n_members, self.in_features, self.out_features = n_members, in_features, out_features
        self.full_precision = full_precision
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation, member by member
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_features).uniform_(-bound, bound))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return in_float32(self._affine, inputs) if self.full_precision else self._affine(inputs)

    def _affine(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() == 2:  # one input shared by all members: broadcast (a view), no copy of the weights
            inputs = inputs.unsqueeze(0).expand(self.n_members, -1, -1)
        return torch.baddbmm(self.bias, inputs, self.weight)

    def frozen_member(self, inputs: torch.Tensor, member: int) -> torch.Tensor:
        """Member ``member`` alone on ``[batch, in]`` with its weights detached: gradients reach the inputs only."""
        weight, bias = self.weight[member].detach(), self.bias[member, 0].detach()

        def affine(rows: torch.Tensor) -> torch.Tensor:
            return torch.addmm(bias, rows, weight)

        return in_float32(affine, inputs) if self.full_precision else affine(inputs)

    def extra_repr(self) -> str:
        return (f"n_members={self.n_members}, in_features={self.in_features}, out_features={self.out_features}"
                + (", full_precision=True" if self.full_precision else ""))


class EnsembleMLP(nn.Module):
    """An ensemble of ReLU MLPs ``in -> hidden... -> out`` evaluated together; output ``[n_members, batch, out]``.

    :param layer_norm: LayerNorm after every hidden linear layer (before the activation), as value networks of
        f-DVL/XQL use for stability.
    """

    def __init__(
        self,
        n_members: int,
        input_dim: int,
        hidden: Iterable[int],
        output_dim: int,
        layer_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.n_members = check_int("n_members", n_members, minimum=1)
        hidden = check_int_tuple("hidden", tuple(hidden))
        layers: list[nn.Module] = []
        size = check_int("input_dim", input_dim, minimum=1)
        for width in hidden:
            layers.append(EnsembleLinear(n_members, size, width))
            if layer_norm:
                layers.append(nn.LayerNorm(width))
            layers.append(activation())
            size = width
        layers.append(EnsembleLinear(n_members, size, check_int("output_dim", output_dim, minimum=1),
                                     full_precision=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)

    def frozen_member(self, inputs: torch.Tensor, member: int) -> torch.Tensor:
        """Member ``member`` alone on ``[batch, in]`` (output ``[batch, out]``), its parameters detached, so a loss
        through it trains what produced the inputs and nothing of the ensemble (TD3's actor loss through Q_1): one
        member's forward and no weight gradients, instead of every member's forward and backward."""
        check_int("member", member, minimum=0, maximum=self.n_members - 1)
        outputs = inputs
        for layer in self.layers:
            if isinstance(layer, EnsembleLinear):
                outputs = layer.frozen_member(outputs, member)
            elif isinstance(layer, nn.LayerNorm):
                outputs = nn.functional.layer_norm(outputs, layer.normalized_shape, layer.weight.detach(),
                                                   layer.bias.detach(), layer.eps)
            else:
                outputs = layer(outputs)
        return outputs


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source`` for every parameter, in one fused ``foreach`` call."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
