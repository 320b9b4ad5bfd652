"""IQL: Implicit Q-Learning (Kostrikov, Nair and Levine, "Offline Reinforcement Learning with Implicit Q-Learning",
ICLR 2022).

IQL never queries Q at actions outside the dataset. Three losses on a batch of transitions ``(s, a, r, s', d)``:

* value, eq. (5): ``L_V = E[ L_2^tau( min_i Q_target_i(s, a) - V(s) ) ]`` with the expectile loss
  ``L_2^tau(u) = |tau - 1(u < 0)| u^2``; with ``tau > 0.5`` V approaches the maximum of Q over in-support actions;
* critic, eq. (6): ``L_Q = sum_i E[ (r + gamma (1 - d) V(s') - Q_i(s, a))^2 ]``, twin Q-networks with a Polyak
  target (rate ``tau_polyak``);
* policy extraction by advantage-weighted regression, eq. (7):
  ``L_pi = -E[ min(exp(beta (Q_target(s, a) - V(s))), 100) log pi(a|s) ]``.

One update runs them in the authors' order: V first, then the actor and the critic with the updated V, then the
target. The actor and critic losses share one backward pass (their parameters are disjoint). Defaults are the
paper's MuJoCo settings (appendix B): learning rate 3e-4 everywhere, batch 256, two hidden layers of 256,
expectile 0.7, beta 3, gamma 0.99, Polyak rate 0.005, rewards scaled by 1000 / (max - min episode return), the
actor's learning rate decayed to 0 by a cosine schedule over 1M updates, and a Gaussian policy with a tanh mean and
a state-independent standard deviation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from cairnrl.algos.offline.base import OfflineAlgorithm, check_policy_alias
from cairnrl.algos.offline.components import (
    REWARD_NORMALIZATIONS,
    TwinCritic,
    adam,
    check_finite_losses,
    cosine_decay,
    reward_scale,
)
from cairnrl.core.actors import GaussianActor, awr_weights
from cairnrl.core.base import GymEnv
from cairnrl.core.ensemble import polyak_update
from cairnrl.core.networks import mlp
from cairnrl.core.validation import check_bool, check_choice, check_float, check_int, check_int_tuple
from cairnrl.data import Dataset, TransitionBatch


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """``E[ |tau - 1(u < 0)| u^2 ]`` of ``u = diff`` (IQL eq. 5)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


