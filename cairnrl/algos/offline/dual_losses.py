"""The losses of Dual RL (Sikchi, Zheng, Zhang and Niekum, "Dual RL: Unification and New Methods for Reinforcement
and Imitation Learning", ICLR 2024), as plain functions of tensors so each can be checked by hand.

f-DVL fits a value function V with the dual-V objective, with a "temperature" ``lambda`` mixing the
(1 - lambda) E_D[V] push-down term and the conjugate term:

    L_V = E_(s,a)~D[ lambda * f*_p(Q(s, a) - V(s)) + (1 - lambda) * V(s) ]

Written as the authors' code writes it, ``lambda * f*_p(y) - (1 - lambda) * y`` with ``y = Q - V``: the two differ
by ``(1 - lambda) Q``, a constant for V (Q is the frozen target critic), so the gradients are the same; the logged
value is the code's. The conjugates ``f*_p`` (convex conjugates of f with the constraint d >= 0):

* Pearson chi-square, ``f(t) = (t - 1)^2``: ``f*_p(y) = y + y^2 / 4`` for ``y >= -2``, else ``-1``
  (:func:`chi2_conjugate`, the exact conjugate);
* the authors' chi-square code, ``max(y + y^2 / 4, 0)``, which is 0 on the whole interval ``(-4, 0)``
  (:func:`chi2_reference_conjugate`; kept to reproduce their numbers: it is not the exact conjugate, whose
  minimum is -1 at y = -2);
* total variation: ``max(y, 0)``, which makes L_V a pinball (quantile) loss: slope ``2 lambda - 1`` above Q and
  ``1 - lambda`` below, so V tracks the ``(2 lambda - 1) / lambda`` quantile of Q over dataset actions
  (``lambda > 1/2``) (:func:`tv_conjugate`);
* reverse KL: the exponential conjugate, i.e. XQL's Gumbel regression (Garg et al., 2023), with its two
  safeguards: the exponent clipped at ``max_clip`` and the loss divided by ``e^m``, m the batch maximum of the
  exponent floored at -1 (:func:`gumbel_loss`; here lambda is the Gumbel temperature).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from cairnrl.core.ensemble import EnsembleMLP
from cairnrl.exceptions import ConfigError

#: Huber threshold of the f-DVL critic loss (the authors' code).
HUBER_DELTA = 20.0


def chi2_conjugate(y: torch.Tensor) -> torch.Tensor:
    """``f*_p(y) = y + y^2/4`` for ``y >= -2`` else ``-1``: the Pearson chi-square conjugate under ``d >= 0``
    (the maximiser ``w*(y) = max(0, y/2 + 1)``, the Dual-RL framework)."""
    return torch.where(y >= -2.0, y + 0.25 * y.square(), torch.full_like(y, -1.0))


def chi2_reference_conjugate(y: torch.Tensor) -> torch.Tensor:
    """``max(y + y^2/4, 0)``: the authors' chi-square code, with a dead zone (zero value and gradient) on
    ``(-4, 0)``."""
    return torch.clamp(y + 0.25 * y.square(), min=0.0)


def tv_conjugate(y: torch.Tensor) -> torch.Tensor:
    """``max(y, 0)``: the total-variation conjugate as the authors' code uses it (a hinge)."""
    return torch.clamp(y, min=0.0)


CONJUGATES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "chi2": chi2_conjugate,
    "chi2-reference": chi2_reference_conjugate,
    "tv": tv_conjugate,
}


def dual_v_loss(diff: torch.Tensor, temperature: float, f: str) -> torch.Tensor:
    """The f-DVL value loss ``E[ lambda f*_p(y) - (1 - lambda) y ]`` of ``y = diff = Q_target(s, a) - V(s)`` for
    ``f`` in :data:`CONJUGATES` (reverse KL has its own :func:`gumbel_loss`)."""
    if f not in CONJUGATES:
        raise ConfigError(f"f must be one of {sorted(CONJUGATES)} for dual_v_loss, got {f!r}")
    return (temperature * CONJUGATES[f](diff) - (1.0 - temperature) * diff).mean()


