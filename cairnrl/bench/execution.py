"""One run of a declared experiment into its folder, and how another process finds the experiment again.

A run folder appears under its final name only once the run has finished: it is written as ``<run_id>.partial``
and renamed, so a finished run is recognised by its name and its ``run.json`` (whose fingerprint must match the
declaration), and a left-over ``.partial`` folder is an interrupted run.  Worker processes (the local pool's and
Ray's) import the experiment by ``(module, import root, attribute)``, so nothing but JSON crosses processes.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cairnrl.bench.experiment import Experiment, RunContext, RunSpec
from cairnrl.core.fileio import atomic_write
from cairnrl.core.records import utc_now, write_run_record
from cairnrl.exceptions import ConfigError

RUNS = "runs"
PARTIAL = ".partial"


def experiment_reference(experiment: Experiment) -> tuple[str, str, str]:
    """``(module name, import root, attribute)`` under which a worker process finds ``experiment``."""
    for module in list(sys.modules.values()):
        try:
            attributes = vars(module)
        except TypeError:
            continue
        for attribute, value in list(attributes.items()):
            if value is experiment:
                spec = getattr(module, "__spec__", None)
                name = spec.name if spec is not None else module.__name__
                file = getattr(module, "__file__", None)
                if name == "__main__" or file is None:
                    continue
                depth = len(name.split("."))
                root = Path(file).resolve().parents[depth - 1]
                if Path(file).name == "__init__.py":
                    root = root.parent
                return name, str(root), attribute
    raise ConfigError(f"experiment {experiment.name!r} is not a module-level name of an importable module; "
                      "declare it as EXPERIMENT = Experiment(...) in a module so workers can import it")


def load_experiment_reference(module_name: str, root: str, attribute: str) -> Experiment:
    """Import ``module_name`` (with ``root`` on ``sys.path``) and return its experiment ``attribute``."""
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(module_name)
    experiment = getattr(module, attribute, None)
    if not isinstance(experiment, Experiment):
        raise ConfigError(f"{module_name}.{attribute} is not a cairnrl.bench.Experiment")
    return experiment


def execute_run(experiment: Experiment, spec: RunSpec, runs_dir: Path, quick: bool,
                progress: Callable[[int], None], command: str = "") -> Path:
    """Run ``spec`` into ``runs_dir/<run_id>.partial``, record ``run.json`` and rename the folder when done."""
    def run(partial: Path) -> None:
        partial.mkdir(parents=True)
        _run_into(experiment, spec, partial, quick, progress, command)

    return atomic_write(runs_dir / spec.run_id, run, temporary=runs_dir / f"{spec.run_id}{PARTIAL}")


def _run_into(experiment: Experiment, spec: RunSpec, partial: Path, quick: bool,
              progress: Callable[[int], None], command: str) -> None:
    started, clock = utc_now(), time.perf_counter()
    result = experiment.execute(spec, RunContext(partial, progress, quick))
    if not isinstance(result, dict):
        raise ConfigError(f"{experiment.name}.execute must return a dict, got {type(result).__name__}")
    write_run_record(partial, {
        "experiment": experiment.name, "mode": "quick" if quick else "full", "run_id": spec.run_id,
        "bench_command": command,
        "spec": spec.to_json(), "fingerprint": spec.fingerprint, "algorithm": spec.algorithm,
        "task": spec.task, "seed": spec.seed, "hyperparameters": spec.config, "start_time": started,
        "end_time": utc_now(), "wall_time_s": time.perf_counter() - clock, "result": result, "status": "finished",
    })


def finished_record(run_dir: Path, spec: RunSpec) -> dict[str, Any] | None:
    """The run's ``run.json`` if it finished with the same declaration, else None."""
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("status") != "finished" or record.get("fingerprint") != spec.fingerprint:
        return None
    return record
