"""Declared experiments: what a benchmark runs (:class:`RunSpec`), how one run executes and how results are summarised.

A benchmark script in a suites folder (:mod:`cairnrl.bench.suites`) declares its env set, seeds, budgets, baselines
and hyperparameters at the top of the file and ends with ``EXPERIMENT = Experiment(...)``.  The harness
(:mod:`cairnrl.bench.runner`) turns it into run folders, one per :class:`RunSpec`, each holding ``run.json``
(config, command, seed, git commit, package versions, machine; written with
:func:`cairnrl.core.records.write_run_record`), TensorBoard events and ``evaluations.csv``, in the spirit of Open RL
Benchmark's tracked runs (Huang et al., arXiv 2402.03046).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairnrl.core.seeding import check_seed
from cairnrl.exceptions import ConfigError

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.=,+-]+")


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: an algorithm (configuration) on a task with a seed.

    :param task: task name (as the experiment declares it).
    :param algorithm: the algorithm's label; configurations of one family (hyperparameter grid points) get
        distinct labels such as ``"sb3-ppo[n_steps=1280]"``.
    :param seed: the run's master seed.
    :param config: everything the experiment's ``execute`` needs, as JSON values; it is recorded in ``run.json``
        and its hash decides whether a finished run folder still matches the declaration.
    :param steps: planned env steps (or any work unit) for the suite's progress bar.
    :param family: the algorithm family (``"sqirl"``, ``"sb3-ppo"``); defaults to ``algorithm``.
    """

    task: str
    algorithm: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    steps: int = 1
    family: str = ""

    def __post_init__(self) -> None:
        _check_name("task", self.task)
        _check_name("algorithm", self.algorithm)
        check_seed(self.seed)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {self.steps!r}")
        if not isinstance(self.config, dict):
            raise ConfigError(f"config must be a dict of JSON values, got {type(self.config).__name__}")
        try:
            json.dumps(self.config, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"config of run {self.task}/{self.algorithm} is not JSON-serialisable: {error}"
            ) from error
        if not self.family:
            object.__setattr__(self, "family", self.algorithm)

    @property
    def run_id(self) -> str:
        """Folder name of the run: ``task__algorithm__seedN`` with unsafe characters replaced."""
        return _SAFE_NAME.sub("_", f"{self.task}__{self.algorithm}__seed{self.seed}")

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the declaration; a finished run is reused only if it matches."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """A JSON dict that :meth:`from_json` turns back into an equal spec."""
        return {"task": self.task, "algorithm": self.algorithm, "seed": self.seed, "config": self.config,
                "steps": self.steps, "family": self.family}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_json`."""
        try:
            return cls(task=data["task"], algorithm=data["algorithm"], seed=data["seed"], config=data["config"],
                       steps=data["steps"], family=data["family"])
        except (KeyError, TypeError) as error:
            raise ConfigError(f"malformed run spec {data!r}: {error}") from error


class RunContext:
    """What a running ``execute`` gets from the harness: its folder, a progress hook and the evaluations CSV."""

    EVALUATIONS = "evaluations.csv"

    def __init__(self, run_dir: Path, progress: Callable[[int], None], quick: bool) -> None:
        self.run_dir = run_dir
        self.quick = quick
        self._progress = progress

    def progress(self, steps_done: int) -> None:
        """Report how many of the run's planned ``steps`` are done (drives the suite's progress bar)."""
        self._progress(int(steps_done))

    def write_evaluation(self, row: dict[str, Any]) -> None:
        """Append one row to ``evaluations.csv`` (the header comes from the first row's keys)."""
        path = self.run_dir / self.EVALUATIONS
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def sb3_logger(self):
        """An SB3 logger writing TensorBoard events and ``progress.csv`` into the run folder."""
        from stable_baselines3.common.logger import configure  # SB3 loads only for runs that log through it

        return configure(str(self.run_dir), ["tensorboard", "csv"])


@dataclass(frozen=True)
class RunResult:
    """A finished run: its spec, what ``execute`` returned, and its folder."""

    spec: RunSpec
    result: dict[str, Any]
    run_dir: Path

    def evaluations(self) -> list[dict[str, str]]:
        """Rows of the run's ``evaluations.csv`` (empty if it wrote none)."""
        path = self.run_dir / RunContext.EVALUATIONS
        if not path.exists():
            return []
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))


@dataclass
class Summary:
    """What an experiment's ``summarize`` produced: a markdown section and the files it wrote.

    :param markdown: the body of the experiment's section in BENCHMARKS.md; figures are referenced by the
        placeholder ``{figures}/NAME.png`` so the section works wherever the files are published.
    :param files: names of the files written into the report folder (CSV tables, PNG figures).
    :param numbers: the headline numbers as JSON values (also stored in ``summary.json``).
    """

    markdown: str
    files: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A declared benchmark experiment.

    :param name: the name ``cairnrl bench NAME`` uses.
    :param description: one line for ``cairnrl bench --list`` and BENCHMARKS.md.
    :param runs: ``runs(quick) -> [RunSpec]``: the suite in quick (minutes) or full mode.
    :param execute: ``execute(spec, context) -> dict``: performs one run, writing TensorBoard events and
        ``evaluations.csv`` into ``context.run_dir``; the JSON dict it returns is stored in ``run.json``.
    :param summarize: ``summarize(results, report_dir, quick) -> Summary``: aggregates, tables and plots.
    :param max_workers: upper bound on parallel workers (1 for timing benchmarks, whose runs must not overlap).
    """

    name: str
    description: str
    runs: Callable[[bool], list[RunSpec]]
    execute: Callable[[RunSpec, RunContext], dict[str, Any]]
    summarize: Callable[[list[RunResult], Path, bool], Summary]
    max_workers: int | None = None

    def __post_init__(self) -> None:
        _check_name("name", self.name)
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ConfigError(f"experiment name must be lower-case letters, digits and '_', got {self.name!r}")
        for name in ("runs", "execute", "summarize"):
            if not callable(getattr(self, name)):
                raise ConfigError(f"Experiment.{name} must be callable")
        if self.max_workers is not None and (not isinstance(self.max_workers, int) or self.max_workers < 1):
            raise ConfigError(f"max_workers must be None or a positive integer, got {self.max_workers!r}")

    def specs(self, quick: bool) -> list[RunSpec]:
        """The suite's runs, checked for duplicate run ids."""
        specs = list(self.runs(quick))
        if not specs:
            raise ConfigError(f"experiment {self.name!r} declares no runs")
        seen: dict[str, RunSpec] = {}
        for spec in specs:
            if not isinstance(spec, RunSpec):
                raise ConfigError(f"experiment {self.name!r}: runs() must return RunSpec objects, got {spec!r}")
            if spec.run_id in seen:
                raise ConfigError(f"experiment {self.name!r} declares run {spec.run_id!r} twice")
            seen[spec.run_id] = spec
        return specs


def scale_from_environment(variable: str, quick: bool, choices: tuple[str, ...] = ("default", "paper")) -> str:
    """The scale a benchmark script runs at: ``"quick"`` for ``--quick``, else the value of the environment variable
    ``variable`` (one of ``choices``, the first by default), so a full-mode run can be resized without a new flag
    and worker processes inherit the choice."""
    if quick:
        return "quick"
    name = os.environ.get(variable, choices[0])
    if name not in choices:
        raise ConfigError(f"{variable} must be one of {list(choices)}, got {name!r}")
    return name
