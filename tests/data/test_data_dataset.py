"""The Dataset object: layout, views, returns, derivations and constructor validation."""

from __future__ import annotations

import numpy as np
import pytest

from cairnrl.data import Dataset, Episode, concatenate
from cairnrl.exceptions import ConfigError, DatasetError


def test_layout_and_episode_views(toy):
    assert toy.num_episodes == 4 and toy.num_steps == 14 and len(toy) == 14
    assert toy.observations.shape == (14 + 4, 3)
    np.testing.assert_array_equal(toy.step_offsets, [0, 3, 8, 10, 14])
    np.testing.assert_array_equal(toy.observation_offsets, [0, 4, 10, 13, 18])
    last = toy.episode(-1)
    np.testing.assert_array_equal(last.observations, toy.observations[13:18])
    np.testing.assert_array_equal(last.actions, toy.actions[10:14])
    np.testing.assert_array_equal(last.infos["qpos"], toy.infos["qpos"][13:18])
    assert [len(e) for e in toy] == [3, 5, 2, 4]
    assert toy.episode(1).truncations[-1] and not toy.episode(1).terminations[-1]
    with pytest.raises(ConfigError, match="out of range"):
        toy.episode(4)


def test_transitions_align_on_every_episode(toy):
    t = toy.transitions()
    for index, episode in enumerate(toy):
        rows = t.episode_ids == index
        np.testing.assert_array_equal(t.observations[rows], episode.observations[:-1])
        np.testing.assert_array_equal(t.next_observations[rows], episode.observations[1:])
        np.testing.assert_array_equal(t.timesteps[rows], np.arange(len(episode)))


def test_returns_and_returns_to_go_match_hand_computation():
    rewards = [np.array([1.0, 2.0, 3.0]), np.array([10.0, -4.0])]
    dataset = Dataset.from_episodes(
        [
            {"observations": np.zeros((len(r) + 1, 1)), "actions": np.zeros((len(r), 1)), "rewards": r,
             "terminations": np.eye(len(r))[-1], "truncations": np.zeros(len(r))}
            for r in rewards
        ]
    )
    np.testing.assert_allclose(dataset.returns(), [6.0, 6.0])
    np.testing.assert_allclose(dataset.returns_to_go(), [6.0, 5.0, 3.0, 6.0, -4.0])
    np.testing.assert_allclose(dataset.returns_to_go(0.5), [1 + 1 + 0.75, 2 + 1.5, 3, 10 - 2, -4])
    with pytest.raises(ConfigError, match="gamma"):
        dataset.returns_to_go(0.0)


def test_select_filter_split_keep_whole_episodes(toy):
    picked = toy.select([3, 0])
    np.testing.assert_array_equal(picked.episode_lengths, [4, 3])
    np.testing.assert_array_equal(picked.episode(0).observations, toy.episode(3).observations)
    np.testing.assert_array_equal(picked.episode(1).infos["qpos"], toy.episode(0).infos["qpos"])
    assert list(picked.episode_seeds) == [toy.episode_seeds[3], toy.episode_seeds[0]]
    long = toy.filter(lambda episode: len(episode) >= 4)
    np.testing.assert_array_equal(long.episode_lengths, [5, 4])
    np.testing.assert_array_equal(toy.filter(np.array([True, False, False, True])).episode_lengths, [3, 4])
    train, validation = toy.split(0.25, seed=3)
    assert train.num_episodes == 3 and validation.num_episodes == 1
    assert train.num_steps + validation.num_steps == toy.num_steps
    again = toy.split(0.25, seed=3)[1]
    np.testing.assert_array_equal(again.observations, validation.observations)
    with pytest.raises(DatasetError, match="empty"):
        toy.select([])
    with pytest.raises(ConfigError, match="bool mask"):
        toy.filter(np.array([1, 0, 1, 0]))


def test_concatenate_records_parts(toy):
    expert = toy.select([1, 2])
    mixed = concatenate([toy, expert], names=["random", "expert2"])
    assert mixed.num_episodes == 6
    assert mixed.metadata["parts"] == [{"name": "random", "episodes": [0, 4]},
                                       {"name": "expert2", "episodes": [4, 6]}]
    np.testing.assert_array_equal(mixed.episode(5).observations, toy.episode(2).observations)
    np.testing.assert_array_equal(mixed.episode(3).actions, toy.episode(3).actions)
    other = Dataset.from_episodes([
        {"observations": np.zeros((2, 4)), "actions": np.zeros((1, 2)), "rewards": [0.0],
         "terminations": [True], "truncations": [False]}
    ])
    with pytest.raises(DatasetError, match="observation_space"):
        concatenate([toy, other])


def test_off_by_one_in_the_last_episode_is_caught():
    good = {"observations": np.zeros((3, 2)), "actions": np.zeros((2, 1)), "rewards": np.zeros(2),
            "terminations": [False, True], "truncations": [False, False]}
    bad = dict(good, observations=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match=r"'observations', episode 2: 2 observations for 2 actions"):
        Dataset.from_episodes([good, good, bad], source="toy.hdf5")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a["rewards"].__setitem__(6, np.nan), r"toy: key 'rewards', episode 1, step 3 \(row 6\): value nan"),
        (lambda a: a["actions"].__setitem__((4, 1), np.inf), r"key 'actions', episode 1, step 1 \(row 4\)"),
        (lambda a: a["observations"].__setitem__((9, 0), np.nan), r"key 'observations', episode 1, step 5 "),
        (lambda a: a["terminations"].__setitem__(1, True), r"episode 0, step 1 .*misaligned"),
        (lambda a: a.__setitem__("rewards", a["rewards"][:-1]), r"'rewards' has 13 rows, expected 14"),
        (lambda a: a.__setitem__("actions", np.full((14, 2), 1.5)), r"'actions', episode 0, step 0.*outside the Box"),
    ],
)
def test_constructor_validation_names_key_episode_and_row(toy, change, message):
    import gymnasium as gym

    arrays = {key: getattr(toy, key).copy() for key in
              ("observations", "actions", "rewards", "terminations", "truncations")}
    change(arrays)
    with pytest.raises(DatasetError, match=message):
        Dataset(**arrays, episode_lengths=toy.episode_lengths, source="toy",
                action_space=gym.spaces.Box(-1, 1, (2,), np.float32))


def test_empty_and_zero_step_episodes_are_rejected():
    with pytest.raises(DatasetError, match="empty"):
        Dataset.from_episodes([])
    with pytest.raises(DatasetError, match="episode 0 has no steps"):
        Dataset(np.zeros((1, 2)), np.zeros((0, 1)), np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), [0])


def test_to_d4rl_flags_unflagged_ends_as_timeouts():
    episode = Episode(np.arange(4.0)[:, None], np.zeros((3, 1)), np.ones(3), np.zeros(3, bool), np.zeros(3, bool))
    flat = Dataset.from_episodes([episode, episode]).to_d4rl()
    np.testing.assert_array_equal(flat["timeouts"], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(flat["next_observations"][:, 0], [1, 2, 3, 1, 2, 3])
