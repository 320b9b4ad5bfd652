"""d3rlpy's BC, IQL, CQL and TD3+BC as offline peers of cairnrl's, run in their own virtual env.

d3rlpy 2.8.1 pins ``gymnasium==1.0.0`` (and needs the old ``gym``), which cairnrl's stack (gymnasium 1.4) cannot
share, so it lives in an isolated virtual env made by :func:`ensure_d3rlpy_env`: a clean venv (no
``--system-site-packages``, which would let our gymnasium and cairnrl leak in) with the torch release of the
running interpreter, the pinned d3rlpy, ``gymnasium[mujoco]==1.0.0`` and the same ``mujoco`` release as ours, so
both sides train with the same torch and evaluation episodes run the same dynamics the datasets were collected
with.

:func:`run_d3rlpy` exports a :class:`cairnrl.data.Dataset` to a flat D4RL ``.npz``, runs
``cairnrl/bench/d3rlpy_worker.py`` with the venv's python (it imports d3rlpy, never cairnrl) and reads back
numbers only, as JSON: d3rlpy's models are pickles and are never saved nor loaded.  Evaluation episode seeds are
derived here with :func:`cairnrl.core.seeding.spawn_seeds`, and the D4RL normalised score is computed here
with :func:`cairnrl.data.normalized_score`, so both sides of a comparison are scored by the same code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cairnrl.bench.locking import exclusive_lock
from cairnrl.core.fileio import atomic_write
from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.validation import check_choice, check_int
from cairnrl.data.dataset import Dataset
from cairnrl.data.scores import normalized_score, reference_key
from cairnrl.exceptions import ConfigError, EnvError, PeerError

ALGORITHMS = ("bc", "iql", "cql", "td3bc")
#: d3rlpy's settings when it stands next to cairnrl on MuJoCo data (overrides of its defaults, which have no
#: preprocessing): batch 256 as ours, plus what each paper prescribes and d3rlpy's own reproduction scripts add.
#: IQL: rewards x 1000 / (max - min episode return); TD3+BC: standardised states; BC: learning rate 3e-4 as ours.
MUJOCO_PEER_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "iql": {"batch_size": 256, "reward_scaler_multiplier": 1000.0},
    "td3bc": {"batch_size": 256, "observation_scaler": "standard"},
    "bc": {"batch_size": 256, "learning_rate": 3e-4},
}
D3RLPY_VERSION = "2.8.1"
GYMNASIUM_VERSION = "1.0.0"  # what d3rlpy 2.8.1 pins
VENV_VARIABLE = "CAIRNRL_D3RLPY_VENV"
DEFAULT_VENV = Path("~/.cache/cairnrl/venvs/d3rlpy")
MARKER = "cairnrl-peer.json"  # written last: a venv without it (interrupted install) is completed on next use
WORKER = Path(__file__).with_name("d3rlpy_worker.py")
D4RL_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
_EVAL_SEED_KEY = 0xD3E7A1
_PIP_TAIL_LINES = 8
_WORKER_TAIL_LINES = 8


# ------------------------------------------------------------------------------------------------- the venv


def venv_path(path: str | Path | None = None) -> Path:
    """``path``, else ``$CAIRNRL_D3RLPY_VENV``, else ``~/.cache/cairnrl/venvs/d3rlpy`` (absolute)."""
    chosen = path if path is not None else os.environ.get(VENV_VARIABLE) or DEFAULT_VENV
    return Path(chosen).expanduser().resolve()


def venv_python(path: Path) -> Path:
    """The python executable of the virtual env at ``path``."""
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def torch_requirement() -> str:
    """``torch==X.Y.Z``: the release of the running interpreter's torch, without a local build tag such as ``+cpu``
    (pip picks the build of that release for the venv's platform)."""
    return f"torch=={torch.__version__.split('+', 1)[0]}"


def requirements() -> list[str]:
    """What the venv gets: our torch release, d3rlpy, gymnasium with MuJoCo, and our ``mujoco`` release when we
    have one."""
    pinned = [torch_requirement(), f"d3rlpy=={D3RLPY_VERSION}", f"gymnasium[mujoco]=={GYMNASIUM_VERSION}"]
    try:
        pinned.append(f"mujoco=={metadata.version('mujoco')}")
    except metadata.PackageNotFoundError:
        pass
    return pinned


def _clean_environment() -> dict[str, str]:
    """Our environment without what would leak our packages into the venv, one thread per library."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", NO_COLOR="1")
    return env


def _tail(text: str, lines: int) -> str:
    """The last non-blank ``lines`` of ``text`` on one line (the harness shows an error's last line only)."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def _run(command: list[str], what: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=_clean_environment(), timeout=timeout,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PeerError(f"{what} failed: {error}") from error
    if result.returncode != 0:
        raise PeerError(f"{what} failed (exit {result.returncode}); last lines: "
                        f"{_tail(result.stdout + result.stderr, _PIP_TAIL_LINES)}")
    return result




def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def ensure_d3rlpy_env(path: str | Path | None = None, *, torch_fallback: bool = False,
                      timeout: float = 1800.0) -> Path:
    """Create (once; reused after) the isolated virtual env for d3rlpy and return its python.

    :param path: where the venv lives (see :func:`venv_path` for the default and ``$CAIRNRL_D3RLPY_VENV``).
    :param torch_fallback: if installing our torch release fails (none for the venv's platform), retry with
        whatever ``torch`` pip picks.
    :param timeout: seconds allowed for each of venv creation, each pip install and the import check.
    :raises PeerError: naming the step that failed (venv creation, pip install, import check) with the last
        lines of its output.
    :raises ConfigError: when ``path`` exists and is neither empty nor a virtual env.
    """
    where = venv_path(path)
    python = venv_python(where)
    wanted = requirements()
    marker = _read_marker(where)
    if marker is not None and marker.get("requirements") == wanted and python.is_file():
        return python
    with exclusive_lock(where.parent / f".{where.name}.lock"):
        marker = _read_marker(where)  # another process may have finished it while we waited
        if marker is not None and marker.get("requirements") == wanted and python.is_file():
            return python
        if where.exists() and any(where.iterdir()) and not (where / "pyvenv.cfg").is_file():
            raise ConfigError(f"{where} exists and is not a virtual env; point {VENV_VARIABLE} (or path) at an "
                              "empty or missing folder, or at a venv made for the d3rlpy peer")
        if not python.is_file():
            _run([sys.executable, "-m", "venv", str(where)], f"creating the virtual env {where}", timeout)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        try:
            _run([*pip, *wanted], f"pip install {' '.join(wanted)} into {where}", timeout)
        except PeerError:
            if not torch_fallback:
                raise
            wanted = [item if not item.startswith("torch") else "torch" for item in wanted]
            _run([*pip, *wanted], f"pip install {' '.join(wanted)} into {where}", timeout)
        probe = ("import json, d3rlpy, gymnasium, torch; print(json.dumps({'d3rlpy': d3rlpy.__version__, "
                 "'gymnasium': gymnasium.__version__, 'torch': torch.__version__}))")
        check = _run([str(python), "-I", "-c", probe], f"importing d3rlpy in {where}", timeout)
        versions = json.loads(check.stdout.strip().splitlines()[-1])
        (where / MARKER).write_text(json.dumps({"requirements": requirements(), "installed": wanted,
                                                "versions": versions}, indent=1))
    return python


# ------------------------------------------------------------------------------------------------ the data


def export_d4rl_npz(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` as a plain ``.npz`` of the six flat D4RL arrays the worker reads.

    Row ``i`` is step ``i`` of the dataset: ``observations`` / ``next_observations`` are the observation before
    and after it (so every episode's final observation survives), ``terminals`` its termination and ``timeouts``
    its truncation, set also on an episode's last step when that step carries no flag (a collection cut short),
    so every episode ends with a flag (:meth:`Dataset.to_d4rl`).  Infos and metadata are not exported.
    """
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"dataset must be a cairnrl.data.Dataset, got {type(dataset).__name__}")
    arrays = dataset.to_d4rl()
    path = Path(path)
    flat = {key: np.ascontiguousarray(arrays[key]) for key in D4RL_KEYS}
    return atomic_write(path, lambda temporary: np.savez(temporary, **flat), suffix=".npz")  # type: ignore[arg-type]


def eval_seeds(seed: int, n: int) -> list[int]:
    """Reset seeds of the ``n`` evaluation episodes of a run with master ``seed`` (fixed, SeedSequence-derived)."""
    return spawn_seeds(check_seed(seed), check_int("eval_episodes", n, minimum=1), key=_EVAL_SEED_KEY)


def _check_env(env_id: object, dataset: Dataset) -> str:
    import gymnasium as gym

    if not isinstance(env_id, str) or not env_id.strip():
        raise ConfigError(f"env_id must be a non-empty Gymnasium id such as 'Hopper-v5', got {env_id!r}")
    if env_id.startswith("cairnrl/"):
        raise EnvError(f"env_id {env_id!r} is a cairnrl env, which the d3rlpy venv cannot make; use a Gymnasium id")
    try:
        env = gym.make(env_id)
    except gym.error.Error as error:
        raise EnvError(f"cannot make env {env_id!r} for the d3rlpy peer: {error}") from error
    try:
        observation_space, action_space = env.observation_space, env.action_space
    finally:
        env.close()
    if not isinstance(action_space, gym.spaces.Box):
        raise EnvError(f"env {env_id!r} has action space {action_space}; the d3rlpy peer runs continuous (Box) "
                       "action spaces only")
    for what, space, data_space in (("observation", observation_space, dataset.observation_space),
                                    ("action", action_space, dataset.action_space)):
        if tuple(space.shape or ()) != tuple(data_space.shape or ()):
            raise ConfigError(f"the dataset's {what} shape {data_space.shape} does not match env {env_id!r}'s "
                              f"{space.shape}")
    return env_id


def _check_hyperparameters(hyperparameters: object) -> dict[str, Any]:
    if hyperparameters is None:
        return {}
    if not isinstance(hyperparameters, dict) or not all(isinstance(key, str) for key in hyperparameters):
        raise ConfigError(f"hyperparameters must be a dict with string keys, got {hyperparameters!r}")
    try:
        return json.loads(json.dumps(hyperparameters, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"hyperparameters must be JSON values (numbers, strings, booleans): {error}") from error


def _normalized(env_id: str, returns: list[float]) -> tuple[list[float] | None, float | None]:
    try:
        reference_key(env_id)
    except ConfigError:
        return None, None  # no D4RL reference scores for this env: raw returns only
    scores = np.atleast_1d(normalized_score(env_id, returns))
    return [float(score) for score in scores], float(normalized_score(env_id, float(np.mean(returns))))


# ------------------------------------------------------------------------------------------------- the run


def run_d3rlpy(
    algorithm: str,
    dataset: Dataset,
    env_id: str,
    n_steps: int,
    seed: int,
    eval_episodes: int,
    out_dir: str | Path,
    hyperparameters: dict[str, Any] | None = None,
    python: str | Path | None = None,
    *,
    n_steps_per_epoch: int | None = None,
    progress: Callable[[int], None] | None = None,
    timeout: float | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train d3rlpy's ``algorithm`` on ``dataset`` for ``n_steps`` gradient steps, then evaluate it on ``env_id``.

    d3rlpy's own default hyperparameters are used (what a d3rlpy user gets), overridden by the scalar entries of
    ``hyperparameters`` (e.g. ``{"batch_size": 256, "expectile": 0.9}``; unknown names fail in the worker).

    :param algorithm: ``"bc"``, ``"iql"``, ``"cql"`` or ``"td3bc"`` (d3rlpy's TD3PlusBC).
    :param env_id: the Gymnasium id to evaluate on (the dataset's spaces must match it).
    :param seed: master seed: d3rlpy's seed and, through :func:`eval_seeds`, the evaluation episodes' seeds.
    :param eval_episodes: deterministic evaluation episodes, one per derived reset seed.
    :param out_dir: receives ``job.json``, ``result.json`` and ``worker.log`` (the exported ``.npz`` is removed).
    :param python: the venv's python; default :func:`ensure_d3rlpy_env` (created on first use).
    :param n_steps_per_epoch: d3rlpy's epoch (losses are averaged per epoch); must divide ``n_steps``;
        default ``n_steps`` (one epoch).
    :param progress: called with the gradient steps done after every epoch.
    :param timeout: seconds before the worker is killed (default: none).
    :param device: ``"cpu"`` or ``"cuda"`` (d3rlpy's first GPU): where d3rlpy trains.
    :returns: the worker's result (``eval_returns``, ``eval_lengths``, ``eval_seeds``, ``fit_seconds``,
        ``updates_per_second``, ``epochs`` with the mean losses, d3rlpy's full ``config``, ``versions``) plus
        ``mean_return``, ``normalized_returns`` and ``normalized_mean`` (D4RL score of the mean return; None
        for envs without reference scores) and ``wall_time_s`` (including the worker's start).
    :raises PeerError: when the venv cannot be made or the worker fails (its last output lines are quoted).
    """
    job = _training_job(algorithm, dataset, n_steps, seed, hyperparameters, n_steps_per_epoch, device)
    eval_episodes = check_int("eval_episodes", eval_episodes, minimum=1)
    env_id = _check_env(env_id, dataset)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    python = _venv_python(python)
    job.update(env_id=env_id, eval_seeds=eval_seeds(job["seed"], eval_episodes))
    job_path, data_path, result_path, log_path = (out / "job.json", out / "dataset.npz", out / "result.json",
                                                  out / "worker.log")
    job_path.write_text(json.dumps(job, indent=1))
    result_path.unlink(missing_ok=True)
    clock = time.perf_counter()
    try:
        export_d4rl_npz(dataset, data_path)
        code = _run_worker([str(python), "-I", str(WORKER), "--config", str(job_path), "--data", str(data_path),
                            "--out", str(result_path)], log_path, progress, timeout)
    finally:
        data_path.unlink(missing_ok=True)
    if code != 0 or not result_path.is_file():
        raise PeerError(f"the d3rlpy {algorithm} worker failed (exit {code}) on {env_id} (log {log_path}); last "
                        f"lines: {_tail(log_path.read_text(errors='replace'), _WORKER_TAIL_LINES)}")
    result = json.loads(result_path.read_text())
    returns = [float(value) for value in result["eval_returns"]]
    if len(returns) != eval_episodes:
        raise PeerError(f"the d3rlpy worker returned {len(returns)} evaluation returns, expected {eval_episodes}")
    result["mean_return"] = float(np.mean(returns))
    result["normalized_returns"], result["normalized_mean"] = _normalized(env_id, returns)
    result["wall_time_s"] = time.perf_counter() - clock
    return result


class ServedPolicy:
    """Deterministic actions of a trained d3rlpy policy that stays in its worker process (:func:`serve_d3rlpy`).

    Call it with one observation or a batch (rows); it returns float32 actions of the same leading shape.
    ``result`` holds the worker's numbers (``updates_per_second``, ``fit_seconds``, ``epochs``, ...) once the
    ``with`` block has ended.
    """

    def __init__(self, process: subprocess.Popen, observation_dim: int, progress: Callable[[int], None] | None,
                 stray: list[str]) -> None:
        self._process, self._observation_dim, self._progress, self._stray = process, observation_dim, progress, stray
        self.result: dict[str, Any] | None = None

    def _next(self, event: str) -> dict[str, Any]:
        """The next protocol message, which must be ``event`` (progress lines are forwarded on the way)."""
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                self._stray.append(line)
                continue
            if isinstance(message, dict) and message.get("event") == "progress":
                if self._progress is not None:
                    self._progress(int(message["steps"]))
                continue
            if isinstance(message, dict) and message.get("event") == event:
                return message
            raise PeerError(f"the d3rlpy worker sent {str(message)[:200]!r} where {event!r} was expected")
        raise PeerError(f"the d3rlpy worker ended before sending {event!r}")

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        rows = np.asarray(observations, dtype=np.float32)
        single = rows.ndim == 1
        if rows.ndim not in (1, 2) or rows.shape[-1] != self._observation_dim:
            raise ConfigError(f"observations must be one row or a batch of rows of {self._observation_dim} values "
                              f"(the dataset's), got shape {rows.shape}")
        rows = rows.reshape(-1, self._observation_dim)
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(rows.astype(np.float64).tolist()) + "\n")
        self._process.stdin.flush()
        actions = np.asarray(self._next("actions")["actions"], dtype=np.float32)
        return actions[0] if single else actions


@contextmanager
def serve_d3rlpy(
    algorithm: str,
    dataset: Dataset,
    n_steps: int,
    seed: int,
    out_dir: str | Path,
    hyperparameters: dict[str, Any] | None = None,
    python: str | Path | None = None,
    *,
    n_steps_per_epoch: int | None = None,
    progress: Callable[[int], None] | None = None,
    device: str = "cpu",
) -> Iterator[ServedPolicy]:
    """Train d3rlpy's ``algorithm`` like :func:`run_d3rlpy`, then keep the worker alive to act, for envs the venv
    cannot make (cairnrl's own): the caller runs the episodes with the yielded :class:`ServedPolicy`.

    ::

        with serve_d3rlpy("cql", dataset, 20_000, seed=0, out_dir="runs/cql") as policy:
            action = policy(observation)
        policy.result["updates_per_second"]

    Arguments as :func:`run_d3rlpy`'s.  The worker exits when the block ends (its ``result.json`` is then read
    into ``policy.result``); an error inside the block kills it.
    :raises PeerError: when the worker fails, exits early or breaks the protocol.
    """
    job = _training_job(algorithm, dataset, n_steps, seed, hyperparameters, n_steps_per_epoch, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    python = _venv_python(python)
    job.update(env_id=None, eval_seeds=[], serve=True)
    job_path, data_path, result_path, log_path = (out / "job.json", out / "dataset.npz", out / "result.json",
                                                  out / "worker.log")
    job_path.write_text(json.dumps(job, indent=1))
    result_path.unlink(missing_ok=True)
    export_d4rl_npz(dataset, data_path)
    stray: list[str] = []
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(python), "-I", str(WORKER), "--config", str(job_path), "--data", str(data_path),
             "--out", str(result_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=_clean_environment(),
        )
        policy = ServedPolicy(process, int(np.prod(dataset.observations.shape[1:])), progress, stray)
        try:
            try:
                policy._next("serving")
            finally:
                data_path.unlink(missing_ok=True)
            yield policy
            assert process.stdin is not None
            process.stdin.close()
            for line in process.stdout or ():
                stray.append(line)
            code = process.wait()
        except PeerError as error:
            process.kill()
            process.wait()
            log.flush()
            raise PeerError(f"{error} (log {log_path}); last lines: "
                            f"{_tail(log_path.read_text(errors='replace'), _WORKER_TAIL_LINES)}") from None
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            log.write("".join(stray[-_WORKER_TAIL_LINES:]))
    if code != 0 or not result_path.is_file():
        raise PeerError(f"the d3rlpy {algorithm} worker failed (exit {code}) while serving (log {log_path}); last "
                        f"lines: {_tail(log_path.read_text(errors='replace'), _WORKER_TAIL_LINES)}")
    policy.result = json.loads(result_path.read_text())


def _training_job(algorithm: str, dataset: Dataset, n_steps: int, seed: int, hyperparameters: dict[str, Any] | None,
                  n_steps_per_epoch: int | None, device: str) -> dict[str, Any]:
    """The validated training part of a worker job (``env_id`` and ``eval_seeds`` are added by the caller)."""
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"dataset must be a cairnrl.data.Dataset, got {type(dataset).__name__}")
    n_steps = check_int("n_steps", n_steps, minimum=1)
    seed = check_seed(seed)
    per_epoch = n_steps if n_steps_per_epoch is None else check_int("n_steps_per_epoch", n_steps_per_epoch, minimum=1)
    if n_steps % per_epoch:
        raise ConfigError(f"n_steps_per_epoch must divide n_steps ({n_steps}), got {per_epoch}")
    overrides = _check_hyperparameters(hyperparameters)
    device = check_choice("device", device, ("cpu", "cuda"))
    return {"algorithm": algorithm, "n_steps": n_steps, "n_steps_per_epoch": per_epoch, "seed": seed,
            "hyperparameters": overrides, "device": f"{device}:0"}


def _venv_python(python: str | Path | None) -> Path:
    """``python`` if it exists, else the d3rlpy venv's (created on first use)."""
    if python is None:
        return ensure_d3rlpy_env()
    if not Path(python).is_file():
        raise ConfigError(f"python {python} does not exist; pass the d3rlpy venv's python or None to create it")
    return Path(python)


def _run_worker(command: list[str], log_path: Path, progress: Callable[[int], None] | None,
                timeout: float | None) -> int:
    """Run the worker, forwarding its progress lines; stderr (and any stray stdout) goes to ``log_path``.

    Returns the exit code (negative when killed, e.g. by the ``timeout``).
    """
    stray: list[str] = []
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=_clean_environment())
        killed: list[bool] = []

        def kill() -> None:
            killed.append(True)
            process.kill()

        timer = threading.Timer(timeout, kill) if timeout is not None else None
        if timer is not None:
            timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    stray.append(line)
                    continue
                if isinstance(message, dict) and message.get("event") == "progress" and progress is not None:
                    progress(int(message["steps"]))
            code = process.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        log.write("".join(stray[-_WORKER_TAIL_LINES:]))
        if killed:
            log.write(f"\nkilled: the {timeout} s timeout passed\n")
    return code
