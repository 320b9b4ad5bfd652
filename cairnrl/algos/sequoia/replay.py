"""SEQUOIA's replay memory: proportional prioritised replay (Schaul et al., 2016) or uniform sampling.

The reference used torchrl's ``PrioritizedReplayBuffer`` (alpha 0.6, beta 0.4) but never called
``update_priority``, so every transition kept the initial priority: sampling was uniform and the importance
weights were all 1. ``mode="prioritized"`` updates priorities with the absolute TD
error after every gradient step, as prioritised replay intends; ``mode="uniform"`` is the reference's effective
behaviour.

With a capacity of 1e4 transitions a cumulative sum per sample (O(capacity) numpy work) costs microseconds, so
no sum tree is needed.
"""

from __future__ import annotations

import numpy as np
import torch

from cairnrl.core.buffers import TransitionBuffer
from cairnrl.core.validation import check_choice, check_float
from cairnrl.exceptions import CheckpointError

REPLAY_MODES = ("prioritized", "uniform")


class ReplayMemory:
    """Transitions ``(obs, action, next_obs, reward, done)`` with optional proportional priorities.

    :param capacity: the most transitions kept (the oldest are overwritten).
    :param n_arms: J, the length of an observation.
    :param n_actions: N, the length of an action vector.
    :param mode: ``"prioritized"`` or ``"uniform"``.
    :param alpha: priority exponent: ``P(i) = p_i^alpha / sum_k p_k^alpha``.
    :param beta: importance-sampling exponent: ``w_i = (n P(i))^-beta / max_k w_k``.
    :param priority_eps: added to ``|TD error|`` so every transition keeps a positive probability.
    """

    def __init__(
        self,
        capacity: int,
        n_arms: int,
        n_actions: int,
        *,
        mode: str = "prioritized",
        alpha: float = 0.6,
        beta: float = 0.4,
        priority_eps: float = 1e-6,
    ) -> None:
        self.mode = check_choice("replay", mode, REPLAY_MODES)
        self.alpha = check_float("per_alpha", alpha, low=0.0)
        self.beta = check_float("per_beta", beta, low=0.0)
        self.priority_eps = check_float("priority_eps", priority_eps, low=0.0, low_inclusive=False)
        self.buffer = TransitionBuffer(
            capacity,
            {
                "obs": ((n_arms,), np.int8),
                "action": ((n_actions,), np.int8),
                "next_obs": ((n_arms,), np.int8),
                "reward": ((), np.float32),
                "done": ((), np.float32),
            },
        )
        self.priorities = np.zeros(capacity, dtype=np.float64)
        self.max_priority = 1.0

    def __len__(self) -> int:
        return len(self.buffer)

    def add(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, reward: np.ndarray,
            done: np.ndarray) -> None:
        """Append a batch of transitions; new transitions get the largest priority seen so far."""
        n = len(obs)
        if n == 0:
            return
        start = self.buffer.position
        self.buffer.add(obs=obs, action=action, next_obs=next_obs, reward=reward, done=done)
        kept = min(n, self.buffer.capacity)
        self.priorities[(start + np.arange(kept)) % self.buffer.capacity] = self.max_priority

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """``(indices, transitions, importance weights)`` of ``batch_size`` draws with replacement."""
        size = len(self.buffer)
        if self.mode == "uniform":
            indices = rng.integers(size, size=batch_size)
            return indices, self.buffer.get(indices), np.ones(batch_size, dtype=np.float32)
        scaled = self.priorities[:size] ** self.alpha
        cumulative = np.cumsum(scaled)
        total = cumulative[-1]
        indices = np.minimum(np.searchsorted(cumulative, rng.random(batch_size) * total, side="right"), size - 1)
        probabilities = scaled[indices] / total
        # Normalise by the largest possible weight (that of the least likely transition), as Schaul et al. do.
        weights = (size * probabilities) ** (-self.beta) / (size * scaled.min() / total) ** (-self.beta)
        return indices, self.buffer.get(indices), weights.astype(np.float32)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Set the priorities of sampled transitions to ``|TD error| + priority_eps`` (no-op when uniform)."""
        if self.mode == "uniform":
            return
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64)) + self.priority_eps
        self.priorities[indices] = priorities
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and JSON metadata for a checkpoint."""
        tensors, meta = self.buffer.state()
        tensors["priorities"] = torch.from_numpy(self.priorities[: len(self.buffer)].copy())
        return tensors, {**meta, "max_priority": self.max_priority}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Inverse of :meth:`state`."""
        tensors = dict(tensors)
        if "priorities" not in tensors:
            raise CheckpointError("replay priorities are missing from the checkpoint")
        priorities = tensors.pop("priorities").numpy()
        self.buffer.load_state(tensors, meta)
        if priorities.shape != (len(self.buffer),):
            raise CheckpointError(f"replay priorities have shape {priorities.shape}, expected ({len(self.buffer)},)")
        self.priorities = np.zeros(self.buffer.capacity, dtype=np.float64)
        self.priorities[: len(self.buffer)] = priorities
        self.max_priority = float(meta["max_priority"])
