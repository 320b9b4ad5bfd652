"""The offline branch of the shared core: algorithms that learn from a fixed :class:`~cairnrl.data.Dataset`.

An offline algorithm is built from a dataset (or a path that :func:`cairnrl.data.load` reads) and an optional env
used only for evaluation. Observation and action spaces come from the dataset; an env whose spaces differ is refused.
``learn(total_timesteps)`` counts *gradient updates* (the progress bar says "update"), each on one uniformly sampled
batch; every ``eval_freq`` updates the deterministic policy is evaluated on the env and the return (and, for tasks
with D4RL reference scores, the normalised score) is logged.

Checkpoints never copy the data: they record its source and a content hash, and the sampler's random stream, so
``load(path, dataset=...)`` + ``learn(..., reset_num_timesteps=False)`` continues bit for bit on CPU, a dataset
whose hash differs is refused, and ``load(path)`` without a dataset gives a model for prediction only.

A subclass implements ``_setup_model()`` (networks from the spaces), ``_prepare_data(dataset)`` (statistics of the
data its losses need, e.g. reward scale or state normalisation; must be deterministic in the data) and
``_train_step(batch) -> dict[str, Tensor]`` (one update; the returned losses are averaged and logged).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv
from typing_extensions import Self

from cairnrl.core import checkpoint as ckpt
from cairnrl.core.base import BaseAlgorithm, GymEnv, check_policy
from cairnrl.core.evaluation import evaluate
from cairnrl.core.seeding import spawn_seeds
from cairnrl.core.validation import check_choice, check_int
from cairnrl.data import Dataset, TransitionBatch, TransitionSampler, load, normalized_score
from cairnrl.exceptions import CheckpointError, ConfigError, DatasetError, EnvError

#: ``precision`` choices: full float32, or bfloat16 autocast (mixed precision).
PRECISIONS = ("fp32", "bf16")

#: SeedSequence keys of the streams an offline run derives from its seed.
_SAMPLER_KEY = 20
_EVAL_KEY = 21


def as_dataset(dataset: Dataset | str | Path) -> Dataset:
    """A :class:`Dataset` as given, or loaded (and validated) from a path; empty datasets are refused."""
    if isinstance(dataset, (str, Path)):
        path = Path(dataset)
        if not path.exists():
            raise DatasetError(f"no dataset at {str(path)!r} (expected a Minari folder, a D4RL .hdf5 or an .npz)")
        dataset = load(path)
    if not isinstance(dataset, Dataset):
        raise DatasetError(f"dataset must be a cairnrl.data.Dataset or a path, got {type(dataset).__name__}")
    if dataset.num_steps == 0:
        raise DatasetError(f"{dataset.source}: the dataset is empty (no transitions)")
    return dataset


def check_space_fits(kind: str, dataset_space: gym.Space, env_space: gym.Space) -> None:
    """Refuse an evaluation env whose ``kind`` space differs from the dataset's (type, shape, size, bounds when
    both are bounded)."""
    same = type(dataset_space) is type(env_space) and dataset_space.shape == env_space.shape
    if same and isinstance(env_space, gym.spaces.Discrete) and isinstance(dataset_space, gym.spaces.Discrete):
        same = env_space.n == dataset_space.n
    if same and isinstance(env_space, gym.spaces.Box) and isinstance(dataset_space, gym.spaces.Box):
        both_bounded = all(np.isfinite(space.low).all() and np.isfinite(space.high).all()
                           for space in (dataset_space, env_space))
        same = not both_bounded or (np.allclose(dataset_space.low, env_space.low)
                                    and np.allclose(dataset_space.high, env_space.high))
    if not same:
        raise EnvError(f"the env's {kind} space {env_space} does not match the dataset's {dataset_space}")


class OfflineAlgorithm(BaseAlgorithm):
    """Base of algorithms trained from a fixed dataset; see the module docstring for the contract.

    :param dataset: a :class:`~cairnrl.data.Dataset` or a path :func:`cairnrl.data.load` reads; ``None`` only when
        loading a model.
    :param env: an env or env id for evaluation only (its spaces must match the dataset's); ``None`` for none.
    :param batch_size: transitions per gradient update.
    :param eval_freq: evaluate on ``env`` every this many updates (0 = never during training).
    :param eval_episodes: episodes per periodic evaluation.
    :param precision: ``"fp32"``, or ``"bf16"`` for mixed precision: each update runs under ``torch.autocast`` with
        bfloat16, so the hidden layers' matrix products take bfloat16 inputs while parameters, optimiser state,
        gradients, the networks' outputs (:class:`~cairnrl.core.networks.OutputLinear`) and the losses stay
        float32. About twice the updates/s on CPUs with native bfloat16 (AVX512-BF16, AMX) and on recent GPUs, at
        the cost of bfloat16 rounding inside the networks; acting and evaluation always run in float32.
    """

    progress_unit: ClassVar[str] = "update"
    # Continuous actions and flat vector observations (:meth:`_check_dataset`).
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box
    #: ``tanh``-bounded policies need dataset actions inside [-1, 1].
    requires_unit_actions: ClassVar[bool] = True

    def __init__(
        self,
        *,
        batch_size: int,
        eval_freq: int,
        eval_episodes: int,
        seed: int | None,
        device: str,
        tensorboard_log: str | None,
        verbose: int,
        final_eval_episodes: int,
        precision: str = "fp32",
    ) -> None:
        super().__init__(
            seed=seed,
            device=device,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            final_eval_episodes=final_eval_episodes,
        )
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.eval_freq = check_int("eval_freq", eval_freq, minimum=0)
        self.eval_episodes = check_int("eval_episodes", eval_episodes, minimum=1)
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.dataset: Dataset | None = None
        self.dataset_source: str | None = None
        self.dataset_hash: str | None = None
        self.compile_graph = False
        self._compiled_functions: dict[str, Callable[..., Any]] = {}
        self._eval_env: gym.Env | None = None
        self._pending_sampler_state: tuple[dict[str, torch.Tensor], dict] | None = None

    # ------------------------------------------------------------------ hooks
    def _prepare_data(self, dataset: Dataset) -> None:
        """Compute what the losses need from the data (reward scale, normalisation); deterministic in the data."""

    def _check_dataset(self, dataset: Dataset) -> None:
        """Refuse data this algorithm cannot learn from (override to add checks; call ``super()``)."""
        if not isinstance(dataset.action_space, gym.spaces.Box):
            raise DatasetError(f"{dataset.source}: {self.algorithm_name} needs continuous (Box) actions, got "
                               f"{dataset.action_space}")
        if len(dataset.observation_space.shape or ()) != 1:
            raise DatasetError(f"{dataset.source}: {self.algorithm_name} needs flat vector observations, got "
                               f"{dataset.observation_space}")
        if not np.isfinite(dataset.rewards).all():
            raise DatasetError(f"{dataset.source}: rewards contain NaN or infinite values")
        if self.requires_unit_actions and dataset.num_steps:
            low, high = float(dataset.actions.min()), float(dataset.actions.max())
            if low < -1.0 - 1e-6 or high > 1.0 + 1e-6:
                raise DatasetError(
                    f"{dataset.source}: actions span [{low:.4g}, {high:.4g}], outside [-1, 1], which a tanh policy "
                    "cannot produce; rescale the actions to [-1, 1] first"
                )

    def _train_step(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        """One gradient update on ``batch``; returns the losses and statistics to log (scalar tensors)."""
        raise NotImplementedError

    def _compiled(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` itself, or (with ``compile_graph=True``) its ``torch.compile`` version, built once per name.

        The ``max-autotune-no-cudagraphs`` mode lets inductor time its own matrix-product kernels against the
        library's at these shapes; on CPU in bfloat16 that made IQL and f-DVL faster than the default mode (ReCOIL
        about even), for a few more seconds of compilation (``cairnrl bench speed`` records the result).
        """
        if not self.compile_graph:
            return function
        name = function.__name__
        if name not in self._compiled_functions:
            self._compiled_functions[name] = torch.compile(function, dynamic=False,
                                                           mode="max-autotune-no-cudagraphs")
        return self._compiled_functions[name]

    def _precision_context(self) -> torch.autocast:
        """The autocast region one update runs in: bfloat16 matrix products for ``precision="bf16"``, else none.

        Autocast's weight cache is off: it keys the bfloat16 copy of a parameter by the tensor, not its version, so
        a network evaluated again after its optimiser step within the same update (IQL's V in eq. 6 and 7 after the
        V step, TD3+BC's critic in the actor loss, f-DVL's V in the actor and Q losses) would get its pre-step
        weights. Without the cache every forward casts the current weights.
        """
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16",
                              cache_enabled=False)

    # ------------------------------------------------------------------ data and env
    def _initialize(self, env: GymEnv | None, dataset: Dataset | str | Path | None = None) -> None:
        """End of a subclass ``__init__``: spaces from the dataset, the evaluation env checked against them."""
        if dataset is not None:
            dataset = as_dataset(dataset)
            self._check_dataset(dataset)
            # Box actions and flat (Box) observations, as _check_dataset verified.
            self.observation_space = cast(gym.spaces.Box, dataset.observation_space)
            self.action_space = cast(gym.spaces.Box, dataset.action_space)
        if env is not None:
            if dataset is None:
                raise DatasetError(f"{self.algorithm_name} learns from a dataset: pass dataset= (the env is only "
                                   "used for evaluation)")
            self._attach_env(env, 1)
        if dataset is not None:
            self._setup_model()
            self._bind_dataset(dataset)

    def _check_env_matches(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        check_space_fits("observation", self.observation_space, observation_space)
        check_space_fits("action", self.action_space, action_space)

    def _attach_env(self, env: GymEnv, n_envs: int) -> None:
        super()._attach_env(env, n_envs)
        self._eval_env = self.env.envs[0] if isinstance(self.env, DummyVecEnv) else None

    def set_dataset(self, dataset: Dataset | str | Path) -> None:
        """Attach training data to a loaded model; it must be the data the checkpoint was trained on (same hash)."""
        dataset = as_dataset(dataset)
        self._check_dataset(dataset)
        if self.dataset_hash is not None and dataset.content_hash() != self.dataset_hash:
            raise DatasetError(
                f"{dataset.source}: this is not the dataset the model was trained on (content hash "
                f"{dataset.content_hash()[:12]}..., checkpoint expects {self.dataset_hash[:12]}... from "
                f"{self.dataset_source!r})"
            )
        check_space_fits("observation", self.observation_space, dataset.observation_space)
        check_space_fits("action", self.action_space, dataset.action_space)
        self._bind_dataset(dataset)

    def _bind_dataset(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.dataset_source = dataset.source
        self.dataset_hash = dataset.content_hash()
        self._prepare_data(dataset)
        self.sampler = TransitionSampler(
            dataset, self.batch_size, device=self.device, seed=spawn_seeds(self.seed, 1, key=_SAMPLER_KEY)[0]
        )
        if self._pending_sampler_state is not None:
            self.sampler.load_state(*self._pending_sampler_state)
            self._pending_sampler_state = None

    def _check_can_learn(self) -> None:
        if self.dataset is None:
            raise DatasetError(f"this {self.algorithm_name} model has no dataset: pass dataset= to load() or call "
                               "set_dataset()")

    # ------------------------------------------------------------------ training
    def _learn(self, callback: BaseCallback, log_interval: int) -> None:
        log_every = max(1, min(1000, self.eval_freq or 1000)) * log_interval
        sums: dict[str, torch.Tensor] = {}
        count = 0
        self._update_time = 0.0
        while self.num_timesteps < self._total_timesteps:
            started = time.perf_counter()
            with self._precision_context():
                losses = self._train_step(self.sampler.sample())
            self._update_time += time.perf_counter() - started
            for name, value in losses.items():
                sums[name] = sums[name] + value.detach() if name in sums else value.detach().clone()
            count += 1
            self.num_timesteps += 1
            self._n_updates += 1
            if self.eval_freq and self.num_timesteps % self.eval_freq == 0:
                self._evaluate_periodically()
            if not callback.on_step():
                self.stop_reason = "a callback stopped training"
                break
            if count == log_every or self.num_timesteps >= self._total_timesteps:
                self._log_losses(sums, count)
                sums, count = {}, 0
        if count:
            self._log_losses(sums, count)

    def _log_losses(self, sums: dict[str, torch.Tensor], count: int) -> None:
        for name, total in sums.items():
            value = float(total) / count
            if not math.isfinite(value):
                raise ConfigError(
                    f"{self.algorithm_name} diverged: {name} is {value} around update {self.num_timesteps}; lower "
                    "the learning rate or check the data"
                )
            self.logger.record(name, value)
        if self._update_time > 0:
            self.logger.record("time/updates_per_second", self._n_updates_since_start() / self._update_time)
        self._dump_logs()

    def _n_updates_since_start(self) -> int:
        return self.num_timesteps - self._start_timesteps

    def _evaluate_periodically(self) -> None:
        if self._eval_env is None:
            return
        seed = spawn_seeds(self.seed, 1, key=(_EVAL_KEY, self.num_timesteps))[0]
        result = evaluate(self, self._eval_env, n_episodes=self.eval_episodes, seed=seed)
        self.logger.record("eval/mean_reward", result.mean)
        score = self.normalized_score(result.mean)
        if score is not None:
            self.logger.record("eval/normalized_score", score)

    def normalized_score(self, episode_return: float) -> float | None:
        """The D4RL-normalised score (0 = random, 100 = expert) of ``episode_return`` on the evaluation env, if
        reference scores exist for it."""
        if self.env_id is None:
            return None
        try:
            return float(normalized_score(self.env_id, episode_return))
        except ConfigError:
            return None

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def _predict(
        self, observation: np.ndarray, state: np.ndarray | None, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        obs = torch.as_tensor(observation, dtype=torch.float32, device=self.device)
        return self._act(obs, deterministic).cpu().numpy().astype(self.action_space.dtype), None

    def _act(self, observation: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions in ``[-1, 1]`` for a batch of observations (implemented by each algorithm)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def _get_state(self) -> tuple[dict[str, Any], ckpt.TensorGroups]:
        state, groups = super()._get_state()
        state["dataset"] = {"source": self.dataset_source, "sha256": self.dataset_hash}
        if self.dataset is None and self._pending_sampler_state is not None:  # loaded for prediction, saved again
            groups["state.sampler"], state["stateful"]["sampler"] = self._pending_sampler_state
        return state, groups

    def _set_state(self, state: dict[str, Any], groups: ckpt.TensorGroups) -> None:
        super()._set_state(state, groups)
        self.dataset_source, self.dataset_hash = state["dataset"]["source"], state["dataset"]["sha256"]
        if "state.sampler" in groups:
            self._pending_sampler_state = (groups["state.sampler"], state["stateful"]["sampler"])

    def _run_record_extras(self) -> dict[str, Any]:
        return {"dataset": {"source": self.dataset_source, "sha256": self.dataset_hash}}

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | Path,
        dataset: Dataset | str | Path | None = None,
        env: GymEnv | None = None,
        device: str = "auto",
        **kwargs: Any,
    ) -> Self:
        """Rebuild a model from :meth:`save` output. With ``dataset`` (the same data: its hash is checked) it can
        continue training; without, it predicts only. ``env`` is the evaluation env."""
        model, _ = cls._load_checkpoint(path, device, kwargs)
        if model.dataset_hash is None:
            raise CheckpointError(f"{path}: the checkpoint records no dataset hash")
        if dataset is not None:
            model.set_dataset(dataset)
        if env is not None:
            model._attach_env(env, 1)
        return model


def check_policy_alias(policy: str) -> str:
    """Offline algorithms here use MLPs on vector observations: only ``"MlpPolicy"``."""
    return check_policy(policy, ("MlpPolicy",))
