"""Rollouts of a policy inside a learned dynamics model, returned as a :class:`~cairnrl.data.Dataset`.

:func:`model_rollouts` rolls a batch of trajectories of fixed horizon from given start states (each step draws
the next state and reward from a random elite of a :class:`~cairnrl.core.dynamics.ProbabilisticDynamics`);
:func:`filtered_model_rollouts` repeats that until enough trajectories pass a filter on their predicted rewards,
as MBRCSL does to keep only high-return recombinations of the data (Zhou et al., 2024, Algorithm 1). Model
trajectories never terminate; every one ends truncated at the horizon.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from cairnrl.core.dynamics import ProbabilisticDynamics
from cairnrl.core.validation import check_int
from cairnrl.data.dataset import Dataset
from cairnrl.exceptions import ConfigError, DatasetError

#: ``policy(observations [B, s], generator) -> actions [B, a]`` in the model's units.
RolloutPolicy = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
#: ``keep(rewards [B, H]) -> bool mask [B]``.
RolloutFilter = Callable[[torch.Tensor], torch.Tensor]


def _check_start_states(start_states: torch.Tensor, dynamics: ProbabilisticDynamics) -> None:
    if start_states.ndim != 2 or len(start_states) == 0:
        raise DatasetError(
            f"model rollouts need at least one start state as a [n, {dynamics.observation_dim}] array, "
            f"got shape {tuple(start_states.shape)}"
        )
    if start_states.shape[1] != dynamics.observation_dim:
        raise DatasetError(
            f"start states have {start_states.shape[1]} dimensions, the dynamics model {dynamics.observation_dim}"
        )


@torch.no_grad()
def rollout_arrays(
    dynamics: ProbabilisticDynamics,
    policy: RolloutPolicy,
    start_states: torch.Tensor,
    horizon: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(observations [B, H+1, s], actions [B, H, a], rewards [B, H])`` of ``H`` model steps from each start
    state."""
    horizon = check_int("horizon", horizon, minimum=1)
    _check_start_states(start_states, dynamics)
    observation = start_states
    observations, actions, rewards = [observation], [], []
    for _ in range(horizon):
        action = policy(observation, generator)
        observation, reward = dynamics.sample(observation, action, generator)
        observations.append(observation)
        actions.append(action)
        rewards.append(reward)
    return torch.stack(observations, dim=1), torch.stack(actions, dim=1), torch.stack(rewards, dim=1)


def arrays_to_dataset(
    observations: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    source: str = "<model rollouts>",
) -> Dataset:
    """A dataset of equal-length, truncated trajectories from ``[B, H+1, s]``, ``[B, H, a]``, ``[B, H]``."""
    n, horizon = rewards.shape
    truncations = np.zeros((n, horizon), dtype=bool)
    truncations[:, -1] = True
    observation_dtype = observation_space.dtype if observation_space is not None else np.float32
    action_dtype = action_space.dtype if action_space is not None else np.float32
    return Dataset(
        observations.reshape(n * (horizon + 1), -1).cpu().numpy().astype(observation_dtype),
        actions.reshape(n * horizon, -1).cpu().numpy().astype(action_dtype),
        rewards.reshape(-1).cpu().numpy().astype(np.float64),
        np.zeros(n * horizon, dtype=bool),
        truncations.reshape(-1),
        np.full(n, horizon),
        observation_space=observation_space,
        action_space=action_space,
        source=source,
    )


def model_rollouts(
    dynamics: ProbabilisticDynamics,
    policy: RolloutPolicy,
    start_states: torch.Tensor | np.ndarray,
    horizon: int,
    generator: torch.Generator,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
) -> Dataset:
    """One trajectory of ``horizon`` model steps per start state, as a :class:`Dataset` (all truncated)."""
    start = torch.as_tensor(
        np.asarray(start_states) if not torch.is_tensor(start_states) else start_states,
        dtype=torch.float32,
        device=dynamics.input_mean.device,
    )
    arrays = rollout_arrays(dynamics, policy, start, horizon, generator)
    return arrays_to_dataset(*arrays, observation_space=observation_space, action_space=action_space)


def filtered_model_rollouts(
    dynamics: ProbabilisticDynamics,
    policy: RolloutPolicy,
    start_states: torch.Tensor,
    horizon: int,
    keep: RolloutFilter,
    n_needed: int,
    generator: torch.Generator,
    batch_size: int = 200,
    max_rounds: int = 1000,
    progress_bar: bool = False,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], int]:
    """Kept trajectories ``(observations, actions, rewards)`` (at least ``n_needed``; every kept one of the last
    round is kept too) and the number of rounds run.

    Each round draws ``batch_size`` start states uniformly (with replacement) from ``start_states``, rolls them
    out for ``horizon`` steps and keeps those ``keep`` accepts. Raises :class:`DatasetError` saying how many were
    kept if ``max_rounds`` rounds do not give ``n_needed``.
    """
    n_needed = check_int("n_needed (rollouts to keep)", n_needed, minimum=1)
    batch_size = check_int("rollout batch_size", batch_size, minimum=1)
    max_rounds = check_int("max_rounds", max_rounds, minimum=1)
    _check_start_states(start_states, dynamics)
    kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    n_kept, rounds = 0, 0
    bar = tqdm(total=n_needed, unit="kept trajectory", desc="rollouts", disable=not progress_bar, dynamic_ncols=True)
    while n_kept < n_needed:
        if rounds == max_rounds:
            bar.close()
            raise DatasetError(
                f"the rollout filter kept {n_kept} of the {n_needed} trajectories needed after {max_rounds} rounds "
                f"of {batch_size} model rollouts; lower the threshold or n_needed, or raise max_rounds"
            )
        pick = torch.randint(len(start_states), (batch_size,), generator=generator, device=start_states.device)
        observations, actions, rewards = rollout_arrays(dynamics, policy, start_states[pick], horizon, generator)
        mask = keep(rewards)
        if mask.shape != (batch_size,) or mask.dtype != torch.bool:
            raise ConfigError(
                f"the rollout filter must return a bool mask of shape ({batch_size},), got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )
        if mask.any():
            kept.append((observations[mask], actions[mask], rewards[mask]))
            n_kept += int(mask.sum())
            bar.update(min(n_kept, n_needed) - bar.n)
        rounds += 1
    bar.close()
    observations, actions, rewards = (torch.cat(parts) for parts in zip(*kept, strict=True))
    return (observations, actions, rewards), rounds


def return_above(threshold: float) -> RolloutFilter:
    """The Point Maze filter of MBRCSL: keep a trajectory iff its predicted return exceeds ``threshold``."""
    return lambda rewards: rewards.sum(dim=1) > threshold


def returns_to_go(rewards: torch.Tensor) -> torch.Tensor:
    """``rtg[b, t] = sum_{k >= t} r[b, k]`` (the current reward included) of ``[B, H]`` rewards."""
    return rewards.flip(1).cumsum(1).flip(1)