class IQL(OfflineAlgorithm):
    """Implicit Q-Learning (Kostrikov et al., ICLR 2022); see the module docstring for the losses.

    ``learn(total_timesteps)`` counts gradient updates.

    :param policy: ``"MlpPolicy"``.
    :param dataset: the offline data (a :class:`~cairnrl.data.Dataset` or a path); actions must lie in [-1, 1].
    :param env: env or env id used only for evaluation.
    :param learning_rate: Adam step size of V, Q and the actor.
    :param gamma: discount.
    :param tau: Polyak rate of the target critic.
    :param expectile: tau of the expectile loss, in (0, 1) (0.7 for MuJoCo, 0.9 for AntMaze).
    :param beta: inverse temperature of the advantage weights (3 for MuJoCo, 10 for AntMaze).
    :param max_weight: clip of the advantage weights.
    :param net_arch: hidden layers of every network.
    :param actor_lr_decay_steps: updates over which the actor's learning rate decays to 0 (cosine); ``None`` keeps
        it constant.
    :param reward_normalization: ``"return_range"`` (MuJoCo: rewards x 1000 / (max - min episode return)) or
        ``"none"``.
    :param compile_graph: run the loss computations through ``torch.compile`` (more updates/s on CPU after a
        one-off compilation, see ``cairnrl bench speed``; results can differ from eager mode in the last bits).
    :param precision: ``"fp32"`` or ``"bf16"`` (mixed precision, about twice the updates/s on CPUs with native
        bfloat16; see :class:`~cairnrl.algos.offline.OfflineAlgorithm`).
    """

    algorithm_name = "IQL"
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
        "expectile": {"type": "categorical", "choices": [0.5, 0.6, 0.7, 0.8, 0.9]},
        "beta": {"type": "float", "low": 0.5, "high": 10.0, "log": True},
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
        expectile: float = 0.7,
        beta: float = 3.0,
        max_weight: float = 100.0,
        net_arch: tuple[int, ...] = (256, 256),
        actor_lr_decay_steps: int | None = 1_000_000,
        reward_normalization: str = "return_range",
        compile_graph: bool = False,
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
        self.expectile = check_float("expectile", expectile, low=0.0, high=1.0, low_inclusive=False,
                                     high_inclusive=False)
        self.beta = check_float("beta", beta, low=0.0)
        self.max_weight = check_float("max_weight", max_weight, low=0.0, low_inclusive=False)
        self.net_arch = check_int_tuple("net_arch", net_arch)
        self.actor_lr_decay_steps = (None if actor_lr_decay_steps is None
                                     else check_int("actor_lr_decay_steps", actor_lr_decay_steps, minimum=1))
        self.reward_normalization = check_choice("reward_normalization", reward_normalization, REWARD_NORMALIZATIONS)
        self.compile_graph = check_bool("compile_graph", compile_graph)
        self._reward_scale = 1.0
        self._initialize(env, dataset)

    def _setup_model(self) -> None:
        observation_dim, action_dim = self.observation_space.shape[0], self.action_space.shape[0]
        self.critic = TwinCritic(observation_dim, action_dim, self.net_arch).to(self.device)
        self.value = mlp(observation_dim, self.net_arch, 1).to(self.device)
        self.actor = GaussianActor(observation_dim, action_dim, self.net_arch).to(self.device)
        self.critic_optimizer = adam(self.critic.online_parameters(), self.learning_rate)
        self.value_optimizer = adam(list(self.value.parameters()), self.learning_rate)
        self.actor_optimizer = adam(list(self.actor.parameters()), self.learning_rate)
        if self.actor_lr_decay_steps is not None:
            self.actor_scheduler = cosine_decay(self.actor_optimizer, self.actor_lr_decay_steps)

    def _prepare_data(self, dataset: Dataset) -> None:
        self._reward_scale = reward_scale(dataset, self.reward_normalization)

    def _value_loss(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (5): expectile regression of V onto the target critic; also returns the target Q values."""
        target_q = self.critic.target_min(obs, action)
        return expectile_loss(target_q - self.value(obs)[:, 0], self.expectile), target_q

    def _actor_critic_losses(self, batch: TransitionBatch, target_q: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. (7) and eq. (6) with the updated V."""
        obs, action = batch.obs, batch.action
        with torch.no_grad():
            values = self.value(torch.cat([obs, batch.next_obs]))[:, 0]  # V at s and s' in one forward
            advantage = target_q - values[: len(obs)]
            td_target = batch.reward * self._reward_scale + self.gamma * (1.0 - batch.done) * values[len(obs):]
        actor_loss = -(awr_weights(advantage, self.beta, self.max_weight) * self.actor.log_prob(obs, action)).mean()
        q_values = self.critic(obs, action)
        critic_loss = (q_values - td_target).square().mean(dim=1).sum()
        return {"train/actor_loss": actor_loss, "train/critic_loss": critic_loss,
                "train/q_max_abs": q_values.detach().abs().max()}

    def _train_step(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        value_loss, target_q = self._compiled(self._value_loss)(batch.obs, batch.action)
        check_finite_losses(self.algorithm_name, self.num_timesteps + 1, {"train/value_loss": value_loss})
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()

        losses = self._compiled(self._actor_critic_losses)(batch, target_q)
        check_finite_losses(self.algorithm_name, self.num_timesteps + 1,
                            {name: losses[name] for name in ("train/actor_loss", "train/critic_loss")})
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        (losses["train/actor_loss"] + losses["train/critic_loss"]).backward()  # disjoint parameters: one pass
        self.actor_optimizer.step()
        self.critic_optimizer.step()
        if self.actor_lr_decay_steps is not None:
            self.actor_scheduler.step()
        polyak_update(self.critic.target, self.critic.online, self.tau)
        return {"train/value_loss": value_loss, "train/q_mean": target_q.mean(), **losses}

    def _act(self, observation: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return self.actor(observation)
        return self.actor.sample(observation)
