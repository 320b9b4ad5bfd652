"""SQIRL: Shallow Q-Iteration via Reinforcement Learning.

Laidlaw, Zhu, Russell and Dragan, "The Effective Horizon Explains Deep RL Performance in Stochastic
Environments", ICLR 2024 (arXiv 2312.08369), section 3 and Algorithm 1; released code
``github.com/cassidylaidlaw/effective-horizon`` (``effective_horizon/sb3/algorithms/sqirl.py``).

SQIRL learns a time-indexed policy pi_1..pi_T one stage at a time. In stage ``i`` it collects ``m`` episodes that
follow the already learned policies for t < i and act uniformly at random from t = i on, so every stored
transition (t >= i only: earlier steps followed the learned prefix, so their returns-to-go are not
random-policy returns) continues with the random policy. It then regresses

* head 0 onto the Monte-Carlo return-to-go: Q^1 = Q^{pi_rand} (the leaf of Algorithm 1);
* head h >= 1 onto the fitted-Q target r + gamma * max_a' Q^h(s', a') of head h - 1: Q^{h+1} = QVI(Q^h),

and freezes the parameters as pi_i = greedy on the last head, Q^k. k (``planning_depth``) is the number of
Q-iteration steps the effective horizon says are needed (k = 1: greedy on Q^{pi_rand}).

This follows the authors' released implementation and records its differences from the idealised
Algorithm 1 of the paper: one network with k heads and no time input (time dependence comes from the frozen copy per
stage), all heads trained jointly on the whole replay buffer, no target network (FQI heads bootstrap from the
online network under ``no_grad``), per-head losses divided by their running mean (``scale_losses``) so the
high-variance Monte-Carlo head does not dominate, lock-step collection across envs.

Choices where the reference is ambiguous or accidental, each deliberate:

* The learning rate is a constant (the reference evaluates SB3 schedules at the stage index, where SB3 expects
  the remaining progress in [0, 1]).
* ``next_obs`` is stored explicitly; the last step of an episode (termination, truncation or the horizon) is
  terminal for the fitted-Q targets - correct for finite-horizon tasks, biased for infinite-horizon tasks cut by a
  time limit. (The reference's memory-optimised buffer overwrote the terminal next observation.)
* Training stops once all ``horizon`` stages are learned, or after 10 consecutive stages with no exploratory
  step (episodes shorter than the stage index), the reference's rule.
* Episode seeds and exploration actions come from SeedSequence-derived streams that are saved in checkpoints,
  so ``load`` + ``learn(reset_num_timesteps=False)`` continues exactly as an uninterrupted run would.
* ``predict(deterministic=True)`` at time steps not yet learned uses the current network greedily (as the
  reference does for mid-training evaluation: such returns partly extrapolate); ``deterministic=False``
  acts uniformly at random there, i.e. it is the data-collection policy.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn
from torch.func import functional_call

from cairnrl.core import checkpoint as ckpt
from cairnrl.core.base import BaseAlgorithm, GymEnv, check_policy
from cairnrl.core.buffers import TransitionBuffer
from cairnrl.core.envutils import lockstep_episodes, time_limit
from cairnrl.core.networks import VmapEnsemble, make_encoder, mlp
from cairnrl.core.seeding import spawn_seeds
from cairnrl.core.validation import check_bool, check_float, check_int, check_int_tuple
from cairnrl.exceptions import CheckpointError, ConfigError, EnvError

_EPISODE_SEED_KEY = 10
_ACTION_RNG_KEY = 11
_BATCH_RNG_KEY = 12
_MAX_IDLE_STAGES = 10


class SQIRLQNetwork(nn.Module):
    """Q-network with ``k`` heads: output ``[batch, k, n_actions]``; head h estimates Q^{h+1} (the released code's
    multi-head network).

    With ``separate_networks`` the heads are ``k`` independent networks run in one vmapped forward.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        n_actions: int,
        planning_depth: int,
        policy: str,
        net_arch: tuple[int, ...],
        separate_networks: bool,
    ) -> None:
        super().__init__()
        self.planning_depth, self.n_actions, self.separate = planning_depth, n_actions, separate_networks

        def build(outputs: int) -> nn.Module:
            encoder, features = make_encoder(observation_space, policy)
            return nn.Sequential(encoder, mlp(features, net_arch, outputs))

        if separate_networks:
            self.body: nn.Module = VmapEnsemble([build(n_actions) for _ in range(planning_depth)])
        else:
            self.body = build(planning_depth * n_actions)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        if self.separate:
            return self.body(observation).transpose(0, 1)
        return self.body(observation).view(-1, self.planning_depth, self.n_actions)


