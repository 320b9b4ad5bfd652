"""``cairnrl bench``: run a declared benchmark, summarise it and regenerate BENCHMARKS.md.

    cairnrl bench --list
    cairnrl bench NAME [--quick] [--workers N] [--out DIR] [--publish] [--no-progress]
    cairnrl bench --report

Benchmarks are the scripts in the repository's ``benchmarks/`` folder that declare ``EXPERIMENT = ...``; the
folder is found next to the installed ``cairnrl`` package (an editable install or a clone), else in the current
directory, or wherever ``CAIRNRL_BENCHMARKS_DIR`` points.  Runs, the summary, tables and figures go to ``--out``
(default ``results/bench/NAME/{quick,full}`` in the repository, which git ignores).  Only with ``--publish`` is
the report copied to the tracked ``benchmarks/results/NAME/{quick,full}/`` and BENCHMARKS.md rebuilt from
those folders.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import shutil
import sys
import time
from pathlib import Path

import cairnrl
from cairnrl.bench.experiment import Experiment
from cairnrl.bench.report import publish, write_benchmarks_md, write_summary
from cairnrl.bench.runner import load_results, run_experiment
from cairnrl.cli import EXTERNAL_COMMANDS, ArgumentParser, plain_text, positive_int, run_parser
from cairnrl.exceptions import ConfigError

ENV_VARIABLE = "CAIRNRL_BENCHMARKS_DIR"
REPORT = "report"


def benchmarks_dir() -> Path:
    """The repository's ``benchmarks/`` folder (see the module docstring for the search order)."""
    candidates = []
    if os.environ.get(ENV_VARIABLE):
        candidates.append(Path(os.environ[ENV_VARIABLE]))
    candidates += [Path(cairnrl.__file__).resolve().parents[1] / "benchmarks", Path.cwd() / "benchmarks"]
    for candidate in candidates:
        if (candidate / "__init__.py").is_file():
            return candidate.resolve()
    raise ConfigError(
        "cannot find the benchmarks/ folder: run from a clone of the cairnrl repository (pip install -e .), "
        f"or set {ENV_VARIABLE} to its benchmarks/ folder; looked in {', '.join(str(c) for c in candidates)}"
    )


def _binds_experiment(node: ast.stmt) -> bool:
    """Whether a module-level statement binds the name ``EXPERIMENT`` (assignment or import)."""
    if isinstance(node, ast.Assign):
        return any(isinstance(target, ast.Name) and target.id == "EXPERIMENT" for target in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == "EXPERIMENT"
    if isinstance(node, ast.ImportFrom):
        return any((alias.asname or alias.name) == "EXPERIMENT" for alias in node.names)
    return False


def list_benchmarks(folder: Path) -> dict[str, str]:
    """``{name: first docstring line}`` of the scripts in ``folder`` that declare ``EXPERIMENT`` (read without
    importing them)."""
    found = {}
    for script in sorted(folder.glob("*.py")):
        if script.name.startswith("_"):
            continue
        tree = ast.parse(script.read_text(), filename=str(script))
        if any(_binds_experiment(node) for node in tree.body):
            docstring = ast.get_docstring(tree) or ""
            found[script.stem] = docstring.strip().splitlines()[0] if docstring.strip() else ""
    return found


def load_benchmark(name: str, folder: Path) -> Experiment:
    """Import ``benchmarks.NAME`` from ``folder`` and return its ``EXPERIMENT``."""
    available = list_benchmarks(folder)
    if name not in available:
        raise ConfigError(f"unknown benchmark {name!r}; available: {', '.join(sorted(available)) or 'none'}")
    root = str(folder.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(f"{folder.name}.{name}")
    experiment = getattr(module, "EXPERIMENT", None)
    if not isinstance(experiment, Experiment):
        raise ConfigError(f"{folder / (name + '.py')}: EXPERIMENT is not a cairnrl.bench.Experiment")
    return experiment


def _command(args: argparse.Namespace, default_out: bool) -> str:
    parts = ["cairnrl", "bench", args.name]
    if args.quick:
        parts.append("--quick")
    parts += ["--workers", str(args.workers)]
    if not default_out:
        parts += ["--out", str(args.out)]
    return " ".join(parts)


def run_benchmark(args: argparse.Namespace) -> int:
    """The ``func`` of ``cairnrl bench``."""
    folder = benchmarks_dir()
    results_root = folder / "results"
    document = folder.parent / "BENCHMARKS.md"
    if args.list:
        for name, description in list_benchmarks(folder).items():
            print(f"{name:<24} {description}")
        return 0
    if args.report:
        print(f"wrote {write_benchmarks_md(results_root, document)}")
        return 0
    if not args.name:
        raise ConfigError("name a benchmark (cairnrl bench NAME) or pass --list or --report")
    experiment = load_benchmark(args.name, folder)
    mode = "quick" if args.quick else "full"
    out = Path(args.out) if args.out else folder.parent / "results" / "bench" / experiment.name / mode
    clock = time.perf_counter()
    command = _command(args, args.out is None)
    resumed = len(load_results(experiment, out, args.quick))
    results = run_experiment(experiment, out, quick=args.quick, workers=args.workers, progress=not args.no_progress,
                             command=command)
    report_dir = out / REPORT
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True)
    summary = experiment.summarize(results, report_dir, args.quick)
    write_summary(experiment, summary, report_dir, quick=args.quick, command=command,
                  wall_time_s=time.perf_counter() - clock, results=results, n_executed=len(results) - resumed)
    print(summary.markdown.replace("{figures}", str(report_dir)))
    print(f"\nruns: {out / 'runs'}\nreport: {report_dir}")
    if args.publish:
        target = publish(report_dir, results_root, experiment.name, args.quick)
        write_benchmarks_md(results_root, document)
        print(f"published to {target}; regenerated {document}")
    else:
        print(f"not published: pass --publish to copy the report to {results_root} and regenerate {document.name}")
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--report", action="store_true", help="only regenerate BENCHMARKS.md from published results")
    parser.add_argument("--quick", action="store_true", help="the CI-sized suite instead of the full one")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--out", default=None, help="output folder (default results/bench/NAME/MODE)")
    parser.add_argument("--publish", action="store_true",
                        help="copy the report to the tracked benchmarks/results/ and regenerate BENCHMARKS.md")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_benchmark)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``cairnrl`` command's sub-parsers."""
    parser = subparsers.add_parser("bench", help=EXTERNAL_COMMANDS["bench"][1], description=plain_text(__doc__),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``cairnrl bench`` as a function: ``main(["sqirl", "--quick"])``."""
    parser = ArgumentParser(prog="cairnrl bench", description=plain_text(__doc__),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    return run_parser(parser, argv)


def run_script(experiment: Experiment, argv: list[str] | None = None) -> int:
    """``python -m benchmarks.NAME [options]``: the same as ``cairnrl bench NAME [options]``."""
    return main([experiment.name, *(sys.argv[1:] if argv is None else argv)])
