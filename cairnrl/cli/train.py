"""``cairnrl train``, ``cairnrl eval`` and ``cairnrl list``.

The handlers import torch, SB3 and the algorithms when they run, so that ``cairnrl train --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cairnrl.cli.options import (
    ALGORITHM_NAMES,
    add_dataset_option,
    add_env_option,
    add_progress_option,
    add_seed_option,
    add_set_option,
    add_threads_option,
    nonnegative_int,
    parse_assignments,
    positive_int,
    read_config,
)
from cairnrl.exceptions import ConfigError

if TYPE_CHECKING:
    from cairnrl.core.base import BaseAlgorithm

MODEL_DIR = "model"


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

    from cairnrl.core.records import utc_now, write_training_record
    from cairnrl.core.sb3_io import constructor_arguments, encode_sb3_kwargs, save_sb3

    name = args.name or f"SB3-{type(model).__name__}"
    run_dir = Path(args.logdir) / f"{name}_{get_latest_run_id(args.logdir, name) + 1}"
    model.set_logger(configure(str(run_dir), ["csv", "tensorboard"] + (["stdout"] if args.verbose else [])))
    started = utc_now()
    model.learn(args.timesteps, progress_bar=not args.no_progress)
    save_sb3(model, run_dir / MODEL_DIR)
    result = _final_evaluation(model, args.env, args.eval_episodes, args.seed)
    arguments = encode_sb3_kwargs(constructor_arguments(model), "model")
    write_training_record(
        run_dir, algorithm=f"sb3-{type(model).__name__.lower()}",
        hyperparameters={"policy": hyperparameters.get("policy", "MlpPolicy"), **arguments},
        env_id=args.env, seed=args.seed, num_timesteps=model.num_timesteps, start_time=started,
        final_evaluation=result, final_evaluation_skipped=_skip_reason(args),
    )
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
def register(commands: argparse._SubParsersAction) -> None:
    """Add ``train``, ``eval`` and ``list`` to the ``cairnrl`` command's sub-parsers."""
    train = commands.add_parser("train", help="train an algorithm and print its final evaluation")
    train.add_argument("algorithm", help=f"one of {', '.join(ALGORITHM_NAMES)} (cairnrl list algorithms)")
    add_env_option(train, "env id (cairnrl/... or any Gymnasium id; cairnrl list envs); offline algorithms "
                          "evaluate on it (default: the dataset's env)")
    add_dataset_option(train)
    train.add_argument("--timesteps", type=positive_int, required=True,
                       help="env steps to train for (offline algorithms: gradient updates)")
    add_seed_option(train)
    train.add_argument("--logdir", default="runs", help="folder for run folders (TensorBoard, run.json, model)")
    train.add_argument("--name", default=None, help="run name prefix inside --logdir (default: the algorithm)")
    train.add_argument("--config", default=None, help="JSON/YAML file of hyperparameters")
    add_set_option(train)
    train.add_argument("--eval-episodes", type=nonnegative_int, default=10,
                       help="episodes of the final evaluation (0 skips it)")
    add_threads_option(train)
    train.add_argument("--verbose", type=nonnegative_int, default=0)
    add_progress_option(train)
    train.set_defaults(func=_train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a trained run folder",
        description="Evaluate a run folder. By default it repeats the training's final evaluation: the same env, "
                    "number of episodes and evaluation seed, so the numbers match.")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=positive_int, default=None,
                          help="episodes (default: as many as the final evaluation, else 10)")
    add_seed_option(evaluate, None, "evaluation seed (default: the one the final evaluation used)")
    add_env_option(evaluate, "evaluate on another env id")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of acting greedily")
    evaluate.set_defaults(func=_eval)

    listing = commands.add_parser("list", help="list the algorithms and the registered cairnrl envs")
    listing.add_argument("what", nargs="?", choices=("algorithms", "envs", "all"), default="all")
    listing.set_defaults(func=_list)
