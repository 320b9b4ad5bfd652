"""What every ``cairnrl`` sub-command shares: the parser class, option types and helpers, and the error policy.

A user error (a bad argument, a :class:`~cairnrl.exceptions.CairnError` such as an unknown algorithm or a damaged
file, a missing or unreadable file) ends as one line ``cairnrl: error: ...`` on stderr and exit code 2, never a
traceback.  This module imports nothing heavy, so parsing and ``--help`` stay instant.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, NoReturn

from cairnrl.core.fileio import read_json_or_yaml
from cairnrl.exceptions import CairnError, ConfigError

#: The exit code of every user error, as argparse uses for bad arguments.
USER_ERROR = 2
#: The prefix of every user error line on stderr.
ERROR_PREFIX = "cairnrl: error: "
#: Every algorithm ``train`` and ``tune`` accept (``cairnrl list algorithms`` prints them from the registry; a test
#: keeps the two equal, so the help never needs to import the algorithms).
ALGORITHM_NAMES = ("bc", "contrastive_ucb", "contrastive_ucb_dqn", "fdvl", "iql", "mbrcsl", "recoil", "s3rl",
                   "sequoia", "sqirl", "td3bc", "sb3-a2c", "sb3-ddpg", "sb3-dqn", "sb3-ppo", "sb3-sac", "sb3-td3")
#: The command groups whose modules load only when their command runs: ``name -> (module, one-line help)``.
GROUPS = {
    "data": ("cairnrl.cli.data", "offline datasets: make, collect, inspect, validate, convert"),
    "tune": ("cairnrl.cli.tune", "tune hyperparameters on tuning seeds, report on unseen test seeds"),
    "bench": ("cairnrl.cli.bench", "run a benchmark script from a suites folder and regenerate BENCHMARKS.md"),
}
# File errors a user causes by naming a wrong path; other OSErrors (a full disk, a broken pipe) stay tracebacks.
_FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with cairnrl's one error format: usage, then ``cairnrl: error: ...``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USER_ERROR, f"{ERROR_PREFIX}{message}\n")


def plain_text(docstring: str | None) -> str:
    """A reStructuredText docstring as plain text for ``--help``: roles and literal markup removed."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", docstring or "")
    return text.replace("``", "")


def add_group(subparsers: argparse._SubParsersAction, name: str, docstring: str | None) -> argparse.ArgumentParser:
    """The sub-parser of command group ``name`` (see :data:`GROUPS`) with its module docstring as description."""
    return subparsers.add_parser(name, help=GROUPS[name][1], description=plain_text(docstring),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


# ----------------------------------------------------------------------------------------------- option types
def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds, verbosity, episode counts where 0 means none)."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


# ------------------------------------------------------------------------------------------- shared options
def add_seed_option(parser: argparse.ArgumentParser, default: int | None = 0, help: str = "master seed") -> None:
    """``--seed N`` (an integer >= 0)."""
    parser.add_argument("--seed", type=nonnegative_int, default=default, help=help)


def add_set_option(parser: argparse.ArgumentParser, help: str = "override a hyperparameter") -> None:
    """``--set KEY=VALUE`` (repeatable; read with :func:`parse_assignments`)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_env_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--env ID``: a ``cairnrl/...`` or any Gymnasium env id."""
    parser.add_argument("--env", default=None, metavar="ID", help=help)


def add_dataset_option(parser: argparse.ArgumentParser) -> None:
    """``--dataset PATH``: the dataset file or folder of an offline algorithm."""
    parser.add_argument("--dataset", default=None, metavar="PATH",
                        help="offline algorithms (iql, td3bc, bc, ...): a dataset file or folder that "
                             "cairnrl.data.load reads")


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch CPU threads."""
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: hide the progress bar."""
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


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
    data = read_json_or_yaml(path, "config file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of hyperparameters")
    data = data.get("hyperparameters", data)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: 'hyperparameters' must be a mapping")
    return data


# -------------------------------------------------------------------------------------------- error policy
def report_error(message: str) -> int:
    """Print ``cairnrl: error: message`` on stderr and return the user-error exit code."""
    print(f"{ERROR_PREFIX}{message}", file=sys.stderr)
    return USER_ERROR


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run the chosen command's ``func``; returns the exit code.

    Bad arguments (argparse's own exit), a :class:`CairnError` and a missing or unreadable file all return 2 after
    one ``cairnrl: error: ...`` line; ``--help`` and ``--version`` return 0.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else USER_ERROR
    try:
        return int(args.func(args))
    except CairnError as error:
        return report_error(str(error))
    except _FILE_ERRORS as error:
        where = f": {error.filename}" if error.filename else ""
        return report_error(f"{error.strerror or error}{where}")
