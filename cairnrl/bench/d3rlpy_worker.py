"""The d3rlpy side of :mod:`cairnrl.bench.d3rlpy_peer`: train one d3rlpy algorithm on a flat dataset and evaluate it.

Run by the isolated virtual env's python, never imported there as part of cairnrl (the env has d3rlpy, its
gymnasium 1.0, torch and numpy, but not cairnrl)::

    python -I d3rlpy_worker.py --config job.json --data dataset.npz --out result.json

``-I`` keeps this file's folder off ``sys.path`` (its sibling modules would shadow nothing useful) and ignores
``PYTHONPATH`` and user site-packages, so only the virtual env's packages are visible.

* ``job.json``: ``algorithm`` (``bc``, ``iql``, ``cql``, ``td3bc``), ``env_id``, ``n_steps``, ``n_steps_per_epoch``,
  ``seed``, ``eval_seeds`` (one reset seed per evaluation episode) and ``hyperparameters`` (overrides of d3rlpy's
  scalar defaults, plus ``reward_scaler_multiplier`` and ``observation_scaler``; see ``make_config``).
* ``dataset.npz``: flat D4RL arrays ``observations``, ``actions``, ``rewards``, ``next_observations``, ``terminals``,
  ``timeouts`` (read with ``allow_pickle=False``); every episode ends with exactly one of the two flags set on
  its last row (a row with both counts as terminal).
* ``result.json``: evaluation returns and lengths per seed, timings, the losses of every epoch and the versions.

While training, one JSON line ``{"event": "progress", "steps": N}`` per epoch goes to stdout; d3rlpy's own log
goes to stderr.  Errors in the job or the data exit with status 2 and one line ``d3rlpy worker: error: ...``.

A job with ``"serve": true`` (for envs this venv cannot make, such as cairnrl's own) is not evaluated here:
after training the worker writes ``{"event": "serving"}`` and then answers every stdin line, a JSON list of
observation rows, with one ``{"event": "actions", "actions": [...]}`` line of deterministic actions, until stdin
closes; then it writes ``result.json`` (with empty evaluation lists) and exits.  The parent process runs the
episodes, so the policy never leaves this process (d3rlpy models are pickles).

Episodes are handed to d3rlpy without loss.  ``d3rlpy.dataset.MDPDataset`` would slice the flat arrays into
episodes of ``T`` observations and, having no final observation for an episode that did not terminate, drop its
last step (``Episode.transition_count``).  Here such an episode gets its final observation (the last
``next_observations`` row) appended, plus a copy of its last action and a zero reward as padding, so d3rlpy's
``BasicTransitionPicker`` yields all ``T`` transitions with the exact next observations; the padding row is
never a transition's action or reward (it is only the ``next_action`` of the last transition, which BC, IQL and
CQL do not read).  A terminated episode keeps its ``T`` observations: d3rlpy zeroes the next observation of its
last step and marks it terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

D4RL_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
ALGORITHMS = {"bc": "BCConfig", "iql": "IQLConfig", "cql": "CQLConfig", "td3bc": "TD3PlusBCConfig"}
JOB_KEYS = ("algorithm", "env_id", "n_steps", "n_steps_per_epoch", "seed", "eval_seeds", "hyperparameters")


# Not a cairnrl.exceptions.CairnError: this file runs in the d3rlpy virtual env, where cairnrl is not installed,
# so it imports nothing from cairnrl (the parent process turns a failure into a PeerError).
class WorkerError(Exception):
    """A job or dataset the worker cannot use; reported as one line, without a traceback."""


# ------------------------------------------------------------------------------------------------ pure helpers


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The six D4RL arrays of ``path`` (``allow_pickle=False``), checked for presence and row counts."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in D4RL_KEYS if key not in archive.files]
            if missing:
                raise WorkerError(f"{path}: missing key(s) {missing}; expected {list(D4RL_KEYS)}")
            arrays = {key: archive[key] for key in D4RL_KEYS}
    except (OSError, ValueError) as error:
        raise WorkerError(f"{path}: not a readable .npz of plain arrays ({error})") from error
    rows = len(arrays["observations"])
    for key, value in arrays.items():
        if value.ndim == 0 or len(value) != rows:
            raise WorkerError(f"{path}: key {key!r} has shape {value.shape}, expected {rows} rows as 'observations'")
    if arrays["next_observations"].shape != arrays["observations"].shape:
        raise WorkerError(f"{path}: 'next_observations' has shape {arrays['next_observations'].shape}, "
                          f"'observations' {arrays['observations'].shape}")
    return arrays


def episodes_from_d4rl(arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Split flat D4RL arrays into d3rlpy-ready episodes (see the module docstring for the layout).

    Each episode is ``{"observations", "actions", "rewards" (column), "terminated"}`` in float32: ``T`` rows for a
    terminated episode, ``T + 1`` rows (final observation, padding action and zero reward appended) otherwise.

    :raises WorkerError: when there are no rows, the last row ends no episode, or within an episode a row's
        ``next_observations`` is not the following row's ``observations`` (misaligned export).
    """
    terminals = arrays["terminals"].astype(bool).reshape(-1)
    ends = terminals | arrays["timeouts"].astype(bool).reshape(-1)
    if ends.size == 0:
        raise WorkerError("the dataset has no rows")
    if not ends[-1]:
        raise WorkerError("the last row carries neither 'terminals' nor 'timeouts'; every episode must end with one")
    observations = arrays["observations"].astype(np.float32)
    next_observations = arrays["next_observations"].astype(np.float32)
    continuing = ~ends[:-1]
    mismatch = np.flatnonzero(continuing & np.any(
        (next_observations[:-1] != observations[1:]).reshape(len(continuing), -1), axis=1))
    if mismatch.size:
        raise WorkerError(f"row {int(mismatch[0])}: 'next_observations' differs from the next row's 'observations' "
                          "inside an episode; the export is misaligned")
    actions = arrays["actions"].astype(np.float32)
    if actions.ndim == 1:
        actions = actions[:, None]
    rewards = arrays["rewards"].astype(np.float32).reshape(-1, 1)
    stops = np.flatnonzero(ends) + 1
    starts = np.r_[0, stops[:-1]]
    episodes = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        terminated = bool(terminals[stop - 1])
        episode_observations = observations[start:stop]
        episode_actions = actions[start:stop]
        episode_rewards = rewards[start:stop]
        if not terminated:
            episode_observations = np.concatenate([episode_observations, next_observations[stop - 1:stop]])
            episode_actions = np.concatenate([episode_actions, episode_actions[-1:]])
            episode_rewards = np.concatenate([episode_rewards, np.zeros((1, 1), dtype=np.float32)])
        episodes.append({"observations": episode_observations, "actions": episode_actions,
                         "rewards": episode_rewards, "terminated": terminated})
    return episodes


