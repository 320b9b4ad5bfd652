"""Safe checkpoints: JSON config plus safetensors tensor groups, in a directory or a zip file.

Layout (identical inside a directory and a zip)::

    manifest.json        format name and version, SHA-256 of every other file
    config.json          algorithm name, hyperparameters, spaces, counters, any JSON state
    <group>.safetensors  one file per tensor group (weights, optimizer state, buffers, ...)

Nothing is pickled. Loading verifies the manifest, so a truncated, missing or edited file raises
:class:`~cairnrl.exceptions.CheckpointError` instead of silently loading wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from cairnrl.core.fileio import atomic_write
from cairnrl.exceptions import CheckpointError

FORMAT_NAME = "cairnrl-checkpoint"
FORMAT_VERSION = 1
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

TensorGroups = dict[str, dict[str, torch.Tensor]]


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: the JSON config and the tensor groups."""

    config: dict
    groups: TensorGroups = field(default_factory=dict)

    def group(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of one group, or a :class:`CheckpointError` naming the missing group."""
        if name not in self.groups:
            raise CheckpointError(f"checkpoint has no tensor group {name!r}; it has {sorted(self.groups)}")
        return self.groups[name]


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    return tensor.detach().to("cpu").contiguous()


def _encode(config: dict, groups: dict) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        files["config.json"] = json.dumps(config, indent=2, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint config is not plain JSON: {error}") from error
    for name, tensors in groups.items():
        if not _GROUP_NAME.match(name):
            raise CheckpointError(f"tensor group name {name!r} must match {_GROUP_NAME.pattern}")
        payload = {key: _as_tensor(value) for key, value in tensors.items()}
        files[f"{name}.safetensors"] = save_safetensors_bytes(payload) if payload else b""
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return files


def save_checkpoint(path: str | Path, config: dict, groups: dict | None = None) -> Path:
    """Write ``config`` and tensor ``groups`` to ``path``.

    A path ending in ``.zip`` becomes a zip archive; any other path becomes a directory. Values may be
    torch tensors or NumPy arrays. Returns the path written.
    """
    path = Path(path)
    files = _encode(config, groups or {})
    if path.suffix == ".zip":
        def write_zip(temporary: Path) -> None:
            with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
                for name, data in files.items():
                    archive.writestr(name, data)

        atomic_write(path, write_zip)
    else:
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.safetensors"):
            stale.unlink()
        for name, data in files.items():
            (path / name).write_bytes(data)
    return path


def _read_files(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {child.name: child.read_bytes() for child in path.iterdir() if child.is_file()}
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                return {name: archive.read(name) for name in archive.namelist()}
        except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as error:
            raise CheckpointError(f"{path}: not a readable checkpoint zip ({error})") from error
    raise CheckpointError(f"{path}: no checkpoint there (neither a directory nor a file)")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying every file against its manifest."""
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".zip").is_file():
        path = path.with_name(path.name + ".zip")
    files = _read_files(path)
    if "manifest.json" not in files:
        raise CheckpointError(f"{path}: manifest.json is missing; this is not a cairnrl checkpoint")
    try:
        manifest = json.loads(files["manifest.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: manifest.json is not valid JSON ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: manifest.json does not describe a {FORMAT_NAME}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {manifest.get('format_version')!r} is not supported "
            f"(this cairnrl reads version {FORMAT_VERSION})"
        )
    expected = manifest.get("files")
    if not isinstance(expected, dict) or "config.json" not in expected:
        raise CheckpointError(f"{path}: manifest.json lists no config.json")
    for name, digest in expected.items():
        if name not in files:
            raise CheckpointError(f"{path}: {name} is missing (truncated checkpoint?)")
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise CheckpointError(f"{path}: {name} does not match its checksum (corrupted or edited)")
    config = json.loads(files["config.json"])
    groups: TensorGroups = {}
    for name in expected:
        if not name.endswith(".safetensors"):
            continue
        data = files[name]
        try:
            groups[name.removesuffix(".safetensors")] = load_safetensors_bytes(data) if data else {}
        except (SafetensorError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{path}: {name} is not a valid safetensors file ({error})") from error
    return Checkpoint(config=config, groups=groups)


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's ``state_dict`` into tensors and a JSON part (no pickling needed)."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, values in meta.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"optimizer state does not fit this model: {error}") from error
