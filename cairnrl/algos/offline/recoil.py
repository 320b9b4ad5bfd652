"""ReCOIL: offline imitation from arbitrary data and a few expert demonstrations (Sikchi, Zheng, Zhang and Niekum,
"Dual RL: Unification and New Methods for Reinforcement and Imitation Learning", ICLR 2024; Eq. 10 and its
offline form, Eqs. 11-13).

Data: an expert set D^E (states and actions of a few demonstrations; rewards unused) and a suboptimal set D^O
(transitions of any quality; rewards ignored). Instead of matching ``d^pi`` to ``d^E``, which needs ``d^E / d^O``
and coverage, ReCOIL matches mixtures, ``D_f(beta d^pi + (1 - beta) d^O || beta d^E + (1 - beta) d^O)``, whose
optimum is still ``d^pi = d^E`` and whose dual needs only samples of both sets. Each update draws one batch from
each set and runs, in the authors' order, V, actor, Q, target:

* ``variant="paper"``: the chi-square dual of the mixture problem (:func:`~cairnrl.algos.offline.dual_losses.
  mixture_chi2_critic_loss`), ``beta E_E[V(s) - Q(s, a)] + 1/4 E_mix[(gamma V(s') - Q(s, a))^2]`` with the
  live mixing weight ``beta`` (imitation against Bellman consistency), where V is an in-sample implicit maximiser
  of the target Q fitted on both halves by XQL's Gumbel regression (the paper's practical version);
* ``variant="official"``: what the authors' released code optimises: the Gumbel V loss on the offline half only
  (rescaled by the maximum over both halves), and Q regressed with plain squared error to LS-IQ's fixed targets,
  ``+R / (1 - gamma)`` on expert pairs and ``-R + gamma (1 - d) V(s')`` on offline pairs with absorbing terminal
  value ``-R / (1 - gamma)`` (:func:`~cairnrl.algos.offline.dual_losses.lsiq_critic_loss`), ``R = reward_gap``;
  the bounded targets replace the unbounded linear expert term, and ``beta`` is unused.

Both extract the policy by advantage-weighted regression on the offline half,
``-E_O[ min(exp(beta_awr (Q_bar(s, a) - V(s))), 100) log pi(a|s) ]``, with the Gaussian actor of IQL and f-DVL,
and log Q statistics (``train/q_mean``, ``train/q_max_abs``) so a diverging critic is visible. A loss that turns
non-finite stops training with a :class:`~cairnrl.exceptions.ConfigError` naming the loss and the update, before
any optimiser step uses it, so the model keeps its last finite parameters.

Defaults are the authors' MuJoCo configuration (learning rate 3e-4, batch 1024 from each set, hidden (256, 256),
gamma 0.99, Polyak rate 0.005, AWR beta 3, Gumbel temperature 5 with clip 7, reward gap 2, no LayerNorm in V,
the actor's learning rate decayed to 0 over 1M updates). The expert set is passed separately, as
``ReCOIL("MlpPolicy", dataset=suboptimal, expert_dataset=expert, env=...)``; checkpoints record both sets' hashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from typing_extensions import Self

from cairnrl.algos.offline.base import OfflineAlgorithm, as_dataset, check_policy_alias
from cairnrl.algos.offline.components import TwinCritic, ValueNetwork, adam, check_finite_losses, cosine_decay
from cairnrl.algos.offline.dual_losses import gumbel_loss, lsiq_critic_loss, mixture_chi2_critic_loss
from cairnrl.core import checkpoint as ckpt
from cairnrl.core.actors import GaussianActor, awr_weights
from cairnrl.core.base import GymEnv
from cairnrl.core.ensemble import polyak_update
from cairnrl.core.seeding import spawn_seeds
from cairnrl.core.spaces import spaces_equal
from cairnrl.core.validation import check_bool, check_choice, check_float, check_int, check_int_tuple
from cairnrl.data import Dataset, TransitionBatch, TransitionSampler
from cairnrl.exceptions import DatasetError

VARIANTS = ("official", "paper")
_EXPERT_SAMPLER_KEY = 30


class ReCOIL(OfflineAlgorithm):
    """ReCOIL (Sikchi et al., ICLR 2024); see the module docstring. ``learn(total_timesteps)`` counts gradient
    updates.

    :param policy: ``"MlpPolicy"``.
    :param dataset: the suboptimal set D^O (a :class:`~cairnrl.data.Dataset` or a path); its rewards are ignored.
    :param env: env or env id used only for evaluation.
    :param expert_dataset: the expert set D^E (same spaces as ``dataset``); a run argument like ``dataset``: it is
        not stored in checkpoints, only its hash, and is passed again to :meth:`load` to continue training.
    :param variant: ``"official"`` (the released code's losses) or ``"paper"`` (the mixture chi-square dual).
    :param beta: the mixing weight of the mixtures, in (0, 1): imitation strength against Bellman consistency
        (``"paper"`` only).
    :param temperature: Gumbel temperature T of the V loss (larger is more conservative; the authors raise it
        through 2.5, 5, 10, 20 until Q stops diverging).
    :param max_clip: clip of the Gumbel exponent ``(Q - V) / T``; ``None`` for none.
    :param reward_gap: R of the fixed targets ``+-R / (1 - gamma)`` (``"official"`` only).
    :param awr_beta: inverse temperature of the advantage weights.
    :param max_weight: clip of the advantage weights.
    :param learning_rate: Adam step size of V, Q and the actor.
    :param batch_size: transitions drawn from each set per update.
    :param gamma: discount.
    :param tau: Polyak rate of the target critic.
    :param net_arch: hidden layers of every network.
    :param value_layer_norm: LayerNorm in V (off in the authors' MuJoCo configuration, on for Kitchen and Adroit).
    :param actor_lr_decay_steps: updates over which the actor's learning rate decays to 0 (cosine); ``None`` keeps
        it constant.
    :param compile_graph: run the loss computations through ``torch.compile`` (more updates/s on CPU after a
        one-off compilation, see ``cairnrl bench speed``; results can differ from eager mode in the last bits).
    :param precision: ``"fp32"`` or ``"bf16"`` (mixed precision, about twice the updates/s on CPUs with native
        bfloat16; see :class:`~cairnrl.algos.offline.OfflineAlgorithm`).
    """

    algorithm_name = "ReCOIL"
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "temperature": {"type": "categorical", "choices": [2.5, 5.0, 10.0, 20.0]},
        "beta": {"type": "float", "low": 0.1, "high": 0.9},
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
    }

    def __init__(
        self,
        policy: str = "MlpPolicy",
        dataset: Dataset | str | Path | None = None,
        env: GymEnv | None = None,
        *,
        expert_dataset: Dataset | str | Path | None = None,
        variant: str = "official",
        beta: float = 0.5,
        temperature: float = 5.0,
        max_clip: float | None = 7.0,
        reward_gap: float = 2.0,
        awr_beta: float = 3.0,
        max_weight: float = 100.0,
        learning_rate: float = 3e-4,
        batch_size: int = 1024,
        gamma: float = 0.99,
        tau: float = 0.005,
        net_arch: tuple[int, ...] = (256, 256),
        value_layer_norm: bool = False,
        actor_lr_decay_steps: int | None = 1_000_000,
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
        self.variant = check_choice("variant", variant, VARIANTS)
        self.beta = check_float("beta", beta, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        self.temperature = check_float("temperature", temperature, low=0.0, low_inclusive=False)
        self.max_clip = None if max_clip is None else check_float("max_clip", max_clip, low=0.0, low_inclusive=False)
        self.reward_gap = check_float("reward_gap", reward_gap, low=0.0, low_inclusive=False)
        self.awr_beta = check_float("awr_beta", awr_beta, low=0.0)
        self.max_weight = check_float("max_weight", max_weight, low=0.0, low_inclusive=False)
        self.learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.gamma = check_float("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
        self.tau = check_float("tau", tau, low=0.0, high=1.0, low_inclusive=False)
        self.net_arch = check_int_tuple("net_arch", net_arch)
        self.value_layer_norm = check_bool("value_layer_norm", value_layer_norm)
        self.actor_lr_decay_steps = (
            None if actor_lr_decay_steps is None else check_int("actor_lr_decay_steps", actor_lr_decay_steps, minimum=1)
        )
        self.compile_graph = check_bool("compile_graph", compile_graph)
        self.expert_dataset: Dataset | None = None
        self.expert_dataset_source: str | None = None
        self.expert_dataset_hash: str | None = None
        self._pending_expert_sampler_state: tuple[dict[str, torch.Tensor], dict] | None = None
        if (dataset is None) != (expert_dataset is None):
            raise DatasetError(
                "ReCOIL learns from two sets: pass both dataset= (the suboptimal set) and expert_dataset= (the "
                f"expert demonstrations); got only {'dataset' if expert_dataset is None else 'expert_dataset'}"
            )
        if dataset is not None and expert_dataset is not None:
            dataset = as_dataset(dataset)
            expert_dataset = self._check_expert(dataset, expert_dataset)
        self._initialize(env, dataset)
        if expert_dataset is not None:
            self.set_expert_dataset(expert_dataset)

    # ------------------------------------------------------------------ data
    @staticmethod
    def _check_expert(dataset: Dataset, expert_dataset: Dataset | str | Path) -> Dataset:
        """The expert set, refused when empty or when its spaces differ from the suboptimal set's."""
        if isinstance(expert_dataset, Dataset) and expert_dataset.num_steps == 0:
            raise DatasetError(f"expert_dataset {expert_dataset.source}: the expert set is empty (no transitions)")
        expert = as_dataset(expert_dataset)
        for what in ("observation_space", "action_space"):
            if not spaces_equal(getattr(expert, what), getattr(dataset, what)):
                raise DatasetError(
                    f"the expert set ({expert.source}) and the suboptimal set ({dataset.source}) have different "
                    f"{what.replace('_', ' ')}s: {getattr(expert, what)} vs {getattr(dataset, what)}"
                )
        return expert

    def set_expert_dataset(self, expert_dataset: Dataset | str | Path) -> None:
        """Attach the expert set; on a loaded model it must be the set the checkpoint was trained with (same
        hash)."""
        if self.dataset is None:
            raise DatasetError("attach the suboptimal set first (dataset= or set_dataset()), then the expert set")
        expert = self._check_expert(self.dataset, expert_dataset)
        self._check_dataset(expert)
        if self.expert_dataset_hash is not None and expert.content_hash() != self.expert_dataset_hash:
            raise DatasetError(
                f"{expert.source}: this is not the expert set the model was trained on (content hash "
                f"{expert.content_hash()[:12]}..., checkpoint expects {self.expert_dataset_hash[:12]}... from "
                f"{self.expert_dataset_source!r})"
            )
        self.expert_dataset = expert
        self.expert_dataset_source, self.expert_dataset_hash = expert.source, expert.content_hash()
        seed = spawn_seeds(self.seed, 1, key=_EXPERT_SAMPLER_KEY)[0]
        self.expert_sampler = TransitionSampler(expert, self.batch_size, device=self.device, seed=seed)
        if self._pending_expert_sampler_state is not None:
            self.expert_sampler.load_state(*self._pending_expert_sampler_state)
            self._pending_expert_sampler_state = None

    def _check_can_learn(self) -> None:
        super()._check_can_learn()
        if self.expert_dataset is None:
            raise DatasetError(
                "this ReCOIL model has no expert set: pass expert_dataset= to load() or call set_expert_dataset()"
            )

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments except the expert set (data, like ``dataset``)."""
        return {name: value for name, value in super().hyperparameters().items() if name != "expert_dataset"}

    # ------------------------------------------------------------------ model
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

    # ------------------------------------------------------------------ losses
    def _value_loss(
        self, obs: torch.Tensor, action: torch.Tensor, n_offline: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gumbel regression of V on ``Q_bar`` over [offline | expert] rows: the official code averages over the
        offline half (the maximum of the rescaling spans both), the paper's V fits the whole mixture batch. Also
        returns ``Q_bar``."""
        target_q = self.critic.target_min(obs, action)
        if self.variant == "official":  # the expert half only enters the maximum, which has no gradient
            with torch.no_grad():
                expert_diff = target_q[n_offline:] - self.value(obs[n_offline:])
            diff = target_q[:n_offline] - self.value(obs[:n_offline])
            return gumbel_loss(diff, self.temperature, self.max_clip, max_over=expert_diff), target_q
        return gumbel_loss(target_q - self.value(obs), self.temperature, self.max_clip), target_q

    def _actor_critic_losses(
        self, offline: TransitionBatch, expert: TransitionBatch, target_q: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        n_offline, n_expert = len(offline.obs), len(expert.obs)
        with torch.no_grad():  # V in one forward: at s_O, s'_O, and (the paper's loss only) s_E, s'_E
            if self.variant == "official":
                value_o, next_o = torch.split(self.value(torch.cat([offline.obs, offline.next_obs])), n_offline)
            else:
                values = self.value(torch.cat([offline.obs, offline.next_obs, expert.obs, expert.next_obs]))
                value_o, next_o, value_e, next_e = torch.split(values, [n_offline, n_offline, n_expert, n_expert])
            advantage = target_q[:n_offline] - value_o
        actor_loss = -(
            awr_weights(advantage, self.awr_beta, self.max_weight) * self.actor.log_prob(offline.obs, offline.action)
        ).mean()
        q_values = self.critic(torch.cat([offline.obs, expert.obs]), torch.cat([offline.action, expert.action]))
        q_offline, q_expert = q_values[:, :n_offline], q_values[:, n_offline:]
        if self.variant == "official":
            critic_loss = lsiq_critic_loss(q_expert, q_offline, next_o, offline.done, self.gamma, self.reward_gap)
        else:
            bellman_o = self.gamma * (1.0 - offline.done) * next_o - q_offline
            bellman_e = self.gamma * (1.0 - expert.done) * next_e - q_expert
            critic_loss = mixture_chi2_critic_loss(q_expert, value_e, bellman_e, bellman_o, self.beta)
        q_detached = q_values.detach()
        return {
            "train/actor_loss": actor_loss,
            "train/critic_loss": critic_loss,
            "train/q_mean": q_detached.mean(),
            "train/q_max_abs": q_detached.abs().max(),
            "train/q_expert_mean": q_detached[:, n_offline:].mean(),
            "train/v_mean": value_o.mean(),
        }

    def _train_step(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        update = self.num_timesteps + 1
        expert = self.expert_sampler.sample()
        obs, action = torch.cat([batch.obs, expert.obs]), torch.cat([batch.action, expert.action])
        value_loss, target_q = self._compiled(self._value_loss)(obs, action, len(batch.obs))
        check_finite_losses(self.algorithm_name, update, {"train/value_loss": value_loss})
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()

        losses = self._compiled(self._actor_critic_losses)(batch, expert, target_q)
        check_finite_losses(
            self.algorithm_name, update, {name: losses[name] for name in ("train/actor_loss", "train/critic_loss")}
        )
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        (losses["train/actor_loss"] + losses["train/critic_loss"]).backward()  # disjoint parameters: one pass
        self.actor_optimizer.step()
        self.critic_optimizer.step()
        if self.actor_lr_decay_steps is not None:
            self.actor_scheduler.step()
        polyak_update(self.critic.target, self.critic.online, self.tau)
        return {"train/value_loss": value_loss, **losses}

    def _act(self, observation: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return self.actor(observation)
        return self.actor.sample(observation)

    # ------------------------------------------------------------------ checkpoints
    def _get_state(self) -> tuple[dict[str, Any], ckpt.TensorGroups]:
        state, groups = super()._get_state()
        state["expert_dataset"] = {"source": self.expert_dataset_source, "sha256": self.expert_dataset_hash}
        if self.expert_dataset is None and self._pending_expert_sampler_state is not None:
            groups["state.expert_sampler"], state["stateful"]["expert_sampler"] = self._pending_expert_sampler_state
        return state, groups

    def _set_state(self, state: dict[str, Any], groups: ckpt.TensorGroups) -> None:
        super()._set_state(state, groups)
        record = state["expert_dataset"]
        self.expert_dataset_source, self.expert_dataset_hash = record["source"], record["sha256"]
        if "state.expert_sampler" in groups:
            self._pending_expert_sampler_state = (groups["state.expert_sampler"], state["stateful"]["expert_sampler"])

    def _run_record_extras(self) -> dict[str, Any]:
        return {
            **super()._run_record_extras(),
            "expert_dataset": {"source": self.expert_dataset_source, "sha256": self.expert_dataset_hash},
        }

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | Path,
        dataset: Dataset | str | Path | None = None,
        env: GymEnv | None = None,
        device: str = "auto",
        expert_dataset: Dataset | str | Path | None = None,
        **kwargs: Any,
    ) -> Self:
        """Rebuild a model from :meth:`save` output. To continue training pass both sets (their hashes are
        checked); without them it predicts only."""
        if expert_dataset is not None and dataset is None:
            raise DatasetError("load(expert_dataset=...) also needs dataset= (the suboptimal set)")
        model = super().load(path, dataset=dataset, env=env, device=device, **kwargs)
        if expert_dataset is not None:
            model.set_expert_dataset(expert_dataset)
        return model
