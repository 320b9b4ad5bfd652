"""Fixed input standardisation stored with the model, so a loaded model predicts without the data it came from."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Standardizer(nn.Module):
    """``(x - mean) / (std + eps)`` with ``mean`` and ``std`` as buffers (saved in checkpoints); identity until
    :meth:`fit` is called."""

    def __init__(self, dim: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.full((dim,), 1.0 - eps))

    def fit(self, values: np.ndarray) -> None:
        """Set the statistics from ``values`` (rows = samples), computed in float64."""
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        self.mean.copy_(torch.from_numpy(values.mean(axis=0)))
        self.std.copy_(torch.from_numpy(values.std(axis=0)))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / (self.std + self.eps)
