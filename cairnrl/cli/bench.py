"""``cairnrl bench``: run a benchmark script, summarise it and regenerate BENCHMARKS.md.

    cairnrl bench --list [--suites DIR]
    cairnrl bench NAME [--suites DIR] [--quick] [--workers N] [--launcher local|ray] [--out DIR] [--publish]
    cairnrl bench --report [--suites DIR]

Benchmarks are the scripts of a suites folder (a Python package) that declare ``EXPERIMENT = ...``: the folder
``--suites DIR``, else ``./benchmarks`` in the current directory (the ``benchmarks/`` folder of a cairnrl clone).
Every other path defaults relative to it: runs, the summary, tables and figures go to ``--out`` (default
``SUITES/../results/bench/NAME/{quick,full}``, which a clone's git ignores).  Only with ``--publish`` is the
report copied to ``--published`` (default ``SUITES/results/NAME/{quick,full}``) and ``--document`` (default
``SUITES/../BENCHMARKS.md``) rebuilt from those folders.  ``--launcher ray`` runs each run as a Ray task on the
cluster ``--ray-address`` names (default: a new local Ray instance), which needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
from pathlib import Path

from cairnrl.bench.report import publish, write_benchmarks_md, write_summary
from cairnrl.bench.runner import LAUNCHERS, load_results, run_experiment
from cairnrl.bench.suites import find_suites, list_benchmarks, load_benchmark
from cairnrl.cli.options import add_group, add_progress_option, positive_int
from cairnrl.exceptions import ConfigError

REPORT = "report"
#: Environment variables that resize a benchmark (``scale_from_environment``), shown in its recorded command.
SCALE_VARIABLE = re.compile(r"CAIRNRL_[A-Z0-9]+_SCALE")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this suite, recorded in every ``run.json`` and in BENCHMARKS.md, led by the
    ``CAIRNRL_*_SCALE`` variables that select a benchmark's scale when they are set."""
    scales = [f"{name}={value}" for name, value in sorted(os.environ.items()) if SCALE_VARIABLE.fullmatch(name)]
    parts = [*scales, "cairnrl", "bench", args.name]
    if args.suites is not None:
        parts += ["--suites", str(args.suites)]
    if args.quick:
        parts.append("--quick")
    parts += ["--workers", str(args.workers)]
    if args.launcher != "local":
        parts += ["--launcher", args.launcher]
    if args.out is not None:
        parts += ["--out", str(args.out)]
    return " ".join(parts)


def run_benchmark(args: argparse.Namespace) -> int:
    """The ``func`` of ``cairnrl bench``."""
    folder = find_suites(args.suites)
    results_root = Path(args.published) if args.published else folder / "results"
    document = Path(args.document) if args.document else folder.parent / "BENCHMARKS.md"
    if args.list:
        for name, description in list_benchmarks(folder).items():
            print(f"{name:<24} {description}")
        return 0
    if args.report:
        print(f"wrote {write_benchmarks_md(results_root, document)}")
        return 0
    if not args.name:
        raise ConfigError("name a benchmark (cairnrl bench NAME) or pass --list or --report")
    if args.ray_address is not None and args.launcher != "ray":
        raise ConfigError("--ray-address is for --launcher ray")
    experiment = load_benchmark(args.name, folder)
    mode = "quick" if args.quick else "full"
    out = Path(args.out) if args.out else folder.parent / "results" / "bench" / experiment.name / mode
    clock = time.perf_counter()
    command = _command(args)
    resumed = len(load_results(experiment, out, args.quick))
    results = run_experiment(experiment, out, quick=args.quick, workers=args.workers, progress=not args.no_progress,
                             command=command, launcher=args.launcher, ray_address=args.ray_address)
    report_dir = out / REPORT
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True)
    summary = experiment.summarize(results, report_dir, args.quick)
    write_summary(experiment, summary, report_dir, quick=args.quick, command=command,
                  wall_time_s=time.perf_counter() - clock, results=results, n_executed=len(results) - resumed,
                  source=folder)
    print(summary.markdown.replace("{figures}", str(report_dir)))
    print(f"\nruns: {out / 'runs'}\nreport: {report_dir}")
    if args.publish:
        target = publish(report_dir, results_root, experiment.name, args.quick)
        write_benchmarks_md(results_root, document)
        print(f"published to {target}; regenerated {document}")
    else:
        print(f"not published: pass --publish to copy the report to {results_root} and regenerate {document}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``cairnrl`` command's sub-parsers."""
    parser = add_group(subparsers, "bench", __doc__)
    parser.add_argument("name", nargs="?", help="benchmark name (see --list)")
    parser.add_argument("--suites", default=None, metavar="DIR",
                        help="the folder of benchmark scripts (default ./benchmarks)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--report", action="store_true", help="only regenerate BENCHMARKS.md from published results")
    parser.add_argument("--quick", action="store_true", help="the CI-sized suite instead of the full one")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="runs at a time: worker processes, or Ray tasks in flight (default 1)")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local",
                        help="local: a process pool on this machine; ray: one Ray task per run (default local)")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="Ray cluster to join ('auto' or HOST:PORT; default: start a local Ray instance)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default SUITES/../results/bench/NAME/MODE)")
    parser.add_argument("--publish", action="store_true",
                        help="copy the report to --published and regenerate --document")
    parser.add_argument("--published", default=None, metavar="DIR",
                        help="published results, one folder per benchmark and mode (default SUITES/results)")
    parser.add_argument("--document", default=None, metavar="FILE",
                        help="the generated BENCHMARKS.md (default SUITES/../BENCHMARKS.md)")
    add_progress_option(parser)
    parser.set_defaults(func=run_benchmark)
    return parser

