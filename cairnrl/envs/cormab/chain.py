"""The per-arm 4-state birth-death chain shared by every coRMAB problem (the released
``MultiStateRMAB``, used in every experiment of Xu et al., ICLR 2025).

Each arm moves up one state with probability ``p`` and down one otherwise, clipped to ``[0, 3]``; ``p`` depends
on the action only, not on the state. Rewards form a myopia-breaking table: for the first ``B`` ("good") arms the
reward *falls* from state 0 to 2 and only the top state pays ``R in {4, 5, 6}``; the other arms have
``[0.1, 0.15, 0.2, R]`` with ``R in {1, 2, 3}``. The learning and evaluation signal is the expected next-step
reward ``sum_j p_j r_j(min(s_j+1, 3)) + (1 - p_j) r_j(max(s_j-1, 0))``, the paper's variance-reduction trick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cairnrl.exceptions import ConfigError

N_STATES = 4
GOOD_ARM_REWARDS = (0.2, 0.15, 0.1)
OTHER_ARM_REWARDS = (0.1, 0.15, 0.2)


@dataclass(frozen=True, eq=False)
class ArmChain:
    """Up-probabilities when passive/active and the reward table ``state_rewards[j, s]`` of J arms."""

    p_passive: np.ndarray
    p_active: np.ndarray
    state_rewards: np.ndarray

    @property
    def n_arms(self) -> int:
        return int(self.state_rewards.shape[0])

    @property
    def max_reward(self) -> float:
        """The largest one-step reward: every arm in its best state."""
        return float(self.state_rewards.max(axis=1).sum())

    def expected_reward(self, states: np.ndarray, up_prob: np.ndarray) -> np.ndarray:
        """Expected next-step reward for states ``(..., J)`` and up-probabilities ``(..., J)``; shape ``(...)``."""
        up_reward, down_reward = self.neighbour_rewards(states)
        return np.sum(up_prob * up_reward + (1.0 - up_prob) * down_reward, axis=-1)

    def neighbour_rewards(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rewards of the state above and below each arm's state (clipped), each of shape ``states.shape``."""
        states = np.asarray(states, dtype=np.int64)
        arms = np.arange(self.n_arms)
        up = self.state_rewards[arms, np.minimum(states + 1, N_STATES - 1)]
        down = self.state_rewards[arms, np.maximum(states - 1, 0)]
        return up, down

    def active_up_prob(self, actions: np.ndarray) -> np.ndarray:
        """Up-probabilities when ``actions[..., j]`` pulls arm j (the standard per-arm activation)."""
        return np.where(np.asarray(actions) > 0, self.p_active, self.p_passive)

    def next_states(self, states: np.ndarray, up_prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample the next states of all arms at once."""
        moves = np.where(rng.random(up_prob.shape) < up_prob, 1, -1)
        return np.clip(np.asarray(states, dtype=np.int64) + moves, 0, N_STATES - 1)

    def rewards_of(self, states: np.ndarray) -> float:
        """The realised reward of being in ``states``."""
        return float(self.state_rewards[np.arange(self.n_arms), np.asarray(states, dtype=np.int64)].sum())


def transition_matrices(up_prob: np.ndarray) -> np.ndarray:
    """The birth-death chain's matrices ``T[..., s, s']`` for up-probabilities of any shape ``(...)``: up one state
    with probability ``p``, down one otherwise, clipped to ``[0, 3]``."""
    up_prob = np.asarray(up_prob, dtype=np.float64)
    matrices = np.zeros((*up_prob.shape, N_STATES, N_STATES))
    for s in range(N_STATES):
        matrices[..., s, min(s + 1, N_STATES - 1)] += up_prob
        matrices[..., s, max(s - 1, 0)] += 1.0 - up_prob
    return matrices


def generate_chain(rng: np.random.Generator, n_arms: int, budget: int) -> ArmChain:
    """Draw an instance as the reference does: ``p(0) ~ U[0, 0.2]``, ``p(1) ~ U[0.7, 0.9]``, top rewards of
    the first ``budget`` arms in ``{4, 5, 6}`` and of the rest in ``{1, 2, 3}``."""
    if not 0 < budget <= n_arms:
        raise ConfigError(f"budget must lie in [1, n_arms={n_arms}], got {budget}")
    p_passive = rng.random(n_arms) * 0.2
    p_active = rng.random(n_arms) * 0.2 + 0.7
    rewards = np.empty((n_arms, N_STATES))
    rewards[:budget, :3] = GOOD_ARM_REWARDS
    rewards[budget:, :3] = OTHER_ARM_REWARDS
    rewards[:budget, 3] = rng.integers(4, 7, size=budget)
    rewards[budget:, 3] = rng.integers(1, 4, size=n_arms - budget)
    return ArmChain(p_passive=p_passive, p_active=p_active, state_rewards=rewards)
