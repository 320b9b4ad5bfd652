"""Training state declared once: the base class finds it on the model and saves/restores it (no pickling).

:func:`gather_state` walks a model's attributes and collects everything a resume needs, by type:

* ``torch.nn.Module`` -> its ``state_dict`` (tensor group ``module.<name>``);
* ``torch.optim.Optimizer`` -> tensors in ``optim.<name>``, the JSON rest (param groups, step counts) in the config;
* learning-rate schedulers -> their (JSON) ``state_dict``;
* ``torch.Generator`` -> its state tensor; ``numpy.random.Generator`` -> its bit-generator state (JSON);
* any :class:`Stateful` object (replay buffers, dataset samplers) -> its ``state()`` tensors and JSON meta;
* the attributes a class names in ``_saved_attributes`` -> JSON values or tensors, as they are.

:func:`restore_state` is the inverse and writes into the objects the freshly built model already has, so an
algorithm with four optimisers and three samplers writes no save/restore code at all.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from cairnrl.core import checkpoint as ckpt
from cairnrl.core.seeding import generator_state, restore_generator
from cairnrl.exceptions import CheckpointError

_MODULE, _OPTIM, _STATEFUL, _TENSORS = "module.", "optim.", "state.", "attributes"


@runtime_checkable
class Stateful(Protocol):
    """An object that can give and take its own resumable state as tensors plus JSON metadata."""

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...


def _stateful_attributes(owner: object) -> list[tuple[str, Any]]:
    return sorted((name, value) for name, value in vars(owner).items() if not name.startswith("__"))


def load_generator_state(generator: torch.Generator, saved: torch.Tensor, name: str) -> None:
    """Continue ``generator`` from ``saved``; a state saved by another device type's generator (a model trained on
    a GPU and loaded on the CPU, or back) cannot continue there, so ``generator`` keeps its fresh seeding and a
    warning says that resumed training is not the uninterrupted run's (prediction is unaffected)."""
    if saved.numel() == generator.get_state().numel():
        generator.set_state(saved)
        return
    warnings.warn(f"the random stream {name!r} was saved on another device type than {generator.device.type!r} "
                  "and cannot continue here; it restarts from the model's seed (exact resume needs the device type "
                  "the checkpoint was saved on)", stacklevel=3)


def gather_state(owner: object, saved_attributes: Iterable[str] = ()) -> tuple[dict[str, Any], ckpt.TensorGroups]:
    """JSON state and tensor groups of every stateful attribute of ``owner`` (see the module docstring)."""
    state: dict[str, Any] = {"optimizers": {}, "schedulers": {}, "np_generators": {}, "stateful": {}, "values": {}}
    groups: ckpt.TensorGroups = {"generators": {}, _TENSORS: {}}
    for name, value in _stateful_attributes(owner):
        if isinstance(value, torch.nn.Module):
            groups[_MODULE + name] = value.state_dict()
        elif isinstance(value, torch.optim.Optimizer):
            groups[_OPTIM + name], state["optimizers"][name] = ckpt.optimizer_state(value)
        elif isinstance(value, LRScheduler):
            state["schedulers"][name] = value.state_dict()
        elif isinstance(value, torch.Generator):
            groups["generators"][name] = value.get_state()
        elif isinstance(value, np.random.Generator):
            state["np_generators"][name] = generator_state(value)
        elif isinstance(value, Stateful):
            groups[_STATEFUL + name], state["stateful"][name] = value.state()
    for name in saved_attributes:
        value = getattr(owner, name)
        if isinstance(value, torch.Tensor):
            groups[_TENSORS][name] = value
        else:
            state["values"][name] = value
    return state, groups


def restore_state(
    owner: object, state: dict[str, Any], groups: ckpt.TensorGroups, saved_attributes: Iterable[str] = ()
) -> None:
    """Write a :func:`gather_state` result back into ``owner``'s (already built) objects."""

    def group(name: str) -> dict[str, torch.Tensor]:
        if name not in groups:
            raise CheckpointError(f"the checkpoint has no saved state for {name!r}; it has {sorted(groups)}")
        return groups[name]

    for name, value in _stateful_attributes(owner):
        if isinstance(value, torch.nn.Module):
            value.load_state_dict(group(_MODULE + name))
        elif isinstance(value, torch.optim.Optimizer):
            ckpt.load_optimizer_state(value, group(_OPTIM + name), state["optimizers"][name])
        elif isinstance(value, LRScheduler):
            value.load_state_dict(state["schedulers"][name])
        elif isinstance(value, torch.Generator):
            load_generator_state(value, group("generators")[name], name)
        elif isinstance(value, np.random.Generator):
            setattr(owner, name, restore_generator(state["np_generators"][name]))
        elif isinstance(value, Stateful):
            value.load_state(group(_STATEFUL + name), state["stateful"][name])
    tensors = groups.get(_TENSORS, {})
    for name in saved_attributes:
        if name in tensors:
            current = getattr(owner, name, None)  # a tensor built already, else None: the owner's device
            device = current.device if isinstance(current, torch.Tensor) else getattr(owner, "device", "cpu")
            setattr(owner, name, tensors[name].to(device))
        elif name in state["values"]:
            setattr(owner, name, state["values"][name])
        else:
            raise CheckpointError(f"the checkpoint has no saved value for {name!r}")
