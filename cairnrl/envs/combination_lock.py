"""The combination lock: a block MDP where undirected exploration fails (Misra et al., HOMER, ICML 2020).

Used by Qiu et al., *Contrastive UCB* (ICML 2022) style experiments to show that contrastive low-rank features with
an elliptical bonus explore where epsilon-greedy does not.

* Horizon H; at every level h there are three latent states: two good ones, A_h and B_h, and a bad one, C_h.
* Each good latent has one secret correct action, drawn once per instance (``instance_seed``).  The correct action
  moves to A_{h+1} or B_{h+1} with probability 1/2 each; every other action moves to C_{h+1}.  C is absorbing.
* Reward 1 on reaching a good latent at level H (the end of the episode).  With ``anti_shaping`` the agent also
  receives 0.1 with probability 1/2 when it falls from a good latent into C, which lures myopic agents off the path.
* The observation of latent z at level h is ``M [onehot(z); onehot(h); eps]`` with ``eps ~ N(0, noise^2 I)`` and M a
  fixed orthogonal (normalised Hadamard) matrix, so the latent is decodable from the observation but never given.
  The transition has rank 2 per level (the next-latent distributions {A, B} uniform and C), a low-rank MDP.

A uniformly random policy reaches the reward with probability ``n_actions ** -H``; the optimal return is 1.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from scipy.linalg import hadamard

from cairnrl.core.seeding import check_seed
from cairnrl.core.validation import check_bool, check_float, check_int

#: Index of the bad latent C; 0 and 1 are the good latents A and B.
BAD = 2
N_LATENTS = 3
ANTI_SHAPING_REWARD = 0.1


class CombinationLock(gym.Env):
    """The combination-lock block MDP (see the module docstring).

    :param horizon: H, the number of actions per episode (levels 0..H-1 act, level H ends the episode).
    :param n_actions: |A|; one of them is correct in each good latent.
    :param noise: standard deviation of the Gaussian noise coordinates of the observation.
    :param anti_shaping: pay 0.1 * Bernoulli(1/2) when falling from a good latent into C.
    :param instance_seed: draws the secret correct actions.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}  # type: ignore[misc]  # gymnasium: instance var

    def __init__(
        self,
        horizon: int = 10,
        n_actions: int = 10,
        noise: float = 0.1,
        anti_shaping: bool = False,
        instance_seed: int = 0,
    ) -> None:
        self.horizon = check_int("horizon", horizon, minimum=1)
        self.n_actions = check_int("n_actions", n_actions, minimum=2)
        self.noise = check_float("noise", noise, low=0.0)
        self.anti_shaping = check_bool("anti_shaping", anti_shaping)
        self.instance_seed = check_seed(instance_seed, "instance_seed")
        #: correct_actions[h, z]: the secret action of good latent z in {A, B} at level h.
        self.correct_actions = np.random.default_rng(self.instance_seed).integers(
            0, self.n_actions, size=(self.horizon, 2)
        )
        content = N_LATENTS + self.horizon + 1
        # At least as many noise coordinates as informative ones; a power of two so the Hadamard matrix exists.
        self.observation_dim = 2 ** math.ceil(math.log2(2 * content))
        self.n_noise = self.observation_dim - content
        self._mixing = (hadamard(self.observation_dim) / math.sqrt(self.observation_dim)).astype(np.float64)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.observation_dim,), np.float32)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self._level = 0
        self._latent = 0

    # ------------------------------------------------------------------ exact facts for tests and benchmarks
    @property
    def optimal_return(self) -> float:
        """The best expected return: always taking the correct action reaches the reward with probability 1."""
        return 1.0

    @property
    def random_success_probability(self) -> float:
        """Probability that the uniformly random policy reaches the reward: ``n_actions ** -horizon``."""
        return float(self.n_actions) ** -self.horizon

    @property
    def random_return(self) -> float:
        """Expected return of the uniformly random policy (reward plus expected anti-shaping payments)."""
        stay = 1.0 / self.n_actions
        falls = sum(stay**h * (1.0 - stay) for h in range(self.horizon)) if self.anti_shaping else 0.0
        return self.random_success_probability + 0.5 * ANTI_SHAPING_REWARD * falls

    def latent_decoder(self) -> np.ndarray:
        """A ``[3, observation_dim]`` matrix D with ``argmax(D @ obs)`` the latent of ``obs`` (0 = A, 1 = B, 2 = C)."""
        return self._mixing.T[:N_LATENTS].astype(np.float32)

    def decode(self, observation: np.ndarray) -> tuple[int, int]:
        """The (level, latent) an observation was emitted from (the mixing matrix is orthogonal)."""
        content = self._mixing.T @ np.asarray(observation, dtype=np.float64)
        return int(np.argmax(content[N_LATENTS : N_LATENTS + self.horizon + 1])), int(np.argmax(content[:N_LATENTS]))

    # ------------------------------------------------------------------ dynamics
    def _observe(self) -> np.ndarray:
        content = np.zeros(self.observation_dim)
        content[self._latent] = 1.0
        content[N_LATENTS + self._level] = 1.0
        content[N_LATENTS + self.horizon + 1 :] = self.noise * self.np_random.standard_normal(self.n_noise)
        return (self._mixing @ content).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {"latent": self._latent, "level": self._level}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._level = 0
        self._latent = int(self.np_random.integers(2))
        return self._observe(), self._info()

    def step(self, action: Any):
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"action {action!r} is not in {self.action_space}")
        if self._level >= self.horizon:
            raise gym.error.ResetNeeded("the episode has ended; call reset()")
        reward = 0.0
        if self._latent != BAD and int(action) == self.correct_actions[self._level, self._latent]:
            next_latent = int(self.np_random.integers(2))
        else:
            if self.anti_shaping and self._latent != BAD and self.np_random.random() < 0.5:
                reward += ANTI_SHAPING_REWARD
            next_latent = BAD
        self._level += 1
        self._latent = next_latent
        terminated = self._level == self.horizon
        if terminated and next_latent != BAD:
            reward += 1.0
        return self._observe(), reward, terminated, False, self._info()
