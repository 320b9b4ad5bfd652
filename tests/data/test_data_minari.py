"""Minari folders: our native format, round trips, and interoperability with the real ``minari`` package."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import h5py
import numpy as np
import pytest

from cairnrl.data import Dataset, collect, load, save
from cairnrl.exceptions import DatasetError

MIXED = [(4, "terminal"), (5, "timeout"), (3, "both"), (6, "terminal"), (2, "none")]


def test_d4rl_to_minari_to_dataset_is_equal(tmp_path, make_flat, hdf5_writer, same):
    arrays = make_flat(MIXED)
    arrays["infos/qpos"] = arrays["observations"] * 3
    original = load(hdf5_writer(tmp_path / "halfcheetah_medium-v2.hdf5", arrays))
    folder = original.save(tmp_path / "cheetah")
    assert (folder / "data" / "metadata.json").is_file() and (folder / "data" / "main_data.hdf5").is_file()
    again = load(folder)
    same(original, again)
    # and back to flat files, through HDF5 and NPZ, without losing anything but the repeated final info rows
    for name in ("flat.hdf5", "flat.npz"):
        flat = load(save(again, tmp_path / name))
        same(original, flat, metadata=False)


def test_minari_folder_of_collected_data_round_trips(tmp_path, same):
    dataset = collect("CartPole-v1", "random", n_episodes=3, seed=5)
    same(dataset, load(dataset.save(tmp_path / "cartpole")))
    with pytest.raises(DatasetError, match="already exists"):
        dataset.save(tmp_path / "cartpole")
    dataset.save(tmp_path / "cartpole", overwrite=True)


def test_dict_observations_need_observation_key(tmp_path, toy):
    folder = toy.save(tmp_path / "toy")
    metadata_file = folder / "data" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    inner = json.loads(metadata["observation_space"])
    metadata["observation_space"] = json.dumps({"type": "Dict", "subspaces": {"observation": inner}})
    metadata_file.write_text(json.dumps(metadata))
    with h5py.File(folder / "data" / "main_data.hdf5", "a") as handle:
        for index in range(toy.num_episodes):
            group = handle[f"episode_{index}"]
            values = group["observations"][()]
            del group["observations"]
            group.create_dataset("observations/observation", data=values)
    with pytest.raises(DatasetError, match=r"Dict space with keys \['observation'\]; pass observation_key"):
        load(folder)
    np.testing.assert_array_equal(load(folder, observation_key="observation").observations, toy.observations)


def test_broken_minari_folders(tmp_path, toy):
    folder = toy.save(tmp_path / "toy")
    main = folder / "data" / "main_data.hdf5"
    with h5py.File(main, "a") as handle:
        del handle["episode_2"]
    with pytest.raises(DatasetError, match=r"main_data\.hdf5: key 'episode_2' is missing; metadata says 4 episodes"):
        load(folder)
    folder = toy.save(tmp_path / "toy2")
    with h5py.File(folder / "data" / "main_data.hdf5", "a") as handle:
        actions = handle["episode_3/actions"][()]
        del handle["episode_3/actions"]
        handle.create_dataset("episode_3/actions", data=actions[:-1])
    with pytest.raises(DatasetError, match=r"'observations', episode 3: 5 observations for 3 actions"):
        load(folder)
    metadata_file = folder / "data" / "metadata.json"
    metadata_file.write_text("{not json")
    with pytest.raises(DatasetError, match=r"metadata\.json: not valid JSON"):
        load(folder)
    folder = toy.save(tmp_path / "toy3")
    data = (folder / "data" / "main_data.hdf5").read_bytes()
    (folder / "data" / "main_data.hdf5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=r"main_data\.hdf5: .*truncated or corrupted"):
        load(folder)


def test_real_minari_reads_our_folders(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    dataset = collect("Pendulum-v1", "random", n_episodes=2, seed=1)
    dataset.metadata["dataset_id"] = "cairnrl/pendulum-random-v0"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset.save(tmp_path / "cairnrl" / "pendulum-random-v0")
    theirs = minari.load_dataset("cairnrl/pendulum-random-v0")
    assert theirs.total_episodes == 2 and theirs.total_steps == 400
    assert theirs.observation_space == dataset.observation_space
    for ours, episode in zip(dataset, theirs.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(episode.observations, ours.observations)
        np.testing.assert_array_equal(episode.actions, ours.actions)
        np.testing.assert_array_equal(episode.rewards, ours.rewards)
        np.testing.assert_array_equal(episode.truncations, ours.truncations)
    assert [m["seed"] for m in theirs.storage.get_episode_metadata(range(2))] == list(dataset.episode_seeds)
    assert theirs.recover_environment().spec.id == "Pendulum-v1"


def test_we_read_folders_written_by_real_minari(tmp_path, monkeypatch, same):
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = gym.make("Hopper-v5")
    env.action_space.seed(0)
    buffers = []
    for index in range(3):
        observation, info = env.reset(seed=index)
        observations, xs = [observation], [info["x_position"]]
        actions, rewards, terminations, truncations = [], [], [], []
        done = False
        while not done:
            action = env.action_space.sample()
            observation, reward, terminated, truncated, info = env.step(action)
            observations.append(observation)
            xs.append(info["x_position"])
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            done = terminated or truncated
        buffers.append(EpisodeBuffer(
            id=index, seed=index, observations=np.array(observations), actions=np.array(actions),
            rewards=np.array(rewards), terminations=np.array(terminations), truncations=np.array(truncations),
            infos={"x_position": np.array(xs)},
        ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari asks for author, permalink, ... metadata we do not need here
        theirs = minari.create_dataset_from_buffers(
            "test/hopper-random-v0", buffers, env=env, algorithm_name="random", description="test"
        )
    ours = load(tmp_path / "test" / "hopper-random-v0")
    assert ours.env_id == "Hopper-v5" and ours.metadata["dataset_id"] == "test/hopper-random-v0"
    assert list(ours.episode_seeds) == [0, 1, 2]
    for mine, episode in zip(ours, theirs.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(mine.observations, episode.observations)
        np.testing.assert_array_equal(mine.actions, episode.actions)
        np.testing.assert_array_equal(mine.rewards, episode.rewards)
        np.testing.assert_array_equal(mine.terminations, episode.terminations)
        np.testing.assert_array_equal(mine.infos["x_position"], episode.infos["x_position"])
    # Round trip through our writer keeps everything.
    same(ours, load(ours.save(tmp_path / "copy")))
    assert isinstance(ours, Dataset)
