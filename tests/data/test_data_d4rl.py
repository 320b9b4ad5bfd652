"""D4RL flat HDF5 and NPZ files: episode splitting, quirks, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from cairnrl.data import detect_format, from_d4rl_arrays, load
from cairnrl.exceptions import DatasetError

MIXED = [(4, "terminal"), (5, "timeout"), (3, "both"), (6, "terminal"), (2, "none")]


def check_alignment(dataset, lengths):
    """Every episode (the last one included) holds rows [e, 0..T] in order, and aligned actions/rewards."""
    np.testing.assert_array_equal(dataset.episode_lengths, lengths)
    for index, episode in enumerate(dataset):
        steps = np.arange(len(episode))
        np.testing.assert_array_equal(episode.observations[:, 0], index)
        np.testing.assert_array_equal(episode.actions[:, 0], index)
        np.testing.assert_array_equal(episode.actions[:, 1], steps)
        np.testing.assert_array_equal(episode.rewards, 100 * index + steps)


def test_mixed_terminals_and_timeouts_with_next_observations(tmp_path, make_flat, hdf5_writer):
    arrays = make_flat(MIXED)
    arrays["infos/qpos"] = arrays["observations"][:, :2] * 2
    path = hdf5_writer(tmp_path / "hopper_medium-v2.hdf5", arrays)
    dataset = load(path)
    check_alignment(dataset, [4, 5, 3, 6, 2])
    for episode in dataset:
        np.testing.assert_array_equal(episode.observations[:, 1], np.arange(len(episode) + 1))
        np.testing.assert_array_equal(episode.infos["qpos"][:-1, 1], 2 * np.arange(len(episode)))
    ends = [(e.terminations[-1], e.truncations[-1]) for e in dataset]
    # terminal, timeout, both flags kept, terminal, file end without a flag -> truncated.
    assert ends == [(True, False), (False, True), (True, True), (True, False), (False, True)]
    assert dataset.metadata["d4rl"]["unflagged_episode_ends"] == 1
    # Reference scores come from the D4RL-style file name.
    assert dataset.metadata["ref_min_score"] == pytest.approx(-20.272305)


def test_without_next_observations_timeout_steps_are_dropped(tmp_path, make_flat, hdf5_writer):
    path = hdf5_writer(tmp_path / "data.hdf5", make_flat(MIXED, next_observations=False))
    dataset = load(path)
    # Terminal episodes keep every step; time-out / unflagged ones lose their last step.
    check_alignment(dataset, [4, 4, 3, 6, 1])
    first, second = dataset.episode(0), dataset.episode(1)
    np.testing.assert_array_equal(first.observations[-1], first.observations[-2])  # repeated terminal obs
    np.testing.assert_array_equal(second.observations[:, 1], np.arange(5))  # final obs is the real row 4
    assert second.truncations[-1] and not second.terminations.any()
    details = dataset.metadata["d4rl"]
    assert details["dropped_last_steps"] == 2 and details["repeated_final_observations"] == 3


def test_unflagged_boundary_found_by_continuity(make_flat):
    arrays = make_flat([(3, "none"), (4, "timeout")])
    dataset = from_d4rl_arrays(arrays)
    check_alignment(dataset, [3, 4])
    assert dataset.metadata["d4rl"]["continuity_splits"] == 1
    assert dataset.episode(0).truncations[-1]


def test_old_files_without_timeouts_use_max_episode_steps(make_flat):
    arrays = make_flat([(7, "none"), (3, "terminal")], next_observations=False)
    del arrays["timeouts"]
    arrays["observations"][:, 0] = 0  # one unbroken run of 10 rows ending in a terminal
    dataset = from_d4rl_arrays(arrays, max_episode_steps=4)
    # Rows cut after 4 and 8; each cut drops its unknown last step, the terminal run keeps its steps.
    np.testing.assert_array_equal(dataset.episode_lengths, [3, 3, 2])
    assert dataset.episode(2).terminations[-1]


def test_float_flags_and_column_rewards(make_flat):
    arrays = make_flat(MIXED[:2])
    arrays["terminals"] = arrays["terminals"].astype(np.float32)
    arrays["rewards"] = arrays["rewards"][:, None]
    dataset = from_d4rl_arrays(arrays)
    check_alignment(dataset, [4, 5])
    arrays["timeouts"] = arrays["timeouts"].astype(np.float32) * 2
    with pytest.raises(DatasetError, match=r"key 'timeouts', row 8: flag value 2.0 is neither 0 nor 1"):
        from_d4rl_arrays(arrays)


def test_npz_with_d4rl_keys(tmp_path, make_flat):
    path = tmp_path / "walker.npz"
    np.savez(path, **make_flat(MIXED))
    assert detect_format(path) == "npz"
    check_alignment(load(path), [4, 5, 3, 6, 2])
    np.savez(tmp_path / "objects.npz", **make_flat(MIXED), infos=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="never unpickled"):
        load(tmp_path / "objects.npz")


def test_missing_key_nan_reward_and_empty(tmp_path, make_flat, hdf5_writer):
    arrays = make_flat(MIXED)
    del arrays["actions"]
    with pytest.raises(DatasetError, match=r"missing\.hdf5: missing key\(s\) \['actions'\]"):
        load(hdf5_writer(tmp_path / "missing.hdf5", arrays))
    arrays = make_flat(MIXED)
    arrays["rewards"][11] = np.nan  # episode 2 (rows 9..11), its step 2
    with pytest.raises(DatasetError, match=r"nan\.hdf5: key 'rewards', episode 2, step 2 \(row 11\): value nan"):
        load(hdf5_writer(tmp_path / "nan.hdf5", arrays))
    empty = {key: value[:0] for key, value in make_flat(MIXED).items()}
    with pytest.raises(DatasetError, match="empty"):
        load(hdf5_writer(tmp_path / "empty.hdf5", empty))
    text = make_flat(MIXED)
    text["actions"] = np.array([b"left"] * 20)
    with pytest.raises(DatasetError, match=r"text\.hdf5: key 'actions' has dtype \|S4; expected a numeric dtype"):
        load(hdf5_writer(tmp_path / "text.hdf5", text))
    short = make_flat(MIXED)
    short["terminals"] = short["terminals"][:-1]
    with pytest.raises(DatasetError, match=r"key 'terminals' has 19 rows, expected 20"):
        load(hdf5_writer(tmp_path / "short.hdf5", short))


def test_truncated_and_garbage_files_give_clean_errors(tmp_path, make_flat, hdf5_writer):
    path = hdf5_writer(tmp_path / "full.hdf5", make_flat(MIXED * 50))
    data = path.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cut\.hdf5: .*truncated or corrupted"):
        load(cut)
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DatasetError, match=r"garbage\.hdf5: not a readable HDF5 file"):
        load(garbage)
    with pytest.raises(DatasetError, match="no such file"):
        load(tmp_path / "absent.hdf5")
    (tmp_path / "blank").mkdir()
    with pytest.raises(DatasetError, match="not a Minari dataset"):
        load(tmp_path / "blank")


def test_env_spaces_validate_shapes_and_action_bounds(tmp_path, make_flat, hdf5_writer):
    arrays = make_flat(MIXED)  # 3-dim observations, 2-dim actions
    path = hdf5_writer(tmp_path / "data.hdf5", arrays)
    with pytest.raises(DatasetError, match=r"key 'observations' rows have shape \(3,\), but the Box space"):
        load(path, env_id="CartPole-v1")  # CartPole observations are 4-dim
    ok = make_flat(MIXED)
    ok["observations"], ok["next_observations"] = ok["observations"][:, :2], ok["next_observations"][:, :2]
    ok["actions"] = np.clip(ok["actions"][:, :1], -1, 1)
    ok["actions"][7] = 2.5  # row 7 = episode 1, step 3; MountainCarContinuous actions lie in [-1, 1]
    with pytest.raises(DatasetError, match=r"key 'actions', episode 1, step 3 \(row 7\): value \[2.5\] is outside"):
        load(hdf5_writer(tmp_path / "mc.hdf5", ok), env_id="MountainCarContinuous-v0")
