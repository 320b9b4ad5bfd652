"""f-DVL: dual-V offline RL with an f-divergence (Sikchi, Zheng, Zhang and Niekum, "Dual RL: Unification and New
Methods for Reinforcement and Imitation Learning", ICLR 2024; the method the paper calls f-DVL).

The dual of regularised policy optimisation over visitations, with the state-only (dual-V) Bellman-flow
constraint, is an unconstrained problem in V. f-DVL replaces the initial-state term by ``(1 - lambda) E_D[V]`` and
avoids double sampling with a learned Q. One update on a batch ``(s, a, r, s', d)`` runs, in the authors' order:

1. V (``value_updates`` times) against the frozen target critic ``Q_bar = min_i Q_target_i``:
   ``L_V = E[ lambda f*_p(Q_bar(s, a) - V(s)) + (1 - lambda) V(s) ]`` (:mod:`~cairnrl.algos.offline.dual_losses`
   has each ``f``). V is an in-sample implicit maximiser of Q: it is never evaluated at actions outside the data.
   For ``f="reverse-kl"`` the loss is XQL's rescaled Gumbel regression (Garg et al., 2023), the special case the
   paper identifies.
2. The actor, by advantage-weighted regression with the new V:
   ``L_pi = -E[ min(exp(beta (Q_bar(s, a) - V(s))), 100) log pi(a|s) ]``.
3. Twin Q with the new V (no V target net): ``L_Q = sum_i E[ Huber_20(Q_i(s, a) - r - gamma (1 - d) V(s')) ]``.
4. Polyak update of the target critic.

Defaults follow the authors' MuJoCo configuration: learning rate 3e-4 everywhere, batch 1024, hidden (256, 256),
LayerNorm in V, gamma 0.99, Polyak rate 0.005, beta 3, the actor's learning rate decayed to 0 by a cosine over 1M
updates, rewards scaled by 1000 / (max - min episode return), and a Gaussian policy with a tanh mean, a
state-independent log standard deviation and the untransformed Gaussian log-likelihood. Departures from the
authors' code, all deliberate: the twin critic and the actor use PyTorch's default initialisation instead of
orthogonal; dataset actions are not clipped to +-(1 - 1e-5) (the untransformed Gaussian has a finite likelihood at
+-1); action noise is added to every V-batch action (the code adds it to the dataset actions only, which fails
when random actions are also on); the gradient penalty uses each head's own gradient (the code penalises the first
head's twice).

**Lambda for the exact chi-square** (``temperature=None`` takes :data:`DEFAULT_TEMPERATURES`). Setting the V
gradient of ``L_V`` to zero gives ``E_D[w(y)] = (1 - lambda) / lambda`` with ``w(y) = max(0, 1 + y/2)`` the
derivative of the conjugate, i.e. the implied ratio ``d*(s, a) / d^D(s, a)``. A density ratio averages to 1 under
``d^D``, which holds at ``lambda = 1/2``. Any other lambda shifts V from Q by a fixed amount, not a fraction of Q's
spread: with all ``y`` equal, ``1 + y/2 = (1 - lambda) / lambda``, so at the authors' 0.8 every advantage
``Q_bar - V`` is -1.5 and every AWR weight ``exp(3 A)`` about 0.011, which slows the actor about a hundredfold and
inflates Q through ``V(s')``; below 1/2 every advantage is positive and the weights grow with the distance to 1/2
(at 0.35 they pass their clip of 100, and the actor becomes behaviour cloning with a large step). The authors' code
does not see this: its dead zone on (-4, 0) lets V settle where ``y = 0``. So the default is the normalised 1/2;
with it the chi-square variant is level with IQL in ``cairnrl bench dualrl`` (BENCHMARKS.md "dualrl (full)", whose
settings line names the lambda of each run). Tune it with ``cairnrl tune fdvl --set f=chi2`` on tuning seeds that
the evaluation does not use.

A loss that turns non-finite stops training with a :class:`~cairnrl.exceptions.ConfigError` naming the loss and
the update, before any optimiser step uses it, so the model keeps its last finite parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from cairnrl.algos.offline.base import OfflineAlgorithm, check_policy_alias
from cairnrl.algos.offline.components import (
    REWARD_NORMALIZATIONS,
    TwinCritic,
    ValueNetwork,
    adam,
    check_finite_losses,
    cosine_decay,
    reward_scale,
)
from cairnrl.algos.offline.dual_losses import action_gradient_penalty, dual_v_loss, gumbel_loss, twin_huber_loss
from cairnrl.core.actors import GaussianActor, awr_weights
from cairnrl.core.base import GymEnv
from cairnrl.core.ensemble import polyak_update
from cairnrl.core.seeding import spawn_seeds
from cairnrl.core.validation import check_bool, check_choice, check_float, check_int, check_int_tuple
from cairnrl.data import Dataset, TransitionBatch

F_DIVERGENCES = ("chi2", "chi2-reference", "tv", "reverse-kl")
#: ``temperature=None`` resolves per f: lambda = 1/2 for the exact chi-square (see the module docstring), the
#: authors' 0.8 for their chi-square code and for total variation (V at the 0.75 quantile of Q), and a Gumbel
#: temperature of 2 for reverse KL.
DEFAULT_TEMPERATURES = {"chi2": 0.5, "chi2-reference": 0.8, "tv": 0.8, "reverse-kl": 2.0}
_NOISE_KEY = 23
#: Clip of the V-batch action noise (the authors' code).
_NOISE_CLIP = 0.5


def check_temperature(f: str, temperature: float) -> float:
    """``lambda`` for the chosen ``f``: in (0, 1] for chi-square, in (1/2, 1] for total variation (the pinball
    loss needs a positive slope above Q), any positive Gumbel temperature for reverse KL."""
    name = f"temperature (lambda) for f={f!r}"
    if f == "tv":
        return check_float(name, temperature, low=0.5, high=1.0, low_inclusive=False)
    if f == "reverse-kl":
        return check_float(name, temperature, low=0.0, low_inclusive=False)
    return check_float(name, temperature, low=0.0, high=1.0, low_inclusive=False)


class FDVL(OfflineAlgorithm):
    """f-DVL (Sikchi et al., ICLR 2024); see the module docstring for the losses. ``learn(total_timesteps)`` counts
    gradient updates.

    :param policy: ``"MlpPolicy"``.
    :param dataset: the offline data (a :class:`~cairnrl.data.Dataset` or a path); actions must lie in [-1, 1].
    :param env: env or env id used only for evaluation.
    :param f: the f-divergence: ``"chi2"`` (exact Pearson chi-square conjugate with d >= 0), ``"chi2-reference"``
        (the authors' code, with a dead zone on (-4, 0); to reproduce their numbers), ``"tv"`` (total variation: a
        pinball loss) or ``"reverse-kl"`` (XQL's Gumbel regression).
    :param temperature: lambda, the weight of the conjugate term against the ``(1 - lambda) E[V]`` term: in (0, 1]
        (``"tv"``: (1/2, 1], V then tracks the (2 lambda - 1) / lambda quantile of Q); for ``"reverse-kl"`` the
        Gumbel temperature (> 0; larger is more conservative, the authors use 1 to 10). ``None``: the value of
        :data:`DEFAULT_TEMPERATURES` for ``f`` (for the exact chi-square 1/2, see the module docstring).
    :param max_clip: ``"reverse-kl"`` only: clip of the Gumbel exponent ``(Q - V) / lambda``; ``None`` for none.
    :param learning_rate: Adam step size of V, Q and the actor.
    :param gamma: discount.
    :param tau: Polyak rate of the target critic.
    :param beta: inverse temperature of the advantage weights (3 for MuJoCo, 10 for AntMaze).
    :param max_weight: clip of the advantage weights.
    :param net_arch: hidden layers of every network.
    :param value_layer_norm: LayerNorm in V (on in all the authors' configurations).
    :param value_updates: V updates per update (on the same batch).
    :param random_actions: k uniform actions in [-1, 1] per state added to the V batch (V is then fit on half data,
        half uniform actions); 0 = off.
    :param action_noise: standard deviation of Gaussian noise (clipped at +-0.5) on the V-batch actions; 0 = off
        (the authors use 0.1 when on).
    :param gradient_penalty: weight of ``max(||grad_a Q_i|| - 1, 0)^2`` in the critic loss; 0 = off.
    :param actor_lr_decay_steps: updates over which the actor's learning rate decays to 0 (cosine); ``None`` keeps
        it constant.
    :param reward_normalization: ``"return_range"`` (MuJoCo: rewards x 1000 / (max - min episode return)) or
        ``"none"``.
    :param compile_graph: run the loss computations through ``torch.compile`` (more updates/s on CPU after a
        one-off compilation, see ``cairnrl bench speed``; results can differ from eager mode in the last bits).
    :param precision: ``"fp32"`` or ``"bf16"`` (mixed precision, about twice the updates/s on CPUs with native
        bfloat16; see :class:`~cairnrl.algos.offline.OfflineAlgorithm`).
    """

    algorithm_name = "FDVL"
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {
        # lambda just above 1/2 (valid for every f: total variation needs > 1/2), so the chi-square default's
        # neighbourhood is searched too
        "temperature": {"type": "float", "low": 0.51, "high": 1.0},
        "beta": {"type": "float", "low": 0.5, "high": 10.0, "log": True},
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
    }

    def __init__(
        self,
        policy: str = "MlpPolicy",
        dataset: Dataset | str | Path | None = None,
        env: GymEnv | None = None,
        *,
        f: str = "chi2",
        temperature: float | None = None,
        max_clip: float | None = 7.0,
        learning_rate: float = 3e-4,
        batch_size: int = 1024,
        gamma: float = 0.99,
        tau: float = 0.005,
        beta: float = 3.0,
        max_weight: float = 100.0,
        net_arch: tuple[int, ...] = (256, 256),
        value_layer_norm: bool = True,
        value_updates: int = 1,
        random_actions: int = 0,
        action_noise: float = 0.0,
        gradient_penalty: float = 0.0,
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
        super().__init__(
            batch_size=batch_size,
            eval_freq=eval_freq,
            eval_episodes=eval_episodes,
            seed=seed,
            device=device,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            final_eval_episodes=final_eval_episodes,
            precision=precision,
        )
        self.policy = check_policy_alias(policy)
        self.f = check_choice("f", f, F_DIVERGENCES)
        self.temperature = check_temperature(f, DEFAULT_TEMPERATURES[f] if temperature is None else temperature)
        self.max_clip = None if max_clip is None else check_float("max_clip", max_clip, low=0.0, low_inclusive=False)
        self.learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.gamma = check_float("gamma", gamma, low=0.0, high=1.0)
        self.tau = check_float("tau", tau, low=0.0, high=1.0, low_inclusive=False)
        self.beta = check_float("beta", beta, low=0.0)
        self.max_weight = check_float("max_weight", max_weight, low=0.0, low_inclusive=False)
        self.net_arch = check_int_tuple("net_arch", net_arch)
        self.value_layer_norm = check_bool("value_layer_norm", value_layer_norm)
        self.value_updates = check_int("value_updates", value_updates, minimum=1)
        self.random_actions = check_int("random_actions", random_actions, minimum=0)
        self.action_noise = check_float("action_noise", action_noise, low=0.0)
        self.gradient_penalty = check_float("gradient_penalty", gradient_penalty, low=0.0)
        self.actor_lr_decay_steps = (
            None if actor_lr_decay_steps is None else check_int("actor_lr_decay_steps", actor_lr_decay_steps, minimum=1)
        )
        self.reward_normalization = check_choice("reward_normalization", reward_normalization, REWARD_NORMALIZATIONS)
        self.compile_graph = check_bool("compile_graph", compile_graph)
        self._reward_scale = 1.0
        self._initialize(env, dataset)

    def _setup_model(self) -> None:
        observation_dim, action_dim = self.observation_space.shape[0], self.action_space.shape[0]
        self.critic = TwinCritic(observation_dim, action_dim, self.net_arch).to(self.device)
        self.value = ValueNetwork(observation_dim, self.net_arch, layer_norm=self.value_layer_norm).to(self.device)
        self.actor = GaussianActor(observation_dim, action_dim, self.net_arch).to(self.device)
        self.critic_optimizer = adam(self.critic.online_parameters(), self.learning_rate)
        self.value_optimizer = adam(list(self.value.parameters()), self.learning_rate)
        self.actor_optimizer = adam(list(self.actor.parameters()), self.learning_rate)
        if self.actor_lr_decay_steps is not None:
            self.actor_scheduler = cosine_decay(self.actor_optimizer, self.actor_lr_decay_steps)
        if self.random_actions or self.action_noise:
            self.noise_generator = torch.Generator(device=self.device)
            self.noise_generator.manual_seed(spawn_seeds(self.seed, 1, key=_NOISE_KEY)[0])

    def _prepare_data(self, dataset: Dataset) -> None:
        self._reward_scale = reward_scale(dataset, self.reward_normalization)

    # ------------------------------------------------------------------ losses
    def _value_batch(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (s, a) pairs of the V loss: the data, plus uniform actions and noise when enabled."""
        if self.random_actions:
            shape = (self.random_actions * len(obs), action.shape[1])
            uniform = torch.rand(shape, generator=self.noise_generator, device=self.device) * 2.0 - 1.0
            obs = torch.cat([obs, obs.repeat(self.random_actions, 1)])
            action = torch.cat([action, uniform])
        if self.action_noise:
            noise = torch.randn(action.shape, generator=self.noise_generator, device=self.device)
            action = (action + (noise * self.action_noise).clamp(-_NOISE_CLIP, _NOISE_CLIP)).clamp(-1.0, 1.0)
        return obs, action

    def _value_loss(self, obs: torch.Tensor, target_q: torch.Tensor) -> torch.Tensor:
        """Step 1: the dual-V loss of ``y = Q_bar(s, a) - V(s)``."""
        diff = target_q - self.value(obs)
        if self.f == "reverse-kl":
            return gumbel_loss(diff, self.temperature, self.max_clip)
        return dual_v_loss(diff, self.temperature, self.f)

    def _actor_critic_losses(self, batch: TransitionBatch, target_q: torch.Tensor) -> dict[str, torch.Tensor]:
        """Steps 2 and 3 with the updated V."""
        obs, action = batch.obs, batch.action
        with torch.no_grad():
            values = self.value(torch.cat([obs, batch.next_obs]))  # V at s and s' in one forward
            advantage = target_q - values[: len(obs)]
            td_target = batch.reward * self._reward_scale + self.gamma * (1.0 - batch.done) * values[len(obs) :]
        actor_loss = -(awr_weights(advantage, self.beta, self.max_weight) * self.actor.log_prob(obs, action)).mean()
        q_values = self.critic(obs, action)
        return {
            "train/actor_loss": actor_loss,
            "train/critic_loss": twin_huber_loss(q_values, td_target),
            "train/q_max_abs": q_values.detach().abs().max(),
            "train/v_mean": values[: len(obs)].mean(),
        }

    # ------------------------------------------------------------------ one update
    def _train_step(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        update = self.num_timesteps + 1
        value_obs, value_action = self._value_batch(batch.obs, batch.action)
        value_target_q = self.critic.target_min(value_obs, value_action)
        for _ in range(self.value_updates):
            value_loss = self._compiled(self._value_loss)(value_obs, value_target_q)
            check_finite_losses(self.algorithm_name, update, {"train/value_loss": value_loss})
            self.value_optimizer.zero_grad(set_to_none=True)
            value_loss.backward()
            self.value_optimizer.step()

        noisy = bool(self.action_noise)
        target_q = self.critic.target_min(batch.obs, batch.action) if noisy else value_target_q[: len(batch.obs)]
        losses = self._compiled(self._actor_critic_losses)(batch, target_q)
        critic_loss = losses["train/critic_loss"]
        if self.gradient_penalty:
            penalty = action_gradient_penalty(
                self.critic.online, torch.cat([batch.obs, batch.action], dim=-1), batch.action.shape[1]
            )
            losses["train/gradient_penalty"] = penalty
            critic_loss = critic_loss + self.gradient_penalty * penalty
        check_finite_losses(
            self.algorithm_name,
            update,
            {"train/actor_loss": losses["train/actor_loss"], "train/critic_loss": critic_loss},
        )
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        (losses["train/actor_loss"] + critic_loss).backward()  # disjoint parameters: one pass
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