def read_job(path: str | Path) -> dict[str, Any]:
    """The job description, checked for its keys and value types."""
    try:
        job = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WorkerError(f"{path}: not a readable JSON job ({error})") from error
    missing = [key for key in JOB_KEYS if key not in job]
    if missing:
        raise WorkerError(f"{path}: missing key(s) {missing}; a job needs {list(JOB_KEYS)}")
    if job["algorithm"] not in ALGORITHMS:
        raise WorkerError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {job['algorithm']!r}")
    for key in ("n_steps", "n_steps_per_epoch"):
        if not isinstance(job[key], int) or job[key] < 1:
            raise WorkerError(f"{key} must be a positive integer, got {job[key]!r}")
    if job["n_steps"] % job["n_steps_per_epoch"]:
        raise WorkerError(f"n_steps {job['n_steps']} is not a multiple of n_steps_per_epoch {job['n_steps_per_epoch']}")
    if not isinstance(job.get("serve", False), bool):
        raise WorkerError(f"serve must be true or false, got {job['serve']!r}")
    if not job.get("serve") and (not job["eval_seeds"] or not all(isinstance(s, int) for s in job["eval_seeds"])):
        raise WorkerError(f"eval_seeds must be a non-empty list of integers, got {job['eval_seeds']!r}")
    if not isinstance(job["hyperparameters"], dict):
        raise WorkerError(f"hyperparameters must be a JSON object, got {job['hyperparameters']!r}")
    return job


