"""The ``cairnrl`` command line: ``train``, ``eval`` and the sub-commands of the library's modules."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from cairnrl.exceptions import CairnError, ConfigError

MODEL_DIR = "model"


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` to a dict; values are parsed as JSON when possible (``3``, ``1e-4``, ``[64,64]``, ``true``)."""
    parsed: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def read_config(path: str) -> dict[str, Any]:
    """Hyperparameters from a JSON (or, with PyYAML installed, YAML) file; a top-level ``hyperparameters``
    key is unwrapped, so the best-configuration files written by ``cairnrl tune`` are accepted as they are."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = file.read_text()
    if file.suffix in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as error:
            raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or use JSON") from error
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of hyperparameters")
    data = data.get("hyperparameters", data)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: 'hyperparameters' must be a mapping")
    return data


def _train(args: argparse.Namespace) -> int:
    from cairnrl.algos.registry import is_sb3, make_model
    from cairnrl.core.records import utc_now, write_run_record
    from cairnrl.core.sb3_io import save_sb3

    torch.set_num_threads(args.threads)
    hyperparameters = {**(read_config(args.config) if args.config else {}), **parse_assignments(args.set)}
    model = make_model(args.algorithm, args.env, seed=args.seed, hyperparameters=hyperparameters,
                       tensorboard_log=args.logdir, verbose=args.verbose)
    sb3_model = is_sb3(type(model))
    name = args.name or (args.algorithm.lower() if sb3_model else model.algorithm_name)
    if not sb3_model:
        model.final_eval_episodes = args.eval_episodes
    started = utc_now()
    model.learn(args.timesteps, progress_bar=not args.no_progress, tb_log_name=name)
    run_dir = Path(model.logger.get_dir())
    if sb3_model:
        save_sb3(model, run_dir / MODEL_DIR)
        result = _final_evaluation(model, args.env, args.eval_episodes, args.seed)
        write_run_record(run_dir, {
            "algorithm": f"sb3-{type(model).__name__.lower()}", "hyperparameters": hyperparameters,
            "env_id": args.env, "seed": args.seed, "num_timesteps": model.num_timesteps, "start_time": started,
            "end_time": utc_now(), "final_evaluation": result, "final_evaluation_skipped": None,
        })
    else:
        model.save(run_dir / MODEL_DIR)
    record = json.loads((run_dir / "run.json").read_text())
    print(f"run folder: {run_dir}")
    _print_evaluation(record.get("final_evaluation"), record.get("final_evaluation_skipped"))
    return 0


def _final_evaluation(model: Any, env_id: str, n_episodes: int, seed: int) -> dict[str, Any] | None:
    from cairnrl.core.evaluation import evaluate, final_evaluation_seed

    if n_episodes == 0:
        return None
    return evaluate(model, env_id, n_episodes=n_episodes, seed=final_evaluation_seed(seed)).to_dict()


def _print_evaluation(result: dict | None, skipped: str | None = None) -> None:
    if result is None:
        print(f"final evaluation skipped: {skipped}")
        return
    print(
        f"final evaluation over {len(result['returns'])} episodes: mean return {result['mean']:.4g} "
        f"(std {result['std']:.3g}, IQM {result['iqm']:.4g}), "
        f"mean length {sum(result['lengths']) / len(result['lengths']):.1f}"
    )


def _eval(args: argparse.Namespace) -> int:
    from cairnrl import evaluate

    run_dir = Path(args.run_dir)
    record_path = run_dir / "run.json"
    if not record_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder: run.json is missing")
    from cairnrl.algos.registry import get_algorithm, is_sb3
    from cairnrl.core.sb3_io import load_sb3

    record = json.loads(record_path.read_text())
    algorithm = get_algorithm(record["algorithm"])
    model = load_sb3(run_dir / MODEL_DIR) if is_sb3(algorithm) else algorithm.load(run_dir / MODEL_DIR)
    env_id = args.env or record.get("env_id")
    if env_id is None:
        raise ConfigError("the run has no env id; pass --env")
    result = evaluate(model, env_id, n_episodes=args.episodes, seed=args.seed, deterministic=not args.stochastic)
    _print_evaluation(result.to_dict())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``cairnrl`` argument parser."""
    parser = argparse.ArgumentParser(prog="cairnrl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an algorithm and print its final evaluation")
    train.add_argument("algorithm", help="algorithm name: sqirl, or an SB3 peer such as sb3-sac or sb3-ppo")
    train.add_argument("--env", required=True, help="env id (cairnrl/... or any Gymnasium id)")
    train.add_argument("--timesteps", type=int, required=True, help="env steps to train for")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--logdir", default="runs", help="folder for run folders (TensorBoard, run.json, model)")
    train.add_argument("--name", default=None, help="run name prefix inside --logdir (default: the algorithm)")
    train.add_argument("--config", default=None, help="JSON/YAML file of hyperparameters")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    train.add_argument("--eval-episodes", type=int, default=10, help="episodes of the final evaluation")
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    train.add_argument("--verbose", type=int, default=0)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("eval", help="evaluate a trained run folder")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--env", default=None, help="evaluate on another env id")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of acting greedily")
    evaluate.set_defaults(func=_eval)

    from cairnrl.bench.cli import register as register_bench
    from cairnrl.data.cli import register as register_data
    from cairnrl.hpo.cli import register as register_tune

    register_data(commands)
    register_tune(commands)
    register_bench(commands)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run the chosen command; a :class:`CairnError` becomes one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CairnError as error:
        print(f"cairnrl: error: {error}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cairnrl`` console script."""
    return run_parser(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
