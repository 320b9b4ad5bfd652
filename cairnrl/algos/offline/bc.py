"""Behaviour cloning: supervised regression of the dataset's actions on its states.

``policy_type="deterministic"``: ``min E[(pi(s) - a)^2]`` with a tanh-bounded MLP (the BC baseline of Fujimoto & Gu,
2021); ``"gaussian"``: ``max E[log pi(a|s)]`` with the Gaussian policy of IQL (tanh mean, state-independent
standard deviation), i.e. IQL's actor loss with all advantage weights equal to 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from cairnrl.algos.offline.base import OfflineAlgorithm, check_policy_alias
from cairnrl.algos.offline.components import adam, check_finite_losses
from cairnrl.core.actors import DeterministicActor, GaussianActor
from cairnrl.core.base import GymEnv
from cairnrl.core.normalization import Standardizer
from cairnrl.core.validation import check_bool, check_choice, check_float, check_int_tuple
from cairnrl.data import Dataset, TransitionBatch

POLICY_TYPES = ("deterministic", "gaussian")


class BC(OfflineAlgorithm):
    """Behaviour cloning; ``learn(total_timesteps)`` counts gradient updates.

    :param policy_type: ``"deterministic"`` (mean squared error) or ``"gaussian"`` (log-likelihood).
    :param normalize_observations: standardise states with the dataset's statistics.
    :param precision: ``"fp32"`` or ``"bf16"`` (mixed precision, about twice the updates/s on CPUs with native
        bfloat16; see :class:`~cairnrl.algos.offline.OfflineAlgorithm`).
    """

    algorithm_name = "BC"
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    }

    def __init__(
        self,
        policy: str = "MlpPolicy",
        dataset: Dataset | str | Path | None = None,
        env: GymEnv | None = None,
        *,
        policy_type: str = "deterministic",
        learning_rate: float = 3e-4,
        batch_size: int = 256,
        net_arch: tuple[int, ...] = (256, 256),
        normalize_observations: bool = False,
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
        self.policy_type = check_choice("policy_type", policy_type, POLICY_TYPES)
        self.learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.net_arch = check_int_tuple("net_arch", net_arch)
        self.normalize_observations = check_bool("normalize_observations", normalize_observations)
        self._initialize(env, dataset)

    def _setup_model(self) -> None:
        observation_dim, action_dim = self.observation_space.shape[0], self.action_space.shape[0]
        self.normalizer = Standardizer(observation_dim).to(self.device)
        actor_class = GaussianActor if self.policy_type == "gaussian" else DeterministicActor
        self.actor = actor_class(observation_dim, action_dim, self.net_arch).to(self.device)
        self.actor_optimizer = adam(list(self.actor.parameters()), self.learning_rate)

    def _prepare_data(self, dataset: Dataset) -> None:
        if self.normalize_observations:
            self.normalizer.fit(dataset.observations)

    def _train_step(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        obs = self.normalizer(batch.obs)
        if isinstance(self.actor, GaussianActor):
            loss = -self.actor.log_prob(obs, batch.action).mean()
        else:
            loss = (self.actor(obs) - batch.action).square().mean()
        check_finite_losses(self.algorithm_name, self.num_timesteps + 1, {"train/actor_loss": loss})
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        return {"train/actor_loss": loss}

    def _act(self, observation: torch.Tensor, deterministic: bool) -> torch.Tensor:
        observation = self.normalizer(observation)
        if deterministic or isinstance(self.actor, DeterministicActor):
            return self.actor(observation)
        return self.actor.sample(observation)
