"""TD3+BC (Fujimoto and Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021).

TD3 (Fujimoto et al., 2018: twin critics, target policy smoothing, delayed actor and target updates) with two
changes (section 5):

* the actor maximises ``lambda Q_1(s, pi(s)) - (pi(s) - a)^2`` with ``lambda = alpha / mean|Q_1(s, a)|`` over the
  batch, treated as a constant (eq. 3; ``alpha = 2.5``);
* states are standardised with the dataset's mean and standard deviation (``eps = 1e-3``), stored in the model.

Defaults follow the paper: learning rate 3e-4, batch 256, two hidden layers of 256, gamma 0.99, Polyak rate 0.005,
policy noise 0.2 clipped at 0.5, actor and targets updated every 2 critic updates.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import torch

from cairnrl.algos.offline.base import OfflineAlgorithm, check_policy_alias
from cairnrl.algos.offline.components import TwinCritic, adam, check_finite_losses
from cairnrl.core.actors import DeterministicActor
from cairnrl.core.base import GymEnv
from cairnrl.core.ensemble import polyak_update
from cairnrl.core.normalization import Standardizer
from cairnrl.core.seeding import spawn_seeds
from cairnrl.core.validation import check_bool, check_float, check_int, check_int_tuple
from cairnrl.data import Dataset, TransitionBatch

_NOISE_KEY = 22


class TD3BC(OfflineAlgorithm):
    """TD3+BC (Fujimoto & Gu, NeurIPS 2021); see the module docstring. ``learn(total_timesteps)`` counts critic
    updates.

    :param alpha: the BC trade-off of eq. (3): ``lambda = alpha / mean|Q|``.
    :param policy_noise: standard deviation of the target policy smoothing noise.
    :param noise_clip: clip of that noise.
    :param policy_delay: critic updates per actor (and target) update.
    :param normalize_observations: standardise states with the dataset's statistics (section 5).
    :param precision: ``"fp32"`` or ``"bf16"`` (mixed precision, about twice the updates/s on CPUs with native
        bfloat16; see :class:`~cairnrl.algos.offline.OfflineAlgorithm`).
    """

    algorithm_name = "TD3BC"
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
        "alpha": {"type": "float", "low": 0.5, "high": 10.0, "log": True},
    }

    def __init__(
        self,
        policy: str = "MlpPolicy",
        dataset: Dataset | str | Path | None = None,
        env: GymEnv | None = None,
        *,
        learning_rate: float = 3e-4,
        batch_size: int = 256,
        gamma: float = 0.99,
        tau: float = 0.005,
        alpha: float = 2.5,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        policy_delay: int = 2,
        net_arch: tuple[int, ...] = (256, 256),
        normalize_observations: bool = True,
        precision: str = "fp32",
        eval_freq: int = 5000,
        eval_episodes: int = 10,
        seed: int | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        final_eval_episodes: int = 10,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_freq=eval_freq, eval_episodes=eval_episodes, seed=seed,
                         device=device, tensorboard_log=tensorboard_log, verbose=verbose,
                         final_eval_episodes=final_eval_episodes, precision=precision)
        self.policy = check_policy_alias(policy)
        self.learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.gamma = check_float("gamma", gamma, low=0.0, high=1.0)
        self.tau = check_float("tau", tau, low=0.0, high=1.0, low_inclusive=False)
        self.alpha = check_float("alpha", alpha, low=0.0)
        self.policy_noise = check_float("policy_noise", policy_noise, low=0.0)
        self.noise_clip = check_float("noise_clip", noise_clip, low=0.0)
        self.policy_delay = check_int("policy_delay", policy_delay, minimum=1)
        self.net_arch = check_int_tuple("net_arch", net_arch)
        self.normalize_observations = check_bool("normalize_observations", normalize_observations)
        self._initialize(env, dataset)

    def _setup_model(self) -> None:
        observation_dim, action_dim = self.observation_space.shape[0], self.action_space.shape[0]
        self.normalizer = Standardizer(observation_dim).to(self.device)
        self.critic = TwinCritic(observation_dim, action_dim, self.net_arch).to(self.device)
        self.actor = DeterministicActor(observation_dim, action_dim, self.net_arch).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_optimizer = adam(self.critic.online_parameters(), self.learning_rate)
        self.actor_optimizer = adam(list(self.actor.parameters()), self.learning_rate)
        self.noise_generator = torch.Generator(device=self.device)
        self.noise_generator.manual_seed(spawn_seeds(self.seed, 1, key=_NOISE_KEY)[0])

    def _prepare_data(self, dataset: Dataset) -> None:
        if self.normalize_observations:
            self.normalizer.fit(dataset.observations)

    def _train_step(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        obs, next_obs = self.normalizer(batch.obs), self.normalizer(batch.next_obs)
        with torch.no_grad():  # target policy smoothing (TD3)
            noise = torch.randn(batch.action.shape, generator=self.noise_generator, device=self.device)
            noise = (noise * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_action = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
            td_target = batch.reward + self.gamma * (1.0 - batch.done) * self.critic.target_min(next_obs, next_action)
        q_values = self.critic(obs, batch.action)
        critic_loss = (q_values - td_target).square().mean(dim=1).sum()
        check_finite_losses(self.algorithm_name, self.num_timesteps + 1, {"train/critic_loss": critic_loss})
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        losses = {"train/critic_loss": critic_loss, "train/q_max_abs": q_values.detach().abs().max()}
        if self._n_updates % self.policy_delay == 0:
            action = self.actor(obs)
            q_first = self.critic.first_frozen(obs, action)
            scale = self.alpha / q_first.abs().mean().detach()  # eq. (3)
            actor_loss = -scale * q_first.mean() + (action - batch.action).square().mean()
            check_finite_losses(self.algorithm_name, self.num_timesteps + 1, {"train/actor_loss": actor_loss})
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            polyak_update(self.critic.target, self.critic.online, self.tau)
            polyak_update(self.actor_target, self.actor, self.tau)
            losses["train/actor_loss"] = actor_loss
        return losses

    def _act(self, observation: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(self.normalizer(observation))
