"""Supervised training by epochs with a holdout set: resumable minibatch epochs and relative-improvement early
stopping, shared by the model-based pieces (dynamics ensembles, behaviour and output policies).

* :func:`holdout_split` - a seeded split of ``n`` samples into training and holdout indices;
* :class:`EpochBatches` - shuffled minibatches, epoch after epoch, resumable mid-epoch (a
  :class:`~cairnrl.core.state.Stateful`);
* :class:`ImprovementTracker` - per-member best holdout losses and the "no member improved by more than
  ``threshold`` (relative) for ``patience`` epochs" stopping rule of MBPO/MOPO-style ensemble training.
"""

from __future__ import annotations

from typing import Any

import torch

from cairnrl.core.validation import check_float, check_int
from cairnrl.exceptions import ConfigError


def holdout_split(
    n: int, fraction: float, seed: int, max_holdout: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, holdout)`` index tensors: a random ``fraction`` of ``n`` (at most ``max_holdout``, at least 1)
    held out; both sorted. Needs ``n >= 2``."""
    n = check_int("n", n, minimum=2)
    check_float("holdout fraction", fraction, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    size = max(1, min(int(n * fraction), n - 1))
    if max_holdout is not None:
        size = min(size, check_int("max_holdout", max_holdout, minimum=1))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[size:].sort().values, order[:size].sort().values


class EpochBatches:
    """Indices of shuffled minibatches of ``n`` samples, epoch after epoch (the last batch of an epoch may be
    smaller). Resumable: the permutation, the position in it and the generator are its state."""

    def __init__(self, batch_size: int, seed: int) -> None:
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.generator = torch.Generator().manual_seed(seed)
        self.n = 0
        self.epoch = 0
        self.position = 0
        self.permutation = torch.zeros(0, dtype=torch.long)

    def bind(self, n: int) -> None:
        """Set the number of samples (before the first batch; a restored state must have the same ``n``)."""
        self.n = check_int("number of samples", n, minimum=1)
        if len(self.permutation) not in (0, n):
            raise ConfigError(f"the saved epoch order covers {len(self.permutation)} samples, the data has {n}")

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def next(self) -> tuple[torch.Tensor, bool]:
        """The next batch's indices and whether it ends an epoch (then :attr:`epoch` has been incremented)."""
        if self.n == 0:
            raise ConfigError("EpochBatches.bind(n) must be called before drawing batches")
        if self.position == 0:
            self.permutation = torch.randperm(self.n, generator=self.generator)
        index = self.permutation[self.position : self.position + self.batch_size]
        self.position += len(index)
        epoch_end = self.position >= self.n
        if epoch_end:
            self.position = 0
            self.epoch += 1
        return index, epoch_end

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {"generator": self.generator.get_state(), "permutation": self.permutation}
        return tensors, {"epoch": self.epoch, "position": self.position}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.generator.set_state(tensors["generator"])
        self.permutation = tensors["permutation"].long()
        self.epoch, self.position = int(meta["epoch"]), int(meta["position"])


class ImprovementTracker:
    """Best holdout loss of each of ``n_members`` models and epochs since any of them last improved.

    A member improves when its loss falls below its best by more than ``threshold`` relative to that best
    (``(best - loss) / best > threshold``); training stops after ``patience`` epochs without any improvement.
    """

    def __init__(self, n_members: int, threshold: float = 0.01, patience: int = 5) -> None:
        self.n_members = check_int("n_members", n_members, minimum=1)
        self.threshold = check_float("improvement threshold", threshold, low=0.0)
        self.patience = check_int("patience", patience, minimum=1)
        self.best = [float("inf")] * n_members
        self.epochs_since_improvement = 0

    def update(self, losses: torch.Tensor) -> torch.Tensor:
        """Record one epoch's holdout losses ``[n_members]``; returns the mask of members that improved."""
        improved = []
        for member, loss in enumerate(losses.tolist()):
            best = self.best[member]
            better = best == float("inf") or (best - loss) / abs(best) > self.threshold
            if better:
                self.best[member] = loss
            improved.append(better)
        self.epochs_since_improvement = 0 if any(improved) else self.epochs_since_improvement + 1
        return torch.tensor(improved)

    @property
    def stop(self) -> bool:
        return self.epochs_since_improvement >= self.patience

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"best": torch.tensor(self.best, dtype=torch.float64)}, {"epochs": self.epochs_since_improvement}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.best = tensors["best"].tolist()
        self.epochs_since_improvement = int(meta["epochs"])


class BestWeights:
    """Holdout model selection for one network: from epoch ``start_epoch`` on, a snapshot of the weights with the
    lowest holdout loss is kept; training stops after ``patience`` checked epochs without a relative improvement
    of more than ``threshold``. Resumable (:class:`~cairnrl.core.state.Stateful`)."""

    def __init__(
        self, module: torch.nn.Module, start_epoch: int = 0, threshold: float = 0.01, patience: int = 5
    ) -> None:
        self.module = module
        self.start_epoch = check_int("start_epoch", start_epoch, minimum=0)
        self.tracker = ImprovementTracker(1, threshold, patience)
        self.snapshot = {name: value.detach().clone() for name, value in module.state_dict().items()}
        self.best_loss = float("inf")

    def check(self, epoch: int, holdout_loss: float) -> None:
        """Record the holdout loss after ``epoch`` epochs (1-based); snapshot the weights when it is the best."""
        if epoch < self.start_epoch:
            return
        if holdout_loss < self.best_loss:
            self.best_loss = holdout_loss
            self.snapshot = {name: value.detach().clone() for name, value in self.module.state_dict().items()}
        self.tracker.update(torch.tensor([holdout_loss]))

    @property
    def stop(self) -> bool:
        return self.tracker.stop

    def restore(self) -> None:
        """Load the best snapshot into the module."""
        self.module.load_state_dict(self.snapshot)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tracker_tensors, tracker_meta = self.tracker.state()
        tensors = {f"snapshot.{k}": v for k, v in self.snapshot.items()}
        tensors.update({f"tracker.{k}": v for k, v in tracker_tensors.items()})
        tensors["best_loss"] = torch.tensor(self.best_loss, dtype=torch.float64)
        return tensors, {"tracker": tracker_meta}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        device = next(iter(self.snapshot.values())).device if self.snapshot else "cpu"
        self.snapshot = {k[len("snapshot.") :]: v.to(device) for k, v in tensors.items() if k.startswith("snapshot.")}
        self.tracker.load_state(
            {k[len("tracker.") :]: v for k, v in tensors.items() if k.startswith("tracker.")}, meta["tracker"]
        )
        self.best_loss = float(tensors["best_loss"])
