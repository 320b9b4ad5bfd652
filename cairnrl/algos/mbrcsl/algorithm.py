"""MBRCSL: Model-Based Return-Conditioned Supervised Learning (Zhou, Zhu, Zhou, Cui, Gupta and Du, "Free from
Bellman Completeness: Trajectory Stitching via Model-based Return-conditioned Supervised Learning", ICLR 2024).

Return-conditioned supervised learning (RCSL) needs no Bellman completeness but cannot stitch sub-trajectories
(section 3 of the paper). MBRCSL (Algorithm 1, section 4) stitches through a learned model instead of Bellman
backups, in four phases that ``learn`` runs in order:

1. **dynamics**: a probabilistic ensemble ``T(s', r | s, a)`` fitted on every transition, holdout early stopping
   and elites (:mod:`cairnrl.core.dynamics`);
2. **behavior**: an expressive behaviour policy ``pi_b(a | s)`` cloned from the data - a DDPM diffusion policy
   (``behavior_policy="diffusion"``) or a Gaussian MLP (the ablation);
3. **rollouts**: ``pi_b`` rolled out in the model from the first states of dataset trajectories for
   ``rollout_horizon`` steps, never terminating; a trajectory is kept iff its model return exceeds
   ``return_threshold`` (Point Maze: the best dataset trajectory's return), until ``rollout_keep`` are kept;
4. **output**: the RCSL policy ``pi(a | s, g)`` fitted on the kept rollouts only, ``g_t = sum_{k >= t} r_k``, with
   a 10% holdout for model selection.

At test time the policy is conditioned on the best kept return, decremented after each step. ``predict`` does not
see the env's rewards, so it decrements by the dynamics model's mean predicted reward of the step just taken
(the per-env state carries it); :func:`evaluate_return_conditioned` follows the paper's protocol and subtracts the
env's true rewards.

``learn(total_timesteps)`` counts gradient updates over all phases together: every minibatch step of the dynamics
model, the behaviour policy and the output policy is one update; the rollout phase does no gradient updates and
costs none. Each phase ends by its own rule (early stopping, epoch count); a ``learn`` call may stop mid-phase and
the next continues there. When the output policy is done, training stops with ``stop_reason`` saying so.

``output_data="dataset"`` skips phases 2 and 3 and fits the output policy on the dataset's own trajectories: plain
RCSL without a model, the "cannot stitch" baseline (the dynamics model is still fitted, for ``predict``'s reward
estimate only).

Deliberate departures from the reference code: the diffusion learning rate follows a 500-step warm-up and cosine
decay stepped per minibatch (the reference steps its scheduler once per epoch with the epoch count as the total,
so its rate never leaves warm-up); the behaviour policy's always-zero return input is omitted; the output policy's
inputs are standardised with the kept rollouts' statistics.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm
from typing_extensions import Self

from cairnrl.algos.mbrcsl.networks import DiffusionPolicy, GaussianBehavior, ReturnConditionedPolicy, ema_update
from cairnrl.algos.offline.base import OfflineAlgorithm, check_policy_alias
from cairnrl.core.base import GymEnv
from cairnrl.core.dynamics import DEFAULT_WEIGHT_DECAY, DynamicsTrainer, ProbabilisticDynamics
from cairnrl.core.evaluation import EPISODE_SEED_KEY, EvaluationResult
from cairnrl.core.holdout import BestWeights, EpochBatches, holdout_split
from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.stats import iqm
from cairnrl.core.validation import check_choice, check_float, check_int, check_int_tuple
from cairnrl.data import Dataset
from cairnrl.data.rollouts import arrays_to_dataset, filtered_model_rollouts, return_above, returns_to_go
from cairnrl.exceptions import ConfigError, DatasetError, EnvError

PHASES = ("dynamics", "behavior", "rollouts", "output", "done")
BEHAVIOR_POLICIES = ("diffusion", "gaussian")
OUTPUT_POLICIES = ("deterministic", "gaussian")
OUTPUT_DATA = ("rollouts", "dataset")
_DYNAMICS_KEY = 30  # the dynamics model's training
_BEHAVIOR_KEY = 31  # the behaviour policy's minibatches and sampling
_OUTPUT_KEY = 32  # the output policy's minibatches
_ROLLOUTS_KEY = 33  # the rollouts through the learned model
_SPLIT_KEY = 34  # the output policy's train/holdout split
_WARMUP_STEPS = 500


class MBRCSL(OfflineAlgorithm):
    """MBRCSL (Zhou et al., ICLR 2024); see the module docstring for the phases. Defaults are the paper's Point
    Maze settings.

    :param dynamics_members: ensemble size (7). :param dynamics_elites: elites (5).
    :param dynamics_net_arch: hidden layers of each member, Swish (4 x 200).
    :param dynamics_weight_decay: weight decay per linear layer (``len(dynamics_net_arch) + 1`` values).
    :param dynamics_learning_rate: Adam step size (1e-3).
    :param dynamics_max_epochs: epoch cap of the dynamics fit (``None``: holdout early stopping only).
    :param dynamics_patience: stop the dynamics fit after this many epochs in which no member's holdout MSE
        improved by more than 1% (5; small datasets have few updates per epoch and may need more).
    :param behavior_policy: ``"diffusion"`` (DDPM) or ``"gaussian"`` (Gaussian MLP ablation).
    :param behavior_net_arch: block widths of the diffusion noise network (256, 512, 1024), or the hidden layers
        of the Gaussian MLP.
    :param behavior_epochs: epochs of behaviour cloning (50).
    :param behavior_learning_rate: AdamW step size (1e-4), after a 500-update warm-up, cosine-decayed per update.
    :param behavior_weight_decay: AdamW weight decay (1e-6).
    :param diffusion_steps: denoising steps ``K`` (10).
    :param diffusion_embed_dim: size of the diffusion-step embedding (256).
    :param ema_power: power of the EMA warm-up of the sampling weights (0.75).
    :param rollout_horizon: model steps per rollout ``H`` (200, the episode length).
    :param rollout_batch_size: rollouts per round (200).
    :param rollout_keep: kept rollouts needed, ``N_need`` (100).
    :param rollout_max_rounds: rounds before giving up with an error (1000).
    :param return_threshold: keep a rollout iff its model return exceeds this; ``None``: the best dataset
        trajectory's return.
    :param output_policy: ``"deterministic"`` (MSE) or ``"gaussian"`` (the MBRCSL-Gaussian ablation).
    :param output_data: ``"rollouts"`` (MBRCSL) or ``"dataset"`` (RCSL without a model).
    :param output_net_arch: hidden layers of the output policy (1024, 1024).
    :param output_learning_rate: Adam step size (5e-5). :param output_weight_decay: Adam L2 weight decay (0.1).
    :param output_max_epochs: epoch cap (100).
    :param output_selection_start_epoch: holdout model selection from this epoch on (80).
    :param output_patience: stop after this many selection epochs without a 1% holdout improvement (5).
    """

    algorithm_name = "MBRCSL"
    _saved_attributes: ClassVar[tuple[str, ...]] = (
        "phase",
        "target_return",
        "rollout_rounds",
        "behavior_updates",
        "kept_observations",
        "kept_actions",
        "kept_rewards",
    )

    def __init__(
        self,
        policy: str = "MlpPolicy",
        dataset: Dataset | str | Path | None = None,
        env: GymEnv | None = None,
        *,
        batch_size: int = 256,
        dynamics_members: int = 7,
        dynamics_elites: int = 5,
        dynamics_net_arch: tuple[int, ...] = (200, 200, 200, 200),
        dynamics_weight_decay: tuple[float, ...] = DEFAULT_WEIGHT_DECAY,
        dynamics_learning_rate: float = 1e-3,
        dynamics_max_epochs: int | None = None,
        dynamics_patience: int = 5,
        behavior_policy: str = "diffusion",
        behavior_net_arch: tuple[int, ...] = (256, 512, 1024),
        behavior_epochs: int = 50,
        behavior_learning_rate: float = 1e-4,
        behavior_weight_decay: float = 1e-6,
        diffusion_steps: int = 10,
        diffusion_embed_dim: int = 256,
        ema_power: float = 0.75,
        rollout_horizon: int = 200,
        rollout_batch_size: int = 200,
        rollout_keep: int = 100,
        rollout_max_rounds: int = 1000,
        return_threshold: float | None = None,
        output_policy: str = "deterministic",
        output_data: str = "rollouts",
        output_net_arch: tuple[int, ...] = (1024, 1024),
        output_learning_rate: float = 5e-5,
        output_weight_decay: float = 0.1,
        output_max_epochs: int = 100,
        output_selection_start_epoch: int = 80,
        output_patience: int = 5,
        eval_freq: int = 0,
        eval_episodes: int = 10,
        seed: int | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        final_eval_episodes: int = 10,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_freq=eval_freq,
            eval_episodes=eval_episodes,
            seed=seed,
            device=device,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            final_eval_episodes=final_eval_episodes,
        )
        self.policy = check_policy_alias(policy)
        self.dynamics_members = check_int("dynamics_members", dynamics_members, minimum=1)
        self.dynamics_elites = check_int("dynamics_elites", dynamics_elites, minimum=1, maximum=dynamics_members)
        self.dynamics_net_arch = check_int_tuple("dynamics_net_arch", dynamics_net_arch)
        self.dynamics_weight_decay = tuple(
            check_float("dynamics_weight_decay entries", w, low=0.0) for w in dynamics_weight_decay
        )
        if len(self.dynamics_weight_decay) != len(self.dynamics_net_arch) + 1:
            raise ConfigError(
                f"dynamics_weight_decay needs {len(self.dynamics_net_arch) + 1} values (one per linear "
                f"layer), got {len(self.dynamics_weight_decay)}"
            )
        self.dynamics_learning_rate = check_float(
            "dynamics_learning_rate", dynamics_learning_rate, low=0.0, low_inclusive=False
        )
        self.dynamics_max_epochs = (
            None if dynamics_max_epochs is None else check_int("dynamics_max_epochs", dynamics_max_epochs, minimum=1)
        )
        self.dynamics_patience = check_int("dynamics_patience", dynamics_patience, minimum=1)
        self.behavior_policy = check_choice("behavior_policy", behavior_policy, BEHAVIOR_POLICIES)
        self.behavior_net_arch = check_int_tuple("behavior_net_arch", behavior_net_arch)
        self.behavior_epochs = check_int("behavior_epochs", behavior_epochs, minimum=1)
        self.behavior_learning_rate = check_float(
            "behavior_learning_rate", behavior_learning_rate, low=0.0, low_inclusive=False
        )
        self.behavior_weight_decay = check_float("behavior_weight_decay", behavior_weight_decay, low=0.0)
        self.diffusion_steps = check_int("diffusion_steps", diffusion_steps, minimum=1)
        self.diffusion_embed_dim = check_int("diffusion_embed_dim", diffusion_embed_dim, minimum=2)
        self.ema_power = check_float("ema_power", ema_power, low=0.0, low_inclusive=False)
        self.rollout_horizon = check_int("rollout_horizon", rollout_horizon, minimum=1)
        self.rollout_batch_size = check_int("rollout_batch_size", rollout_batch_size, minimum=1)
        self.rollout_keep = check_int("rollout_keep (N_need, rollouts to keep)", rollout_keep, minimum=1)
        self.rollout_max_rounds = check_int("rollout_max_rounds", rollout_max_rounds, minimum=1)
        self.return_threshold = None if return_threshold is None else check_float("return_threshold", return_threshold)
        self.output_policy = check_choice("output_policy", output_policy, OUTPUT_POLICIES)
        self.output_data = check_choice("output_data", output_data, OUTPUT_DATA)
        self.output_net_arch = check_int_tuple("output_net_arch", output_net_arch)
        self.output_learning_rate = check_float(
            "output_learning_rate", output_learning_rate, low=0.0, low_inclusive=False
        )
        self.output_weight_decay = check_float("output_weight_decay", output_weight_decay, low=0.0)
        self.output_max_epochs = check_int("output_max_epochs", output_max_epochs, minimum=1)
        self.output_selection_start_epoch = check_int(
            "output_selection_start_epoch", output_selection_start_epoch, minimum=0, maximum=output_max_epochs
        )
        self.output_patience = check_int("output_patience", output_patience, minimum=1)
        self.phase = PHASES[0]
        self.target_return = 0.0
        self.rollout_rounds = 0
        self.behavior_updates = 0
        self.kept_observations: torch.Tensor | None = None
        self.kept_actions: torch.Tensor | None = None
        self.kept_rewards: torch.Tensor | None = None
        self._output_tensors: tuple[torch.Tensor, ...] | None = None
        self._phase_bars = False
        self._initialize(env, dataset)

    # ------------------------------------------------------------------ model
    def _setup_model(self) -> None:
        obs_dim, action_dim = self.observation_space.shape[0], self.action_space.shape[0]
        dynamics_seed, behavior_seed, output_seed, rollout_seed = (
            spawn_seeds(self.seed, 1, key=key)[0] for key in (_DYNAMICS_KEY, _BEHAVIOR_KEY, _OUTPUT_KEY, _ROLLOUTS_KEY)
        )
        self.dynamics = ProbabilisticDynamics(
            obs_dim,
            action_dim,
            self.dynamics_members,
            self.dynamics_elites,
            self.dynamics_net_arch,
            self.dynamics_weight_decay,
        ).to(self.device)
        self.dynamics_optimizer = torch.optim.Adam(self.dynamics.parameters(), lr=self.dynamics_learning_rate)
        self.dynamics_trainer = DynamicsTrainer(
            self.dynamics,
            self.dynamics_optimizer,
            self.batch_size,
            dynamics_seed,
            patience=self.dynamics_patience,
            max_epochs=self.dynamics_max_epochs,
        )
        if self.behavior_policy == "diffusion":
            self.behavior: DiffusionPolicy | GaussianBehavior = DiffusionPolicy(
                obs_dim, action_dim, self.behavior_net_arch, self.diffusion_steps, self.diffusion_embed_dim
            )
        else:
            self.behavior = GaussianBehavior(obs_dim, action_dim, self.behavior_net_arch)
        self.behavior = self.behavior.to(self.device)
        self.behavior_ema = copy.deepcopy(self.behavior).requires_grad_(False)
        self.behavior_optimizer = torch.optim.AdamW(
            self.behavior.parameters(), lr=self.behavior_learning_rate, weight_decay=self.behavior_weight_decay
        )
        self.behavior_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.behavior_optimizer, lambda update: self._behavior_rate(update)
        )
        self.behavior_batches = EpochBatches(self.batch_size, behavior_seed)
        self.behavior_generator = torch.Generator(self.device).manual_seed(behavior_seed)
        self.rollout_generator = torch.Generator(self.device).manual_seed(rollout_seed)
        self.output = ReturnConditionedPolicy(obs_dim, action_dim, self.output_net_arch, self.output_policy)
        self.output = self.output.to(self.device)
        self.output_optimizer = torch.optim.Adam(
            self.output.parameters(), lr=self.output_learning_rate, weight_decay=self.output_weight_decay
        )
        self.output_batches = EpochBatches(self.batch_size, output_seed)
        self.output_selection = BestWeights(self.output, self.output_selection_start_epoch, 0.01, self.output_patience)

    def _behavior_rate(self, update: int) -> float:
        """Linear warm-up over 500 updates, then cosine decay to 0 at the last planned behaviour update."""
        total = max(getattr(self, "_behavior_total_updates", 1), _WARMUP_STEPS + 1)
        if update < _WARMUP_STEPS:
            return (update + 1) / _WARMUP_STEPS
        progress = min((update - _WARMUP_STEPS) / (total - _WARMUP_STEPS), 1.0)
        return 0.5 * (1.0 + np.cos(np.pi * progress))

    def _prepare_data(self, dataset: Dataset) -> None:
        transitions = dataset.transitions()

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values, dtype=np.float32), device=self.device)

        self._observations, self._actions = tensor(transitions.observations), tensor(transitions.actions)
        self.dynamics_trainer.bind(
            self._observations, self._actions, tensor(transitions.rewards), tensor(transitions.next_observations)
        )
        self._start_states = tensor(dataset.observations[dataset.observation_offsets[:-1]])
        self._dataset_returns = dataset.returns()
        self.behavior_batches.bind(len(self._observations))
        self._behavior_total_updates = self.behavior_epochs * self.behavior_batches.batches_per_epoch
        if self.behavior_updates == 0:
            self.behavior.normalizer.fit(transitions.observations)
            self.behavior_ema.load_state_dict(self.behavior.state_dict())
        if self.output_data == "dataset":
            horizon_rewards = dataset.returns_to_go()
            self._dataset_output = (self._observations, tensor(horizon_rewards), self._actions)
        self._output_tensors = None

    def _check_dataset(self, dataset: Dataset) -> None:
        super()._check_dataset(dataset)
        if dataset.num_steps < 2:
            raise DatasetError(f"{dataset.source}: MBRCSL needs at least 2 transitions (training and holdout)")

    # ------------------------------------------------------------------ phases
    def learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> Self:
        """See :meth:`BaseAlgorithm.learn`; ``total_timesteps`` counts gradient updates over all phases, and with
        ``progress_bar=True`` each phase also gets its own bar."""
        self._phase_bars = progress_bar
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    def _learn(self, callback: BaseCallback, log_interval: int) -> None:
        self._update_time = 0.0
        while self.num_timesteps < self._total_timesteps:
            if self.phase == "done":
                self.stop_reason = "all MBRCSL phases are complete (the output policy has finished training)"
                return
            if self.phase == "rollouts":
                self._run_rollouts()
                continue
            bar = self._phase_bar()
            try:
                if not self._run_phase_updates(callback, log_interval, bar):
                    return
            finally:
                bar.close()

    def _phase_bar(self) -> tqdm:
        totals = {
            "dynamics": self.dynamics_max_epochs,
            "behavior": self.behavior_epochs,
            "output": self.output_max_epochs,
        }
        done = {
            "dynamics": self.dynamics_trainer.epoch,
            "behavior": self.behavior_batches.epoch,
            "output": self.output_batches.epoch,
        }
        return tqdm(
            total=totals[self.phase],
            initial=done[self.phase],
            unit="epoch",
            desc=f"MBRCSL {self.phase}",
            disable=not self._phase_bars,
            dynamic_ncols=True,
            leave=False,
        )

    def _run_phase_updates(self, callback: BaseCallback, log_interval: int, bar: tqdm) -> bool:
        """Updates of the current gradient phase until it ends or the budget is spent (losses logged every
        ``log_interval`` epochs); ``False`` if a callback stopped training."""
        phase = self.phase
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        epochs = 0
        while self.phase == phase and self.num_timesteps < self._total_timesteps:
            started = time.perf_counter()
            logs, epoch_end = self._update()
            self._update_time += time.perf_counter() - started
            for name, value in logs.items():
                sums[name] = sums.get(name, 0.0) + float(value)
                counts[name] = counts.get(name, 0) + 1
            self.num_timesteps += 1
            self._n_updates += 1
            if epoch_end:
                bar.update(1)
                epochs += 1
            if self.eval_freq and self.num_timesteps % self.eval_freq == 0:
                self._evaluate_periodically()
            if not callback.on_step():
                self.stop_reason = "a callback stopped training"
                return False
            if epoch_end and epochs % log_interval == 0:
                self._flush_logs(sums, counts)
                sums, counts = {}, {}
        if counts:
            self._flush_logs(sums, counts)
        return True

    def _flush_logs(self, sums: dict[str, float], counts: dict[str, int]) -> None:
        """Log each quantity's mean over the updates that reported it (holdout losses: once per epoch)."""
        steps = max(counts.values())
        self._log_losses({name: torch.tensor(total * steps / counts[name]) for name, total in sums.items()}, steps)

    def _update(self) -> tuple[dict[str, torch.Tensor], bool]:
        if self.phase == "dynamics":
            epoch = self.dynamics_trainer.epoch
            logs = self.dynamics_trainer.update()
            if self.dynamics_trainer.done:
                self.phase = "behavior" if self.output_data == "rollouts" else "output"
            return logs, self.dynamics_trainer.epoch > epoch
        if self.phase == "behavior":
            return self._behavior_update()
        return self._output_update()

    def _behavior_update(self) -> tuple[dict[str, torch.Tensor], bool]:
        index, epoch_end = self.behavior_batches.next()
        loss = self.behavior.loss(self._observations[index], self._actions[index], self.behavior_generator)
        self.behavior_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.behavior_optimizer.step()
        self.behavior_scheduler.step()
        ema_update(self.behavior_ema, self.behavior, self.behavior_updates, self.ema_power)
        self.behavior_updates += 1
        if self.behavior_batches.epoch >= self.behavior_epochs:
            self.phase = "rollouts"
        return {"behavior/loss": loss.detach()}, epoch_end

    def _run_rollouts(self) -> None:
        """Phase 3: filtered model rollouts from dataset start states, kept as tensors."""
        threshold = float(self._dataset_returns.max()) if self.return_threshold is None else self.return_threshold
        self.behavior_ema.eval()
        (observations, actions, rewards), rounds = filtered_model_rollouts(
            self.dynamics,
            self.behavior_ema.sample,
            self._start_states,
            self.rollout_horizon,
            return_above(threshold),
            self.rollout_keep,
            self.rollout_generator,
            self.rollout_batch_size,
            self.rollout_max_rounds,
            progress_bar=self._phase_bars,
        )
        self.kept_observations, self.kept_actions, self.kept_rewards = observations, actions, rewards
        self.rollout_rounds = rounds
        returns = rewards.sum(dim=1)
        self.logger.record("rollouts/kept", len(returns))
        self.logger.record("rollouts/rounds", rounds)
        self.logger.record("rollouts/threshold", threshold)
        self.logger.record("rollouts/return_mean", float(returns.mean()))
        self.logger.record("rollouts/return_max", float(returns.max()))
        self._dump_logs()
        self.phase = "output"

    def _output_data(self) -> tuple[torch.Tensor, ...]:
        """``(train, holdout)`` tensors ``(obs, rtg, action)`` of the output policy; entering the phase fits the
        input standardisation and sets the test-time return."""
        if self._output_tensors is None:
            if self.output_data == "dataset":
                observations, rtg, actions = self._dataset_output
                target = float(self._dataset_returns.max())
            else:
                kept_observations, kept_actions, kept_rewards = self._kept_rollouts()
                observations = kept_observations[:, :-1].reshape(-1, kept_observations.shape[-1])
                rtg = returns_to_go(kept_rewards).reshape(-1)
                actions = kept_actions.reshape(-1, kept_actions.shape[-1])
                target = float(kept_rewards.sum(dim=1).max())
            split_seed = spawn_seeds(self.seed, 1, key=_SPLIT_KEY)[0]
            train, holdout = holdout_split(len(observations), 0.1, split_seed)
            if self.output_batches.epoch == 0 and self.output_batches.position == 0:
                inputs = torch.cat([observations[train], rtg[train, None]], dim=-1)
                self.output.normalizer.fit(inputs.cpu().numpy())
                self.target_return = target
            self.output_batches.bind(len(train))
            self._output_tensors = (
                observations[train],
                rtg[train],
                actions[train],
                observations[holdout],
                rtg[holdout],
                actions[holdout],
            )
        return self._output_tensors

    def _output_update(self) -> tuple[dict[str, torch.Tensor], bool]:
        observations, rtg, actions, holdout_obs, holdout_rtg, holdout_actions = self._output_data()
        index, epoch_end = self.output_batches.next()
        loss = self.output.loss(observations[index], rtg[index], actions[index])
        self.output_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.output_optimizer.step()
        logs = {"output/loss": loss.detach()}
        if epoch_end:
            with torch.no_grad():
                holdout = float(self.output.loss(holdout_obs, holdout_rtg, holdout_actions))
            logs["output/holdout_loss"] = torch.tensor(holdout)
            self.output_selection.check(self.output_batches.epoch, holdout)
            if self.output_selection.stop or self.output_batches.epoch >= self.output_max_epochs:
                self.output_selection.restore()
                self.phase = "done"
        return logs, epoch_end

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def _predict(
        self, observation: np.ndarray, state: np.ndarray | None, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Acts conditioned on the remaining return; ``state`` per env is ``[rtg, previous obs, previous action]``
        and is reset to the target return where ``episode_start`` is set (or when there is no state)."""
        obs = torch.as_tensor(observation, dtype=torch.float32, device=self.device)
        n, obs_dim = obs.shape
        if state is None:
            rtg = torch.full((n,), self.target_return, device=self.device)
        else:
            previous = torch.as_tensor(np.asarray(state), dtype=torch.float32, device=self.device).reshape(n, -1)
            spent = self.dynamics.mean_reward(previous[:, 1 : 1 + obs_dim], previous[:, 1 + obs_dim :])
            starts = (
                torch.ones(n, dtype=torch.bool)
                if episode_start is None
                else torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(n))
            )
            rtg = torch.where(
                starts.to(self.device), torch.full_like(spent, self.target_return), previous[:, 0] - spent
            )
        action = self.output(obs, rtg)
        new_state = torch.cat([rtg[:, None], obs, action], dim=-1).cpu().numpy()
        return action.cpu().numpy().astype(self.action_space.dtype), new_state

    def predict_with_return(self, observation: np.ndarray, return_to_go: np.ndarray | float) -> np.ndarray:
        """Actions for a batch of observations conditioned on given returns-to-go (for callers that track the
        env's rewards themselves)."""
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=self.device).reshape(
            -1, self.observation_space.shape[0]
        )
        rtg = torch.as_tensor(
            np.broadcast_to(np.asarray(return_to_go, dtype=np.float32), (len(obs),)).copy(), device=self.device
        )
        with torch.inference_mode():
            return self.output(obs, rtg).cpu().numpy().astype(self.action_space.dtype)

    def _kept_rollouts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The kept rollouts' ``(observations, actions, rewards)`` (after the rollout phase)."""
        if self.kept_observations is None or self.kept_actions is None or self.kept_rewards is None:
            raise DatasetError(f"no rollouts yet: the model is in the {self.phase!r} phase")
        return self.kept_observations, self.kept_actions, self.kept_rewards

    def rollout_dataset(self) -> Dataset:
        """The kept model rollouts as a :class:`~cairnrl.data.Dataset` (after the rollout phase)."""
        return arrays_to_dataset(
            *self._kept_rollouts(),
            self.observation_space,
            self.action_space,
            source="MBRCSL kept rollouts",
        )

    # ------------------------------------------------------------------ checkpoints
    def _set_state(self, state: dict[str, Any], groups: Any) -> None:
        super()._set_state(state, groups)
        self._output_tensors = None

    def _run_record_extras(self) -> dict[str, Any]:
        kept = None if self.kept_rewards is None else self.kept_rewards.sum(dim=1)
        return {
            **super()._run_record_extras(),
            "phases": {
                "phase": self.phase,
                "dynamics_epochs": self.dynamics_trainer.epoch,
                "dynamics_holdout_mse": self.dynamics_trainer.last_holdout_mse.tolist(),
                "elites": self.dynamics.elites.tolist(),
                "behavior_epochs": self.behavior_batches.epoch,
                "rollout_rounds": self.rollout_rounds,
                "kept_rollouts": None if kept is None else len(kept),
                "kept_return_max": None if kept is None else float(kept.max()),
                "output_epochs": self.output_batches.epoch,
                "target_return": self.target_return,
            },
        }

    def _check_can_learn(self) -> None:
        super()._check_can_learn()
        if self.phase in ("output", "done") and self.output_data == "rollouts" and self.kept_observations is None:
            raise DatasetError("the checkpoint is past the rollout phase but holds no kept rollouts")


def evaluate_return_conditioned(model: MBRCSL, env: Any, n_episodes: int = 10, seed: int = 0) -> EvaluationResult:
    """The paper's evaluation: episodes conditioned on ``model.target_return``, decremented by the env's rewards
    after every step (``terminated`` is respected; the Point Maze env never sets it)."""
    check_int("n_episodes", n_episodes, minimum=1)
    seeds = spawn_seeds(check_seed(seed), n_episodes, key=EPISODE_SEED_KEY)
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=np.int64)
    for episode, episode_seed in enumerate(seeds):
        observation, _ = env.reset(seed=episode_seed)
        rtg, done = model.target_return, False
        while not done:
            action = model.predict_with_return(observation[None], rtg)[0]
            observation, reward, terminated, truncated, _ = env.step(action)
            if not np.isfinite(reward):
                raise EnvError(f"env returned a non-finite reward {reward!r} in episode {episode}")
            rtg -= float(reward)
            returns[episode] += float(reward)
            lengths[episode] += 1
            done = terminated or truncated
    return EvaluationResult(
        returns=returns, lengths=lengths, mean=float(returns.mean()), std=float(returns.std()), iqm=iqm(returns)
    )
