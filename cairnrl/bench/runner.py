"""The resumable, parallel runner of declared experiments, with one progress bar over the whole suite.

Layout of an output folder::

    OUT/runs/<run_id>/run.json          config, command, seed, git commit, versions, machine, result
    OUT/runs/<run_id>/events.out.tfevents.*, progress.csv, evaluations.csv
    OUT/report/                          summary.json, CSV tables and PNG figures (written by ``summarize``)

Resuming: a run folder appears under its final name only once the run has finished (it is written as
``<run_id>.partial`` and renamed), so a finished run is skipped on the next invocation and an interrupted one
(a left-over ``.partial`` folder) is deleted and started again from scratch.  A finished folder whose recorded
declaration no longer matches the script (a changed budget or hyperparameter) is re-run as well.

Two launchers run the pending runs.  ``local``: with ``workers`` > 1, a pool of child processes on this machine
(``python -m cairnrl.bench.worker``) that import the experiment's module and exchange JSON lines with this process,
so nothing is pickled; with one worker, this process.  ``ray``: Ray tasks on a Ray cluster
(:mod:`cairnrl.bench.ray_launcher`), for suites spread over several machines.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import traceback
from pathlib import Path

from tqdm.auto import tqdm

from cairnrl.bench.execution import PARTIAL, RUNS, execute_run, experiment_reference, finished_record
from cairnrl.bench.experiment import Experiment, RunResult, RunSpec
from cairnrl.bench.ray_launcher import run_on_ray
from cairnrl.exceptions import CairnError, ConfigError

#: How pending runs are launched: a local process pool or Ray tasks.
LAUNCHERS = ("local", "ray")


def load_results(experiment: Experiment, out_dir: str | Path, quick: bool) -> list[RunResult]:
    """Results of every finished run of the suite under ``out_dir`` (runs not finished yet are left out)."""
    runs_dir = Path(out_dir) / RUNS
    results = []
    for spec in experiment.specs(quick):
        record = finished_record(runs_dir / spec.run_id, spec)
        if record is not None:
            results.append(RunResult(spec, record["result"], runs_dir / spec.run_id))
    return results


class _Progress:
    """The suite's progress bar: total planned steps, advanced by every run's progress reports."""

    def __init__(self, specs: list[RunSpec], done: int, enabled: bool, name: str) -> None:
        self._steps = {spec.run_id: spec.steps for spec in specs}
        self._done_steps: dict[str, int] = {}
        self._runs_done, self._runs_total = done, done + len(specs)
        self._bar = tqdm(total=sum(self._steps.values()), unit="step", desc=f"bench {name}", disable=not enabled,
                         dynamic_ncols=True)
        self._bar.set_postfix_str(f"runs {self._runs_done}/{self._runs_total}")

    def update(self, run_id: str, steps: int) -> None:
        steps = min(max(steps, 0), self._steps[run_id])
        delta = steps - self._done_steps.get(run_id, 0)
        if delta > 0:
            self._done_steps[run_id] = steps
            self._bar.update(delta)

    def finish(self, run_id: str) -> None:
        self.update(run_id, self._steps[run_id])
        self._runs_done += 1
        self._bar.set_postfix_str(f"runs {self._runs_done}/{self._runs_total}")

    def close(self) -> None:
        self._bar.close()


def run_experiment(
    experiment: Experiment,
    out_dir: str | Path,
    *,
    quick: bool = False,
    workers: int = 1,
    progress: bool = True,
    command: str = "",
    launcher: str = "local",
    ray_address: str | None = None,
) -> list[RunResult]:
    """Run every unfinished run of the suite and return the results of all of them.

    :param out_dir: the experiment's output folder (runs go to ``out_dir/runs``).
    :param quick: the quick (CI-sized) suite instead of the full one.
    :param workers: runs at a time (capped by ``experiment.max_workers``): local worker processes (1 runs in this
        process) or Ray tasks in flight.
    :param command: the command line that started the suite, recorded in every ``run.json``.
    :param launcher: ``"local"`` (this machine) or ``"ray"`` (Ray tasks; see :mod:`cairnrl.bench.ray_launcher`).
    :param ray_address: the Ray cluster to join (``"auto"``, ``"HOST:PORT"``); None starts a local one.
    :raises CairnError: after all other runs finished, if any run failed (its error is named).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher must be one of {list(LAUNCHERS)}, got {launcher!r}")
    specs = experiment.specs(quick)
    runs_dir = Path(out_dir) / RUNS
    runs_dir.mkdir(parents=True, exist_ok=True)
    for leftover in runs_dir.glob(f"*{PARTIAL}"):
        shutil.rmtree(leftover, ignore_errors=True)  # an interrupted run restarts from scratch
    pending = [spec for spec in specs if finished_record(runs_dir / spec.run_id, spec) is None]
    workers = min(workers, experiment.max_workers or workers, max(len(pending), 1))
    bar = _Progress(pending, len(specs) - len(pending), progress, experiment.name)
    try:
        if launcher == "ray":
            failures = run_on_ray(experiment, pending, runs_dir, quick, workers, bar.finish, command, ray_address)
        elif workers == 1:
            failures = _run_serial(experiment, pending, runs_dir, quick, bar, command)
        else:
            failures = _run_parallel(experiment, pending, runs_dir, quick, workers, bar, command)
    finally:
        bar.close()
    if failures:
        listed = "; ".join(f"{run_id}: {error.strip().splitlines()[-1]}" for run_id, error in failures.items())
        raise CairnError(f"{len(failures)} of {len(specs)} runs of {experiment.name!r} failed ({listed}); "
                         f"their folders were removed, rerun the command to retry them")
    return load_results(experiment, out_dir, quick)