class SQIRL(BaseAlgorithm):
    """Shallow Q-Iteration via RL (Laidlaw et al., ICLR 2024); see the module docstring for the algorithm.

    :param policy: ``"MlpPolicy"`` (vector or ``Discrete`` observations, one-hot encoded) or ``"CnnPolicy"``
        (image observations).
    :param env: env with a ``Discrete`` action space and a finite horizon (a ``TimeLimit`` or ``horizon=``).
    :param planning_depth: k, the number of heads: Q^1 = Q^{pi_rand} plus k - 1 fitted-Q backups.
    :param episodes_per_timestep: m, episodes collected per stage (the main sample-complexity knob).
    :param learning_rate: Adam step size (constant, see module docstring).
    :param batch_size: transitions per gradient step.
    :param n_epochs: gradient steps per stage = ceil(steps collected * n_epochs / batch_size).
    :param gamma: discount; 1 for finite-horizon tasks (the paper's setting; the released runs used 0.99 on sticky
        MiniGrid and long-horizon Atari).
    :param max_grad_norm: gradient-norm clip.
    :param scale_losses: divide each head's loss by its running mean (keeps the high-variance Monte-Carlo head from
        dominating the fitted-Q heads).
    :param loss_scale_smoothing: smoothing factor of that running mean.
    :param use_huber_loss: Huber instead of squared error.
    :param reward_scale: multiplies rewards in all targets.
    :param separate_networks: one network per head instead of a shared body.
    :param net_arch: hidden layer sizes after the observation encoder.
    :param buffer_size: replay capacity (transitions of all stages are kept, as in the released code).
    :param horizon: T, the number of stages; ``None`` reads the env's ``TimeLimit``.
    :param n_envs: envs stepped in lock-step when ``env`` is an id; ``None`` uses min(8, m) (the released
        runs' setting; all envs share the time step, since the acting network depends on it).
    """

    algorithm_name = "SQIRL"
    action_space: gym.spaces.Discrete
    env: DummyVecEnv | None
    _saved_attributes = ("horizon", "_episodes_started", "_idle_stages")
    # k and m are the knobs the authors tuned in their released experiments; the optimiser settings matter on small
    # budgets.
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "planning_depth": {"type": "int", "low": 1, "high": 3},
        "episodes_per_timestep": {"type": "categorical", "choices": [4, 8, 16, 32, 64]},
        "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
        "n_epochs": {"type": "categorical", "choices": [10, 20, 40]},
    }

    def __init__(
        self,
        policy: str = "MlpPolicy",
        env: GymEnv | None = None,
        *,
        planning_depth: int = 1,
        episodes_per_timestep: int = 1,
        learning_rate: float = 1e-4,
        batch_size: int = 128,
        n_epochs: int = 10,
        gamma: float = 1.0,
        max_grad_norm: float = 10.0,
        scale_losses: bool = True,
        loss_scale_smoothing: float = 0.99,
        use_huber_loss: bool = False,
        reward_scale: float = 1.0,
        separate_networks: bool = False,
        net_arch: tuple[int, ...] = (64, 64),
        buffer_size: int = 1_000_000,
        horizon: int | None = None,
        n_envs: int | None = None,
        seed: int | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        final_eval_episodes: int = 10,
    ) -> None:
        super().__init__(
            seed=seed,
            device=device,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            final_eval_episodes=final_eval_episodes,
        )
        self.policy = check_policy(policy)
        self.planning_depth = check_int("planning_depth", planning_depth, minimum=1)
        self.episodes_per_timestep = check_int("episodes_per_timestep", episodes_per_timestep, minimum=1)
        self.learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.n_epochs = check_int("n_epochs", n_epochs, minimum=1)
        self.gamma = check_float("gamma", gamma, low=0.0, high=1.0)
        self.max_grad_norm = check_float("max_grad_norm", max_grad_norm, low=0.0, low_inclusive=False)
        self.scale_losses = check_bool("scale_losses", scale_losses)
        self.loss_scale_smoothing = check_float(
            "loss_scale_smoothing", loss_scale_smoothing, low=0.0, high=1.0, high_inclusive=False
        )
        self.use_huber_loss = check_bool("use_huber_loss", use_huber_loss)
        self.reward_scale = check_float("reward_scale", reward_scale, low=0.0, low_inclusive=False)
        self.separate_networks = check_bool("separate_networks", separate_networks)
        self.net_arch = check_int_tuple("net_arch", net_arch)
        self.buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self.horizon = None if horizon is None else check_int("horizon", horizon, minimum=1)
        self.n_envs = None if n_envs is None else check_int("n_envs", n_envs, minimum=1)
        if self.n_envs is not None and self.n_envs > self.episodes_per_timestep:
            raise ConfigError(
                f"n_envs ({self.n_envs}) must be <= episodes_per_timestep ({self.episodes_per_timestep}): "
                "envs run in lock-step and each stage collects exactly m episodes"
            )
        self._initialize(env)

    # ------------------------------------------------------------------ set-up
    def _check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise EnvError(f"SQIRL needs a Discrete action space, got {action_space}")
        make_encoder(observation_space, self.policy)  # raises EnvError for unsupported observations

    def _n_envs_for_id(self) -> int:
        return self.n_envs or min(8, self.episodes_per_timestep)

    def _attach_env(self, env: GymEnv, n_envs: int) -> None:
        super()._attach_env(env, n_envs)
        if not isinstance(self.env, DummyVecEnv):
            raise EnvError("SQIRL steps its envs in lock-step and needs a gymnasium env, an env id or a DummyVecEnv")
        if self.horizon is None:
            self.horizon = time_limit(self.env.envs[0])
            if self.horizon is None:
                raise ConfigError("SQIRL needs a finite horizon: pass horizon= or use an env with a TimeLimit")

    def _setup_model(self) -> None:
        n_actions = int(self.action_space.n)
        self.q_net = SQIRLQNetwork(
            self.observation_space, n_actions, self.planning_depth, self.policy, self.net_arch, self.separate_networks
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=self.learning_rate)
        observation_shape = self.observation_space.shape
        assert observation_shape is not None  # Discrete or Box (_check_spaces)
        observation_dtype = self.observation_space.dtype
        self.replay_buffer = TransitionBuffer(
            self.buffer_size,
            {
                "obs": (observation_shape, observation_dtype),
                "next_obs": (observation_shape, observation_dtype),
                "action": ((), np.int64),
                "reward": ((), np.float32),
                "done": ((), np.float32),
                "return_to_go": ((), np.float32),
            },
        )
        self._frozen: list[dict[str, torch.Tensor]] = []
        self._loss_ema: torch.Tensor | None = None
        self._episodes_started = 0
        self._idle_stages = 0
        self._action_rng = np.random.default_rng(spawn_seeds(self.seed, 1, key=_ACTION_RNG_KEY)[0])
        self._batch_rng = np.random.default_rng(spawn_seeds(self.seed, 1, key=_BATCH_RNG_KEY)[0])

    @property
    def stage(self) -> int:
        """Number of learned time steps (frozen policies)."""
        return len(self._frozen)

    @property
    def training_complete(self) -> bool:
        """True once every stage is learned or the last stages had no exploratory step (the reference's
        stopping rule)."""
        return (self.horizon is not None and self.stage >= self.horizon) or self._idle_stages >= _MAX_IDLE_STAGES

    def _completion_reason(self) -> str:
        """Why :attr:`training_complete` holds, in words a user can act on."""
        if self.horizon is not None and self.stage >= self.horizon:
            return f"SQIRL has learned all T = {self.horizon} stages; the time-indexed policy is complete"
        return (
            f"SQIRL stopped after stage {self.stage}: the last {_MAX_IDLE_STAGES} stages had no exploratory step "
            "(in each, every episode ended under the learned policies before the time step being learned), the "
            "reference's stopping rule. That is the goal when the policy finishes "
            "its episodes early; if the return is low, the early policies end episodes too soon (e.g. walking "
            "into a terminal state): collect more episodes per stage (episodes_per_timestep, m)"
        )

    # ------------------------------------------------------------------ acting
    def _observation_tensor(self, observation: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(observation), device=self.device)

    @torch.inference_mode()
    def _greedy(self, observation: np.ndarray, timestep: int | None) -> np.ndarray:
        """argmax_a Q^k(s, a) with the parameters frozen for ``timestep`` (current ones if None/unlearned)."""
        tensor = self._observation_tensor(observation)
        if timestep is not None and timestep < self.stage:
            q_values = functional_call(self.q_net, self._frozen[timestep], (tensor,))
        else:
            q_values = self.q_net(tensor)
        return q_values[:, -1, :].argmax(dim=1).cpu().numpy()

    def policy_for_timestep(self, timestep: int):
        """pi_t as a function of a batch of observations (greedy on the parameters frozen after stage t)."""
        check_int("timestep", timestep, minimum=0)
        return lambda observation: self._greedy(np.asarray(observation), timestep)

    def _predict(
        self, observation: np.ndarray, state: np.ndarray | None, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        n = observation.shape[0]
        timesteps = np.zeros(n, dtype=np.int64) if state is None else np.asarray(state, dtype=np.int64).copy()
        if timesteps.shape != (n,):
            raise ConfigError(f"SQIRL state is the per-env time step, shape ({n},); got {timesteps.shape}")
        if episode_start is not None:
            timesteps[np.asarray(episode_start, dtype=bool).reshape(n)] = 0
        actions = np.empty(n, dtype=np.int64)
        for timestep in np.unique(timesteps):
            rows = timesteps == timestep
            if not deterministic and timestep >= self.stage:
                actions[rows] = self._action_rng.integers(self.action_space.n, size=int(rows.sum()))
            else:
                actions[rows] = self._greedy(observation[rows], int(timestep))
        return actions, timesteps + 1

    # ------------------------------------------------------------------ collection (one stage of Algorithm 1)
    def _collect_batch(self, n_episodes: int, callback: BaseCallback) -> tuple[list[dict[str, list]], bool]:
        """Run ``n_episodes`` episodes in lock-step; returns their transitions and whether to continue."""
        assert self.env is not None and self.horizon is not None  # learn() checks the env; attaching it sets T
        horizon = self.horizon
        envs = self.env.envs[:n_episodes]
        seeds = spawn_seeds(self.seed, n_episodes, key=(_EPISODE_SEED_KEY, self._episodes_started))
        self._episodes_started += n_episodes

        def choose(batch: np.ndarray, timestep: int, alive: list[int]) -> np.ndarray:
            if timestep < self.stage:
                return self._greedy(batch, timestep)
            return self._action_rng.integers(self.action_space.n, size=len(alive))

        return lockstep_episodes(self, envs, seeds, horizon, choose, callback)

    def _store(self, episodes: list[dict[str, list]]) -> int:
        """Store transitions at t >= stage (the random-policy suffix) with their returns-to-go; returns the number
        stored."""
        stored = 0
        for episode in episodes:
            rewards = np.asarray(episode["reward"], dtype=np.float64)
            self._record_episode(rewards.sum(), len(rewards))
            returns = np.zeros_like(rewards)
            running = 0.0
            for t in range(len(rewards) - 1, -1, -1):
                running = rewards[t] + self.gamma * running
                returns[t] = running
            keep = slice(self.stage, len(rewards))
            if keep.start >= len(rewards):
                continue
            self.replay_buffer.add(
                obs=np.asarray(episode["obs"][keep]),
                next_obs=np.asarray(episode["next_obs"][keep]),
                action=np.asarray(episode["action"][keep], dtype=np.int64),
                reward=rewards[keep].astype(np.float32),
                done=np.asarray(episode["done"][keep], dtype=np.float32),
                return_to_go=returns[keep].astype(np.float32),
            )
            stored += len(rewards) - self.stage
        return stored

    # ------------------------------------------------------------------ regression (Algorithm 1 lines 6-9)
    def _train(self, gradient_steps: int) -> np.ndarray:
        """Fit all heads jointly; returns the mean unscaled loss of each head."""
        head_losses = torch.zeros(self.planning_depth, device=self.device)
        loss_function = nn.functional.huber_loss if self.use_huber_loss else nn.functional.mse_loss
        for _ in range(gradient_steps):
            indices = self._batch_rng.integers(len(self.replay_buffer), size=self.batch_size)
            batch = {key: torch.as_tensor(value, device=self.device)
                     for key, value in self.replay_buffer.get(indices).items()}
            reward = batch["reward"] * self.reward_scale
            with torch.no_grad():
                next_q = self.q_net(batch["next_obs"]).max(dim=2).values  # [B, k]
                # Q^{h+1}(s, a) = r + gamma * max_a' Q^h(s', a'), zero after the episode's last step.
                bootstrapped = reward[:, None] + self.gamma * (1.0 - batch["done"][:, None]) * next_q[:, :-1]
                targets = torch.cat([batch["return_to_go"][:, None] * self.reward_scale, bootstrapped], dim=1)
            q_taken = self.q_net(batch["obs"]).gather(
                2, batch["action"][:, None, None].expand(-1, self.planning_depth, 1)
            ).squeeze(2)
            losses = loss_function(q_taken, targets, reduction="none").mean(dim=0)  # [k]
            detached = losses.detach()
            if self.scale_losses:
                smoothing = self.loss_scale_smoothing
                self._loss_ema = detached if self._loss_ema is None else (
                    smoothing * self._loss_ema + (1.0 - smoothing) * detached
                )
                loss = (losses / self._loss_ema.clamp_min(1e-8)).mean()
            else:
                loss = losses.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.q_net.parameters(), self.max_grad_norm)
            self.optimizer.step()
            head_losses += detached
            self._n_updates += 1
        return (head_losses / max(gradient_steps, 1)).cpu().numpy()

    def _learn(self, callback: BaseCallback, log_interval: int) -> None:
        if self.training_complete:
            self._stop(f"nothing to train: {self._completion_reason()}")
            return
        self._learn_stages(callback, log_interval)
        if self.training_complete and self.num_timesteps < self._total_timesteps:
            self._stop(self._completion_reason())

    def _stop(self, reason: str) -> None:
        """Record why training ends before the step budget (the base logs it; the progress bar alone would not say)."""
        self.stop_reason = reason

    def _learn_stages(self, callback: BaseCallback, log_interval: int) -> None:
        assert self.env is not None  # learn() checks it
        n_envs = self.env.num_envs
        while self.num_timesteps < self._total_timesteps and not self.training_complete:
            callback.on_rollout_start()
            steps_before = self.num_timesteps
            collected: list[dict[str, list]] = []
            while len(collected) < self.episodes_per_timestep:
                batch, keep_going = self._collect_batch(min(n_envs, self.episodes_per_timestep - len(collected)),
                                                        callback)
                if not keep_going:
                    return
                collected += batch
            steps = self.num_timesteps - steps_before
            exploratory = self._store(collected)
            callback.on_rollout_end()
            gradient_steps = math.ceil(steps * self.n_epochs / self.batch_size) if len(self.replay_buffer) else 0
            head_losses = self._train(gradient_steps)
            self._frozen.append({name: p.detach().clone() for name, p in self.q_net.named_parameters()})
            self._idle_stages = 0 if exploratory else self._idle_stages + 1
            for head, value in enumerate(head_losses):
                self.logger.record(f"train/loss_head_{head}", float(value))
            self.logger.record("train/loss", float(head_losses.mean()))
            self.logger.record("train/learning_rate", self.learning_rate)
            self.logger.record("train/stage", self.stage)
            self.logger.record("rollout/exploration_rate", exploratory / max(steps, 1))
            if self.stage % log_interval == 0 or self.training_complete:
                self._dump_logs()

    # ------------------------------------------------------------------ checkpoint state
    def _get_state(self) -> tuple[dict[str, Any], ckpt.TensorGroups]:
        state, groups = super()._get_state()
        frozen = {name: torch.stack([stage[name] for stage in self._frozen]) for name in self._frozen[0]} if (
            self._frozen
        ) else {}
        groups["frozen_stages"] = frozen
        groups["loss_ema"] = {} if self._loss_ema is None else {"loss_ema": self._loss_ema}
        state["n_stages"] = self.stage
        return state, groups

    def _set_state(self, state: dict[str, Any], groups: ckpt.TensorGroups) -> None:
        super()._set_state(state, groups)
        frozen = groups["frozen_stages"]
        n_stages = int(state["n_stages"])
        if any(tensor.shape[0] != n_stages for tensor in frozen.values()):
            raise CheckpointError(f"frozen stage parameters do not match the recorded {n_stages} stages")
        self._frozen = [{name: tensor[i].to(self.device) for name, tensor in frozen.items()} for i in range(n_stages)]
        loss_ema = groups["loss_ema"].get("loss_ema")
        self._loss_ema = None if loss_ema is None else loss_ema.to(self.device)
