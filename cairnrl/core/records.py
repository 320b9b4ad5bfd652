"""Run records: ``run.json`` next to the TensorBoard events of every logged ``learn``.

A record holds what is needed to reproduce and compare a run without any tracking service: algorithm,
hyperparameters, env id, seed, the command line, cairnrl's version and git commit, the versions of the main
dependencies, start and end times and the final evaluation.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import cairnrl
from cairnrl.core.fileio import atomic_write

_PACKAGES = ("torch", "gymnasium", "stable-baselines3", "numpy")


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(directory: Path | None = None) -> str | None:
    """The commit of the git checkout holding ``directory`` (cairnrl's source by default), or None."""
    where = directory or Path(cairnrl.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def environment_info() -> dict[str, Any]:
    """Versions of Python, cairnrl and the main dependencies, plus the machine."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "cairnrl": cairnrl.__version__}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "git_commit": git_commit(),
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
    }


def write_run_record(directory: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` plus the command line and environment info to ``directory/run.json``."""
    full = {"command": [sys.executable, *sys.argv], **environment_info(), **record}
    text = json.dumps(full, indent=2, sort_keys=True, default=str)
    return atomic_write(Path(directory) / "run.json", lambda temporary: temporary.write_text(text))


def write_training_record(
    directory: str | Path,
    *,
    algorithm: str,
    hyperparameters: dict[str, Any],
    env_id: str | None,
    seed: int,
    num_timesteps: int,
    start_time: str,
    final_evaluation: dict[str, Any] | None,
    final_evaluation_skipped: str | None,
    **extra: Any,
) -> Path:
    """The ``run.json`` of one training run, the same fields for a cairnrl algorithm and an SB3 model: what was
    trained (``algorithm``, ``hyperparameters``, ``env_id``, ``seed``), how far (``num_timesteps``), when
    (``start_time``, and now as ``end_time``) and the final deterministic evaluation, or why it was skipped.
    ``extra`` adds fields of one kind of run (``env_kwargs``, ``stop_reason``, an offline run's dataset)."""
    return write_run_record(directory, {
        "algorithm": algorithm, "hyperparameters": hyperparameters, "env_id": env_id, "seed": seed,
        "num_timesteps": num_timesteps, **extra, "start_time": start_time, "end_time": utc_now(),
        "final_evaluation": final_evaluation, "final_evaluation_skipped": final_evaluation_skipped,
    })
