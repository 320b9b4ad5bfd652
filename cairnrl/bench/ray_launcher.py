"""Benchmark runs as Ray tasks, for suites spread over several machines (``cairnrl bench NAME --launcher ray``).

Each pending run becomes one Ray task needing one CPU; at most ``workers`` tasks are in flight, and Ray places
them on the cluster's nodes.  ``address`` is handed to :func:`ray.init`: ``None`` starts a local Ray instance
(or joins the cluster ``RAY_ADDRESS`` names, as Ray does), ``"auto"`` or ``"HOST:PORT"`` joins a running cluster
(``ray start --head`` on one machine, ``ray start --address HOST:PORT`` on the others).

What every node needs: cairnrl and the suite's own dependencies installed, and the suites folder and the output
folder at the same paths as on this machine (a shared filesystem, as on most clusters), since a task imports the
benchmark script by module name and writes its run folder where this process reads it.  A task gets the run's
declaration as JSON and returns only ``{}`` or ``{"error": traceback}``; the results are the ``run.json`` files.
Progress is counted per finished run.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cairnrl.bench.execution import PARTIAL, execute_run, experiment_reference, load_experiment_reference
from cairnrl.bench.experiment import Experiment, RunSpec
from cairnrl.exceptions import ConfigError


def run_task(reference: tuple[str, str, str], spec: dict[str, Any], runs_dir: str, quick: bool,
             command: str) -> dict[str, str]:
    """The body of one Ray task: run ``spec`` into ``runs_dir``; ``{"error": traceback}`` if it failed."""
    experiment = load_experiment_reference(*reference)
    run = RunSpec.from_json(spec)
    try:
        execute_run(experiment, run, Path(runs_dir), quick, lambda steps: None, command)
    except Exception:  # reported to the driver, which lists every failed run at the end
        shutil.rmtree(Path(runs_dir) / f"{run.run_id}{PARTIAL}", ignore_errors=True)
        return {"error": traceback.format_exc()}
    return {}


def run_on_ray(experiment: Experiment, pending: list[RunSpec], runs_dir: Path, quick: bool, workers: int,
               finished: Callable[[str], None], command: str, address: str | None) -> dict[str, str]:
    """Run ``pending`` as Ray tasks, ``workers`` at a time; returns ``{run_id: error}`` of the failed runs.

    ``finished(run_id)`` is called as each run ends.  A Ray instance this call starts is shut down at the end; one
    already initialised in this process is used as it is (``address`` is then ignored).
    """
    if not pending:
        return {}
    try:
        import ray  # optional: the bench extra installs it
    except ImportError as error:
        raise ConfigError("the ray launcher needs Ray: pip install 'cairnrl[bench]' (or pip install ray)") from error
    reference = experiment_reference(experiment)
    runs_dir = runs_dir.resolve()  # the tasks' working directory is Ray's, not this process's
    started = not ray.is_initialized()
    if started:
        if address is None:  # a new local instance, without the dashboard it does not need
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
        else:  # a running cluster refuses options that would configure it
            ray.init(address=address, logging_level=logging.WARNING)
    task = ray.remote(num_cpus=1)(run_task)
    todo = list(reversed(pending))
    in_flight: dict[Any, RunSpec] = {}
    failures: dict[str, str] = {}
    try:
        while todo or in_flight:
            while todo and len(in_flight) < workers:
                spec = todo.pop()
                in_flight[task.remote(reference, spec.to_json(), str(runs_dir), quick, command)] = spec
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                spec = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as error:  # the task's worker or node died
                    shutil.rmtree(runs_dir / f"{spec.run_id}{PARTIAL}", ignore_errors=True)
                    outcome = {"error": f"Ray task failed: {error}"}
                if "error" in outcome:
                    failures[spec.run_id] = outcome["error"]
                finished(spec.run_id)
    finally:
        if started:
            ray.shutdown()
    return failures
