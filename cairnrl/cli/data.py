"""``cairnrl data make | collect | info | validate | convert | teacher train | teacher publish``.

:func:`register` adds the ``data`` command to the top-level ``cairnrl`` parser.  Every sub-command returns 0 on
success; a user error ends as ``cairnrl: error: ...`` on stderr and exit code 2 (no traceback), as for every
``cairnrl`` command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cairnrl.cli.options import (
    add_group,
    add_progress_option,
    add_seed_option,
    add_threads_option,
    positive_int,
)
from cairnrl.data.collection import collect
from cairnrl.data.dataset import Dataset
from cairnrl.data.io import FORMATS, load, save
from cairnrl.data.pointmaze import BACKENDS, make_pointmaze_stitch
from cairnrl.data.recipes import committed_teacher, make_dataset, parse_recipe
from cairnrl.data.teacher import (
    TABLE_HEADER,
    d4rl_hyperparameters,
    load_teacher_policy,
    publish_teacher,
    table_row,
    train_teacher,
)
from cairnrl.exceptions import ConfigError

#: The Point Maze stitching recipe of MBRCSL (:mod:`cairnrl.data.pointmaze`), made without a teacher.
POINTMAZE_STITCH = "pointmaze-stitch"


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="Minari dataset folder, D4RL .hdf5 file or .npz file")
    parser.add_argument("--format", choices=FORMATS, help="skip format detection")
    parser.add_argument("--env-id", help="env whose spaces to validate against (recorded in the metadata)")
    parser.add_argument("--observation-key", help="key to load from Dict observations (Minari)")
    parser.add_argument("--max-episode-steps", type=positive_int, help="flat files without timeouts: cut episodes")


def _load(args: argparse.Namespace) -> Dataset:
    return load(
        args.path,
        format=args.format,
        env_id=args.env_id,
        observation_key=args.observation_key,
        max_episode_steps=args.max_episode_steps,
    )


def _print_summary(dataset: Dataset) -> None:
    info = dataset.summary()
    returns = info["return"]
    print(f"{info['source']}: {info['episodes']} episodes, {info['steps']} steps, env {info['env_id']}")
    print(f"  observations {info['observation_space']}, actions {info['action_space']}")
    print(f"  episode ends: {info['terminations']} terminated, {info['truncations']} truncated; lengths "
          f"{info['episode_length']['min']}..{info['episode_length']['max']}")
    line = (f"  return mean {returns['mean']:.2f} std {returns['std']:.2f} min {returns['min']:.2f} "
            f"max {returns['max']:.2f}")
    if "normalized_return_mean" in info:
        line += f" (normalized mean {info['normalized_return_mean']:.1f})"
    print(line)


def _validate(args: argparse.Namespace) -> int:
    dataset = _load(args)
    print(f"OK {dataset.source}: {dataset.num_episodes} episodes, {dataset.num_steps} steps passed validation")
    return 0


def _info(args: argparse.Namespace) -> int:
    dataset = _load(args)
    if args.json:
        print(json.dumps({"summary": dataset.summary(), "metadata": dataset.metadata}, indent=2, default=str))
    else:
        _print_summary(dataset)
    return 0


def _convert(args: argparse.Namespace) -> int:
    dataset = _load(args)
    written = save(dataset, args.destination, format=args.to, overwrite=args.overwrite)
    print(f"wrote {written} ({dataset.num_episodes} episodes, {dataset.num_steps} steps)")
    return 0


def _collect(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    policy = "random" if args.policy == "random" else load_teacher_policy(args.policy, which=args.which)
    dataset = collect(
        args.env_id,
        policy,
        n_episodes=args.episodes,
        n_steps=args.steps,
        seed=args.seed,
        deterministic=not args.stochastic,
        progress_bar=not args.no_progress,
    )
    written = save(dataset, args.out, overwrite=args.overwrite)
    _print_summary(dataset)
    print(f"wrote {written}")
    return 0


def _make(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    recipes = [parse_recipe(name) for name in args.names if name != POINTMAZE_STITCH]
    for target in [out / recipe.name for recipe in recipes] + [out / name for name in args.names
                                                               if name == POINTMAZE_STITCH]:
        if target.exists() and not args.overwrite:
            raise ConfigError(f"{target} already exists; pass --overwrite to replace it")
    for recipe in recipes:
        teacher = args.teacher or committed_teacher(recipe.env)
        teacher_dir = out / "teachers" / f"{recipe.env}-sac-budget{args.budget}-seed{args.seed}"
        if recipe.needs_teacher and teacher is None:
            print(f"{recipe.name}: no committed teacher for {recipe.env}; training one in {teacher_dir}")
        dataset = make_dataset(
            recipe.name,
            budget=args.budget,
            n_steps=args.steps,
            seed=args.seed,
            teacher=teacher if recipe.needs_teacher else None,
            teacher_dir=teacher_dir if recipe.needs_teacher and teacher is None else None,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            deterministic=args.deterministic,
            device=args.device,
            progress_bar=not args.no_progress,
        )
        written = save(dataset, out / recipe.name, overwrite=args.overwrite)
        print(f"{recipe.name}: wrote {written} ({dataset.num_episodes} episodes, {dataset.num_steps} steps)")
        for part, stats in dataset.metadata["returns"].items():
            print(f"  {part}: return {stats['mean']:.1f} ± {stats['std']:.1f} over {stats['episodes']} episodes, "
                  f"normalized {stats['normalized_mean']:.1f}")
    if POINTMAZE_STITCH in args.names:
        dataset = make_pointmaze_stitch(args.maze_trajectories, seed=args.seed, backend=args.maze_backend,
                                        progress_bar=not args.no_progress)
        written = save(dataset, out / POINTMAZE_STITCH, overwrite=args.overwrite)
        print(f"{POINTMAZE_STITCH}: wrote {written} ({dataset.num_episodes} episodes, {dataset.num_steps} steps)")
        for group in dataset.metadata["groups"]:
            print(f"  {'->'.join(['S', *group['subgoals']])} then {group['ending']}: return {group['return_mean']:.1f}")
    return 0


def _teacher_train(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    run = train_teacher(
        args.env_id,
        args.budget,
        args.run_dir,
        hyperparameters=(None if args.learning_starts is None
                         else d4rl_hyperparameters(args.budget, args.learning_starts)),
        seed=args.seed,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        deterministic_eval_episodes=args.deterministic_eval_episodes,
        checkpoint_every=args.checkpoint_every,
        max_steps=args.chunk,
        device=args.device,
        progress_bar=not args.no_progress,
    )
    last = run.history[-1] if run.history else None
    print(f"{run.run_dir}: {run.num_timesteps:,} of {run.config['budget']:,} steps"
          + (f"; last evaluation at step {last['step']:,}: return {last['mean_return']:.1f}" if last else "")
          + ("" if run.done else " (continue with the same command)"))
    return 0


def _teacher_publish(args: argparse.Namespace) -> int:
    teacher = publish_teacher(args.run_dir, args.out, n_replay=args.replay_snapshots, overwrite=args.overwrite)
    files = sorted(path for path in teacher.path.iterdir() if path.is_file())
    size = sum(path.stat().st_size for path in files)
    print(f"wrote {teacher.path} ({len(files)} files, {size / 1e6:.2f} MB): expert step {teacher.expert_step:,}, "
          f"medium step {teacher.medium_step:,}, replay steps {[step for step, _ in teacher.replay]}")
    print(TABLE_HEADER)
    print(table_row(teacher))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` and its sub-commands to a ``cairnrl`` parser's sub-parsers."""
    data = add_group(subparsers, "data", __doc__)
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="load a dataset and run every check")
    _add_load_options(validate)
    validate.set_defaults(func=_validate)

    info = commands.add_parser("info", help="summarise a dataset")
    _add_load_options(info)
    info.add_argument("--json", action="store_true", help="print summary and metadata as JSON")
    info.set_defaults(func=_info)

    convert = commands.add_parser("convert", help="rewrite a dataset in another format")
    _add_load_options(convert)
    convert.add_argument("destination", help="folder (Minari), .hdf5 (D4RL) or .npz")
    convert.add_argument("--to", choices=FORMATS, help="output format (default: from the destination's suffix)")
    convert.add_argument("--overwrite", action="store_true")
    convert.set_defaults(func=_convert)

    gather = commands.add_parser("collect", help="roll out a policy and save the episodes")
    gather.add_argument("env_id")
    gather.add_argument("--out", required=True, help="destination (folder, .hdf5 or .npz)")
    budget = gather.add_mutually_exclusive_group(required=True)
    budget.add_argument("--episodes", type=positive_int)
    budget.add_argument("--steps", type=positive_int)
    gather.add_argument("--policy", default="random", help="'random' or a published teacher folder")
    gather.add_argument("--which", default="expert", choices=("expert", "medium"), help="teacher snapshot to use")
    add_seed_option(gather)
    gather.add_argument("--stochastic", action="store_true", help="sample actions instead of the policy mean")
    add_threads_option(gather)
    add_progress_option(gather)
    gather.add_argument("--overwrite", action="store_true")
    gather.set_defaults(func=_collect)

    make = commands.add_parser("make", help="build D4RL-style MuJoCo datasets (hopper-medium, ...)")
    make.add_argument("names", nargs="+", help="e.g. hopper-medium walker2d-random+expert100 pointmaze-stitch")
    make.add_argument("--out", required=True, help="folder for the datasets (and teachers trained here)")
    make.add_argument("--teacher", help="published teacher folder (default: the committed data/teachers/<env>)")
    make.add_argument("--budget", type=positive_int, default=1_000_000,
                      help="SAC training steps of a teacher trained here when none is committed")
    make.add_argument("--steps", type=positive_int, default=1_000_000, help="steps per random/medium/expert part")
    add_seed_option(make)
    make.add_argument("--eval-every", type=positive_int, help="steps between evaluations of a teacher trained here "
                                                                "(default budget/20)")
    make.add_argument("--eval-episodes", type=positive_int, default=5)
    make.add_argument("--deterministic", action="store_true", help="collect with the SAC mean action")
    make.add_argument("--device", default="cpu")
    add_threads_option(make)
    add_progress_option(make)
    make.add_argument("--overwrite", action="store_true")
    make.add_argument("--maze-backend", choices=BACKENDS, default="cairnrl", help="pointmaze-stitch: which env")
    make.add_argument("--maze-trajectories", type=positive_int, default=1000, help="pointmaze-stitch: trajectories")
    make.set_defaults(func=_make)

    teacher = commands.add_parser("teacher", help="train (resumably) and publish the SAC teachers of 'data make'")
    teacher_commands = teacher.add_subparsers(dest="teacher_command", required=True, metavar="COMMAND")
    train = teacher_commands.add_parser("train", help="train or continue a SAC teacher run directory")
    train.add_argument("env_id")
    train.add_argument("--budget", type=positive_int, required=True, help="total SAC env steps of the run")
    train.add_argument("--run-dir", required=True, help="run directory (continued when it exists)")
    train.add_argument("--chunk", type=positive_int, help="train at most this many steps in this call")
    add_seed_option(train)
    train.add_argument("--learning-starts", type=int, help="uniform-random warm-up steps (default min(10k, budget/10))")
    train.add_argument("--eval-every", type=positive_int, help="steps between evaluations and snapshots "
                                                                 "(default budget/100)")
    train.add_argument("--eval-episodes", type=positive_int, default=5, help="stochastic evaluation episodes")
    train.add_argument("--deterministic-eval-episodes", type=positive_int, default=3)
    train.add_argument("--checkpoint-every", type=positive_int, help="steps between resume states "
                                                                       "(default 5 x eval-every)")
    train.add_argument("--device", default="cpu")
    add_threads_option(train)
    add_progress_option(train)
    train.set_defaults(func=_teacher_train)
    publish = teacher_commands.add_parser("publish", help="write the small committed teacher of a run directory")
    publish.add_argument("run_dir")
    publish.add_argument("--out", required=True, help="teacher folder, e.g. data/teachers/hopper")
    publish.add_argument("--replay-snapshots", type=positive_int, default=8,
                         help="snapshots kept to regenerate medium-replay")
    publish.add_argument("--overwrite", action="store_true")
    publish.set_defaults(func=_teacher_publish)

