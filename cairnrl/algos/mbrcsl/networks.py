"""MBRCSL's networks: the DDPM behaviour policy, its Gaussian-MLP alternative and the return-conditioned output
policy (Zhou et al., ICLR 2024, section 4 and appendix; the diffusion policy of Chi et al., RSS 2023).

Diffusion (Ho et al., NeurIPS 2020): with the ``squaredcos_cap_v2`` schedule (Nichol & Dhariwal, 2021, eq. 17)
``abar(t) = cos^2(((t / K) + 0.008) / 1.008 * pi / 2)``, ``beta_k = min(1 - abar(k+1) / abar(k), 0.999)``, the
noise network ``eps(a_k, k, s)`` is trained on ``|| eps - eps(sqrt(abar_k) a + sqrt(1 - abar_k) eps, k, s) ||^2``
(Ho et al., eq. 14) and sampled by the DDPM posterior with the predicted clean action clipped to ``[-1, 1]``
and the "fixed small" variance. We wrote the schedule and sampler ourselves (about 30 lines) rather than depend
on ``diffusers`` for them; they follow ``diffusers.DDPMScheduler(clip_sample=True)``. The behaviour policy's
return input, which the reference code always feeds 0, is left out.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from cairnrl.core.actors import GaussianActor
from cairnrl.core.networks import mlp
from cairnrl.core.normalization import Standardizer


def cosine_betas(n_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """The ``squaredcos_cap_v2`` noise schedule ``beta_1..beta_K`` (float64)."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor(
        [min(1 - alpha_bar((k + 1) / n_steps) / alpha_bar(k / n_steps), max_beta) for k in range(n_steps)],
        dtype=torch.float64,
    )


def sinusoidal_embedding(steps: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of integer diffusion steps: ``[B] -> [B, dim]``."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=steps.device) / max(half - 1, 1))
    angles = steps.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FiLMResidualBlock(nn.Module):
    """Two Linear-LayerNorm-Mish layers with FiLM conditioning (``h * (1 + scale) + shift``) between them and a
    residual connection (a 1-D analogue of the conditional residual block of Chi et al.'s U-Net)."""

    def __init__(self, in_dim: int, out_dim: int, condition_dim: int) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.Mish())
        self.second = nn.Sequential(nn.Linear(out_dim, out_dim), nn.LayerNorm(out_dim), nn.Mish())
        self.film = nn.Sequential(nn.Mish(), nn.Linear(condition_dim, 2 * out_dim))
        self.skip = nn.Linear(in_dim, out_dim) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(condition).chunk(2, dim=-1)
        return self.second(self.first(x) * (1.0 + scale) + shift) + self.skip(x)


class NoiseNetwork(nn.Module):
    """``eps(a_k, k, s)``: an MLP "U-Net" of FiLM residual blocks, widths ``widths`` down, one middle block, and
    back up with skip connections; conditioned on ``[embed(k), s]`` with the step embedding
    ``dim -> 4 dim -> dim`` (Mish)."""

    def __init__(self, observation_dim: int, action_dim: int, widths: tuple[int, ...], embed_dim: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.step_mlp = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim), nn.Mish(), nn.Linear(4 * embed_dim, embed_dim)
        )
        condition = embed_dim + observation_dim
        sizes = (action_dim, *widths)
        self.down = nn.ModuleList(FiLMResidualBlock(a, b, condition) for a, b in itertools.pairwise(sizes))
        self.middle = FiLMResidualBlock(widths[-1], widths[-1], condition)
        ups = list(zip(reversed(widths), (*reversed(widths[:-1]), widths[0]), strict=True))
        self.up = nn.ModuleList(FiLMResidualBlock(2 * a, b, condition) for a, b in ups)
        self.out = nn.Linear(widths[0], action_dim)

    def forward(self, noisy_action: torch.Tensor, step: torch.Tensor, observation: torch.Tensor) -> torch.Tensor:
        condition = torch.cat([self.step_mlp(sinusoidal_embedding(step, self.embed_dim)), observation], dim=-1)
        x, skips = noisy_action, []
        for block in self.down:
            x = block(x, condition)
            skips.append(x)
        x = self.middle(x, condition)
        for block in self.up:
            x = block(torch.cat([x, skips.pop()], dim=-1), condition)
        return self.out(x)


