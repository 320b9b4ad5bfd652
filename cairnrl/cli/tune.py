"""``cairnrl tune``: the command line of cairnrl.hpo.

* ``cairnrl tune ALGORITHM --env ID --trials N --budget N [--tuning-seeds 0-4] [--test-seeds 1000-1009]
  [--storage URL] [--study NAME] [--workers N]`` tunes, retrains on the test seeds and writes the report;
* ``cairnrl tune join --storage URL --study NAME --worker K`` adds a worker to an existing study (another
  machine); it uses the settings recorded in the study;
* ``cairnrl tune report --storage URL --study NAME`` (re)writes the report of a study.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cairnrl.cli.options import (
    ALGORITHM_NAMES,
    add_dataset_option,
    add_env_option,
    add_group,
    add_progress_option,
    add_set_option,
    add_threads_option,
    parse_assignments,
    positive_int,
)
from cairnrl.exceptions import ConfigError
from cairnrl.hpo.options import OBJECTIVES, PRUNERS, SAMPLERS

if TYPE_CHECKING:
    from cairnrl.hpo.results import TuneResult


def _print_result(result: TuneResult) -> None:
    print(f"study {result.study_name} ({result.storage}): {result.trial_counts}")
    for config in (*result.configs, result.default):
        mean_ci = "" if config.mean_ci is None else f" [{config.mean_ci[0]:.4g}, {config.mean_ci[1]:.4g}]"
        iqm_ci = "" if config.iqm_ci is None else f" [{config.iqm_ci[0]:.4g}, {config.iqm_ci[1]:.4g}]"
        tuning = "" if config.tuning_score is None else f"tuning {config.tuning_score:.4g}, "
        print(f"  {config.label}: {tuning}test mean {config.mean if config.mean is None else f'{config.mean:.4g}'}"
              f"{mean_ci}, test IQM {config.iqm if config.iqm is None else f'{config.iqm:.4g}'}{iqm_ci}"
              f" over {len(config.test_seeds) - config.n_failed} test seeds")
    print(f"report: {result.report_dir}")


def _require(args: argparse.Namespace, command: str, *names: str) -> None:
    missing = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is None]
    if missing:
        raise ConfigError(f"cairnrl tune {command} needs {', '.join(missing)}")


# torch and Optuna load only when a command runs, so that ``cairnrl tune --help`` stays instant.
def _tune(args: argparse.Namespace) -> int:
    import torch

    from cairnrl.hpo.tuning import tune

    _require(args, args.algorithm, "env", "trials", "budget")
    torch.set_num_threads(args.threads)
    result = tune(
        args.algorithm, args.env, dataset=args.dataset, search_space=args.search_space, n_trials=args.trials,
        tuning_seeds=args.tuning_seeds, test_seeds=args.test_seeds, budget=args.budget,
        eval_episodes=args.eval_episodes, sampler=args.sampler, pruner=args.pruner, storage=args.storage,
        study_name=args.study, n_jobs=args.workers, top_k=args.top_k, objective=args.objective,
        n_evaluations=args.evaluations, n_startup_trials=args.startup_trials, fixed=parse_assignments(args.set),
        run_dir=args.run_dir, sampler_seed=args.sampler_seed, worker=args.worker,
        heartbeat_interval=args.heartbeat, grace_period=args.grace_period, progress_bar=not args.no_progress,
    )
    _print_result(result)
    return 0


def _report(args: argparse.Namespace) -> int:
    import torch

    from cairnrl.hpo.tuning import report

    _require(args, "report", "storage", "study")
    torch.set_num_threads(args.threads)
    _print_result(report(args.storage, args.study, run_dir=args.run_dir, top_k=args.top_k))
    return 0


def _join(args: argparse.Namespace) -> int:
    import torch

    from cairnrl.hpo.tuning import join

    _require(args, "join", "storage", "study")
    torch.set_num_threads(args.threads)
    ran = join(args.storage, args.study, worker=args.worker, heartbeat_interval=args.heartbeat,
               grace_period=args.grace_period)
    print(f"worker {args.worker} ran {ran} trials of study {args.study}")
    return 0


def _study_options(storage_help: str, study_help: str) -> argparse.ArgumentParser:
    """``--storage``, ``--study`` and ``--threads``: what every ``tune`` command takes."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--storage", help=storage_help)
    options.add_argument("--study", help=study_help)
    add_threads_option(options)
    return options


