"""Input standardisation stored with the model: fixed statistics (:class:`Standardizer`) and the running
statistics of SB3's ``VecNormalize`` (:func:`running_stats_state`), so a loaded model predicts or resumes without
the data it came from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cairnrl.exceptions import CheckpointError

if TYPE_CHECKING:
    from stable_baselines3.common.running_mean_std import RunningMeanStd


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


def running_stats_state(
    obs_rms: RunningMeanStd | dict[str, RunningMeanStd], ret_rms: RunningMeanStd
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The observation and return statistics of a ``VecNormalize`` as checkpoint tensors (``obs_mean``,
    ``obs_var``, ``ret_mean``, ``ret_var``) and JSON counts (``obs_count``, ``ret_count``)."""
    if isinstance(obs_rms, dict):
        raise CheckpointError("saving VecNormalize statistics of Dict observations is not supported")
    tensors = {
        "obs_mean": torch.as_tensor(obs_rms.mean), "obs_var": torch.as_tensor(obs_rms.var),
        "ret_mean": torch.as_tensor(ret_rms.mean), "ret_var": torch.as_tensor(ret_rms.var),
    }
    return tensors, {"obs_count": float(obs_rms.count), "ret_count": float(ret_rms.count)}


def restore_running_stats(
    obs_rms: RunningMeanStd | dict[str, RunningMeanStd], ret_rms: RunningMeanStd,
    tensors: dict[str, torch.Tensor], counts: dict[str, float],
) -> None:
    """Set ``obs_rms`` and ``ret_rms`` in place from :func:`running_stats_state` output."""
    if isinstance(obs_rms, dict):
        raise CheckpointError("VecNormalize statistics of Dict observations are not supported")
    obs_rms.mean, obs_rms.var = tensors["obs_mean"].numpy(), tensors["obs_var"].numpy()
    ret_rms.mean, ret_rms.var = tensors["ret_mean"].numpy(), tensors["ret_var"].numpy()
    obs_rms.count, ret_rms.count = counts["obs_count"], counts["ret_count"]