def gumbel_loss(
    diff: torch.Tensor, temperature: float, max_clip: float | None, max_over: torch.Tensor | None = None
) -> torch.Tensor:
    """XQL's rescaled Gumbel regression of ``z = diff / temperature``, ``diff = Q_target(s, a) - V(s)``:
    ``E[ e^(z - m) - z e^(-m) - e^(-m) ]`` with ``z`` clipped above at ``max_clip`` (``None``: no clip) and
    ``m = max(max_batch z, -1)`` without gradient (dividing the loss ``e^z - z - 1`` by ``e^m``, an adaptive step
    size).

    :param max_over: further differences that take part in the batch maximum ``m`` but not in the mean (ReCOIL's
        code rescales by the maximum over the offline and expert halves but averages over the offline half).
    """
    z = (diff if max_over is None else torch.cat([diff, max_over])) / temperature
    if max_clip is not None:
        z = torch.clamp(z, max=max_clip)
    m = torch.clamp(z.detach().max(), min=-1.0)
    z = z[: len(diff)]
    scale = torch.exp(-m)
    return (torch.exp(z - m) - z * scale - scale).mean()


def twin_huber_loss(q_values: torch.Tensor, target: torch.Tensor, delta: float = HUBER_DELTA) -> torch.Tensor:
    """``sum_i E[ Huber_delta(Q_i(s, a) - target) ]`` over the heads of ``q_values`` (``[heads, batch]``)."""
    losses = F.huber_loss(q_values, target.expand_as(q_values), reduction="none", delta=delta)
    return losses.mean(dim=1).sum()


def action_gradient_penalty(critic_net: EnsembleMLP, inputs: torch.Tensor, action_dim: int) -> torch.Tensor:
    """``sum_i E[ max(||grad_a Q_i(s, a)|| - 1, 0)^2 ]`` (a WGAN-LP style hinge at 1), each head penalised with its
    own action gradient (the authors' code penalises the first head's gradient twice).

    :param critic_net: an ensemble mapping ``[heads, batch, obs + act]`` to ``[heads, batch, 1]``.
    :param inputs: ``concat(s, a)`` rows, ``[batch, obs + act]``.
    """
    per_head = inputs.detach().unsqueeze(0).repeat(critic_net.n_members, 1, 1).requires_grad_(True)
    q_values = critic_net(per_head)
    (gradient,) = torch.autograd.grad(q_values.sum(), per_head, create_graph=True)
    norms = gradient[..., -action_dim:].norm(dim=-1)
    return torch.clamp(norms - 1.0, min=0.0).square().mean(dim=1).sum()


def lsiq_critic_loss(
    q_expert: torch.Tensor,
    q_offline: torch.Tensor,
    next_value: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    reward_gap: float,
) -> torch.Tensor:
    """ReCOIL's critic loss as the authors' code implements it (after LS-IQ's bounded targets, Al-Hafez et al.,
    2023), summed over the heads of ``q_expert`` ``[heads, batch_e]`` and ``q_offline`` ``[heads, batch_o]``:

        1/2 E_E[ (Q(s, a) - R / (1 - gamma))^2 ] + 1/2 E_O[ (Q(s, a) - y)^2 ],
        y = -R + gamma (1 - done) V(s') - gamma done R / (1 - gamma)

    Expert pairs regress to the value of earning ``+R`` forever, offline pairs earn ``-R`` per step and end in an
    absorbing state worth ``-R / (1 - gamma)``; ``R = reward_gap`` (2 with gamma = 0.99 gives the code's +-200).
    """
    bound = reward_gap / (1.0 - gamma)
    target = -reward_gap + gamma * (1.0 - done) * next_value - gamma * done * bound
    expert = 0.5 * (q_expert - bound).square().mean(dim=1)
    offline = 0.5 * (q_offline - target).square().mean(dim=1)
    return (expert + offline).sum()


def mixture_chi2_critic_loss(
    q_expert: torch.Tensor,
    value_expert: torch.Tensor,
    bellman_expert: torch.Tensor,
    bellman_offline: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """ReCOIL's chi-square dual for Q (the paper's Eq. 10, keeping the 1/4 of the conjugate), summed over heads
    (``[heads, batch]`` inputs):

        beta E_E[ V(s) - Q(s, a) ] + 1/4 E_mix[ (gamma V(s') - Q(s, a))^2 ],
        E_mix = beta E_E + (1 - beta) E_O,

    where ``bellman_* = gamma (1 - done) V(s') - Q(s, a)`` are the reward-free Bellman residuals on the expert and
    offline halves. The linear term raises Q on expert pairs; the quadratic one is a Bellman fit on the mixture
    ``beta d^E + (1 - beta) d^O`` that always covers both data sets, so no density ratio is needed.
    """
    linear = beta * (value_expert - q_expert).mean(dim=1)
    quadratic = 0.25 * (
        beta * bellman_expert.square().mean(dim=1) + (1.0 - beta) * bellman_offline.square().mean(dim=1)
    )
    return (linear + quadratic).sum()
