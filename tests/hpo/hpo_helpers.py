"""Shared settings of the cairnrl.hpo tests: tiny studies (a few hundred env steps per run, CPU, one thread)."""

from __future__ import annotations

#: SQIRL on CartPole: cheap, deterministic on CPU, and its scores vary with the configuration.
SQIRL_SPACE = {
    "episodes_per_timestep": {"type": "categorical", "choices": [4, 16, 64]},
    "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "n_epochs": {"type": "categorical", "choices": [10, 20]},
}
SQIRL_STUDY = dict(
    search_space=SQIRL_SPACE, n_trials=3, budget=300, tuning_seeds=(0, 1), test_seeds=(1000, 1001, 1002),
    eval_episodes=3, n_evaluations=2, top_k=2,
)
