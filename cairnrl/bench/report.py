"""``summary.json`` of a benchmark run, publishing it, and the BENCHMARKS.md generator.

BENCHMARKS.md is never typed by hand: :func:`write_benchmarks_md` builds it from the published results folders
``RESULTS/<name>/<mode>/`` (``summary.json`` plus the CSV tables and PNG figures of the run; ``cairnrl bench``
publishes to ``SUITES/results`` unless told otherwise), one section per benchmark and mode with the command,
date, machine, commit and the numbers.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cairnrl.bench.experiment import Experiment, RunResult, Summary
from cairnrl.core.records import environment_info, git_commit, utc_now
from cairnrl.exceptions import ConfigError

SUMMARY = "summary.json"
FIGURES_PLACEHOLDER = "{figures}"


def working_tree_dirty(directory: Path) -> bool | None:
    """Whether the git checkout holding ``directory`` has uncommitted changes or untracked (not ignored) files, so
    that its commit alone does not reproduce what ran (None: not a checkout, or no git program)."""
    try:
        result = subprocess.run(["git", "status", "--porcelain"], cwd=directory,
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(result.stdout.strip()) if result.returncode == 0 else None


def _cpu_model() -> str:
    """The processor's name: :func:`platform.processor` gives it on macOS and Windows; on Linux it gives only the
    architecture, so the ``model name`` line of ``/proc/cpuinfo`` is used when that file can be read."""
    model = platform.processor()
    if model and model != platform.machine():
        return model
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return model or platform.machine() or "unknown"


def _logical_cpus() -> int | None:
    """CPUs this process may run on (its affinity where the OS reports one), else all logical CPUs."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def machine_description() -> dict[str, Any]:
    """Processor model, logical CPU count, platform and Python of this machine (every entry best effort)."""
    return {"cpu": _cpu_model(), "logical_cpus": _logical_cpus(), "platform": platform.platform(),
            "python": platform.python_version()}


def run_provenance(record: dict[str, Any]) -> str:
    """Where and with what one run ran, from its ``run.json``: platform, commit, torch and Python versions."""
    machine, versions = record.get("machine") or {}, record.get("versions") or {}
    commit = (record.get("git_commit") or "no commit")[:12]
    return (f"{machine.get('platform', '?')}, commit {commit}, torch {versions.get('torch', '?')}, "
            f"python {versions.get('python', '?')}")


def write_summary(experiment: Experiment, summary: Summary, report_dir: Path, *, quick: bool, command: str,
                  wall_time_s: float, results: list[RunResult], n_executed: int, source: Path) -> Path:
    """Write ``report_dir/summary.json``: the section markdown, the headline numbers and the provenance.

    ``source`` is the suites folder the script came from: its git commit and whether that checkout had
    uncommitted changes are recorded when it is a git checkout (None otherwise; neither is required).

    ``wall_time_s`` is this invocation's; ``n_executed`` of the ``results`` ran in it (the others were resumed
    from earlier invocations), and the summed wall time of every run comes from their ``run.json``.
    """
    info = environment_info()
    run_seconds = 0.0
    where_runs_ran: dict[str, int] = {}
    for result in results:
        record = json.loads((result.run_dir / "run.json").read_text())
        run_seconds += float(record.get("wall_time_s", 0.0))
        key = run_provenance(record)
        where_runs_ran[key] = where_runs_ran.get(key, 0) + 1
    data = {
        "name": experiment.name,
        "description": experiment.description,
        "mode": "quick" if quick else "full",
        "command": command,
        "date": utc_now(),
        "machine": machine_description(),
        "git_commit": git_commit(source),
        "git_dirty": working_tree_dirty(source),
        "versions": info["versions"],
        "wall_time_s": round(wall_time_s, 1),
        "n_runs": len(results),
        "n_executed": n_executed,
        "summed_run_time_s": round(run_seconds, 1),
        "runs_ran_on": where_runs_ran,
        "files": summary.files,
        "numbers": summary.numbers,
        "markdown": summary.markdown,
    }
    path = report_dir / SUMMARY
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=True, default=str))
    return path