def _worker_options() -> argparse.ArgumentParser:
    """The options of a worker process: its index, the heartbeat and the grace period (RDB storage)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--worker", type=int, default=0, help="index of this worker (distinct per machine)")
    options.add_argument("--heartbeat", type=int, default=60, help="heartbeat interval in seconds (RDB storage)")
    options.add_argument("--grace-period", type=int, help="seconds without heartbeat before a trial is retried")
    return options


def _report_options() -> argparse.ArgumentParser:
    """The options of the report: where it goes and how many configurations are retrained."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--top-k", type=int, default=1, help="best configurations retrained on the test seeds")
    options.add_argument("--run-dir", help="folder of the journal and the report (default runs/hpo/STUDY)")
    return options


def _tuning_options() -> argparse.ArgumentParser:
    """The options of a new (or resumed) study."""
    options = argparse.ArgumentParser(add_help=False)
    add_env_option(options, "env id (cairnrl/... or any Gymnasium id); offline algorithms: the env the policy is "
                            "evaluated on")
    add_dataset_option(options)
    options.add_argument("--trials", type=positive_int,
                         help="total trials of the study (all workers, resumes included)")
    options.add_argument("--budget", type=positive_int, help="env steps per training run (offline: gradient updates)")
    options.add_argument("--tuning-seeds", default="0-4", help="seeds of every trial, e.g. 0-4 or 0,2,5-7")
    options.add_argument("--test-seeds", default="1000-1009", help="unseen seeds of the final phase")
    options.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine")
    options.add_argument("--search-space", help="JSON/YAML search space (default: the algorithm's own)")
    add_set_option(options, "fix a hyperparameter for all trials and the defaults")
    options.add_argument("--objective", choices=OBJECTIVES, default="mean", help="aggregate over tuning seeds")
    options.add_argument("--eval-episodes", type=positive_int, default=10, help="episodes per evaluation")
    options.add_argument("--evaluations", type=positive_int, default=4,
                         help="evaluations per run reported to the pruner")
    options.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    options.add_argument("--pruner", choices=PRUNERS, default="median")
    options.add_argument("--startup-trials", type=int, default=5, help="trials before TPE and pruning start")
    options.add_argument("--sampler-seed", type=int, default=0)
    add_progress_option(options)
    return options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tune ALGORITHM``, ``tune report`` and ``tune join`` to the ``cairnrl`` command's sub-parsers."""
    parser = add_group(subparsers, "tune", __doc__)
    commands = parser.add_subparsers(dest="tune_command", required=True, metavar="ALGORITHM|report|join",
                                     help=f"ALGORITHM is one of {', '.join(ALGORITHM_NAMES)}")
    storage_help = ("journal file path (default RUN_DIR/study.journal) or an RDB URL such as "
                    "postgresql://user@host/db")
    study_help = "study name (default ALGORITHM-ENV); an existing study is resumed"
    tuning = [_tuning_options(), _study_options(storage_help, study_help), _worker_options(), _report_options()]
    for name in ALGORITHM_NAMES:
        description = (f"Tune {name}: trials on the tuning seeds, then the best configurations and the defaults "
                       "on the test seeds.")
        algorithm = commands.add_parser(name, parents=tuning, description=description)
        algorithm.set_defaults(func=_tune, algorithm=name)
    existing = _study_options("journal file path or RDB URL of the existing study", "the existing study's name")
    report = commands.add_parser("report", parents=[existing, _report_options()],
                                 help="(re)write the report of an existing study")
    report.set_defaults(func=_report)
    join = commands.add_parser("join", parents=[existing, _worker_options()],
                               help="add a worker to an existing study (uses the settings recorded in it)")
    join.set_defaults(func=_join)
