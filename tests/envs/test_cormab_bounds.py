"""The occupancy-measure LP upper bound on the coRMAB optimum (cairnrl.envs.cormab.bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from cairnrl.algos.rmab_baselines import WhittleIndexPolicy
from cairnrl.envs.cormab import CapacityEnv, MatchingEnv, MultipleInterventionsEnv, PathEnv
from cairnrl.envs.cormab.bounds import acting_components, fluid_upper_bound
from cairnrl.envs.cormab.exact import ExactMDP
from cairnrl.exceptions import ConfigError, EnvError

SMALL = [
    MultipleInterventionsEnv(n_arms=5, n_interventions=5, budget=2, instance_seed=1, horizon=8),
    PathEnv(n_arms=5, budget=2, instance_seed=1, horizon=8),
    MatchingEnv(n_arms=5, budget=2, instance_seed=1, horizon=8),
    CapacityEnv(n_arms=5, budget=2, instance_seed=1, horizon=8),
]
IDS = ["interventions", "path", "matching", "capacity"]


@pytest.mark.parametrize("env", SMALL, ids=IDS)
def test_the_bound_lies_above_the_exact_optimum_and_close_to_it(env):
    mdp = ExactMDP(env)
    optimum = mdp.mean_reward_per_step(mdp.finite_horizon(env.horizon).values[0], env.horizon)
    bound = fluid_upper_bound(env, env.horizon)
    assert optimum <= bound + 1e-7
    assert optimum >= 0.95 * bound, (optimum, bound)
    whittle = mdp.mean_reward_per_step(mdp.evaluate(mdp.policy_table(WhittleIndexPolicy(env)), env.horizon),
                                       env.horizon)
    assert whittle <= bound + 1e-7


@pytest.mark.parametrize("env", SMALL, ids=IDS)
def test_one_step_from_one_state_the_bound_is_the_best_feasible_action(env):
    """With H = 1 and a known start state the LP maximises a linear function over conv(F): exactly the best
    feasible action's expected reward."""
    mdp = ExactMDP(env)
    state = np.array([0, 1, 2, 3, 1])
    best = float(mdp.rewards[mdp.state_index(state)].max())
    assert fluid_upper_bound(env, 1, start_states=state[None]) == pytest.approx(best, rel=1e-7)


def test_the_convex_hull_is_tighter_than_the_lp_relaxation_of_a_knapsack():
    env = CapacityEnv(n_arms=5, budget=2, instance_seed=1, horizon=8)
    hull = fluid_upper_bound(env, env.horizon)
    relaxation = fluid_upper_bound(env, env.horizon, max_candidates=1)  # too many candidates: rows relaxed
    assert hull <= relaxation + 1e-7
    mdp = ExactMDP(env)
    assert mdp.mean_reward_per_step(mdp.finite_horizon(env.horizon).values[0], env.horizon) <= relaxation + 1e-7


def test_start_states_enter_through_each_arms_marginal():
    env = MatchingEnv(n_arms=5, budget=2, instance_seed=1, horizon=8)
    states = np.eye(5, dtype=np.int64)  # every arm starts in state 1 in one of five episodes: marginal 0.2
    assert fluid_upper_bound(env, 8, start_states=states) == pytest.approx(fluid_upper_bound(env, 8, start_prob=0.2))


def test_acting_components_are_the_pulled_arm_or_its_interventions():
    path = PathEnv(n_arms=5, budget=2, instance_seed=1).problem
    assert [c.tolist() for c in acting_components(path)] == [[0], [1], [2], [3], [4]]
    interventions = MultipleInterventionsEnv(n_arms=5, n_interventions=5, budget=2, instance_seed=1).problem
    expected = [np.flatnonzero(interventions.weights[arm] > 0).tolist() for arm in range(5)]
    assert [c.tolist() for c in acting_components(interventions)] == expected


def test_bad_input_raises_clear_errors():
    env = MatchingEnv(n_arms=5, budget=2, instance_seed=1, horizon=8)
    with pytest.raises(EnvError, match="coRMAB problem or env"):
        fluid_upper_bound("not an env", 8)
    with pytest.raises(ConfigError, match="horizon"):
        fluid_upper_bound(env, 0)
    with pytest.raises(ConfigError, match="start_states"):
        fluid_upper_bound(env, 8, start_states=np.zeros((3, 4)))
    with pytest.raises(ConfigError, match="start_states"):
        fluid_upper_bound(env, 8, start_states=np.full((3, 5), 4))
    with pytest.raises(ConfigError, match="at least one row"):
        fluid_upper_bound(env, 8, start_states=np.zeros((0, 5)))
    with pytest.raises(ConfigError, match="start_prob"):
        fluid_upper_bound(env, 8, start_prob=1.5)
