"""The base class every cairnrl algorithm builds on: SB3's verbs, safe checkpoints, seeding and run records.

An algorithm subclass

1. calls ``super().__init__(seed=..., device=..., ...)`` first (run arguments only: nothing of the subclass is
   touched), then validates and stores its hyperparameters as attributes named like its keyword arguments;
2. ends its ``__init__`` with ``self._initialize(env)``, which attaches the env (if any), reads the spaces from it
   and calls ``_setup_model()`` - so every hook below runs on a fully configured object;
3. implements three hooks:

   * ``_setup_model()`` builds networks, optimisers, buffers and RNG streams from ``observation_space`` /
     ``action_space``;
   * ``_learn(callback, log_interval)`` trains until ``num_timesteps >= _total_timesteps``, calling
     ``callback.on_step()`` after every step (env step online, gradient update offline) and returning early when
     it answers ``False`` (setting ``stop_reason`` when it ends training for a reason of its own);
   * ``_predict(observation, state, episode_start, deterministic)`` acts on a batch of observations.

Checkpoint state is declared, not hand-written: every network, optimiser, scheduler, RNG stream and
:class:`~cairnrl.core.state.Stateful` object (buffer, sampler) held as an attribute is saved and restored by the
base (:mod:`cairnrl.core.state`), plus the plain attributes a class lists in ``_saved_attributes``. Only state of
another shape needs ``_get_state`` / ``_set_state`` overrides (calling ``super()``).

Hyperparameters are the keyword arguments of the subclass ``__init__`` (stored as attributes of the same name);
they are saved in the checkpoint and passed back to ``__init__`` by :meth:`BaseAlgorithm.load`.
"""

from __future__ import annotations

import inspect
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.utils import get_latest_run_id
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize, unwrap_vec_normalize
from tqdm.auto import tqdm
from typing_extensions import Self

import cairnrl
from cairnrl.core import checkpoint as ckpt
from cairnrl.core.compat import set_reset_seeds
from cairnrl.core.evaluation import EvaluationResult, evaluate, final_evaluation_seed
from cairnrl.core.fileio import is_json_value
from cairnrl.core.global_rng import get_rng_state, seed_everything, set_rng_state
from cairnrl.core.make import make
from cairnrl.core.records import utc_now, write_training_record
from cairnrl.core.seeding import ACTION_SPACE_SEED_KEY, ENV_SEED_KEY, check_seed, spawn_seeds
from cairnrl.core.spaces import space_from_json, space_to_json, spaces_equal
from cairnrl.core.state import gather_state, restore_state
from cairnrl.core.validation import check_choice, check_int
from cairnrl.exceptions import CheckpointError, ConfigError, EnvError

GymEnv = gym.Env | VecEnv | str
_log = logging.getLogger("cairnrl")

#: Constructor arguments of cairnrl and SB3 algorithms that describe the run (its env or dataset, seeding, device,
#: logging, final evaluation), not the algorithm: never saved as hyperparameters, tuned or fixed by a config, and
#: the only arguments ``load`` accepts.  ``_init_setup_model`` is SB3's flag for building the networks later.
RUN_ARGUMENTS = frozenset({
    "self", "env", "dataset", "seed", "device", "tensorboard_log", "verbose", "final_eval_episodes",
    "_init_setup_model",
})


class ProgressBar(BaseCallback):
    """A tqdm progress bar over ``model.num_timesteps`` (env steps online, gradient updates offline).

    The bar appears at the first step, so a set-up phase before it (a warm start with its own bar) neither shows a
    stalled bar nor skews the rate and ETA. When training ends early for a stated reason (``model.stop_reason``),
    the bar says so and closes as complete.
    """

    model: BaseAlgorithm  # type: ignore[assignment]  # SB3 annotates its own BaseAlgorithm

    def _on_training_start(self) -> None:
        self._start = self.model.num_timesteps
        self._bar: tqdm | None = None

    def _open(self) -> tqdm:
        if self._bar is None:
            self._bar = tqdm(
                total=self.model._total_timesteps - self._start, unit=self.model.progress_unit, dynamic_ncols=True
            )
        return self._bar

    def _on_step(self) -> bool:
        bar = self._open()
        bar.update(self.model.num_timesteps - self._start - bar.n)
        return True

    def _on_training_end(self) -> None:
        bar = self._open()
        bar.update(self.model.num_timesteps - self._start - bar.n)
        if self.model.stop_reason is not None or self.model.num_timesteps < self.model._total_timesteps:
            if self.model.stop_reason is not None:
                bar.set_postfix_str(f"stopped: {self.model.stop_reason}")
            bar.total = bar.n
            bar.refresh()
        bar.close()


