"""The deep variant of Contrastive UCB: a DQN whose TD target adds the elliptical bonus on its own features.

Qiu et al. (ICML 2022), Section 6 ("SPR-UCB"), run the UCB idea at Atari scale by adding beta ||phi(s, a)||_{Lambda^-1}
to the return inside the Q-learning target, with phi computed by the agent's own network and acting left greedy.
Here the Q head is linear in the penultimate features z(s), Q(s, a) = w_a^T z(s), so phi(s, a) = onehot(a) (x) z(s)
and Lambda is block diagonal: one k x k matrix Lambda_a = lambda I + sum z(s) z(s)^T over the visited s where a was
taken.  The target is

    y = r + min(beta ||z(s)||_{Lambda_a^-1}, max_bonus) + gamma (1 - terminated) max_a' Q_target(s', a').

Departures from the released SPR-UCB code, each deliberate:

* phi is taken for the action actually taken at s (the released bonus pairs s_t with a_{t-1});
* Lambda counts each visited pair once (a rank-one update per new transition) and is rebuilt from the whole replay
  buffer with the current network every ``covariance_interval`` steps, instead of adding every replayed minibatch
  forever with features that drift;
* the bonus uses Cholesky solves (no explicit inverse, no NaN-to-zero masking) and is clipped at ``max_bonus``;
* the base learner is a one-step DQN with an epsilon-greedy schedule, not SPR (C51, 10-step returns, noisy nets and
  the self-predictive loss); the bonus is the only exploration device beyond epsilon.

The Atari-100k configuration of the paper is :data:`ATARI_100K` (``ContrastiveUCBDQN("CnnPolicy", env,
**ATARI_100K)`` on 84x84x4 frames); it is documented, not run by the tests or benchmarks here.

Checkpoints hold the networks, optimiser, replay buffer, Lambda, random generators and counters; the env itself
cannot be saved mid-episode, so a resumed run starts new episodes.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from torch import nn
from torch.nn import functional as F

from cairnrl.algos.cucb.losses import elliptical_bonus
from cairnrl.core import checkpoint as ckpt
from cairnrl.core.base import BaseAlgorithm, GymEnv, check_policy
from cairnrl.core.buffers import TransitionBuffer
from cairnrl.core.networks import make_encoder, mlp
from cairnrl.core.seeding import generator_state, restore_generator, spawn_seeds
from cairnrl.core.validation import check_float, check_int, check_int_tuple
from cairnrl.exceptions import EnvError

_EXPLORE_RNG_KEY = 31
_BATCH_RNG_KEY = 32
_CHUNK = 4096

#: The paper's Atari-100k scale (SPR-UCB's replay ratio of 2 updates per step, beta = 1, gamma = 0.99, 100k steps
#: with 2,000 warm-up steps, epsilon decayed over the first 2,001 steps); documented, not run here.
ATARI_100K: dict[str, Any] = {
    "learning_rate": 1e-4,
    "buffer_size": 100_000,
    "learning_starts": 2_000,
    "batch_size": 32,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 2,
    "target_update_interval": 1,
    "exploration_fraction": 0.02,
    "exploration_final_eps": 0.0,
    "beta": 1.0,
    "net_arch": (256,),
}


class BonusQNetwork(nn.Module):
    """Encoder and MLP trunk giving z(s) (``[n, k]``), and a linear head Q(s, .) = W z(s)."""

    def __init__(self, observation_space: gym.Space, n_actions: int, policy: str, net_arch: tuple[int, ...]) -> None:
        super().__init__()
        encoder, size = make_encoder(observation_space, policy)
        self.trunk = nn.Sequential(encoder, mlp(size, net_arch, None))
        self.feature_dim = net_arch[-1] if net_arch else size
        self.head = nn.Linear(self.feature_dim, n_actions)

    def features(self, observation: torch.Tensor) -> torch.Tensor:
        return self.trunk(observation).float()

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(observation))


class ContrastiveUCBDQN(BaseAlgorithm):
    """DQN with the elliptical bonus of Contrastive UCB in its target (see the module docstring).

    :param policy: ``"MlpPolicy"`` (vector or ``Discrete`` observations) or ``"CnnPolicy"`` (images).
    :param env: env with a ``Discrete`` action space; a ``VecEnv`` or ``n_envs`` copies of an id are stepped together.
    :param beta: bonus scale beta.
    :param ridge: lambda of Lambda_a = lambda I + sum z z^T.
    :param max_bonus: clip of the per-step bonus (the released code relies on C51's support for this).
    :param covariance_interval: env steps between rebuilds of Lambda from the replay buffer with the current network.
    :param learning_rate: Adam step size.
    :param buffer_size: replay capacity.
    :param learning_starts: env steps before the first gradient step.
    :param batch_size: transitions per gradient step.
    :param gamma: discount.
    :param train_freq: env steps (per env) between training calls.
    :param gradient_steps: gradient steps per training call.
    :param target_update_interval: env steps between target-network copies.
    :param exploration_fraction: fraction of the ``learn`` budget over which epsilon decays linearly.
    :param exploration_initial_eps: epsilon at the start.
    :param exploration_final_eps: epsilon after the decay.
    :param max_grad_norm: gradient-norm clip.
    :param net_arch: hidden layers after the encoder; the last one is z(s).
    :param n_envs: copies of the env when ``env`` is an id.
    """

    algorithm_name = "ContrastiveUCBDQN"
    action_space: gym.spaces.Discrete

    def __init__(
        self,
        policy: str = "MlpPolicy",
        env: GymEnv | None = None,
        *,
        beta: float = 1.0,
        ridge: float = 1.0,
        max_bonus: float = 1.0,
        covariance_interval: int = 5_000,
        learning_rate: float = 1e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 1_000,
        batch_size: int = 32,
        gamma: float = 0.99,
        train_freq: int = 4,
        gradient_steps: int = 1,
        target_update_interval: int = 1_000,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.05,
        max_grad_norm: float = 10.0,
        net_arch: tuple[int, ...] = (64, 64),
        n_envs: int = 1,
        seed: int | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        final_eval_episodes: int = 10,
    ) -> None:
        self.policy = check_policy(policy)
        self.beta = check_float("beta", beta, low=0.0)
        self.ridge = check_float("ridge", ridge, low=0.0, low_inclusive=False)
        self.max_bonus = check_float("max_bonus", max_bonus, low=0.0)
        self.covariance_interval = check_int("covariance_interval", covariance_interval, minimum=1)
        self.learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self.learning_starts = check_int("learning_starts", learning_starts, minimum=0)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.gamma = check_float("gamma", gamma, low=0.0, high=1.0)
        self.train_freq = check_int("train_freq", train_freq, minimum=1)
        self.gradient_steps = check_int("gradient_steps", gradient_steps, minimum=1)
        self.target_update_interval = check_int("target_update_interval", target_update_interval, minimum=1)
        self.exploration_fraction = check_float("exploration_fraction", exploration_fraction, low=0.0, high=1.0)
        self.exploration_initial_eps = check_float("exploration_initial_eps", exploration_initial_eps, low=0, high=1)
        self.exploration_final_eps = check_float("exploration_final_eps", exploration_final_eps, low=0, high=1)
        self.max_grad_norm = check_float("max_grad_norm", max_grad_norm, low=0.0, low_inclusive=False)
        self.net_arch = check_int_tuple("net_arch", net_arch)
        self.n_envs = check_int("n_envs", n_envs, minimum=1)
        super().__init__(
            seed=seed,
            device=device,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            final_eval_episodes=final_eval_episodes,
        )
        self._initialize(env)

    # ------------------------------------------------------------------ set-up
    def _check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise EnvError(f"ContrastiveUCBDQN needs a Discrete action space, got {action_space}")
        make_encoder(observation_space, self.policy)

    def _n_envs_for_id(self) -> int:
        return self.n_envs

    def _setup_model(self) -> None:
        n_actions = int(self.action_space.n)
        self.q_net = BonusQNetwork(self.observation_space, n_actions, self.policy, self.net_arch).to(self.device)
        self.q_target = copy.deepcopy(self.q_net)
        self.q_target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=self.learning_rate)
        k = self.q_net.feature_dim
        self.covariance = self.ridge * torch.eye(k, dtype=torch.float64, device=self.device).repeat(n_actions, 1, 1)
        observation_shape = self.observation_space.shape
        assert observation_shape is not None  # Discrete or Box (_check_spaces)
        self.replay_buffer = TransitionBuffer(
            self.buffer_size,
            {
                "obs": (observation_shape, self.observation_space.dtype),
                "next_obs": (observation_shape, self.observation_space.dtype),
                "action": ((), np.int64),
                "reward": ((), np.float32),
                "terminated": ((), np.float32),
            },
        )
        self._explore_rng = np.random.default_rng(spawn_seeds(self.seed, 1, key=_EXPLORE_RNG_KEY)[0])
        self._batch_rng = np.random.default_rng(spawn_seeds(self.seed, 1, key=_BATCH_RNG_KEY)[0])
        self._n_calls = 0
        self._last_obs: np.ndarray | None = None
        self._episode_returns = np.zeros(0)
        self._episode_lengths = np.zeros(0, dtype=np.int64)
        self._learn_start = 0

    # ------------------------------------------------------------------ bonus
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), device=self.device)

    @torch.no_grad()
    def bonus(self, observation: np.ndarray, action: np.ndarray) -> np.ndarray:
        """||phi(s, a)||_{Lambda^-1} = ||z(s)||_{Lambda_a^-1} (without beta) under the current Lambda."""
        return self._bonus(self._tensor(observation), self._tensor(np.asarray(action))).cpu().numpy()

    def _bonus(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        features = self.q_net.features(observation).double()
        factors = torch.linalg.cholesky(self.covariance)
        return elliptical_bonus(features, factors[action.long()])

    @torch.no_grad()
    def _add_to_covariance(self, observation: torch.Tensor, action: torch.Tensor) -> None:
        """Lambda_a += z(s) z(s)^T for each new (s, a) (counted once)."""
        features = self.q_net.features(observation).double()
        outer = features[:, :, None] * features[:, None, :]
        self.covariance.index_add_(0, action.long(), outer)

    @torch.no_grad()
    def _rebuild_covariance(self) -> None:
        """Lambda from every stored pair with the current network (features drift as the network trains)."""
        self.covariance = self.ridge * torch.eye(
            self.q_net.feature_dim, dtype=torch.float64, device=self.device
        ).repeat(int(self.action_space.n), 1, 1)
        for start in range(0, len(self.replay_buffer), _CHUNK):
            batch = self.replay_buffer.get(np.arange(start, min(start + _CHUNK, len(self.replay_buffer))))
            self._add_to_covariance(self._tensor(batch["obs"]), self._tensor(batch["action"]))

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def _greedy(self, observation: np.ndarray) -> np.ndarray:
        return self.q_net(self._tensor(observation)).argmax(dim=1).cpu().numpy()

    def _exploration_rate(self) -> float:
        span = max(self.exploration_fraction * (self._total_timesteps - self._learn_start), 1.0)
        progress = min(1.0, (self.num_timesteps - self._learn_start) / span)
        return self.exploration_initial_eps + progress * (self.exploration_final_eps - self.exploration_initial_eps)

    def _predict(
        self, observation: np.ndarray, state: np.ndarray | None, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, None]:
        actions = self._greedy(observation)
        if not deterministic:
            explore = self._explore_rng.random(len(actions)) < self.exploration_final_eps
            actions[explore] = self._explore_rng.integers(self.action_space.n, size=int(explore.sum()))
        return actions, None

    # ------------------------------------------------------------------ training
    def _train(self) -> float:
        total = 0.0
        for _ in range(self.gradient_steps):
            arrays = self.replay_buffer.get(self._batch_rng.integers(len(self.replay_buffer), size=self.batch_size))
            batch = {key: self._tensor(value) for key, value in arrays.items()}
            with torch.no_grad():
                bonus = (self.beta * self._bonus(batch["obs"], batch["action"])).clamp(max=self.max_bonus).float()
                next_q = self.q_target(batch["next_obs"]).max(dim=1).values
                target = batch["reward"] + bonus + self.gamma * (1.0 - batch["terminated"]) * next_q
            q = self.q_net(batch["obs"]).gather(1, batch["action"][:, None]).squeeze(1)
            loss = F.smooth_l1_loss(q, target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.q_net.parameters(), self.max_grad_norm)
            self.optimizer.step()
            self._n_updates += 1
            total += float(loss.detach())
            self.logger.record_mean("train/bonus", float(bonus.mean()))
        return total / self.gradient_steps

    def _learn(self, callback: BaseCallback, log_interval: int) -> None:
        assert self.env is not None  # learn() checks it
        n_envs = self.env.num_envs
        self._learn_start = self._start_timesteps
        if self._last_obs is None:
            self._last_obs = np.asarray(self.env.reset())
            self._episode_returns = np.zeros(n_envs)
            self._episode_lengths = np.zeros(n_envs, dtype=np.int64)
        episodes_done = 0
        while self.num_timesteps < self._total_timesteps:
            epsilon = self._exploration_rate()
            actions = self._greedy(self._last_obs)
            explore = self._explore_rng.random(n_envs) < epsilon
            actions[explore] = self._explore_rng.integers(self.action_space.n, size=int(np.count_nonzero(explore)))
            new_obs, rewards, dones, infos = self.env.step(actions)
            if not np.all(np.isfinite(rewards)):
                raise EnvError(f"env {self.env_id!r} returned a non-finite reward {rewards!r}")
            self.num_timesteps += n_envs
            self._n_calls += 1
            next_obs = np.array(new_obs, copy=True)
            terminated = np.zeros(n_envs, dtype=np.float32)
            for i in np.flatnonzero(dones):
                next_obs[i] = infos[i]["terminal_observation"]
                terminated[i] = 0.0 if infos[i].get("TimeLimit.truncated", False) else 1.0
            self.replay_buffer.add(
                obs=np.asarray(self._last_obs),
                next_obs=next_obs,
                action=actions.astype(np.int64),
                reward=np.asarray(rewards, dtype=np.float32),
                terminated=terminated,
            )
            self._add_to_covariance(self._tensor(self._last_obs), self._tensor(actions))
            self._episode_returns += rewards
            self._episode_lengths += 1
            for i in np.flatnonzero(dones):
                self._record_episode(self._episode_returns[i], self._episode_lengths[i])
                self._episode_returns[i], self._episode_lengths[i] = 0.0, 0
                episodes_done += 1
                if episodes_done % log_interval == 0:
                    self._dump_logs()
            self._last_obs = np.asarray(new_obs)
            callback.update_locals(locals())
            if not callback.on_step():
                return
            if self._n_calls % (self.covariance_interval // n_envs or 1) == 0:
                self._rebuild_covariance()
            if self.num_timesteps > self.learning_starts and self._n_calls % self.train_freq == 0:
                self.logger.record_mean("train/loss", self._train())
            if self._n_calls % (self.target_update_interval // n_envs or 1) == 0:
                self.q_target.load_state_dict(self.q_net.state_dict())
            self.logger.record("rollout/exploration_rate", epsilon)

    # ------------------------------------------------------------------ checkpoint state
    def _get_state(self) -> tuple[dict[str, Any], ckpt.TensorGroups]:
        optimizer_tensors, optimizer_meta = ckpt.optimizer_state(self.optimizer)
        buffer_tensors, buffer_meta = self.replay_buffer.state()
        state = {
            "optimizer": optimizer_meta,
            "buffer": buffer_meta,
            "n_calls": self._n_calls,
            "explore_rng": generator_state(self._explore_rng),
            "batch_rng": generator_state(self._batch_rng),
        }
        groups = {
            "q_net": self.q_net.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": optimizer_tensors,
            "buffer": buffer_tensors,
            "covariance": {"covariance": self.covariance},
        }
        return state, groups

    def _set_state(self, state: dict[str, Any], groups: ckpt.TensorGroups) -> None:
        self.q_net.load_state_dict(groups["q_net"])
        self.q_target.load_state_dict(groups["q_target"])
        ckpt.load_optimizer_state(self.optimizer, groups["optimizer"], state["optimizer"])
        self.replay_buffer.load_state(groups["buffer"], state["buffer"])
        self.covariance = groups["covariance"]["covariance"].to(self.device, torch.float64)
        self._n_calls = int(state["n_calls"])
        self._explore_rng = restore_generator(state["explore_rng"])
        self._batch_rng = restore_generator(state["batch_rng"])
