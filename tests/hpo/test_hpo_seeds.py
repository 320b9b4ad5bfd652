"""Tuning / test seed parsing, derived seeds and the overlap refusal."""

from __future__ import annotations

import pytest

from cairnrl.core.seeding import spawn_seeds
from cairnrl.exceptions import ConfigError
from cairnrl.hpo import check_seed_overlap, derived_seeds, parse_seeds
from cairnrl.hpo.seeds import evaluation_seed


def test_parse_seeds_ranges_and_lists():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("0, 2,5-7") == (0, 2, 5, 6, 7)
    assert parse_seeds("1000-1002") == (1000, 1001, 1002)
    assert parse_seeds([3, 1]) == (3, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [("4-0", "empty range '4-0'"), ("a", "'a' is not a seed"), ("1,1", "duplicates"), ([], "must not be empty"),
     ([-1], "integer in"), ("0-2,2", "duplicates")],
)
def test_parse_seeds_rejects(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text, "tuning_seeds")


def test_derived_seeds_match_what_the_runs_use():
    # SB3 gets one env seeded with the run seed; evaluation episodes come from the cairnrl-train eval seed.
    episodes = spawn_seeds(spawn_seeds(7, 1, key=3)[0], 4, key=0x5EEDE1A1)
    assert evaluation_seed(7) == spawn_seeds(7, 1, key=3)[0]
    assert derived_seeds(7, sb3=True, eval_episodes=4) == {7, *episodes}
    # cairnrl algorithms also seed their training envs and action space with keyed children.
    cairnrl_seeds = derived_seeds(7, sb3=False, eval_episodes=4)
    assert {7, *episodes, *spawn_seeds(7, 64, key=1), spawn_seeds(7, 1, key=2)[0]} == cairnrl_seeds


def test_overlapping_run_seeds_are_refused():
    with pytest.raises(ConfigError, match=r"tuning and test seeds overlap: \[3, 4\]"):
        check_seed_overlap((0, 1, 2, 3, 4), (3, 4, 5), sb3=True, eval_episodes=10)


def test_derived_env_seed_overlap_is_refused_for_cairnrl_algorithms_only():
    env_seed_of_tuning_run_0 = spawn_seeds(0, 3, key=1)[2]  # the third training env of tuning seed 0
    with pytest.raises(ConfigError, match=f"test seed {env_seed_of_tuning_run_0} and tuning seed 0 derive"):
        check_seed_overlap((0, 1), (env_seed_of_tuning_run_0,), sb3=False, eval_episodes=10)
    check_seed_overlap((0, 1), (env_seed_of_tuning_run_0,), sb3=True, eval_episodes=10)  # SB3 does not use it


def test_derived_evaluation_seed_overlap_is_refused():
    episode_seed = spawn_seeds(evaluation_seed(1), 5, key=0x5EEDE1A1)[4]  # evaluation episode 5 of tuning seed 1
    for sb3 in (True, False):
        with pytest.raises(ConfigError, match="derive the same env/evaluation seed"):
            check_seed_overlap((0, 1), (episode_seed,), sb3=sb3, eval_episodes=5)
    check_seed_overlap((0, 1), (episode_seed,), sb3=True, eval_episodes=4)  # fewer episodes: no clash


def test_default_seed_sets_are_disjoint():
    check_seed_overlap(range(5), range(1000, 1010), sb3=False, eval_episodes=10)
    check_seed_overlap(range(5), range(5, 10), sb3=True, eval_episodes=10)  # how-to-autorl's template
