"""The in-memory offline dataset: whole episodes over contiguous flat arrays.

Layout (Minari's per-episode semantics, stored flat so slicing and sampling are vectorised):

* ``observations``: every episode's ``T + 1`` observations (reset observation through final observation),
  episodes back to back, so ``sum(T) + n_episodes`` rows;
* ``actions``, ``rewards``, ``terminations``, ``truncations``: one row per step, ``sum(T)`` rows;
* ``infos``: optional per-key arrays aligned with ``observations`` (the info that came with each observation);
* ``episode_lengths`` (``T`` per episode), ``episode_seeds`` (the reset seed, ``-1`` where none was recorded).

Step ``t`` of episode ``e`` is the transition ``(observations[t + e], actions[t], rewards[t],
observations[t + e + 1], terminations[t])`` with ``t`` a flat step index. A truncation is *not* a terminal:
algorithms bootstrap through it (as D4RL's ``timeouts`` and Minari's ``truncations`` intend).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from cairnrl.core.seeding import check_seed
from cairnrl.core.spaces import spaces_equal
from cairnrl.data.spaces import infer_space
from cairnrl.data.validation import as_flags, validate_dataset
from cairnrl.exceptions import ConfigError, DatasetError

if TYPE_CHECKING:
    import torch

    from cairnrl.data.sampler import SegmentSampler, TransitionSampler


@dataclass(frozen=True)
class Episode:
    """One episode: ``T + 1`` observations, ``T`` actions, rewards and end flags, optional infos and reset seed."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    seed: int | None = None

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def next_observations(self) -> np.ndarray:
        """The observation after each step (``observations[1:]``)."""
        return self.observations[1:]

    @property
    def total_return(self) -> float:
        """Undiscounted sum of rewards."""
        return float(np.sum(self.rewards, dtype=np.float64))