def _run_serial(experiment: Experiment, pending: list[RunSpec], runs_dir: Path, quick: bool,
                bar: _Progress, command: str) -> dict[str, str]:
    failures: dict[str, str] = {}
    for spec in pending:
        try:
            execute_run(experiment, spec, runs_dir, quick, functools.partial(bar.update, spec.run_id), command)
        except Exception:  # one failing run must not lose the others; all failures are reported at the end
            failures[spec.run_id] = traceback.format_exc()  # execute_run has removed its partial folder
        bar.finish(spec.run_id)
    return failures


class _Worker:
    """A ``python -m cairnrl.bench.worker`` child and a thread that forwards its JSON lines to a queue."""

    def __init__(self, index: int, reference: tuple[str, str, str], runs_dir: Path, quick: bool, command: str,
                 messages: queue.Queue) -> None:
        module, root, attribute = reference
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root, *sys.path[1:]])
        # Each of the N workers gets one core's worth of threads (torch reads these at import).
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        argv = [sys.executable, "-m", "cairnrl.bench.worker", module, root, attribute, str(runs_dir),
                "quick" if quick else "full", command]
        self.index = index
        self.current: str | None = None
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                        bufsize=1)
        self._thread = threading.Thread(target=self._forward, args=(messages,), daemon=True)
        self._thread.start()

    def _forward(self, messages: queue.Queue) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                messages.put((self.index, json.loads(line)))
            except json.JSONDecodeError:
                continue
        messages.put((self.index, {"event": "exit"}))

    def send(self, spec: RunSpec) -> None:
        assert self.process.stdin is not None
        self.current = spec.run_id
        self.process.stdin.write(json.dumps(spec.to_json()) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _run_parallel(experiment: Experiment, pending: list[RunSpec], runs_dir: Path, quick: bool, n_workers: int,
                  bar: _Progress, command: str) -> dict[str, str]:
    reference = experiment_reference(experiment)
    messages: queue.Queue = queue.Queue()
    workers = [_Worker(i, reference, runs_dir, quick, command, messages) for i in range(n_workers)]
    todo = list(reversed(pending))
    failures: dict[str, str] = {}
    alive = {worker.index for worker in workers}
    try:
        while True:
            for worker in workers:
                if worker.index in alive and worker.current is None and todo:
                    worker.send(todo.pop())
            if not any(worker.current for worker in workers):
                break
            index, message = messages.get()
            worker = workers[index]
            event = message.get("event")
            if event == "progress" and message.get("run_id") == worker.current:
                bar.update(worker.current, int(message["steps"]))
            elif event in ("done", "failed") and message.get("run_id") == worker.current:
                if event == "failed":
                    failures[worker.current] = str(message.get("error", "unknown error"))
                bar.finish(worker.current)
                worker.current = None
            elif event == "exit":
                alive.discard(index)
                if worker.current is not None:
                    failures[worker.current] = f"worker process exited with code {worker.process.wait()}"
                    shutil.rmtree(runs_dir / f"{worker.current}{PARTIAL}", ignore_errors=True)
                    bar.finish(worker.current)
                    worker.current = None
        for spec in todo:
            failures[spec.run_id] = "not run: every worker process exited"
    finally:
        for worker in workers:
            worker.close()
    return failures
