"""Network builders shared by the algorithms: observation encoders, MLPs and vmapped ensembles."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from torch import nn
from torch.func import functional_call, stack_module_state

from cairnrl.exceptions import EnvError


def mlp(
    input_dim: int, hidden: tuple[int, ...], output_dim: int | None, activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """Linear/activation stack; ``output_dim=None`` ends with the last hidden activation."""
    layers: list[nn.Module] = []
    size = input_dim
    for width in hidden:
        layers += [nn.Linear(size, width), activation()]
        size = width
    if output_dim is not None:
        layers.append(OutputLinear(size, output_dim))
    return nn.Sequential(*layers)


class OutputLinear(nn.Linear):
    """A network's last affine layer, computed in float32 even inside an autocast region.

    Under ``precision="bf16"`` the hidden layers' matrix products run in bfloat16 (8 significant bits), but the
    values a network returns (Q-values, state values, action means) feed regression targets and log-likelihoods, so
    they keep full precision: a Q-value of 300 in bfloat16 is only known to within 2. The state dict is
    ``nn.Linear``'s.
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return in_float32(super().forward, inputs)


def in_float32(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """``function(inputs)`` in float32 even inside an autocast region (there, ``inputs`` are cast up and autocast is
    suspended); outside one it runs as is, paying for no context switch."""
    if not torch.is_autocast_enabled(inputs.device.type):
        return function(inputs)
    with torch.autocast(inputs.device.type, enabled=False):
        return function(inputs.float())


class OneHot(nn.Module):
    """Encodes ``Discrete(n)`` observations (integer tensors) as one-hot float vectors."""

    def __init__(self, n: int, start: int = 0) -> None:
        super().__init__()
        self.n, self.start = n, start

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(observation.long() - self.start, self.n).float()


class ImageEncoder(nn.Module):
    """Scales uint8 images to [0, 1], moves channels first and applies a conv stack with a linear projection.

    Large images (both sides >= 36 px) use the Nature DQN stack (Mnih et al., 2015): 8x8/4, 4x4/2, 3x3/1 with
    32, 64, 64 filters. Small images (e.g. MiniGrid grids) use 3x3 convolutions of 32, 64, 64 filters with strides
    2, 2, 1 as in the MiniGrid CNN of SQIRL's released code; padding 1 keeps tiny grids valid.
    """

    def __init__(self, space: gym.spaces.Box, features_dim: int = 512) -> None:
        super().__init__()
        self.features_dim = features_dim
        self.channels_first = is_image_space_channels_first(space)
        channels, height, width = space.shape if self.channels_first else np.roll(space.shape, 1)
        self.scale = 255.0 if space.dtype == np.uint8 else 1.0
        if min(height, width) >= 36:
            convs = [nn.Conv2d(channels, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                     nn.Conv2d(64, 64, 3, 1), nn.ReLU()]
        else:
            convs = [nn.Conv2d(channels, 32, 3, 2, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, padding=1),
                     nn.ReLU(), nn.Conv2d(64, 64, 3, 1, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, channels, height, width)).shape[1]
        self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        images = observation.float() / self.scale
        if not self.channels_first:
            images = images.permute(0, 3, 1, 2)
        return self.linear(self.convs(images))


def make_encoder(space: gym.Space, policy: str) -> tuple[nn.Module, int]:
    """An encoder for ``space`` and its output size; ``policy`` is ``"MlpPolicy"`` or ``"CnnPolicy"``."""
    if policy == "CnnPolicy":
        if not is_image_space(space, check_channels=False):
            raise EnvError(f"CnnPolicy needs image observations (uint8 Box of 3 dims), got {space}")
        encoder = ImageEncoder(cast(gym.spaces.Box, space))  # is_image_space checked it is a Box
        return encoder, encoder.features_dim
    if isinstance(space, gym.spaces.Discrete):
        return OneHot(int(space.n), int(space.start)), int(space.n)
    if not isinstance(space, gym.spaces.Box):
        raise EnvError(f"observation space {space} is not supported; use Discrete or Box observations")
    return nn.Flatten(), int(np.prod(space.shape))


class VmapEnsemble(nn.Module):
    """``n`` independent copies of a network evaluated in one vectorised call (``torch.func.vmap``).

    Output has a leading ensemble axis: ``[n, batch, ...]``. Parameters are stored stacked, so one optimizer
    step updates every member and one forward runs them all.
    """

    _skeleton: nn.Module

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        params, _ = stack_module_state(members)
        self._names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[name].detach().clone()) for name in self._names])
        skeleton = copy.deepcopy(members[0]).to("meta")
        object.__setattr__(self, "_skeleton", skeleton)  # structure only; not a registered submodule

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        params = dict(zip(self._names, self.stacked, strict=True))

        def call(member_params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self._skeleton, member_params, (x,))

        return torch.vmap(call, in_dims=(0, None), randomness="different")(params, observation)
