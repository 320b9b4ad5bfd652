"""Temporally-extended epsilon-greedy exploration (Dabney, Ostrovski and Barreto, "Temporally-Extended
epsilon-Greedy Exploration", ICLR 2021, section 3).

When the agent is not already exploring, with probability epsilon it starts an exploratory *option*: one random
action repeated for ``n ~ zeta(mu)`` steps (``P(n) proportional to n^-mu``, ``n >= 1``, so most options last one
step and a few last many). Plain epsilon-greedy is the limit ``mu -> infinity`` (``duration_exponent=None``).
Repeats reach states that need the same action several steps in a row, which one-step dithering reaches only with
probability ``epsilon^n``; the paper's default is ``mu = 2``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cairnrl.core.validation import check_float


class ExtendedEpsilonGreedy:
    """Behaviour policy state for temporally-extended epsilon-greedy: the running option, if any.

    :param duration_exponent: ``mu`` of the zeta distribution of option durations (must exceed 1); ``None`` makes
        every exploratory action last one step (plain epsilon-greedy, drawing nothing more from the generator).
    :param name: the parameter's name in the error an invalid exponent raises.
    """

    def __init__(self, duration_exponent: float | None, name: str = "duration_exponent") -> None:
        self.duration_exponent = None if duration_exponent is None else check_float(
            name, duration_exponent, low=1.0, low_inclusive=False)
        self._held: np.ndarray | None = None
        self._remaining = 0

    def reset(self) -> None:
        """End the running option (call at every episode start: options never cross an episode boundary)."""
        self._held, self._remaining = None, 0

    @property
    def exploring(self) -> bool:
        """Whether an option started earlier still has steps to run."""
        return self._remaining > 0

    def act(
        self,
        rng: np.random.Generator,
        epsilon: float,
        greedy: Callable[[], np.ndarray],
        random_action: Callable[[np.random.Generator], np.ndarray],
    ) -> np.ndarray:
        """The next behaviour action: the running option's action, else a new option with probability ``epsilon``
        (its action from ``random_action(rng)``, its duration from ``rng``), else ``greedy()``."""
        if self._held is not None and self._remaining > 0:
            self._remaining -= 1
            return self._held.copy()
        if rng.random() < epsilon:
            action = np.asarray(random_action(rng))
            if self.duration_exponent is not None:
                self._held, self._remaining = action.copy(), int(rng.zipf(self.duration_exponent)) - 1
            return action
        return greedy()
