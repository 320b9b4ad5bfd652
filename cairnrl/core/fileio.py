"""Files written whole or not at all, and the one test of what counts as a plain JSON value.

Every file or folder cairnrl writes for later reading (checkpoints, datasets, cached teachers, benchmark runs)
goes through :func:`atomic_write`, so a run killed mid-write leaves the previous file or nothing, never a
truncated one that a later run would mistake for a finished result.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cairnrl.exceptions import ConfigError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def atomic_write(
    path: str | Path,
    write: Callable[[Path], object],
    *,
    suffix: str = "",
    temporary: str | Path | None = None,
    backup: str | Path | None = None,
) -> Path:
    """Create ``path`` (a file or a folder) whole or not at all, and return it.

    ``write(temporary)`` fills a temporary sibling of ``path`` (same folder, so the final rename stays on one file
    system); only when it returns does the temporary replace ``path`` (``os.replace``, atomic for a file).  A
    folder already at ``path`` is removed just before the rename (or first renamed to ``backup`` and removed after,
    so a reader that falls back to ``backup`` always finds a complete copy).  If ``write`` raises, the temporary is
    deleted and ``path`` is left as it was.

    :param suffix: ending of the temporary's name, for writers that insist on one (``np.savez`` appends ``.npz``
        to a name without it, and ``save_checkpoint`` writes a zip only for a ``.zip`` name).
    :param temporary: the temporary's path, when the caller needs to know it beforehand (e.g. to recognise a
        left-over one after a crash); by default ``.<name>.<pid>.tmp<suffix>`` next to ``path``.
    :param backup: where an existing folder at ``path`` waits while it is replaced (default: it is deleted first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(temporary) if temporary is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    kept = Path(backup) if backup is not None else None
    for stale in (scratch, kept):
        if stale is not None:
            _remove(stale)
    try:
        write(scratch)
        if scratch.is_dir() and path.exists():
            if kept is None:
                _remove(path)
            else:
                path.rename(kept)
        os.replace(scratch, path)
    except BaseException:
        _remove(scratch)
        raise
    if kept is not None:
        _remove(kept)
    return path


def is_json_value(value: Any) -> bool:
    """Whether ``value`` is plain JSON: None, bool, int, *finite* float, str, and lists, tuples and str-keyed dicts
    of them.

    NaN and infinity are rejected: they are not JSON (RFC 8259 has no literal for them), and cairnrl writes every
    JSON file with ``allow_nan=False``, so a value holding them could be checked but never saved.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(is_json_value(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_json_value(item) for key, item in value.items())
    return False


def read_json_or_yaml(path: str | Path, what: str) -> Any:
    """The value stored in a JSON file, or a YAML one (``.yaml``/``.yml``, needs PyYAML); ``what`` names the file
    in the :class:`~cairnrl.exceptions.ConfigError` raised when it is missing or unreadable."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} {file} does not exist")
    text = file.read_text()
    if file.suffix.lower() in {".yaml", ".yml"}:
        try:
            import yaml  # optional: only YAML files need it
        except ImportError as error:
            raise ConfigError(f"{file}: reading YAML needs PyYAML (pip install pyyaml), or use JSON") from error
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{file} is not valid YAML: {error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{file} is not valid JSON: {error}") from error
