"""SEQUOIA's warm start: a supervised fit of Q to the myopic expected reward, which the released code
(``get_training_data`` and its pre-training step) runs before the DQN loop of Algorithm 1 (Xu et al., ICLR 2025,
section 4.1).

Phase 0 builds the reference's dataset of (state, action) pairs, each labelled with the expected next-step reward
(:mod:`cairnrl.envs.cormab.chain`) and given one sampled next state (so a tenth of it can seed the replay memory, as
the reference did):

* "strategic" states (all 0, all 1, each one-hot, each one-cold; 2 + 2J states in {0, 1}^J) crossed with
  "strategic" actions (all 1, all 0, each one-hot, each one-cold; 2 + 2N) plus 10 random feasible actions;
* ``50 H`` random states in {0..3}^J with B random arms forced to the top state, each with the action pulling
  exactly those arms (B random components when N != J, the multiple-interventions problem), 10 random feasible
  actions and the strategic actions.

Infeasible actions (all ones) are part of it on purpose: they widen the input coverage. The
reference drew multiple-intervention states in {0, 1}; here every problem uses the 4-state draw above.

Phase 1 regresses the network onto the labels with MSE and AdamW (amsgrad), multiplying the learning rate by
``lr_decay`` after every epoch as the reference did. Labels are rewards (the reference fitted costs, their
negation, and minimised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cairnrl.envs.cormab.base import CoRMABProblem
from cairnrl.envs.cormab.chain import N_STATES


@dataclass(frozen=True)
class WarmStartData:
    """Labelled pairs: states ``(n, J)``, actions ``(n, N)``, expected rewards ``(n,)`` and sampled next states."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


def _one_hot_block(n: int) -> np.ndarray:
    """All ones, all zeros, each one-hot and each one-cold vector of length ``n``: ``(2 + 2n, n)``."""
    eye = np.eye(n, dtype=np.int8)
    return np.concatenate([np.ones((1, n), np.int8), np.zeros((1, n), np.int8), eye, 1 - eye])


def warm_start_dataset(
    problem: CoRMABProblem,
    n_random_states: int,
    n_random_actions: int,
    rng: np.random.Generator,
) -> WarmStartData:
    """The reference's warm-start pairs (module docstring) for ``problem``."""
    n_arms, n_actions, budget = problem.n_arms, problem.n_actions, problem.budget
    strategic_actions = _one_hot_block(n_actions)
    strategic_states = _one_hot_block(n_arms).astype(np.int64)
    block_actions = np.concatenate([problem.sample_feasible(n_random_actions, rng).astype(np.int8),
                                    strategic_actions])
    obs = [np.repeat(strategic_states, block_actions.shape[0], axis=0)]
    actions = [np.tile(block_actions, (strategic_states.shape[0], 1))]

    if n_random_states:
        states = rng.integers(0, N_STATES, size=(n_random_states, n_arms))
        top_arms = np.argsort(rng.random((n_random_states, n_arms)), axis=1)[:, :budget]
        states[np.arange(n_random_states)[:, None], top_arms] = N_STATES - 1
        targeted = np.zeros((n_random_states, n_actions), dtype=np.int8)
        chosen = top_arms if n_actions == n_arms else np.argsort(
            rng.random((n_random_states, n_actions)), axis=1)[:, :budget]
        targeted[np.arange(n_random_states)[:, None], chosen] = 1
        random_actions = problem.sample_feasible(n_random_states * n_random_actions, rng).astype(np.int8)
        per_state = 1 + n_random_actions + strategic_actions.shape[0]
        stacked = np.concatenate([
            targeted[:, None, :],
            random_actions.reshape(n_random_states, n_random_actions, n_actions),
            np.broadcast_to(strategic_actions, (n_random_states, *strategic_actions.shape)),
        ], axis=1)
        obs.append(np.repeat(states, per_state, axis=0))
        actions.append(stacked.reshape(-1, n_actions))

    all_obs, all_actions = np.concatenate(obs), np.concatenate(actions)
    up_prob = problem.up_probabilities(all_actions)
    rewards = problem.chain.expected_reward(all_obs, up_prob)
    next_obs = problem.chain.next_states(all_obs, up_prob, rng)
    return WarmStartData(all_obs.astype(np.int8), all_actions, rewards.astype(np.float32), next_obs.astype(np.int8))


def fit_myopic(
    network: nn.Module,
    data: WarmStartData,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    adam_eps: float,
    lr_decay: float,
    rng: np.random.Generator,
    on_epoch: Callable[[float], None] | None = None,
) -> list[float]:
    """Regress ``network([a, s])`` onto the expected rewards; returns the mean training loss of every epoch
    (``on_epoch`` is called with each, e.g. to advance a progress bar).

    Each epoch visits ``floor(n / batch_size)`` minibatches of a fresh permutation (the reference drew the same
    number of minibatches with replacement).
    """
    parameter = next(network.parameters())
    inputs = torch.as_tensor(np.concatenate([data.actions, data.obs], axis=1), dtype=parameter.dtype,
                             device=parameter.device)
    labels = torch.as_tensor(data.rewards, dtype=parameter.dtype, device=parameter.device)[:, None]
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, eps=adam_eps, amsgrad=True)
    n_batches = max(len(data) // batch_size, 1)
    losses = []
    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(len(data))[: n_batches * batch_size], device=parameter.device)
        total = torch.zeros((), device=parameter.device)
        for batch in order.view(n_batches, -1):
            loss = nn.functional.mse_loss(network(inputs[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        losses.append(float(total) / n_batches)
        if on_epoch is not None:
            on_epoch(losses[-1])
        for group in optimizer.param_groups:
            group["lr"] *= lr_decay
    return losses
