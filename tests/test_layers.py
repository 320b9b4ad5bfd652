"""The package's layers point one way: core <- envs <- data <- algos <- (hpo, bench, cli).

``mip`` (MILP modelling and solvers) is a support layer for the algorithms: the env layer must not need it.  Every
module is parsed with ``ast`` and every import it makes is checked, at module level and inside functions alike.
Command-line front ends (``cairnrl/cli.py`` and any ``*/cli.py``) sit on top whatever folder holds them.  Importing
``cairnrl.core`` or ``cairnrl.data`` must stay cheap: neither loads MuJoCo, Stable-Baselines3, SciPy, torch or
the MILP package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cairnrl

PACKAGE = Path(cairnrl.__file__).parent

# What each layer must not import (layers not listed here are unconstrained by this test).
FORBIDDEN = {
    "core": {"envs", "data", "algos", "mip", "hpo", "bench", "cli"},
    "envs": {"data", "algos", "mip", "hpo", "bench", "cli"},
    "data": {"algos", "mip", "hpo", "bench", "cli"},
    "algos": {"hpo", "bench", "cli"},
    "hpo": {"cli"},
    "bench": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str | None:
    """The layer of a ``cairnrl`` module: its subpackage, or ``cli`` for a command-line module anywhere."""
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the top-level package registers the envs and re-exports; it is no layer
    return "cli" if parts[-1] == "cli" else parts[1]


def _imports(text: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``cairnrl`` module named by an import in ``text`` (absolute or relative, at any depth), with its line.

    ``from cairnrl.x import y`` yields both ``cairnrl.x`` and ``cairnrl.x.y`` (``y`` may be a submodule).
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found += [(node.lineno, target)] + [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "cairnrl" or name.startswith("cairnrl.")]


def _violations() -> list[str]:
    problems = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        layer = _layer(module)
        forbidden = FORBIDDEN.get(layer or "", set())
        for line, name in _imports(path.read_text(), module, path.name == "__init__.py"):
            target = _layer(name)
            if target in forbidden:
                problems.add(f"{module}:{line} ({layer}) imports {name} ({target})")
    return sorted(problems)


def test_layers_point_one_way() -> None:
    assert _violations() == []


def test_the_checker_sees_function_local_and_relative_imports() -> None:
    text = "import os\n\ndef f():\n    from cairnrl.envs import make\n    from ..algos import IQL\n"
    names = {name for _, name in _imports(text, "cairnrl.core.example", is_package=False)}
    assert names == {"cairnrl.envs", "cairnrl.envs.make", "cairnrl.algos", "cairnrl.algos.IQL"}
    assert {_layer(name) for name in names} == {"envs", "algos"}
    assert _layer("cairnrl.data.cli") == "cli" and _layer("cairnrl") is None


@pytest.mark.parametrize("module", ["cairnrl.core", "cairnrl.data"])
def test_importing_a_lower_layer_stays_cheap(module: str) -> None:
    heavy = ["mujoco", "stable_baselines3", "scipy", "torch", "cairnrl.mip"]
    code = f"import sys, {module}; print(','.join(name for name in {heavy!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"import {module} loaded {result.stdout.strip()}"
