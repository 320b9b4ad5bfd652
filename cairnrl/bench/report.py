"""``summary.json`` of a benchmark run, publishing it next to the scripts, and the BENCHMARKS.md generator.

BENCHMARKS.md is never typed by hand: :func:`write_benchmarks_md` builds it from the published results folders
``benchmarks/results/<name>/<mode>/`` (``summary.json`` plus the CSV tables and PNG figures of the run), one
section per benchmark and mode with the command, date, machine, commit and the numbers.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import cairnrl
from cairnrl.bench.experiment import Experiment, RunResult, Summary
from cairnrl.core.records import environment_info, utc_now
from cairnrl.exceptions import ConfigError

SUMMARY = "summary.json"
FIGURES_PLACEHOLDER = "{figures}"


def working_tree_dirty(directory: Path) -> bool | None:
    """Whether the git checkout holding ``directory`` has uncommitted changes or untracked (not ignored) files, so
    that its commit alone does not reproduce what ran (None: no git)."""
    try:
        result = subprocess.run(["git", "status", "--porcelain"], cwd=directory,
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(result.stdout.strip()) if result.returncode == 0 else None


def machine_description() -> dict[str, Any]:
    """Processor model, logical CPU count, platform and Python of this machine."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {"cpu": model, "logical_cpus": len(affinity) if affinity else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}


def write_summary(experiment: Experiment, summary: Summary, report_dir: Path, *, quick: bool, command: str,
                  wall_time_s: float, results: list[RunResult], n_executed: int) -> Path:
    """Write ``report_dir/summary.json``: the section markdown, the headline numbers and the provenance.

    ``wall_time_s`` is this invocation's; ``n_executed`` of the ``results`` ran in it (the others were resumed
    from earlier invocations), and the summed wall time of every run comes from their ``run.json``.
    """
    info = environment_info()
    run_seconds = 0.0
    for result in results:
        record = json.loads((result.run_dir / "run.json").read_text())
        run_seconds += float(record.get("wall_time_s", 0.0))
    data = {
        "name": experiment.name,
        "description": experiment.description,
        "mode": "quick" if quick else "full",
        "command": command,
        "date": utc_now(),
        "machine": machine_description(),
        "git_commit": info["git_commit"],
        "git_dirty": working_tree_dirty(Path(cairnrl.__file__).resolve().parent),
        "versions": info["versions"],
        "wall_time_s": round(wall_time_s, 1),
        "n_runs": len(results),
        "n_executed": n_executed,
        "summed_run_time_s": round(run_seconds, 1),
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


def _section(data: dict[str, Any], folder: Path, document_dir: Path) -> str:
    relative = os.path.relpath(folder, document_dir).replace(os.sep, "/")
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
        "",
        data["markdown"].replace(FIGURES_PLACEHOLDER, relative).strip(),
        "",
    ]
    return "\n".join(lines)


def write_benchmarks_md(results_root: Path, path: Path) -> Path:
    """Regenerate BENCHMARKS.md from every ``results_root/<name>/<mode>/summary.json``."""
    summaries = sorted(results_root.glob(f"*/*/{SUMMARY}"), key=lambda file: (file.parent.parent.name,
                                                                                file.parent.name != "full"))
    header = [
        "# Benchmarks",
        "",
        "<!-- Generated by `cairnrl bench` (cairnrl/bench/report.py) from benchmarks/results/; do not edit. -->",
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
