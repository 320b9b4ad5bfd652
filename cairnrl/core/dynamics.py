"""Probabilistic dynamics ensembles (PETS/MBPO/MOPO style) for model-based offline RL.

:class:`ProbabilisticDynamics` predicts a diagonal Gaussian over the target ``(s' - s, r)`` from ``(s, a)`` with
``n_members`` MLPs held as stacked weights (:class:`~cairnrl.core.ensemble.EnsembleMLP`), so one batched forward
runs every member (Chua et al., 2018, "Deep RL in a handful of trials", section 4; Janner et al., 2019, MBPO,
appendix C). Inputs and targets are standardised with statistics of the training split. The loss is the Gaussian
negative log-likelihood summed over members,

    ``sum_m mean_i [ (mu_m(x_i) - y_i)^2 exp(-log_var_m(x_i)) + log_var_m(x_i) ]
    + 0.01 (sum max_log_var - sum min_log_var) + sum_l wd_l ||W_l||^2 / 2``,

with the log-variance soft-clamped between learned bounds (``max - softplus(max - v)``, then
``min + softplus(v - min)``; Chua et al., appendix A.1) and a separate weight decay per layer.

:class:`DynamicsTrainer` runs the usual holdout protocol: a random 20% of the transitions (at most 1000) is held
out; after every epoch each member whose holdout MSE improved by more than 1% keeps a snapshot of its weights;
training stops after 5 epochs in which no member improved; the snapshots are restored and the ``n_elites``
members with the lowest holdout MSE become the elites. :meth:`ProbabilisticDynamics.sample` draws
``mean + sigma * eps`` from a random elite per sample, with no uncertainty penalty (as MBRCSL, Zhou et al., 2024,
appendix, uses it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cairnrl.core.ensemble import EnsembleLinear, EnsembleMLP
from cairnrl.core.holdout import EpochBatches, ImprovementTracker, holdout_split
from cairnrl.core.validation import check_float, check_int, check_int_tuple
from cairnrl.exceptions import ConfigError

#: The per-layer weight decay of MOPO/OfflineRL-Kit's four-hidden-layer dynamics model.
DEFAULT_WEIGHT_DECAY = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


class ProbabilisticDynamics(nn.Module):
    """An ensemble of Gaussian models of ``(s' - s, r)`` given ``(s, a)``; see the module docstring.

    :param n_members: ensemble size (7 in MOPO/MBRCSL).
    :param n_elites: members used for sampling (5).
    :param hidden: hidden widths, Swish activations (4 x 200).
    :param weight_decay: one coefficient per linear layer (``len(hidden) + 1`` values).
    :param logvar_loss_coef: weight of the log-variance bound term (0.01).
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        n_members: int = 7,
        n_elites: int = 5,
        hidden: tuple[int, ...] = (200, 200, 200, 200),
        weight_decay: tuple[float, ...] = DEFAULT_WEIGHT_DECAY,
        logvar_loss_coef: float = 0.01,
    ) -> None:
        super().__init__()
        self.observation_dim = check_int("observation_dim", observation_dim, minimum=1)
        self.action_dim = check_int("action_dim", action_dim, minimum=1)
        self.n_members = check_int("n_members", n_members, minimum=1)
        self.n_elites = check_int("n_elites", n_elites, minimum=1, maximum=n_members)
        hidden = check_int_tuple("hidden", hidden)
        if len(weight_decay) != len(hidden) + 1:
            raise ConfigError(f"weight_decay needs one value per linear layer ({len(hidden) + 1}), got {weight_decay}")
        self.weight_decay = tuple(check_float("weight_decay entries", w, low=0.0) for w in weight_decay)
        self.logvar_loss_coef = check_float("logvar_loss_coef", logvar_loss_coef, low=0.0)
        input_dim, self.target_dim = observation_dim + action_dim, observation_dim + 1
        self.net = EnsembleMLP(n_members, input_dim, hidden, 2 * self.target_dim, activation=nn.SiLU)
        self.max_logvar = nn.Parameter(torch.full((self.target_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.target_dim,), -10.0))
        self.input_mean: torch.Tensor
        self.input_std: torch.Tensor
        self.target_mean: torch.Tensor
        self.target_std: torch.Tensor
        self.elites: torch.Tensor
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_std", torch.ones(input_dim))
        self.register_buffer("target_mean", torch.zeros(self.target_dim))
        self.register_buffer("target_std", torch.ones(self.target_dim))
        self.register_buffer("elites", torch.arange(n_elites))

    def linear_layers(self) -> list[EnsembleLinear]:
        return [layer for layer in self.net.layers if isinstance(layer, EnsembleLinear)]

    @torch.no_grad()
    def fit_normalizers(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Standardisation statistics from training inputs ``[N, s+a]`` and targets ``[N, s+1]``."""
        for mean, std, values in (
            (self.input_mean, self.input_std, inputs),
            (self.target_mean, self.target_std, targets),
        ):
            mean.copy_(values.mean(dim=0))
            spread = values.std(dim=0)
            std.copy_(torch.where(spread < 1e-12, torch.ones_like(spread), spread))

    def targets(self, observation: torch.Tensor, reward: torch.Tensor, next_observation: torch.Tensor) -> torch.Tensor:
        """Raw regression targets ``[s' - s, r]``."""
        return torch.cat([next_observation - observation, reward.reshape(-1, 1)], dim=-1)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and soft-clamped log-variance in standardised target space, each ``[n_members, batch, s+1]``;
        ``inputs`` are raw ``[batch, s+a]``."""
        mean, logvar = self.net((inputs - self.input_mean) / self.input_std).chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        return mean, self.min_logvar + F.softplus(logvar - self.min_logvar)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL summed over members + log-variance bound term + per-layer weight decay (raw targets)."""
        mean, logvar = self(inputs)
        standardized = (targets - self.target_mean) / self.target_std
        nll = ((mean - standardized).square() * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
        bounds = self.logvar_loss_coef * (self.max_logvar.sum() - self.min_logvar.sum())
        decay = sum(
            w * 0.5 * layer.weight.square().sum()
            for w, layer in zip(self.weight_decay, self.linear_layers(), strict=True)
        )
        return nll + bounds + decay

    @torch.no_grad()
    def member_mse(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-member MSE of the mean in standardised target space: ``[n_members]``."""
        mean, _ = self(inputs)
        return (mean - (targets - self.target_mean) / self.target_std).square().mean(dim=(1, 2))

    def _member_outputs(self, observation: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self(torch.cat([observation, action], dim=-1))
        return mean[self.elites], logvar[self.elites]

    @torch.no_grad()
    def sample(
        self, observation: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(next_observation [B, s], reward [B])``: ``mean + sigma * eps`` of a random elite per sample."""
        mean, logvar = self._member_outputs(observation, action)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        draws = mean + noise * torch.exp(0.5 * logvar)
        pick = torch.randint(len(self.elites), (len(observation),), generator=generator, device=mean.device)
        chosen = draws[pick, torch.arange(len(observation), device=mean.device)] * self.target_std + self.target_mean
        return observation + chosen[:, :-1], chosen[:, -1]

    @torch.no_grad()
    def mean_reward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The elites' average predicted mean reward ``[B]``."""
        mean, _ = self._member_outputs(observation, action)
        return mean.mean(dim=0)[:, -1] * self.target_std[-1] + self.target_mean[-1]


class DynamicsTrainer:
    """Holdout training of a :class:`ProbabilisticDynamics` one minibatch at a time (resumable; see the module
    docstring). The model and optimiser belong to the caller; this object holds the epoch order, the early-stopping
    record and the per-member weight snapshots.

    :param max_epochs: stop after this many epochs even if members still improve (``None``: early stopping only).
    """

    def __init__(
        self,
        model: ProbabilisticDynamics,
        optimizer: torch.optim.Optimizer,
        batch_size: int = 256,
        seed: int = 0,
        holdout_fraction: float = 0.2,
        max_holdout: int = 1000,
        patience: int = 5,
        threshold: float = 0.01,
        max_epochs: int | None = None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.seed = seed
        self.holdout_fraction = check_float(
            "holdout_fraction", holdout_fraction, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        self.max_holdout = check_int("max_holdout", max_holdout, minimum=1)
        self.max_epochs = None if max_epochs is None else check_int("max_epochs", max_epochs, minimum=1)
        self.batches = EpochBatches(batch_size, seed)
        self.tracker = ImprovementTracker(model.n_members, threshold, patience)
        self.snapshot = {name: value.detach().clone() for name, value in model.state_dict().items()}
        self.done = False
        self.last_holdout_mse = torch.zeros(model.n_members)

    def bind(
        self, observations: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_observations: torch.Tensor
    ) -> None:
        """Attach the transitions; splits off the holdout set and fits the standardisation (training split)."""
        inputs = torch.cat([observations, actions], dim=-1)
        targets = self.model.targets(observations, rewards, next_observations)
        train, holdout = holdout_split(len(inputs), self.holdout_fraction, self.seed, self.max_holdout)
        self.train_inputs, self.train_targets = inputs[train], targets[train]
        self.holdout_inputs, self.holdout_targets = inputs[holdout], targets[holdout]
        if self.batches.epoch == 0 and self.batches.position == 0 and not self.done:
            self.model.fit_normalizers(self.train_inputs, self.train_targets)
        self.batches.bind(len(train))

    def update(self) -> dict[str, torch.Tensor]:
        """One gradient step; at the end of an epoch, the holdout check (and, when it says stop, the finish)."""
        if self.done:
            raise ConfigError("the dynamics model is already trained")
        index, epoch_end = self.batches.next()
        loss = self.model.loss(self.train_inputs[index], self.train_targets[index])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        logs = {"dynamics/loss": loss.detach()}
        if epoch_end:
            mse = self.model.member_mse(self.holdout_inputs, self.holdout_targets)
            self.last_holdout_mse = mse.cpu()
            improved = self.tracker.update(mse.cpu())
            self._save_members(improved)
            logs["dynamics/holdout_mse"] = mse.mean()
            if self.tracker.stop or (self.max_epochs is not None and self.batches.epoch >= self.max_epochs):
                self.finish()
        return logs

    def _save_members(self, members: torch.Tensor) -> None:
        state = self.model.state_dict()
        for name, value in state.items():
            if name.startswith("net.") and value.shape[:1] == (self.model.n_members,):
                self.snapshot[name][members] = value[members.to(value.device)].detach()

    @torch.no_grad()
    def finish(self) -> None:
        """Restore every member's best weights and choose the elites by holdout MSE."""
        member_weights = {name: value for name, value in self.snapshot.items() if name.startswith("net.")}
        self.model.load_state_dict(member_weights, strict=False)
        mse = self.model.member_mse(self.holdout_inputs, self.holdout_targets)
        self.last_holdout_mse = mse.cpu()
        self.model.elites.copy_(torch.argsort(mse)[: self.model.n_elites])
        self.done = True

    @property
    def epoch(self) -> int:
        return self.batches.epoch

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        batch_tensors, batch_meta = self.batches.state()
        tracker_tensors, tracker_meta = self.tracker.state()
        tensors = {f"batches.{k}": v for k, v in batch_tensors.items()}
        tensors.update({f"tracker.{k}": v for k, v in tracker_tensors.items()})
        tensors.update({f"snapshot.{k}": v for k, v in self.snapshot.items()})
        tensors["last_holdout_mse"] = self.last_holdout_mse
        return tensors, {"batches": batch_meta, "tracker": tracker_meta, "done": self.done}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.batches.load_state(part("batches."), meta["batches"])
        self.tracker.load_state(part("tracker."), meta["tracker"])
        device = next(iter(self.snapshot.values())).device
        self.snapshot = {k: v.to(device) for k, v in part("snapshot.").items()}
        self.last_holdout_mse = tensors["last_holdout_mse"]
        self.done = bool(meta["done"])
