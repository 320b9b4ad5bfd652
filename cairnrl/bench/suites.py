"""Suites folders: a Python package of benchmark scripts, each declaring ``EXPERIMENT = Experiment(...)``.

The harness never looks for scripts inside the installed ``cairnrl`` package: a suites folder is named by the
caller (``cairnrl bench --suites DIR``) or is ``./benchmarks`` in the current directory, such as the
``benchmarks/`` folder of a cairnrl clone.  The folder must be a package (hold an ``__init__.py``) so that its
scripts can import each other as ``FOLDER.NAME`` and worker processes can import them by module name.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

from cairnrl.bench.experiment import Experiment
from cairnrl.exceptions import ConfigError

#: The suites folder looked for in the current directory when none is named.
DEFAULT_SUITES = "benchmarks"


def find_suites(path: str | Path | None = None) -> Path:
    """The suites folder ``path``, else ``./benchmarks`` (absolute); a :class:`ConfigError` when it is no package."""
    folder = Path(path) if path is not None else Path.cwd() / DEFAULT_SUITES
    if not (folder / "__init__.py").is_file():
        named = "" if path is not None else " (name one with --suites DIR, or run from a cairnrl clone)"
        raise ConfigError(f"{folder} is not a suites folder: it needs an __init__.py and benchmark scripts that "
                          f"declare EXPERIMENT = Experiment(...){named}")
    return folder.resolve()


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
    """Import ``FOLDER.NAME`` (with the folder's parent on ``sys.path``) and return its ``EXPERIMENT``."""
    available = list_benchmarks(folder)
    if name not in available:
        listed = ", ".join(sorted(available)) or "none"
        raise ConfigError(f"unknown benchmark {name!r} in {folder}; available: {listed}")
    imported = sys.modules.get(folder.name)
    if imported is not None and Path(getattr(imported, "__file__", None) or "").parent.resolve() != folder.resolve():
        raise ConfigError(f"cannot import {folder}: this process already imported another package named "
                          f"{folder.name!r} (from {getattr(imported, '__file__', None)})")
    root = str(folder.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(f"{folder.name}.{name}")
    experiment = getattr(module, "EXPERIMENT", None)
    if not isinstance(experiment, Experiment):
        raise ConfigError(f"{folder / (name + '.py')}: EXPERIMENT is not a cairnrl.bench.Experiment")
    return experiment