class DiffusionPolicy(nn.Module):
    """DDPM over actions in ``[-1, 1]`` given (standardised) states; see the module docstring.

    :param n_steps: denoising steps ``K`` (10 for Point Maze).
    :param widths: block widths of the noise network (256, 512, 1024 in the reference).
    """

    def __init__(
        self, observation_dim: int, action_dim: int, widths: tuple[int, ...], n_steps: int = 10, embed_dim: int = 256
    ) -> None:
        super().__init__()
        self.n_steps = n_steps
        self.normalizer = Standardizer(observation_dim)
        self.noise_net = NoiseNetwork(observation_dim, action_dim, widths, embed_dim)
        betas = cosine_betas(n_steps)
        self.alpha_bars: torch.Tensor
        self.register_buffer("alpha_bars", torch.cumprod(1.0 - betas, dim=0).float())

    def loss(self, observation: torch.Tensor, action: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Ho et al. eq. 14 on a batch, with random steps and noise from ``generator``."""
        step = torch.randint(self.n_steps, (len(action),), generator=generator, device=action.device)
        noise = torch.randn(action.shape, generator=generator, device=action.device)
        alpha_bar = self.alpha_bars[step][:, None]
        noisy = alpha_bar.sqrt() * action + (1.0 - alpha_bar).sqrt() * noise
        return (self.noise_net(noisy, step, self.normalizer(observation)) - noise).square().mean()

    @torch.no_grad()
    def sample(self, observation: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions by the DDPM posterior from pure noise, the clean-action estimate clipped to ``[-1, 1]``."""
        condition = self.normalizer(observation)
        shape = (len(observation), self.noise_net.out.out_features)
        x = torch.randn(shape, generator=generator, device=observation.device)
        for k in reversed(range(self.n_steps)):
            alpha_bar = self.alpha_bars[k]
            alpha_bar_prev = self.alpha_bars[k - 1] if k > 0 else torch.ones_like(alpha_bar)
            beta = 1.0 - alpha_bar / alpha_bar_prev
            step = torch.full((len(x),), k, device=x.device, dtype=torch.long)
            eps = self.noise_net(x, step, condition)
            clean = ((x - (1.0 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()).clamp(-1.0, 1.0)
            x = (alpha_bar_prev.sqrt() * beta * clean + (1.0 - beta).sqrt() * (1.0 - alpha_bar_prev) * x) / (
                1.0 - alpha_bar
            )
            if k > 0:
                variance = ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta).clamp(min=1e-20)
                x = x + variance.sqrt() * torch.randn(shape, generator=generator, device=x.device)
        return x.clamp(-1.0, 1.0)


class GaussianBehavior(nn.Module):
    """The Gaussian-MLP behaviour policy of the ablation: :class:`~cairnrl.core.actors.GaussianActor` on
    standardised states, trained by maximum likelihood, sampled and clipped to ``[-1, 1]``."""

    def __init__(self, observation_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.normalizer = Standardizer(observation_dim)
        self.actor = GaussianActor(observation_dim, action_dim, hidden)

    def loss(self, observation: torch.Tensor, action: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return -self.actor.log_prob(self.normalizer(observation), action).mean()

    @torch.no_grad()
    def sample(self, observation: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.actor.sample(self.normalizer(observation), generator)


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, step: int, power: float = 0.75, max_decay: float = 0.9999) -> None:
    """``average <- d average + (1 - d) model`` with the warm-up decay ``d = min(1 - (1 + step)^-power,
    max_decay)`` of the diffusion policy's EMA (buffers are copied)."""
    decay = min(1.0 - (1.0 + step) ** -power, max_decay)
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1.0 - decay)
    for target, source in zip(average.buffers(), model.buffers(), strict=True):
        target.copy_(source)


class ReturnConditionedPolicy(nn.Module):
    """The RCSL output policy ``pi(a | s, g)`` on standardised ``[s, rtg]``.

    ``"deterministic"``: an MLP with ReLU trained by mean squared error, the last layer Xavier-initialised with gain
    0.01 (actions clipped to ``[-1, 1]`` when acting); ``"gaussian"``: the Gaussian head of the MBRCSL-Gaussian
    ablation (:class:`~cairnrl.core.actors.GaussianActor`, negative log-likelihood, acting with its mean).
    """

    def __init__(self, observation_dim: int, action_dim: int, hidden: tuple[int, ...], kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.normalizer = Standardizer(observation_dim + 1)
        if kind == "gaussian":
            self.net: nn.Module = GaussianActor(observation_dim + 1, action_dim, hidden)
        else:
            body = mlp(observation_dim + 1, hidden, None)
            head = nn.Linear(hidden[-1] if hidden else observation_dim + 1, action_dim)
            nn.init.xavier_uniform_(head.weight, gain=0.01)
            nn.init.zeros_(head.bias)
            self.net = nn.Sequential(*body, head)

    def _inputs(self, observation: torch.Tensor, return_to_go: torch.Tensor) -> torch.Tensor:
        return self.normalizer(torch.cat([observation, return_to_go.reshape(-1, 1)], dim=-1))

    def loss(self, observation: torch.Tensor, return_to_go: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        inputs = self._inputs(observation, return_to_go)
        if isinstance(self.net, GaussianActor):
            return -self.net.log_prob(inputs, action).mean()
        return (self.net(inputs) - action).square().mean()

    def forward(self, observation: torch.Tensor, return_to_go: torch.Tensor) -> torch.Tensor:
        """The action (the mean for the Gaussian head), clipped to ``[-1, 1]``."""
        return self.net(self._inputs(observation, return_to_go)).clamp(-1.0, 1.0)