class BaseAlgorithm(ABC):
    """Common machinery of cairnrl algorithms (see the module docstring for the subclass contract).

    :param env: a Gymnasium env, an SB3 ``VecEnv`` or a registered env id (cairnrl or Gymnasium); ``None``
        only when loading a model for prediction.
    :param seed: seeds Python, NumPy, torch, the env and the action space; ``None`` draws one from OS entropy
        (it is recorded, so the run can still be repeated).
    :param device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    :param tensorboard_log: folder for TensorBoard events, ``progress.csv`` and ``run.json``; ``None`` disables them.
    :param verbose: 0 silent, 1 prints the logger's table to stdout.
    :param final_eval_episodes: episodes of the deterministic evaluation written to ``run.json`` at the end of a
        logged ``learn`` (0 skips it).
    """

    algorithm_name: ClassVar[str]
    #: What ``learn(total_timesteps)`` counts, shown on the progress bar.
    progress_unit: ClassVar[str] = "step"
    #: Plain attributes (JSON values or tensors) saved with the declared state (see :mod:`cairnrl.core.state`).
    _saved_attributes: ClassVar[tuple[str, ...]] = ()
    #: Optuna search space for :mod:`cairnrl.hpo`: ``name -> {"type": "int"|"float"|"categorical", ...}``
    #: with ``low``/``high`` (and optional ``log``, ``step``) or ``choices``.
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(
        self,
        *,
        seed: int | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        final_eval_episodes: int = 10,
    ) -> None:
        self.seed = (
            check_seed(seed) if seed is not None else int(cast(int, np.random.SeedSequence().entropy) % (2**31 - 1))
        )
        self.verbose = check_int("verbose", verbose, minimum=0)
        self.final_eval_episodes = check_int("final_eval_episodes", final_eval_episodes, minimum=0)
        self.tensorboard_log = None if tensorboard_log is None else str(tensorboard_log)
        self.device = self._resolve_device(device)
        self.num_timesteps = 0
        self._total_timesteps = 0
        self._n_updates = 0
        self.stop_reason: str | None = None
        #: Whether the current ``learn`` shows progress bars (algorithms with set-up phases show theirs too).
        self._show_progress = False
        self._episode_info: deque[tuple[float, int]] = deque(maxlen=100)
        self._logger: Logger | None = None
        seed_everything(self.seed)
        self.env: VecEnv | None = None
        self.env_id: str | None = None
        #: Keyword arguments the env was made with (from its spec), so a fresh copy can be made for evaluation.
        self.env_kwargs: dict[str, Any] = {}
        self.observation_space: gym.Space
        self.action_space: gym.Space

    def _initialize(self, env: GymEnv | None) -> None:
        """End of a subclass ``__init__``: attach ``env`` (if given) and build the model from its spaces."""
        if env is not None:
            self._attach_env(env, self._n_envs_for_id())
            self._setup_model()

    # ------------------------------------------------------------------ hooks for subclasses
    @abstractmethod
    def _setup_model(self) -> None:
        """Build networks and optimisers (called once spaces are known)."""

    @abstractmethod
    def _learn(self, callback: BaseCallback, log_interval: int) -> None:
        """Train until ``self.num_timesteps >= self._total_timesteps`` or the callback stops training."""

    @abstractmethod
    def _predict(
        self, observation: np.ndarray, state: np.ndarray | None, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Act on a batch of observations (leading axis = envs)."""

    def _get_state(self) -> tuple[dict[str, Any], ckpt.TensorGroups]:
        """JSON state and tensor groups that restore training exactly: the declared state by default."""
        return gather_state(self, self._saved_attributes)

    def _set_state(self, state: dict[str, Any], groups: ckpt.TensorGroups) -> None:
        """Inverse of :meth:`_get_state`."""
        restore_state(self, state, groups, self._saved_attributes)

    def _check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:  # noqa: B027
        """Raise :class:`EnvError` if the algorithm cannot handle these spaces (override to restrict)."""

    def _n_envs_for_id(self) -> int:
        """How many copies of the env to make when ``env`` is given as an id (override for vectorised algos)."""
        return 1

    # ------------------------------------------------------------------ env handling
    @staticmethod
    def _resolve_device(device: str | torch.device) -> torch.device:
        if str(device) == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from error
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available")
        return resolved

    def _attach_env(self, env: GymEnv, n_envs: int) -> None:
        check_int("n_envs", n_envs, minimum=1)
        if isinstance(env, str):
            self.env_id = env
            vec_env: VecEnv = DummyVecEnv([lambda: make(env) for _ in range(n_envs)])
        elif isinstance(env, VecEnv):
            vec_env = env
        elif isinstance(env, gym.Env):
            vec_env = DummyVecEnv([lambda: env])
        else:
            raise EnvError(f"env must be a gymnasium.Env, an SB3 VecEnv or an env id string, got {type(env).__name__}")
        spec = vec_env.get_attr("spec", indices=[0])[0]
        if self.env_id is None:
            self.env_id = spec.id if spec is not None else None
        self.env_kwargs = _json_kwargs(spec.kwargs) if spec is not None and spec.id == self.env_id else {}
        self._check_spaces(vec_env.observation_space, vec_env.action_space)
        if hasattr(self, "observation_space"):
            self._check_env_matches(vec_env.observation_space, vec_env.action_space)
        else:
            self.observation_space = vec_env.observation_space
            self.action_space = vec_env.action_space
        # SB3's VecEnv.seed(s) gives sub-env i the seed s + i, so runs with seeds 0 and 1 would share streams;
        # the next vec_env.reset() uses these SeedSequence children instead.
        set_reset_seeds(vec_env, spawn_seeds(self.seed, vec_env.num_envs, key=ENV_SEED_KEY))
        self.action_space.seed(spawn_seeds(self.seed, 1, key=ACTION_SPACE_SEED_KEY)[0])
        self.env = vec_env

    def _check_env_matches(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Refuse an env whose spaces differ from the model's (override to relax, e.g. for unbounded data spaces)."""
        if not spaces_equal(self.observation_space, observation_space) or not spaces_equal(
            self.action_space, action_space
        ):
            raise EnvError(
                f"env spaces {observation_space}, {action_space} differ from the model's "
                f"{self.observation_space}, {self.action_space}"
            )

    def get_env(self) -> VecEnv | None:
        """The training env (an SB3 ``VecEnv``), as SB3 callbacks expect."""
        return self.env

    def get_vec_normalize_env(self) -> VecNormalize | None:
        """The ``VecNormalize`` wrapper of the training env, if any (SB3's ``EvalCallback`` syncs it)."""
        return None if self.env is None else unwrap_vec_normalize(self.env)

    def set_env(self, env: GymEnv) -> None:
        """Attach a (new) training env with the same spaces."""
        self._attach_env(env, self._n_envs_for_id())

    # ------------------------------------------------------------------ logging
    @property
    def logger(self) -> Logger:
        """SB3 logger of the current ``learn`` (stdout/csv/tensorboard)."""
        if self._logger is None:
            self._logger = configure(None, [""])
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Use a custom SB3 logger instead of the one ``learn`` configures."""
        self._logger = logger
        self._custom_logger = True

    def _configure_logger(self, tb_log_name: str, reset_num_timesteps: bool) -> None:
        if getattr(self, "_custom_logger", False):
            return
        formats = ["stdout"] if self.verbose >= 1 else []
        folder = None
        if self.tensorboard_log is not None:
            run_id = get_latest_run_id(self.tensorboard_log, tb_log_name) + (1 if reset_num_timesteps else 0)
            folder = str(Path(self.tensorboard_log) / f"{tb_log_name}_{max(run_id, 1)}")
            formats += ["tensorboard", "csv"]
        self._logger = configure(folder, formats or [""])

    def _record_episode(self, episode_return: float, episode_length: int) -> None:
        self._episode_info.append((float(episode_return), int(episode_length)))

    def _dump_logs(self) -> None:
        elapsed = max(time.time() - self._start_time, 1e-9)
        if self._episode_info:
            returns, lengths = zip(*self._episode_info, strict=True)
            self.logger.record("rollout/ep_rew_mean", float(np.mean(returns)))
            self.logger.record("rollout/ep_len_mean", float(np.mean(lengths)))
        self.logger.record("time/fps", int((self.num_timesteps - self._start_timesteps) / elapsed))
        self.logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.record("train/n_updates", self._n_updates)
        self.logger.dump(step=self.num_timesteps)

    # ------------------------------------------------------------------ the verbs
    def learn(
        self,
        total_timesteps: int,
        callback: BaseCallback | list[BaseCallback] | Any = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> Self:
        """Train for ``total_timesteps`` steps (env steps online, gradient updates offline; a lower bound, as in
        SB3) and return ``self``.

        With ``reset_num_timesteps=False`` the step counter continues (after :meth:`load`, training resumes
        where it stopped) and ``total_timesteps`` more steps are taken. If the algorithm ends training early for a
        reason of its own, ``stop_reason`` says why (also in the log, on the progress bar and in ``run.json``).
        """
        check_int("total_timesteps", total_timesteps, minimum=1)
        check_int("log_interval", log_interval, minimum=1)
        self._check_can_learn()
        self.stop_reason = None
        self._show_progress = bool(progress_bar)
        if reset_num_timesteps:
            self.num_timesteps = 0
            self._episode_info.clear()
        self._total_timesteps = self.num_timesteps + total_timesteps
        self._configure_logger(tb_log_name or self.algorithm_name, reset_num_timesteps)
        callback = self._make_callback(callback, progress_bar)
        self._start_time = time.time()
        self._start_timesteps = self.num_timesteps
        started = utc_now()
        callback.on_training_start(locals(), globals())
        self._learn(callback, log_interval)
        if self.stop_reason is not None:
            _log.warning("%s stopped training after %d of %d steps: %s", self.algorithm_name,
                         self.num_timesteps - self._start_timesteps, self._total_timesteps - self._start_timesteps,
                         self.stop_reason)
        callback.on_training_end()
        self._write_run_record(started)
        return self

    def _check_can_learn(self) -> None:
        """Raise a clear error if ``learn`` cannot run (online algorithms need an env)."""
        if self.env is None:
            raise EnvError("this model has no env: pass env= to the constructor or load(), or call set_env()")

    def _make_callback(self, callback: Any, progress_bar: bool) -> BaseCallback:
        if isinstance(callback, list):
            callback = CallbackList(callback)
        elif callback is None:
            callback = CallbackList([])
        elif not isinstance(callback, BaseCallback):
            if not callable(callback):
                raise ConfigError(f"callback must be a BaseCallback, a list of them or a callable, got {callback!r}")
            callback = ConvertCallback(callback)
        if progress_bar:
            callback = CallbackList([callback, ProgressBar()])
        callback.init_callback(self)
        return callback

    def _write_run_record(self, started: str) -> None:
        folder = self.logger.get_dir()
        if folder is None or self.tensorboard_log is None:
            return
        final: dict[str, Any] | None = None
        skipped: str | None = "final_eval_episodes = 0"
        if self.final_eval_episodes > 0:
            skipped = None
            try:
                final = self.evaluate_final().to_dict()
            except EnvError as error:
                skipped = str(error)
        write_training_record(
            folder, algorithm=self.algorithm_name, hyperparameters=self.hyperparameters(), env_id=self.env_id,
            seed=self.seed, num_timesteps=self.num_timesteps, start_time=started, final_evaluation=final,
            final_evaluation_skipped=skipped, env_kwargs=self.env_kwargs, stop_reason=self.stop_reason,
            **self._run_record_extras(),
        )

    def _run_record_extras(self) -> dict[str, Any]:
        """Further fields for ``run.json`` (offline algorithms add their dataset)."""
        return {}

    def evaluate_final(self) -> EvaluationResult:
        """Deterministic evaluation on a fresh copy of the training env, seeded apart from training."""
        if self.env_id is None:
            raise EnvError("the training env has no registered id, so no fresh evaluation env can be made")
        eval_env = make(self.env_id, **self.env_kwargs)
        try:
            return evaluate(
                self, eval_env, n_episodes=max(self.final_eval_episodes, 1), seed=final_evaluation_seed(self.seed)
            )
        finally:
            eval_env.close()

    def predict(
        self,
        observation: np.ndarray,
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Actions for ``observation`` (a single observation or a batch), SB3's signature and semantics."""
        observation = np.asarray(observation)
        shape = self.observation_space.shape
        if observation.shape == shape:
            actions, state = self._predict(observation[None], state, episode_start, deterministic)
            return actions[0], state
        if observation.shape[1:] != shape:
            raise ConfigError(
                f"observation has shape {observation.shape}; expected {shape} or (n_envs, *{shape})"
            )
        return self._predict(observation, state, episode_start, deterministic)

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON values) as currently set."""
        names = [name for name in inspect.signature(type(self).__init__).parameters if name not in RUN_ARGUMENTS]
        values = {name: getattr(self, name) for name in names}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint (directory, or zip if ``path`` ends in ``.zip``) that resumes training exactly."""
        state, groups = self._get_state()
        groups = {**groups, "rng": get_rng_state()}  # type: ignore[dict-item]  # checkpoints take arrays too
        config = {
            "algorithm": self.algorithm_name,
            "cairnrl_version": cairnrl.__version__,
            "hyperparameters": self.hyperparameters(),
            "seed": self.seed,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "num_timesteps": self.num_timesteps,
            "n_updates": self._n_updates,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "state": state,
        }
        return ckpt.save_checkpoint(path, config, groups)

    @classmethod
    def load(cls, path: str | Path, env: GymEnv | None = None, device: str = "auto", **kwargs: Any) -> Self:
        """Rebuild a model from :meth:`save` output; with ``env`` it can continue training.

        ``kwargs`` set run arguments (``tensorboard_log``, ``verbose``, ...), not hyperparameters.
        """
        model, _ = cls._load_checkpoint(path, device, kwargs)
        if env is not None:
            model._attach_env(env, model._n_envs_for_id())
        return model

    @classmethod
    def _load_checkpoint(cls, path: str | Path, device: str, kwargs: dict[str, Any]) -> tuple[Self, dict[str, Any]]:
        """The model rebuilt from a checkpoint (no env attached) and the checkpoint's config."""
        checkpoint = ckpt.load_checkpoint(path)
        config = checkpoint.config
        if config.get("algorithm") != cls.algorithm_name:
            raise CheckpointError(f"{path} holds a {config.get('algorithm')!r} model, not {cls.algorithm_name!r}")
        unknown = set(kwargs) - RUN_ARGUMENTS
        if unknown:
            raise ConfigError(f"load() takes run arguments only; hyperparameters come from the checkpoint: {unknown}")
        try:
            # every subclass takes env
            model = cls(env=None, seed=config["seed"], device=device, **config["hyperparameters"], **kwargs)  # type: ignore[call-arg]
            model.observation_space = space_from_json(config["observation_space"])
            model.action_space = space_from_json(config["action_space"])
            model.env_id = config.get("env_id")
            model.env_kwargs = dict(config.get("env_kwargs") or {})
            model.num_timesteps = int(config["num_timesteps"])
            model._n_updates = int(config.get("n_updates", 0))
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{path}: config.json is missing or has a malformed field ({error})") from error
        model._check_spaces(model.observation_space, model.action_space)
        model._setup_model()
        try:
            model._set_state(config.get("state", {}), checkpoint.groups)
            set_rng_state(checkpoint.group("rng"))
        except (KeyError, RuntimeError, ValueError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(f"{path}: saved state does not fit the model ({error})") from error
        return model, config

    def get_parameters(self) -> dict[str, dict[str, torch.Tensor]]:
        """The ``state_dict`` of every network, keyed by attribute name."""
        return {name: module.state_dict() for name, module in self._modules().items()}

    def set_parameters(self, parameters: dict[str, dict[str, torch.Tensor]], exact_match: bool = True) -> None:
        """Load network weights produced by :meth:`get_parameters`."""
        modules = self._modules()
        if exact_match and set(parameters) != set(modules):
            raise ConfigError(f"parameters cover {sorted(parameters)}, the model has {sorted(modules)}")
        for name, state_dict in parameters.items():
            if name not in modules:
                raise ConfigError(f"unknown network {name!r}; the model has {sorted(modules)}")
            modules[name].load_state_dict(state_dict, strict=exact_match)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {name: value for name, value in vars(self).items() if isinstance(value, torch.nn.Module)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.env_id!r}, seed={self.seed}, num_timesteps={self.num_timesteps})"


def _json_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON-representable part of an env spec's keyword arguments (others cannot be recorded)."""
    return {key: value for key, value in kwargs.items() if is_json_value(value)}


def check_policy(policy: str, allowed: tuple[str, ...] = ("MlpPolicy", "CnnPolicy")) -> str:
    """Validate an SB3-style policy alias."""
    return check_choice("policy", policy, allowed)