def publish(report_dir: Path, results_root: Path, name: str, quick: bool) -> Path:
    """Copy ``summary.json`` and the files it names to ``results_root/<name>/<mode>/`` (replacing that folder)."""
    summary_path = report_dir / SUMMARY
    if not summary_path.is_file():
        raise ConfigError(f"{report_dir} has no {SUMMARY} to publish")
    data = json.loads(summary_path.read_text())
    target = results_root / name / ("quick" if quick else "full")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy2(summary_path, target / SUMMARY)
    for file in data.get("files", []):
        shutil.copy2(report_dir / file, target / file)
    return target


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` with forward slashes (links in markdown)."""
    return os.path.relpath(path, start).replace(os.sep, "/")


def _section(data: dict[str, Any], folder: Path, document_dir: Path) -> str:
    relative = _relative(folder, document_dir)
    executed = (f"all {data['n_runs']} runs executed in it" if data["n_executed"] == data["n_runs"] else
                f"{data['n_executed']} of {data['n_runs']} runs executed in it, the others resumed from earlier "
                "invocations")
    machine = data.get("machine", {})
    versions = data.get("versions", {})
    commit = data.get("git_commit") or "none (not a git checkout)"
    if data.get("git_commit") and data.get("git_dirty"):
        commit += " plus uncommitted changes"
    lines = [
        f"## {data['name']} ({data['mode']})",
        "",
        data.get("description", ""),
        "",
        f"- command: `{data['command']}`",
        f"- date: {data['date']}; wall time {data['wall_time_s']} s, {executed}; summed run time "
        f"{data['summed_run_time_s']} s",
        f"- machine: {machine.get('cpu', '?')}, {machine.get('logical_cpus', '?')} logical CPUs, "
        f"{machine.get('platform', '?')}",
        f"- commit: {commit}",
        "- versions: " + ", ".join(f"{key} {value}" for key, value in sorted(versions.items())),
        *_runs_ran_on(data),
        "",
        data["markdown"].replace(FIGURES_PLACEHOLDER, relative).strip(),
        "",
    ]
    return "\n".join(lines)


def _runs_ran_on(data: dict[str, Any]) -> list[str]:
    """A line naming where the runs ran, when that is not simply this summary's machine (runs resumed from other
    machines, commits or versions): the summary's header then describes the summarising invocation only."""
    places = data.get("runs_ran_on") or {}
    here = f"{(data.get('machine') or {}).get('platform')}, commit "
    if data.get("git_commit"):  # a suites folder outside a checkout says nothing about the runs' commit
        here += data["git_commit"][:12] + ","
    if not places or (len(places) == 1 and next(iter(places)).startswith(here)):
        return []
    return ["- runs ran on: " + "; ".join(f"{place} ({count} runs)" for place, count in sorted(places.items()))]


def write_benchmarks_md(results_root: Path, path: Path) -> Path:
    """Regenerate BENCHMARKS.md from every ``results_root/<name>/<mode>/summary.json``."""
    summaries = sorted(results_root.glob(f"*/*/{SUMMARY}"), key=lambda file: (file.parent.parent.name,
                                                                                file.parent.name != "full"))
    header = [
        "# Benchmarks",
        "",
        f"<!-- Generated by `cairnrl bench` from {_relative(results_root, path.parent)}/; do not edit. -->",
        "",
        "Every number below was measured by the command shown in its section, on the machine named there, with",
        "all algorithms of a section run in the same suite on that machine.  Re-run a command to refresh its",
        "section; `cairnrl bench --list` lists the benchmarks and `cairnrl bench --report` rebuilds this file.",
        "",
    ]
    if not summaries:
        header += ["No benchmark results have been published yet.", ""]
    sections = [_section(json.loads(file.read_text()), file.parent, path.parent) for file in summaries]
    path.write_text("\n".join(header) + "\n" + "\n".join(sections))
    return path