# --------------------------------------------------------------------------------------------- d3rlpy side


#: Job keys that are not scalar config fields: ``reward_scaler_multiplier`` (a number) sets
#: ``ReturnBasedRewardScaler(multiplier=value)``, rewards times ``value / (max - min episode return)``, IQL's MuJoCo
#: normalisation as d3rlpy's own IQL reproduction sets it; ``observation_scaler: "standard"`` sets
#: ``StandardObservationScaler()``, TD3+BC's state normalisation as d3rlpy's TD3+BC reproduction sets it.
RETURN_SCALER_KEY = "reward_scaler_multiplier"
OBSERVATION_SCALER_KEY = "observation_scaler"


def make_config(algorithm: str, hyperparameters: dict[str, Any]):
    """d3rlpy's config of ``algorithm`` with its defaults, overridden by scalar ``hyperparameters`` (and the
    scaler keys above)."""
    # Imported here: only the isolated d3rlpy venv that runs main() has d3rlpy.
    import d3rlpy

    config_class = getattr(d3rlpy.algos, ALGORITHMS[algorithm])
    scalars = {field.name for field in dataclasses.fields(config_class)
               if isinstance(field.default, (bool, int, float, str))}
    overrides = dict(hyperparameters)
    multiplier = overrides.pop(RETURN_SCALER_KEY, None)
    observation_scaler = overrides.pop(OBSERVATION_SCALER_KEY, None)
    unknown = sorted(set(overrides) - scalars)
    if unknown:
        raise WorkerError(f"{config_class.__name__} has no scalar hyperparameter(s) {unknown}; "
                          f"valid: {sorted(scalars | {RETURN_SCALER_KEY, OBSERVATION_SCALER_KEY})}")
    if multiplier is not None:
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not multiplier > 0:
            raise WorkerError(f"{RETURN_SCALER_KEY} must be a positive number, got {multiplier!r}")
        overrides["reward_scaler"] = d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=float(multiplier))
    if observation_scaler is not None:
        if observation_scaler != "standard":
            raise WorkerError(f"{OBSERVATION_SCALER_KEY} must be 'standard', got {observation_scaler!r}")
        overrides["observation_scaler"] = d3rlpy.preprocessing.StandardObservationScaler()
    return config_class(**overrides)


def build_replay_buffer(episodes: list[dict[str, Any]]):
    """An in-memory d3rlpy replay buffer holding ``episodes`` (continuous actions)."""
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer

    return ReplayBuffer(
        InfiniteBuffer(),
        episodes=[Episode(item["observations"], item["actions"], item["rewards"], item["terminated"])
                  for item in episodes],
        action_space=ActionSpace.CONTINUOUS,
        action_size=int(episodes[0]["actions"].shape[1]),
    )


def evaluate(algo: Any, env_id: str, seeds: list[int]) -> tuple[list[float], list[int]]:
    """Undiscounted return and length of one deterministic episode per reset seed."""
    import gymnasium

    env = gymnasium.make(env_id)
    returns, lengths = [], []
    try:
        for seed in seeds:
            observation, _ = env.reset(seed=seed)
            total, steps, done = 0.0, 0, False
            while not done:
                action = algo.predict(np.asarray(observation, dtype=np.float32)[None])[0]
                observation, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                steps += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(steps)
    finally:
        env.close()
    return returns, lengths


def serve_actions(algo: Any, requests: Any, send: Callable[[dict[str, Any]], None]) -> int:
    """Answer each line of ``requests`` (a JSON list of observation rows) with the deterministic actions; returns
    the number of requests answered when ``requests`` ends."""
    send({"event": "serving"})
    answered = 0
    for line in requests:
        observations = np.asarray(json.loads(line), dtype=np.float32)
        if observations.ndim != 2:
            raise WorkerError(f"a request must be a list of observation rows, got shape {observations.shape}")
        send({"event": "actions", "actions": np.asarray(algo.predict(observations), dtype=np.float64).tolist()})
        answered += 1
    return answered


