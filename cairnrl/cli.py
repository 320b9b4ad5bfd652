"""The ``cairnrl`` command line: ``train``, ``eval``, ``list`` and the sub-commands of the library's modules.

Every user error (a bad argument, hyperparameter, env or file) ends as one line ``cairnrl: error: ...`` on
stderr and exit code 2, never a traceback.
"""

# Parsing imports nothing heavy: torch, SB3 and the algorithms load once a command runs, so --help is instant.

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from cairnrl import __version__
from cairnrl.exceptions import CairnError, ConfigError

if TYPE_CHECKING:
    from cairnrl.core.base import BaseAlgorithm

MODEL_DIR = "model"
#: Every algorithm ``train`` accepts (``cairnrl list algorithms`` prints them from the registry; a test keeps the
#: two equal, so the help never needs to import the algorithms).
ALGORITHM_NAMES = ("bc", "contrastive_ucb", "contrastive_ucb_dqn", "fdvl", "iql", "mbrcsl", "recoil", "s3rl",
                   "sequoia", "sqirl", "td3bc", "sb3-a2c", "sb3-ddpg", "sb3-dqn", "sb3-ppo", "sb3-sac", "sb3-td3")
#: Sub-commands defined by other modules: ``name -> (module with register(subparsers), one-line help)``.
EXTERNAL_COMMANDS = {
    "data": ("cairnrl.data.cli", "offline datasets: make, collect, inspect, validate, convert"),
    "tune": ("cairnrl.hpo.cli", "tune hyperparameters on tuning seeds, report on unseen test seeds"),
    "bench": ("cairnrl.bench.cli", "run a reproducible benchmark and update BENCHMARKS.md"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with cairnrl's one error format: usage, then ``cairnrl: error: ...``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"cairnrl: error: {message}\n")


def plain_text(docstring: str | None) -> str:
    """A reStructuredText docstring as plain text for ``--help``: roles and literal markup removed."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", docstring or "")
    return text.replace("``", "")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


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
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from error
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


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """``run_dir/run.json`` as a dict, or a :class:`ConfigError` saying why the folder is not a usable run."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder: run.json is missing")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid JSON ({error}); the run folder is damaged") from error
    if not isinstance(record, dict) or not isinstance(record.get("algorithm"), str):
        raise ConfigError(f"{path} has no 'algorithm' entry; the run folder is damaged")
    if not (run_dir / MODEL_DIR).exists():
        raise ConfigError(f"{run_dir} holds no saved model ({MODEL_DIR}/ is missing)")
    return record


# ---------------------------------------------------------------------------------------------------- train
def _train(args: argparse.Namespace) -> int:
    import torch

    from cairnrl.algos.registry import get_algorithm, is_sb3, make_model
    from cairnrl.hpo.spaces import check_names

    torch.set_num_threads(args.threads)
    hyperparameters = {**(read_config(args.config) if args.config else {}), **parse_assignments(args.set)}
    algorithm = get_algorithm(args.algorithm)
    check_names(algorithm, list(hyperparameters), "hyperparameter", hyperparameters.get("policy", "MlpPolicy"))
    dataset, env = _training_inputs(algorithm, args)
    if not is_sb3(algorithm):
        hyperparameters["final_eval_episodes"] = args.eval_episodes
    model = make_model(algorithm, env, seed=args.seed, hyperparameters=hyperparameters,
                       tensorboard_log=args.logdir, verbose=args.verbose, dataset=dataset)
    hyperparameters.pop("final_eval_episodes", None)
    if is_sb3(algorithm):
        run_dir = _learn_sb3(model, args, hyperparameters)
    else:
        name = args.name or cast("BaseAlgorithm", model).algorithm_name
        model.learn(args.timesteps, progress_bar=not args.no_progress, tb_log_name=name)
        run_dir = Path(cast(str, model.logger.get_dir()))  # set: tensorboard_log is --logdir
        model.save(run_dir / MODEL_DIR)
    record = read_run_record(run_dir)
    print(f"run folder: {run_dir}")
    _print_evaluation(record.get("final_evaluation"), _skip_reason(args) or record.get("final_evaluation_skipped"))
    return 0


def _training_inputs(algorithm: Any, args: argparse.Namespace) -> tuple[Any, str | None]:
    """The dataset (offline algorithms) and the env id: online algorithms need --env and refuse --dataset;
    offline ones need --dataset and evaluate on --env, else on the dataset's own env when it is registered."""
    from cairnrl.algos.registry import is_offline

    if not is_offline(algorithm):
        if args.dataset is not None:
            raise ConfigError(f"{args.algorithm} learns online from --env; --dataset is for offline algorithms")
        if args.env is None:
            raise ConfigError(f"{args.algorithm} needs --env")
        return None, args.env
    if args.dataset is None:
        raise ConfigError(f"{args.algorithm} learns offline: pass --dataset DIR_OR_FILE")
    from cairnrl.algos.offline.base import as_dataset

    dataset = as_dataset(args.dataset)
    env = args.env
    if env is None and dataset.env_id is not None:
        import gymnasium as gym

        env = dataset.env_id if dataset.env_id in gym.registry else None
    return dataset, env


def _skip_reason(args: argparse.Namespace) -> str | None:
    return "--eval-episodes 0" if args.eval_episodes == 0 else None


def _learn_sb3(model: Any, args: argparse.Namespace, hyperparameters: dict[str, Any]) -> Path:
    """Train an SB3 peer with cairnrl's run layout: ``LOGDIR/SB3-PPO_N`` with TensorBoard events,
    ``progress.csv``, the pickle-free model and a ``run.json`` holding every constructor argument."""
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.utils import get_latest_run_id

    from cairnrl.core.records import utc_now, write_run_record
    from cairnrl.core.sb3_io import constructor_arguments, encode_sb3_kwargs, save_sb3

    name = args.name or f"SB3-{type(model).__name__}"
    run_dir = Path(args.logdir) / f"{name}_{get_latest_run_id(args.logdir, name) + 1}"
    model.set_logger(configure(str(run_dir), ["csv", "tensorboard"] + (["stdout"] if args.verbose else [])))
    started = utc_now()
    model.learn(args.timesteps, progress_bar=not args.no_progress)
    save_sb3(model, run_dir / MODEL_DIR)
    result = _final_evaluation(model, args.env, args.eval_episodes, args.seed)
    arguments = encode_sb3_kwargs(constructor_arguments(model), "model")
    write_run_record(run_dir, {
        "algorithm": f"sb3-{type(model).__name__.lower()}",
        "hyperparameters": {"policy": hyperparameters.get("policy", "MlpPolicy"), **arguments},
        "env_id": args.env, "seed": args.seed, "num_timesteps": model.num_timesteps, "start_time": started,
        "end_time": utc_now(), "final_evaluation": result, "final_evaluation_skipped": _skip_reason(args),
    })
    return run_dir


def _final_evaluation(model: Any, env_id: str, n_episodes: int, seed: int) -> dict[str, Any] | None:
    from cairnrl.core.evaluation import evaluate, final_evaluation_seed

    if n_episodes == 0:
        return None
    return evaluate(model, env_id, n_episodes=n_episodes, seed=final_evaluation_seed(seed)).to_dict()


def _print_evaluation(result: dict | None, skipped: str | None = None, title: str = "final evaluation") -> None:
    if result is None:
        print(f"{title} skipped" + (f": {skipped}" if skipped else ""))
        return
    print(
        f"{title} over {len(result['returns'])} episodes: mean return {result['mean']:.4g} "
        f"(std {result['std']:.3g}, IQM {result['iqm']:.4g}), "
        f"mean length {sum(result['lengths']) / len(result['lengths']):.1f}"
    )


# ---------------------------------------------------------------------------------------------------- eval
def _eval(args: argparse.Namespace) -> int:
    """Evaluate a run folder; by default exactly as its final evaluation (same env, seed and episode count)."""
    from cairnrl.algos.registry import get_algorithm, is_sb3
    from cairnrl.core.evaluation import evaluate, final_evaluation_seed
    from cairnrl.core.sb3_io import load_sb3
    from cairnrl.envs import make

    run_dir = Path(args.run_dir)
    record = read_run_record(run_dir)
    algorithm = get_algorithm(record["algorithm"])
    env_id = args.env or record.get("env_id")
    if env_id is None:
        raise ConfigError(f"{run_dir}/run.json records no env id; pass --env")
    final = record.get("final_evaluation") or {}
    episodes = args.episodes or len(final.get("returns", [])) or 10
    if args.seed is not None:
        seed = args.seed
    elif isinstance(record.get("seed"), int):
        seed = final_evaluation_seed(record["seed"])
    else:
        raise ConfigError(f"{run_dir}/run.json records no training seed; pass --seed")
    # The training env's constructor arguments, when the run recorded them (an env made with kwargs).
    env_kwargs = {} if args.env else record.get("env_kwargs") or {}
    if not isinstance(env_kwargs, dict):
        raise ConfigError(f"{run_dir}/run.json: env_kwargs must be a mapping, got {env_kwargs!r}")
    env = make(env_id, **env_kwargs)
    try:
        # Algorithms that act through their env (SEQUOIA's feasible set) need it when loading.
        model = load_sb3(run_dir / MODEL_DIR) if is_sb3(algorithm) else algorithm.load(run_dir / MODEL_DIR, env=env)
        result = evaluate(model, env, n_episodes=episodes, seed=seed, deterministic=not args.stochastic)
    finally:
        env.close()
    _print_evaluation(result.to_dict(), title=f"evaluation on {env_id} (seed {seed})")
    return 0


# ---------------------------------------------------------------------------------------------------- list
def _list(args: argparse.Namespace) -> int:
    if args.what in ("algorithms", "all"):
        from cairnrl.algos.registry import algorithm_names, get_algorithm

        print("algorithms (cairnrl train NAME):")
        for name in algorithm_names():
            summary = (get_algorithm(name).__doc__ or "").strip().splitlines()
            print(f"  {name:<10} {summary[0] if summary else ''}")
    if args.what in ("envs", "all"):
        import gymnasium as gym

        print("envs registered by cairnrl (any Gymnasium id works too; gymnasium.pprint_registry() lists them):")
        for env_id in sorted(name for name in gym.registry if name.startswith("cairnrl/")):
            spec = gym.registry[env_id]
            horizon = f"horizon {spec.max_episode_steps}" if spec.max_episode_steps else ""
            print(f"  {env_id:<36} {horizon}")
    return 0


# ---------------------------------------------------------------------------------------------------- parser
def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``cairnrl`` argument parser; with ``command`` set, the other modules' commands stay help-only stubs,
    so parsing does not import them."""
    parser = ArgumentParser(prog="cairnrl", description=plain_text(__doc__),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cairnrl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train an algorithm and print its final evaluation")
    train.add_argument("algorithm", help=f"one of {', '.join(ALGORITHM_NAMES)} (cairnrl list algorithms)")
    train.add_argument("--env", default=None, help="env id (cairnrl/... or any Gymnasium id; cairnrl list envs); "
                       "offline algorithms evaluate on it (default: the dataset's env)")
    train.add_argument("--dataset", default=None, help="offline algorithms (iql, td3bc, bc, ...): a dataset file or "
                       "folder that cairnrl.data.load reads")
    train.add_argument("--timesteps", type=positive_int, required=True,
                       help="env steps to train for (offline algorithms: gradient updates)")
    train.add_argument("--seed", type=nonnegative_int, default=0)
    train.add_argument("--logdir", default="runs", help="folder for run folders (TensorBoard, run.json, model)")
    train.add_argument("--name", default=None, help="run name prefix inside --logdir (default: the algorithm)")
    train.add_argument("--config", default=None, help="JSON/YAML file of hyperparameters")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    train.add_argument("--eval-episodes", type=nonnegative_int, default=10,
                       help="episodes of the final evaluation (0 skips it)")
    train.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    train.add_argument("--verbose", type=nonnegative_int, default=0)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(func=_train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a trained run folder",
        description="Evaluate a run folder. By default it repeats the training's final evaluation: the same env, "
                    "number of episodes and evaluation seed, so the numbers match.")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=positive_int, default=None,
                          help="episodes (default: as many as the final evaluation, else 10)")
    evaluate.add_argument("--seed", type=nonnegative_int, default=None,
                          help="evaluation seed (default: the one the final evaluation used)")
    evaluate.add_argument("--env", default=None, help="evaluate on another env id")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of acting greedily")
    evaluate.set_defaults(func=_eval)

    listing = commands.add_parser("list", help="list the algorithms and the registered cairnrl envs")
    listing.add_argument("what", nargs="?", choices=("algorithms", "envs", "all"), default="all")
    listing.set_defaults(func=_list)

    for name, (module, help_text) in EXTERNAL_COMMANDS.items():
        if command is None or command == name:
            importlib.import_module(module).register(commands)
        else:
            commands.add_parser(name, help=help_text, add_help=False)
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
    arguments = sys.argv[1:] if argv is None else argv
    command = next((item for item in arguments if not item.startswith("-")), "")
    return run_parser(build_parser(command), arguments)


if __name__ == "__main__":
    raise SystemExit(main())