@dataclass(frozen=True)
class Transitions:
    """The flat transition view of a dataset (one row per step)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_ids: np.ndarray
    timesteps: np.ndarray


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a Python loop."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    begins = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.arange(total, dtype=np.int64) + np.repeat(starts - begins, lengths)


class Dataset:
    """An offline RL dataset of whole episodes; see the module docstring for the layout.

    Construct it with :meth:`from_episodes`, :func:`cairnrl.data.load`, :func:`cairnrl.data.collection` or
    :func:`cairnrl.data.from_d4rl_arrays`; the constructor takes the flat arrays directly and validates them
    (shapes, per-episode alignment, dtypes, finite values, actions inside the action space, end flags only on
    last steps), raising :class:`DatasetError` that names ``source``, the key, the episode and the step.
    """

    def __init__(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
        episode_lengths: Sequence[int] | np.ndarray,
        *,
        infos: Mapping[str, np.ndarray] | None = None,
        episode_seeds: Sequence[int | None] | np.ndarray | None = None,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        metadata: Mapping[str, Any] | None = None,
        source: str = "<in-memory dataset>",
        validate: bool = True,
    ) -> None:
        self.source = str(source)
        self.episode_lengths = np.asarray(episode_lengths, dtype=np.int64).reshape(-1)
        self.step_offsets = np.concatenate(([0], np.cumsum(self.episode_lengths))).astype(np.int64)
        self.observation_offsets = self.step_offsets + np.arange(len(self.step_offsets), dtype=np.int64)
        self.observations = np.asarray(observations)
        self.actions = np.asarray(actions)
        rewards = np.asarray(rewards)
        if rewards.ndim == 2 and rewards.shape[1] == 1:
            rewards = rewards[:, 0]
        self.rewards = rewards.astype(np.float64) if rewards.dtype.kind in "biu" else rewards
        self.terminations = as_flags(self.source, "terminations", np.asarray(terminations), self.step_offsets)
        self.truncations = as_flags(self.source, "truncations", np.asarray(truncations), self.step_offsets)
        self.infos = {str(key): np.asarray(value) for key, value in (infos or {}).items()}
        if episode_seeds is None:
            self.episode_seeds = np.full(len(self.episode_lengths), -1, dtype=np.int64)
        else:
            self.episode_seeds = np.array([-1 if s is None else int(s) for s in episode_seeds], dtype=np.int64)
            if len(self.episode_seeds) != len(self.episode_lengths):
                raise DatasetError(
                    f"{self.source}: {len(self.episode_seeds)} episode seeds for {len(self.episode_lengths)} episodes"
                )
        self.observation_space = observation_space if observation_space is not None else infer_space(
            self.observations
        )
        self.action_space = action_space if action_space is not None else infer_space(self.actions)
        self.metadata: dict[str, Any] = copy.deepcopy(dict(metadata or {}))
        if validate:
            validate_dataset(self)

    # ----------------------------------------------------------------------------------------------- building

    @classmethod
    def from_episodes(
        cls,
        episodes: Iterable[Episode | Mapping[str, Any]],
        *,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        metadata: Mapping[str, Any] | None = None,
        source: str = "<in-memory dataset>",
    ) -> Dataset:
        """Build from :class:`Episode` objects or dicts with the same keys (``observations`` has ``T + 1`` rows).

        Every episode's lengths are checked (the observation/action off-by-one included), not just the first.
        """
        items = [item if isinstance(item, Episode) else _episode_from_mapping(item, source, i)
                 for i, item in enumerate(episodes)]
        if not items:
            raise DatasetError(f"{source}: the dataset is empty (no episodes)")
        for index, episode in enumerate(items):
            check_episode_lengths(source, index, episode)
        info_keys = set(items[0].infos)
        for index, episode in enumerate(items):
            if set(episode.infos) != info_keys:
                raise DatasetError(
                    f"{source}: episode {index} has info keys {sorted(episode.infos)}, episode 0 has "
                    f"{sorted(info_keys)}"
                )
        return cls(
            np.concatenate([e.observations for e in items]),
            np.concatenate([e.actions for e in items]),
            np.concatenate([e.rewards for e in items]),
            np.concatenate([np.asarray(e.terminations).astype(bool) for e in items]),
            np.concatenate([np.asarray(e.truncations).astype(bool) for e in items]),
            [len(e.actions) for e in items],
            infos={key: np.concatenate([e.infos[key] for e in items]) for key in info_keys},
            episode_seeds=[e.seed for e in items],
            observation_space=observation_space,
            action_space=action_space,
            metadata=metadata,
            source=source,
        )

    # ------------------------------------------------------------------------------------------------- access

    @property
    def num_episodes(self) -> int:
        """Number of episodes."""
        return len(self.episode_lengths)

    @property
    def num_steps(self) -> int:
        """Number of steps (transitions) over all episodes."""
        return int(self.step_offsets[-1])

    def __len__(self) -> int:
        return self.num_steps

    def content_hash(self) -> str:
        """SHA-256 over the arrays that define the data (observations, actions, rewards, end flags, episode
        lengths), so a checkpoint can tell whether it is resumed on the same data. Computed once."""
        if getattr(self, "_content_hash", None) is None:
            digest = hashlib.sha256()
            for array in (self.observations, self.actions, self.rewards, self.terminations, self.truncations,
                          self.episode_lengths):
                contiguous = np.ascontiguousarray(array)
                digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
                digest.update(contiguous.tobytes())
            self._content_hash = digest.hexdigest()
        return self._content_hash

    @property
    def env_id(self) -> str | None:
        """The env id recorded in the metadata, if any."""
        value = self.metadata.get("env_id")
        return str(value) if value else None

    def episode(self, index: int) -> Episode:
        """Episode ``index`` (negative indices count from the end); arrays are views into the dataset."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ConfigError(f"episode index must be an integer, got {index!r}")
        if not -self.num_episodes <= index < self.num_episodes:
            raise ConfigError(f"episode index {index} out of range for {self.num_episodes} episodes")
        index = int(index) % self.num_episodes
        steps = slice(self.step_offsets[index], self.step_offsets[index + 1])
        rows = slice(self.observation_offsets[index], self.observation_offsets[index + 1])
        seed = int(self.episode_seeds[index])
        return Episode(
            observations=self.observations[rows],
            actions=self.actions[steps],
            rewards=self.rewards[steps],
            terminations=self.terminations[steps],
            truncations=self.truncations[steps],
            infos={key: value[rows] for key, value in self.infos.items()},
            seed=None if seed < 0 else seed,
        )

    def __iter__(self) -> Iterator[Episode]:
        return (self.episode(i) for i in range(self.num_episodes))

    def episode_ids(self) -> np.ndarray:
        """The episode of every step."""
        return np.repeat(np.arange(self.num_episodes, dtype=np.int64), self.episode_lengths)

    def timesteps(self) -> np.ndarray:
        """The index of every step within its episode."""
        return np.arange(self.num_steps, dtype=np.int64) - np.repeat(self.step_offsets[:-1], self.episode_lengths)

    def observation_index(self) -> np.ndarray:
        """Row of ``observations`` holding the observation of every step (add 1 for the next observation)."""
        return np.arange(self.num_steps, dtype=np.int64) + self.episode_ids()

    def transitions(self) -> Transitions:
        """The flat ``(s, a, r, s', terminated, truncated)`` view (copies observations into two arrays)."""
        index = self.observation_index()
        return Transitions(
            observations=self.observations[index],
            actions=self.actions,
            rewards=self.rewards,
            next_observations=self.observations[index + 1],
            terminations=self.terminations,
            truncations=self.truncations,
            episode_ids=self.episode_ids(),
            timesteps=self.timesteps(),
        )

    def returns(self) -> np.ndarray:
        """Undiscounted return of every episode."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.step_offsets[:-1])

    def returns_to_go(self, gamma: float = 1.0) -> np.ndarray:
        """Per step, the (discounted) sum of rewards from this step to the end of its episode, inclusive.

        With ``gamma = 1`` this is the ``rtgs`` column of return-conditioned supervised learning (MBRCSL, Zhou
        et al., ICLR 2024): the sum of future rewards including the current step, ``rtg[t] = sum_{t' >= t} r[t']``.
        """
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 < gamma <= 1.0:
            raise ConfigError(f"gamma must be a number in (0, 1], got {gamma!r}")
        rewards = self.rewards.astype(np.float64)
        if gamma == 1.0:
            cumulative = np.cumsum(rewards)
            episode_totals = cumulative[self.step_offsets[1:] - 1]
            return np.repeat(episode_totals, self.episode_lengths) - cumulative + rewards
        # Discounted: rtg[t] = g^-t * sum_{t'>=t} g^t' r[t'] per episode; done in reverse per episode to keep the
        # powers bounded (a single global g^-t would overflow on long episodes).
        result = np.empty_like(rewards)
        for start, stop in zip(self.step_offsets[:-1], self.step_offsets[1:], strict=True):
            powers = gamma ** np.arange(stop - start, dtype=np.float64)
            scaled = np.cumsum((rewards[start:stop] * powers)[::-1])[::-1]
            result[start:stop] = scaled / powers
        return result

    def normalized_returns(self) -> np.ndarray:
        """D4RL-style normalized score (×100) of every episode, from ``ref_min_score``/``ref_max_score``."""
        low, high = self.metadata.get("ref_min_score"), self.metadata.get("ref_max_score")
        if low is None or high is None:
            raise DatasetError(f"{self.source}: metadata has no ref_min_score/ref_max_score to normalize with")
        return 100.0 * (self.returns() - float(low)) / (float(high) - float(low))

    # ------------------------------------------------------------------------------------------- derivations

    def select(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """A new dataset of the given episodes, in the given order (e.g. ``expert.select(range(200))``)."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        if index.size == 0:
            raise DatasetError(f"{self.source}: selecting no episodes would give an empty dataset")
        if index.min() < -self.num_episodes or index.max() >= self.num_episodes:
            raise ConfigError(f"episode indices must lie in [0, {self.num_episodes}), got {index.min()}..{index.max()}")
        index = index % self.num_episodes
        lengths = self.episode_lengths[index]
        steps = concatenated_ranges(self.step_offsets[index], lengths)
        rows = concatenated_ranges(self.observation_offsets[index], lengths + 1)
        return Dataset(
            self.observations[rows],
            self.actions[steps],
            self.rewards[steps],
            self.terminations[steps],
            self.truncations[steps],
            lengths,
            infos={key: value[rows] for key, value in self.infos.items()},
            episode_seeds=self.episode_seeds[index],
            observation_space=self.observation_space,
            action_space=self.action_space,
            metadata=self.metadata,
            source=self.source,
            validate=False,
        )

    def filter(self, condition: Callable[[Episode], bool] | Sequence[bool] | np.ndarray) -> Dataset:
        """Episodes for which ``condition(episode)`` is true, or where a boolean mask (one per episode) is set."""
        if callable(condition):
            mask = np.array([bool(condition(episode)) for episode in self], dtype=bool)
        else:
            mask = np.asarray(condition)
            if mask.dtype != np.bool_ or mask.shape != (self.num_episodes,):
                raise ConfigError(
                    f"filter needs a callable or a bool mask of shape ({self.num_episodes},), got {mask.dtype} "
                    f"{mask.shape}"
                )
        return self.select(np.flatnonzero(mask))

    def split(self, validation_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Split episodes at random into ``(train, validation)``; both keep their original episode order."""
        if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)) or not (
            0.0 < validation_fraction < 1.0
        ):
            raise ConfigError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
        if self.num_episodes < 2:
            raise DatasetError(f"{self.source}: cannot split a dataset of {self.num_episodes} episode(s)")
        order = np.random.default_rng(check_seed(seed)).permutation(self.num_episodes)
        n_val = min(max(1, round(validation_fraction * self.num_episodes)), self.num_episodes - 1)
        return self.select(np.sort(order[n_val:])), self.select(np.sort(order[:n_val]))

    # ------------------------------------------------------------------------------------------ persistence

    def save(
        self, path: str | Path, format: str | None = None, *, overwrite: bool = False, dataset_id: str | None = None
    ) -> Path:
        """Write the dataset; see :func:`cairnrl.data.save` (a Minari folder unless the suffix says otherwise)."""
        from cairnrl.data.io import save  # io builds on this module, so the delegation imports it on call

        return save(self, path, format=format, overwrite=overwrite, dataset_id=dataset_id)

    def to_d4rl(self) -> dict[str, np.ndarray]:
        """Flat D4RL arrays: ``observations``, ``actions``, ``rewards``, ``next_observations``, ``terminals``,
        ``timeouts`` and ``infos/<key>``.

        An episode whose last step carries neither flag gets ``timeouts = True`` there, since D4RL readers find
        episode ends only through the flags.
        """
        index = self.observation_index()
        last = np.zeros(self.num_steps, dtype=bool)
        last[self.step_offsets[1:] - 1] = True
        arrays = {
            "observations": self.observations[index],
            "actions": self.actions,
            "rewards": self.rewards,
            "next_observations": self.observations[index + 1],
            "terminals": self.terminations,
            "timeouts": self.truncations | (last & ~self.terminations),
        }
        arrays.update({f"infos/{key}": value[index] for key, value in self.infos.items()})
        return arrays

    # -------------------------------------------------------------------------------------------- sampling

    def sampler(
        self, batch_size: int = 256, device: str | torch.device = "cpu", seed: int = 0
    ) -> TransitionSampler:
        """A :class:`~cairnrl.data.sampler.TransitionSampler` of uniform transition batches."""
        from cairnrl.data.sampler import TransitionSampler  # loads torch: only when a sampler is made

        return TransitionSampler(self, batch_size, device=device, seed=seed)

    def segment_sampler(
        self,
        segment_length: int,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        seed: int = 0,
        gamma: float = 1.0,
    ) -> SegmentSampler:
        """A :class:`~cairnrl.data.sampler.SegmentSampler` of trajectory segments with returns-to-go."""
        from cairnrl.data.sampler import SegmentSampler  # loads torch: only when a sampler is made

        return SegmentSampler(self, segment_length, batch_size, device=device, seed=seed, gamma=gamma)

    # ---------------------------------------------------------------------------------------------- summary

    def summary(self) -> dict[str, Any]:
        """Counts, spaces, return statistics and key metadata, as plain JSON-able values."""
        returns = self.returns()
        info: dict[str, Any] = {
            "source": self.source,
            "env_id": self.env_id,
            "episodes": self.num_episodes,
            "steps": self.num_steps,
            "observation_space": str(self.observation_space),
            "action_space": str(self.action_space),
            "terminations": int(self.terminations.sum()),
            "truncations": int(self.truncations.sum()),
            "episode_length": {"min": int(self.episode_lengths.min()), "max": int(self.episode_lengths.max())},
            "return": {
                "mean": float(returns.mean()),
                "std": float(returns.std()),
                "min": float(returns.min()),
                "max": float(returns.max()),
            },
            "infos": sorted(self.infos),
        }
        if self.metadata.get("ref_min_score") is not None and self.metadata.get("ref_max_score") is not None:
            info["normalized_return_mean"] = float(self.normalized_returns().mean())
        return info

    def __repr__(self) -> str:
        return (
            f"Dataset({self.num_episodes} episodes, {self.num_steps} steps, env_id={self.env_id!r}, "
            f"observation_space={self.observation_space}, action_space={self.action_space})"
        )


def check_episode_lengths(source: str, index: int, episode: Episode) -> None:
    """``T + 1`` observations and infos, ``T`` actions, rewards and flags in episode ``index``."""
    steps = len(episode.actions)
    counts = {
        "rewards": len(episode.rewards),
        "terminations": len(episode.terminations),
        "truncations": len(episode.truncations),
    }
    if len(episode.observations) != steps + 1:
        raise DatasetError(
            f"{source}: key 'observations', episode {index}: {len(episode.observations)} observations for {steps} "
            f"actions; an episode of T steps needs T + 1 observations (reset through final)"
        )
    for key, count in counts.items():
        if count != steps:
            raise DatasetError(f"{source}: key {key!r}, episode {index}: {count} rows for {steps} actions")
    for key, value in episode.infos.items():
        if len(value) != steps + 1:
            raise DatasetError(
                f"{source}: key 'infos/{key}', episode {index}: {len(value)} rows, expected {steps + 1} (one per "
                "observation)"
            )


def _episode_from_mapping(item: Mapping[str, Any], source: str, index: int) -> Episode:
    required = ("observations", "actions", "rewards", "terminations", "truncations")
    missing = [key for key in required if key not in item]
    if missing:
        raise DatasetError(f"{source}: episode {index} lacks key(s) {missing}; an episode needs {list(required)}")
    return Episode(
        observations=np.asarray(item["observations"]),
        actions=np.asarray(item["actions"]),
        rewards=np.asarray(item["rewards"]).reshape(-1),
        terminations=np.asarray(item["terminations"]).reshape(-1),
        truncations=np.asarray(item["truncations"]).reshape(-1),
        infos={key: np.asarray(value) for key, value in (item.get("infos") or {}).items()},
        seed=item.get("seed"),
    )


def concatenate(datasets: Sequence[Dataset], *, names: Sequence[str] | None = None) -> Dataset:
    """Episodes of ``datasets`` back to back (e.g. random data plus N expert trajectories).

    Spaces must agree. Info keys present in only some parts are dropped. The result's metadata is the first
    part's, plus ``parts``: for each part its name and ``[first_episode, end_episode)`` range, so per-episode
    provenance (ReCOIL's ``is_expert`` flag) can be recovered.
    """
    parts = list(datasets)
    if not parts or not all(isinstance(part, Dataset) for part in parts):
        raise ConfigError("concatenate needs a non-empty sequence of Dataset objects")
    labels = list(names) if names is not None else [str(p.metadata.get("name", p.source)) for p in parts]
    if len(labels) != len(parts):
        raise ConfigError(f"names has {len(labels)} entries for {len(parts)} datasets")
    first = parts[0]
    for label, part in zip(labels[1:], parts[1:], strict=True):
        for what in ("observation_space", "action_space"):
            if not spaces_equal(getattr(first, what), getattr(part, what)):
                raise DatasetError(
                    f"cannot concatenate {label!r}: its {what} {getattr(part, what)} differs from "
                    f"{getattr(first, what)} of {labels[0]!r}"
                )
        if first.env_id and part.env_id and first.env_id != part.env_id:
            raise DatasetError(f"cannot concatenate {label!r} (env {part.env_id}) with {labels[0]!r} ({first.env_id})")
    info_keys = set.intersection(*(set(part.infos) for part in parts))
    bounds = np.cumsum([0] + [part.num_episodes for part in parts])
    metadata = copy.deepcopy(first.metadata)
    metadata["parts"] = [
        {"name": label, "episodes": [int(start), int(stop)]}
        for label, start, stop in zip(labels, bounds[:-1], bounds[1:], strict=True)
    ]
    return Dataset(
        np.concatenate([part.observations for part in parts]),
        np.concatenate([part.actions for part in parts]),
        np.concatenate([part.rewards for part in parts]),
        np.concatenate([part.terminations for part in parts]),
        np.concatenate([part.truncations for part in parts]),
        np.concatenate([part.episode_lengths for part in parts]),
        infos={key: np.concatenate([part.infos[key] for part in parts]) for key in sorted(info_keys)},
        episode_seeds=np.concatenate([part.episode_seeds for part in parts]),
        observation_space=first.observation_space,
        action_space=first.action_space,
        metadata=metadata,
        source=" + ".join(labels),
        validate=False,
    )

