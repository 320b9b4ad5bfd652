"""The math of Contrastive UCB (Qiu et al., ICML 2022), apart from the plumbing.

* :func:`contrastive_loss`: the binary contrastive (NCE) loss of the representation-learning step (Section 3),
  written with the odds f = phi^T psi;
* :func:`ridge_factor`, :func:`elliptical_bonus`: the covariance Lambda_h = lambda I + sum phi phi^T and the bonus
  ||phi||_{Lambda_h^-1}, through a Cholesky factor and triangular solves (never an explicit inverse);
* :func:`lsvi_backup`: one backward step of optimistic least-squares value iteration on the learned features.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def contrastive_loss(log_f_positive: torch.Tensor, log_f_negative: torch.Tensor) -> torch.Tensor:
    """L(phi, psi) = E_D[ y log(1 + 1/f) + (1 - y) log(1 + f) ] with positives and negatives in equal proportion.

    ``log_f_positive`` holds log f(s, a, s') on real transitions (y = 1), ``log_f_negative`` log f(s, a, s^-) on
    negatives (y = 0), any shape; each side is averaged first, so several negatives per positive keep the 1:1
    weighting and the minimiser stays the density ratio f* = P(s'|s, a) / P^-(s').  log(1 + 1/f) = softplus(-log f)
    and log(1 + f) = softplus(log f): the logistic loss with log f as the logit.
    """
    return 0.5 * (F.softplus(-log_f_positive).mean() + F.softplus(log_f_negative).mean())


def ridge_factor(features: torch.Tensor, ridge: float) -> torch.Tensor:
    """Lower Cholesky factor of Lambda = ridge * I + sum_i phi_i phi_i^T for ``features`` of shape ``[n, d]``."""
    d = features.shape[-1]
    covariance = ridge * torch.eye(d, dtype=features.dtype, device=features.device) + features.T @ features
    return torch.linalg.cholesky(covariance)


def elliptical_bonus(features: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """||phi||_{Lambda^-1} = sqrt(phi^T Lambda^-1 phi) = ||L^-1 phi|| for ``features`` ``[..., d]``.

    ``factor`` is L (``[d, d]``) or one factor per feature row (``[..., d, d]``).
    """
    if factor.dim() == 2:
        solved = torch.linalg.solve_triangular(factor, features.reshape(-1, features.shape[-1]).T, upper=False)
        return solved.norm(dim=0).reshape(features.shape[:-1])
    solved = torch.linalg.solve_triangular(factor, features.unsqueeze(-1), upper=False)
    return solved.squeeze(-1).norm(dim=-1)


def optimistic_q(
    features: torch.Tensor, weights: torch.Tensor, factor: torch.Tensor, beta: float, cap: float | torch.Tensor
) -> torch.Tensor:
    """Q(s, a) = min(w^T phi(s, a) + beta ||phi(s, a)||_{Lambda^-1}, cap) (LSVI-UCB's optimistic Q)."""
    q = (features * weights).sum(-1)
    if beta > 0.0:
        q = q + beta * elliptical_bonus(features, factor)
    return torch.minimum(q, torch.as_tensor(cap, dtype=q.dtype, device=q.device))


def lsvi_backup(features: torch.Tensor, targets: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression of ``targets`` (r + V_{h+1}(s')) on ``features`` of the visited pairs of one level.

    Returns w_h = Lambda_h^-1 sum_tau phi_tau y_tau (by a Cholesky solve) and the Cholesky factor of Lambda_h, where
    every visited pair contributes once.
    """
    factor = ridge_factor(features, ridge)
    weights = torch.cholesky_solve((features.T @ targets).unsqueeze(-1), factor).squeeze(-1)
    return weights, factor