def run(job: dict[str, Any], data_path: str | Path, report: Callable[[int], None] | None = None,
        serve: Callable[[Any], int] | None = None) -> dict[str, Any]:
    """Train and evaluate as ``job`` says; the result dict written to ``result.json``.

    :param report: called with the number of gradient steps done after every epoch.
    :param serve: for a ``"serve"`` job, called with the trained algorithm instead of the evaluation (see the
        module docstring); returns the number of requests answered.
    """
    import d3rlpy
    import gymnasium
    import torch

    torch.set_num_threads(1)  # one core per run, like the cairnrl side of a comparison
    clock = time.perf_counter()
    episodes = episodes_from_d4rl(read_arrays(data_path))
    dataset = build_replay_buffer(episodes)
    d3rlpy.seed(job["seed"])
    algo = make_config(job["algorithm"], job["hyperparameters"]).create(device=job.get("device", "cpu:0"))
    epochs: list[dict[str, Any]] = []

    def on_epoch(_algo: Any, epoch: int, total_step: int) -> None:
        if report is not None:
            report(total_step)

    first_step_done: list[float] = []

    def on_step(_algo: Any, epoch: int, total_step: int) -> None:
        if not first_step_done:
            first_step_done.append(time.perf_counter())

    fit_start = time.perf_counter()
    for epoch, metrics in algo.fitter(
        dataset, n_steps=job["n_steps"], n_steps_per_epoch=job["n_steps_per_epoch"],
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False,
        save_interval=job["n_steps"] + 1,  # never: d3rlpy models are pickles, and only numbers are wanted
        callback=on_step, epoch_callback=on_epoch,
    ):
        epochs.append({"epoch": int(epoch), "step": int(epoch) * job["n_steps_per_epoch"],
                       **{name: float(value) for name, value in metrics.items()}})
    fit_end = time.perf_counter()
    # Throughput of the update loop (batch sampling included, as a d3rlpy user gets it) without the one-off
    # network build and the first step; a one-step run has no loop to time and falls back to the whole fit.
    loop_seconds = fit_end - first_step_done[0]
    updates_per_second = ((job["n_steps"] - 1) / loop_seconds if job["n_steps"] > 1 and loop_seconds > 0
                          else job["n_steps"] / (fit_end - fit_start))
    eval_start = time.perf_counter()
    served = None
    returns: list[float]
    lengths: list[int]
    if job.get("serve"):
        if serve is None:
            raise WorkerError("a serve job needs a request channel (run it through main())")
        served = serve(algo)
        returns, lengths = [], []
    else:
        returns, lengths = evaluate(algo, job["env_id"], job["eval_seeds"])
    return {
        "algorithm": job["algorithm"],
        "env_id": job["env_id"],
        "n_steps": job["n_steps"],
        "seed": job["seed"],
        "eval_seeds": job["eval_seeds"],
        "eval_returns": returns,
        "eval_lengths": lengths,
        "requests_served": served,
        "fit_seconds": fit_end - fit_start,
        "updates_per_second": updates_per_second,
        "eval_seconds": time.perf_counter() - eval_start,
        "worker_seconds": time.perf_counter() - clock,
        "epochs": epochs,
        "dataset": {"episodes": len(episodes), "transitions": int(dataset.transition_count)},
        "config": json.loads(algo.config.serialize()),
        "versions": {"d3rlpy": d3rlpy.__version__, "gymnasium": gymnasium.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: see the module docstring."""
    parser = argparse.ArgumentParser(description="train and evaluate one d3rlpy algorithm (cairnrl peer worker)")
    parser.add_argument("--config", required=True, help="job JSON")
    parser.add_argument("--data", required=True, help="flat D4RL .npz")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    # The protocol owns stdout; d3rlpy's structlog (bound at first use, after this) and prints go to stderr.
    channel, sys.stdout = sys.stdout, sys.stderr

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    try:
        result = run(read_job(args.config), args.data, lambda steps: send({"event": "progress", "steps": steps}),
                     lambda algo: serve_actions(algo, sys.stdin, send))
    except WorkerError as error:
        print(f"d3rlpy worker: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    # Written whole or not at all, as cairnrl.core.fileio.atomic_write does (cairnrl is not importable here).
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, allow_nan=False))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
