"""The ``cairnrl`` command line: ``train``, ``eval``, ``list``, and the ``data``, ``tune`` and ``bench`` groups.

Every user error (a bad argument, hyperparameter, env or file) ends as one line ``cairnrl: error: ...`` on
stderr and exit code 2, never a traceback.
"""

# Parsing imports nothing heavy: torch, SB3 and the algorithms load once a command runs, so --help is instant.

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING

from cairnrl import __version__
from cairnrl.cli import train
from cairnrl.cli.options import (
    ALGORITHM_NAMES,
    GROUPS,
    ArgumentParser,
    parse_assignments,
    plain_text,
    read_config,
    run_parser,
)

if TYPE_CHECKING:
    from cairnrl.bench.experiment import Experiment

__all__ = ["ALGORITHM_NAMES", "build_parser", "main", "parse_assignments", "read_config", "run_script"]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``cairnrl`` argument parser; with ``command`` set, the other command groups stay help-only stubs, so
    parsing does not import their modules."""
    parser = ArgumentParser(prog="cairnrl", description=plain_text(__doc__),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cairnrl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.register(commands)
    for name, (module, help_text) in GROUPS.items():
        if command is None or command == name:
            importlib.import_module(module).register(commands)
        else:
            commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cairnrl`` console script; returns the exit code (2 on any user error)."""
    arguments = sys.argv[1:] if argv is None else argv
    command = next((item for item in arguments if not item.startswith("-")), "")
    return run_parser(build_parser(command), arguments)


def run_script(experiment: Experiment, argv: list[str] | None = None) -> int:
    """``python -m benchmarks.NAME [options]`` (a benchmark script run as a module): the same as
    ``cairnrl bench NAME [options]``."""
    return main(["bench", experiment.name, *(sys.argv[1:] if argv is None else argv)])
