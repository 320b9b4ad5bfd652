"""``cairnrl tune``: the command line of :mod:`cairnrl.hpo`.

* ``cairnrl tune ALGO --env ID --trials N --budget N [--tuning-seeds 0-4] [--test-seeds 1000-1009]
  [--storage URL] [--study NAME] [--workers N]`` tunes, retrains on the test seeds and writes the report;
* ``cairnrl tune join --storage URL --study NAME --worker K`` adds a worker to an existing study (another
  machine); it uses the settings recorded in the study;
* ``cairnrl tune report --storage URL --study NAME`` (re)writes the report of a study.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cairnrl.cli import EXTERNAL_COMMANDS, ArgumentParser, parse_assignments, plain_text, positive_int, run_parser
from cairnrl.exceptions import ConfigError
from cairnrl.hpo.options import OBJECTIVES, PRUNERS, SAMPLERS

if TYPE_CHECKING:
    from cairnrl.hpo.results import TuneResult

_MODES = ("report", "join")


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


def _require(args: argparse.Namespace, mode: str, *names: str) -> None:
    missing = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is None]
    if missing:
        raise ConfigError(f"cairnrl tune {mode} needs {', '.join(missing)}")


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``tune`` command; returns the exit code."""
    import torch

    from cairnrl.hpo.tuning import join, report, tune

    torch.set_num_threads(args.threads)
    if args.algorithm == "report":
        _require(args, "report", "storage", "study")
        _print_result(report(args.storage, args.study, run_dir=args.run_dir, top_k=args.top_k))
        return 0
    if args.algorithm == "join":
        _require(args, "join", "storage", "study")
        ran = join(args.storage, args.study, worker=args.worker, heartbeat_interval=args.heartbeat,
                   grace_period=args.grace_period)
        print(f"worker {args.worker} ran {ran} trials of study {args.study}")
        return 0
    _require(args, args.algorithm, "env", "trials", "budget")
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tune`` sub-command to ``cairnrl``'s parser."""
    parser = subparsers.add_parser(
        "tune", help=EXTERNAL_COMMANDS["tune"][1], description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("algorithm", help="algorithm (sqirl, sb3-ppo, sb3-sac, sb3-td3, sb3-dqn, ...), or 'report' "
                                          "or 'join' to act on an existing study")
    parser.add_argument("--env", help="env id (cairnrl/... or any Gymnasium id); offline algorithms: the env the "
                                      "policy is evaluated on")
    parser.add_argument("--dataset", help="offline algorithms (iql, td3bc, bc, ...): the dataset file or folder")
    parser.add_argument("--trials", type=positive_int, help="total trials of the study (all workers, resumes included)")
    parser.add_argument("--budget", type=positive_int, help="env steps per training run (offline: gradient updates)")
    parser.add_argument("--tuning-seeds", default="0-4", help="seeds of every trial, e.g. 0-4 or 0,2,5-7")
    parser.add_argument("--test-seeds", default="1000-1009", help="unseen seeds of the final phase")
    parser.add_argument("--storage", help="journal file path (default RUN_DIR/study.journal) or an RDB URL "
                                          "such as postgresql://user@host/db")
    parser.add_argument("--study", help="study name (default ALGO-ENV); an existing study is resumed")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine")
    parser.add_argument("--worker", type=int, default=0, help="index of this worker (distinct per machine)")
    parser.add_argument("--search-space", help="JSON/YAML search space (default: the algorithm's own)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="fix a hyperparameter for all trials and the defaults")
    parser.add_argument("--objective", choices=OBJECTIVES, default="mean", help="aggregate over tuning seeds")
    parser.add_argument("--eval-episodes", type=positive_int, default=10, help="episodes per evaluation")
    parser.add_argument("--evaluations", type=positive_int, default=4,
                        help="evaluations per run reported to the pruner")
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    parser.add_argument("--pruner", choices=PRUNERS, default="median")
    parser.add_argument("--startup-trials", type=int, default=5, help="trials before TPE and pruning start")
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=1, help="best configurations retrained on the test seeds")
    parser.add_argument("--run-dir", help="folder of the journal and the report (default runs/hpo/STUDY)")
    parser.add_argument("--heartbeat", type=int, default=60, help="heartbeat interval in seconds (RDB storage)")
    parser.add_argument("--grace-period", type=int, help="seconds without heartbeat before a trial is retried")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar over trials")
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """``cairnrl tune ...`` on its own (the same parser the ``cairnrl`` command uses)."""
    parser = ArgumentParser(prog="cairnrl")
    register(parser.add_subparsers(dest="command", required=True))
    return run_parser(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
