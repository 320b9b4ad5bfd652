"""The d3rlpy peer: NPZ export and episode rebuilding by hand, input validation, the venv helper and the offline
peers benchmark's declarations and summary (no venv needed), plus one slow test of the real worker."""

import json
import sys

import numpy as np
import pytest

import benchmarks.offline as offline
from cairnrl.bench import d3rlpy_peer
from cairnrl.bench import d3rlpy_worker as worker
from cairnrl.bench.experiment import RunResult
from cairnrl.bench.suites import list_benchmarks
from cairnrl.core.seeding import spawn_seeds
from cairnrl.data import Dataset, Episode, collect, normalized_score
from cairnrl.exceptions import ConfigError, EnvError


def _obs(values):
    """Two-dimensional observations (value, -value) so both columns are checked."""
    values = np.asarray(values, dtype=np.float64)
    return np.stack([values, -values], axis=1)


def _hand_dataset() -> Dataset:
    """Three episodes: terminated (T=2), truncated by the env (T=3), cut by a budget with no flag (T=1).

    Observation rows are 10 * episode + t, actions 0.1 * (10 * episode + t), rewards 10 * episode + t + 0.5.
    """
    episodes = []
    for index, (steps, terminated, truncated) in enumerate([(2, True, False), (3, False, True), (1, False, False)]):
        base = 10 * index
        t = np.arange(steps)
        flags_t, flags_u = np.zeros(steps, bool), np.zeros(steps, bool)
        flags_t[-1], flags_u[-1] = terminated, truncated
        episodes.append(Episode(observations=_obs(base + np.arange(steps + 1)), actions=0.01 * (base + t)[:, None],
                                rewards=base + t + 0.5, terminations=flags_t, truncations=flags_u))
    return Dataset.from_episodes(episodes)


def test_npz_export_is_flat_d4rl_with_exact_next_observations(tmp_path):
    path = d3rlpy_peer.export_d4rl_npz(_hand_dataset(), tmp_path / "data.npz")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert sorted(arrays) == sorted(d3rlpy_peer.D4RL_KEYS)
    # Rows are steps: episode 0 steps 0-1, episode 1 steps 0-2, episode 2 step 0.
    np.testing.assert_array_equal(arrays["observations"], _obs([0, 1, 10, 11, 12, 20]))
    np.testing.assert_array_equal(arrays["next_observations"], _obs([1, 2, 11, 12, 13, 21]))
    np.testing.assert_array_equal(arrays["actions"][:, 0], 0.01 * np.array([0, 1, 10, 11, 12, 20]))
    np.testing.assert_array_equal(arrays["rewards"], [0.5, 1.5, 10.5, 11.5, 12.5, 20.5])
    np.testing.assert_array_equal(arrays["terminals"], [False, True, False, False, False, False])
    # The env's truncation and the unflagged budget cut both become timeouts; a terminal is never a timeout.
    np.testing.assert_array_equal(arrays["timeouts"], [False, False, False, False, True, True])


def test_episodes_for_d3rlpy_keep_every_transition(tmp_path):
    dataset = _hand_dataset()
    path = d3rlpy_peer.export_d4rl_npz(dataset, tmp_path / "data.npz")
    episodes = worker.episodes_from_d4rl(worker.read_arrays(path))
    assert [e["terminated"] for e in episodes] == [True, False, False]
    # Terminated: T observations (d3rlpy zeroes the next observation of the terminal step).
    np.testing.assert_array_equal(episodes[0]["observations"], _obs([0, 1]))
    np.testing.assert_array_equal(episodes[0]["rewards"][:, 0], [0.5, 1.5])
    # Not terminated: T + 1 observations, the final one exact; one padding action (copy) and reward (zero).
    np.testing.assert_array_equal(episodes[1]["observations"], _obs([10, 11, 12, 13]))
    np.testing.assert_allclose(episodes[1]["actions"][:, 0], 0.01 * np.array([10, 11, 12, 12]), rtol=1e-6)
    np.testing.assert_array_equal(episodes[1]["rewards"][:, 0], [10.5, 11.5, 12.5, 0.0])
    np.testing.assert_array_equal(episodes[2]["observations"], _obs([20, 21]))
    for index, episode in enumerate(episodes):
        assert episode["observations"].dtype == np.float32 and episode["rewards"].shape[1] == 1
        original = dataset.episode(index)
        # d3rlpy's transition count (T if terminated else rows - 1) equals our T: nothing is dropped, and the
        # next observation of every transition t is row t + 1, as in our T + 1 layout.
        rows = len(episode["observations"])
        count = rows if episode["terminated"] else rows - 1
        assert count == len(original)
        np.testing.assert_array_equal(episode["observations"][:count], original.observations[:count])
        if not episode["terminated"]:
            np.testing.assert_array_equal(episode["observations"][1:count + 1], original.next_observations)


def test_worker_rejects_misaligned_or_unterminated_data(tmp_path):
    path = d3rlpy_peer.export_d4rl_npz(_hand_dataset(), tmp_path / "data.npz")
    arrays = worker.read_arrays(path)
    shifted = dict(arrays, next_observations=arrays["next_observations"].copy())
    shifted["next_observations"][2] += 1.0  # inside episode 1: no longer the next row's observation
    with pytest.raises(worker.WorkerError, match="row 2: 'next_observations' differs"):
        worker.episodes_from_d4rl(shifted)
    open_end = dict(arrays, timeouts=np.zeros_like(arrays["timeouts"]))
    with pytest.raises(worker.WorkerError, match="last row carries neither"):
        worker.episodes_from_d4rl(open_end)
    np.savez(tmp_path / "partial.npz", observations=arrays["observations"])
    with pytest.raises(worker.WorkerError, match=r"missing key\(s\) \['actions'"):
        worker.read_arrays(tmp_path / "partial.npz")
    np.savez(tmp_path / "objects.npz", **dict(arrays, rewards=np.array([{"a": 1}] * 6, dtype=object)))
    with pytest.raises(worker.WorkerError, match="not a readable .npz of plain arrays"):
        worker.read_arrays(tmp_path / "objects.npz")


def test_worker_job_validation(tmp_path):
    job = {"algorithm": "iql", "env_id": "Hopper-v5", "n_steps": 10, "n_steps_per_epoch": 5, "seed": 0,
           "eval_seeds": [1, 2], "hyperparameters": {}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    assert worker.read_job(path) == job
    for change, message in [({"algorithm": "td3"}, "algorithm must be one of"),
                            ({"n_steps_per_epoch": 3}, "not a multiple"),
                            ({"n_steps": 0}, "n_steps must be a positive integer"),
                            ({"eval_seeds": []}, "eval_seeds must be"),
                            ({"hyperparameters": [1]}, "hyperparameters must be a JSON object")]:
        path.write_text(json.dumps({**job, **change}))
        with pytest.raises(worker.WorkerError, match=message):
            worker.read_job(path)
    path.write_text(json.dumps({**job, "eval_seeds": [], "env_id": None, "serve": True}))
    assert worker.read_job(path)["serve"] is True  # a served policy is evaluated by the parent: no seeds here
    path.write_text(json.dumps({**job, "serve": "yes"}))
    with pytest.raises(worker.WorkerError, match="serve must be true or false"):
        worker.read_job(path)
    path.write_text(json.dumps({key: value for key, value in job.items() if key != "seed"}))
    with pytest.raises(worker.WorkerError, match=r"missing key\(s\) \['seed'\]"):
        worker.read_job(path)


def test_worker_imports_no_cairnrl():
    source = (d3rlpy_peer.WORKER).read_text()
    assert "cairnrl" not in "".join(line for line in source.splitlines() if line.startswith(("import", "from")))


def _hopper_shaped(steps: int = 6) -> Dataset:
    rng = np.random.default_rng(0)
    truncations = np.zeros(steps, bool)
    truncations[-1] = True
    return Dataset.from_episodes([Episode(observations=rng.normal(size=(steps + 1, 11)),
                                          actions=rng.uniform(-1, 1, size=(steps, 3)).astype(np.float32),
                                          rewards=rng.normal(size=steps), terminations=np.zeros(steps, bool),
                                          truncations=truncations)])


def test_run_d3rlpy_validates_before_touching_the_venv(tmp_path, monkeypatch):
    def no_venv(*args, **kwargs):
        raise AssertionError("validation must fail before the venv is used")

    monkeypatch.setattr(d3rlpy_peer, "ensure_d3rlpy_env", no_venv)
    data = _hopper_shaped()
    good = {"algorithm": "bc", "dataset": data, "env_id": "Hopper-v5", "n_steps": 10, "seed": 0,
            "eval_episodes": 2, "out_dir": tmp_path}
    cases = [
        ({"algorithm": "CQL"}, ConfigError, r"algorithm must be one of \['bc', 'iql', 'cql', 'td3bc'\]"),
        ({"dataset": {"observations": []}}, ConfigError, "dataset must be a cairnrl.data.Dataset"),
        ({"n_steps": 0}, ConfigError, "n_steps must be >= 1"),
        ({"n_steps": True}, ConfigError, "n_steps must be an integer"),
        ({"eval_episodes": 0}, ConfigError, "eval_episodes must be >= 1"),
        ({"seed": -1}, ConfigError, "seed"),
        ({"n_steps_per_epoch": 3}, ConfigError, r"n_steps_per_epoch must divide n_steps \(10\)"),
        ({"hyperparameters": {"lr": float("nan")}}, ConfigError, "hyperparameters must be JSON values"),
        ({"hyperparameters": {1: 2}}, ConfigError, "string keys"),
        ({"env_id": "cairnrl/StickyCorridor-v0"}, EnvError, "is a cairnrl env"),
        ({"env_id": "NoSuchEnv-v0"}, EnvError, "cannot make env 'NoSuchEnv-v0'"),
        ({"env_id": "Pendulum-v1"}, ConfigError, r"observation shape \(11,\) does not match env 'Pendulum-v1'"),
        ({"env_id": "CartPole-v1"}, EnvError, "continuous"),
        ({"python": tmp_path / "missing" / "python"}, ConfigError, "does not exist"),
        ({"device": "tpu"}, ConfigError, r"device must be one of \['cpu', 'cuda'\]"),
    ]
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            d3rlpy_peer.run_d3rlpy(**{**good, **change})


def test_eval_seeds_and_scores_are_computed_on_our_side():
    seeds = d3rlpy_peer.eval_seeds(3, 4)
    assert seeds == spawn_seeds(3, 4, key=d3rlpy_peer._EVAL_SEED_KEY) and len(set(seeds)) == 4
    assert d3rlpy_peer.eval_seeds(4, 4) != seeds
    per_episode, of_mean = d3rlpy_peer._normalized("Hopper-v5", [-20.272305, 3234.3])
    assert per_episode == pytest.approx([0.0, 100.0]) and of_mean == pytest.approx(50.0)
    assert d3rlpy_peer._normalized("Pendulum-v1", [1.0]) == (None, None)


def test_venv_helper_errors_and_reuse(tmp_path, monkeypatch):
    with pytest.raises(d3rlpy_peer.PeerError, match=r"step x failed \(exit 3\); last lines: boom"):
        d3rlpy_peer._run([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], "step x", 30)
    not_a_venv = tmp_path / "data"
    not_a_venv.mkdir()
    (not_a_venv / "file.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a virtual env"):
        d3rlpy_peer.ensure_d3rlpy_env(not_a_venv)
    assert (not_a_venv / "file.txt").read_text() == "mine"  # never deleted
    # A finished venv (marker with the same requirements) is reused without running anything.
    ready = tmp_path / "venv"
    python = d3rlpy_peer.venv_python(ready)
    python.parent.mkdir(parents=True)
    python.write_text("")
    (ready / d3rlpy_peer.MARKER).write_text(json.dumps({"requirements": d3rlpy_peer.requirements()}))
    monkeypatch.setattr(d3rlpy_peer.subprocess, "run", lambda *a, **k: pytest.fail("must not run anything"))
    assert d3rlpy_peer.ensure_d3rlpy_env(ready) == python
    monkeypatch.setenv(d3rlpy_peer.VENV_VARIABLE, str(ready))
    assert d3rlpy_peer.ensure_d3rlpy_env() == python
    assert "d3rlpy==2.8.1" in d3rlpy_peer.requirements()
    # The venv's torch is the running interpreter's release (a local build tag such as +cpu dropped).
    monkeypatch.setattr(d3rlpy_peer.torch, "__version__", "2.13.0+cpu")
    assert d3rlpy_peer.requirements()[0] == "torch==2.13.0"
    monkeypatch.setattr(d3rlpy_peer.torch, "__version__", "2.7.1")
    assert d3rlpy_peer.requirements()[0] == "torch==2.7.1"


def test_worker_progress_forwarding_and_timeout(tmp_path):
    script = ("import json, sys, time\nprint(json.dumps({'event': 'progress', 'steps': 5}), flush=True)\n"
              "print('stray text', flush=True)\nprint('oops', file=sys.stderr, flush=True)\ntime.sleep(30)\n")
    seen = []
    code = d3rlpy_peer._run_worker([sys.executable, "-c", script], tmp_path / "log", seen.append, timeout=2.0)
    assert code < 0 and seen == [5]
    log = (tmp_path / "log").read_text()
    assert "oops" in log and "stray text" in log and "timeout passed" in log


def test_worker_serves_deterministic_actions_per_request():
    class Algo:
        def predict(self, observations):
            return observations[:, :2] * 2

    sent = []
    assert worker.serve_actions(Algo(), ["[[1, 2, 3]]\n", "[[0, 0, 1], [1, 1, 1]]\n"], sent.append) == 2
    assert sent == [{"event": "serving"}, {"event": "actions", "actions": [[2.0, 4.0]]},
                    {"event": "actions", "actions": [[0.0, 0.0], [2.0, 2.0]]}]
    with pytest.raises(worker.WorkerError, match="list of observation rows"):
        worker.serve_actions(Algo(), ["[1, 2]\n"], sent.append)


# A stand-in for the worker that speaks the serve protocol: actions are half the first three observation values.
FAKE_SERVING_WORKER = """
import argparse, json, sys
parser = argparse.ArgumentParser()
for flag in ("--config", "--data", "--out"):
    parser.add_argument(flag)
args = parser.parse_args()
job = json.load(open(args.config))
assert job["serve"] is True and job["env_id"] is None and job["eval_seeds"] == []
print(json.dumps({"event": "progress", "steps": job["n_steps"]}), flush=True)
if job["seed"] == 13:
    sys.exit("boom: training failed")
print(json.dumps({"event": "serving"}), flush=True)
served = 0
for line in sys.stdin:
    served += 1
    rows = json.loads(line)
    print(json.dumps({"event": "actions", "actions": [[0.5 * x for x in row[:3]] for row in rows]}), flush=True)
json.dump({"updates_per_second": 7.0, "requests_served": served}, open(args.out, "w"))
"""


def test_serve_d3rlpy_runs_episodes_on_our_side(tmp_path, monkeypatch):
    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE_SERVING_WORKER)
    monkeypatch.setattr(d3rlpy_peer, "WORKER", fake)
    data = _hopper_shaped()
    seen = []
    with d3rlpy_peer.serve_d3rlpy("cql", data, 10, 0, tmp_path / "run", python=sys.executable,
                                  progress=seen.append) as policy:
        rows = data.observations[:4]
        assert np.allclose(policy(rows), 0.5 * rows[:, :3]) and policy(rows).dtype == np.float32
        assert policy(rows[0]).shape == (3,)
        with pytest.raises(ConfigError, match=r"rows of 11 values .*got shape \(4, 5\)"):
            policy(rows[:, :5])
    assert seen == [10] and policy.result == {"updates_per_second": 7.0, "requests_served": 3}
    assert not (tmp_path / "run" / "dataset.npz").exists()
    with pytest.raises(d3rlpy_peer.PeerError, match="ended before sending 'serving'.*boom: training failed"):
        with d3rlpy_peer.serve_d3rlpy("cql", data, 10, 13, tmp_path / "bad", python=sys.executable):
            pass
    with pytest.raises(ConfigError, match="algorithm must be one of"):
        with d3rlpy_peer.serve_d3rlpy("sac", data, 10, 0, tmp_path / "bad", python=sys.executable):
            pass
    with pytest.raises(RuntimeError, match="episode broke"):  # an error in the block ends the worker, not the test
        with d3rlpy_peer.serve_d3rlpy("cql", data, 10, 0, tmp_path / "raised", python=sys.executable) as policy:
            policy(data.observations[0])
            raise RuntimeError("episode broke")
    assert policy._process.poll() is not None and policy.result is None


# ---------------------------------------------------------------------------------------------- benchmark


def test_offline_benchmark_is_declared(tmp_path):
    assert "offline" in list_benchmarks(offline.Path(offline.__file__).parent)
    quick, default = offline.runs(True), offline.runs(False)
    assert len(quick) == 2 * 3 * 2 * 2 and len(default) == 9 * 3 * 2 * 3
    assert {spec.algorithm for spec in quick} == {f"{impl}-{algo}" for impl in ("cairnrl", "d3rlpy")
                                                  for algo in ("iql", "td3bc", "bc")}
    assert {spec.config["updates"] for spec in quick} == {1000}
    assert offline.EXPERIMENT.specs(True) == quick
    for spec in quick:  # cairnrl in mixed precision, d3rlpy with its overrides, both recorded in the spec
        expected = (offline.CAIRNRL_HYPERPARAMETERS if spec.family == "cairnrl"
                    else offline.D3RLPY_HYPERPARAMETERS[spec.config["algorithm"]])
        assert spec.config["hyperparameters"] == expected
    assert offline.CAIRNRL_HYPERPARAMETERS == {"precision": "bf16"}


def test_offline_five_seed_scale_extends_the_default_runs(monkeypatch):
    monkeypatch.delenv(offline.SCALE_VARIABLE, raising=False)
    default = offline.runs(False)
    monkeypatch.setenv(offline.SCALE_VARIABLE, "five-seed")
    five = offline.runs(False)
    assert len(five) == 9 * 3 * 2 * 5
    assert {spec.seed for spec in five} == {0, 1, 2, 3, 4}
    fingerprints = {spec.fingerprint for spec in five}
    assert all(spec.fingerprint in fingerprints for spec in default)  # seeds 0-2 resume the default's runs
    monkeypatch.setenv(offline.SCALE_VARIABLE, "ten-seed")
    with pytest.raises(offline.ConfigError, match="five-seed"):
        offline.runs(False)


def test_offline_summary(tmp_path):
    # Per algorithm: scores a on hopper-random and b on hopper-medium for both seeds, so every aggregate is
    # known by hand: IQM = mean = median = (a + b) / 2 (two tasks), optimality gap = mean(max(100 - s, 0)).
    specs = offline.runs(True)
    values = {f"{impl}-{algo}": (10.0 * k, 30.0 * k) for k, (impl, algo) in enumerate(
        [(i, a) for i in ("cairnrl", "d3rlpy") for a in ("iql", "td3bc", "bc")], start=1)}
    results = []
    for spec in specs:
        score = values[spec.algorithm][0 if spec.task == "hopper-random" else 1]
        run_dir = tmp_path / spec.run_id
        run_dir.mkdir()
        (run_dir / "evaluations.csv").write_text(f"timesteps,normalized\n250,{score / 2}\n1000,{score}\n")
        results.append(RunResult(spec, {
            "score": score, "mean_return": 10 * score, "updates_per_second": 10.0 + spec.seed,
            "dataset": {"episodes": 7, "steps": 5000, "normalized_mean": 5.0}}, run_dir))
    summary = offline.summarize(results, tmp_path, quick=True)
    aggregates = summary.numbers["aggregates"]
    for name, (a, b) in values.items():
        assert aggregates[name]["IQM"][0] == pytest.approx((a + b) / 2)
        assert aggregates[name]["optimality gap"][0] == pytest.approx((max(100 - a, 0) + max(100 - b, 0)) / 2)
    assert summary.numbers["updates_per_second"]["d3rlpy-iql"] == {"median": 10.5, "min": 10.0, "max": 11.0}
    assert "| hopper-medium | 7 | 5.0 | 30.0 ± 0.0 |" in summary.markdown
    assert "cairnrl runs with precision='bf16'" in summary.markdown
    assert "iql: batch_size=256, reward_scaler_multiplier=1000.0;" in summary.markdown
    assert "td3bc: batch_size=256, observation_scaler='standard';" in summary.markdown
    for name in summary.files:
        assert (tmp_path / name).is_file()


# --------------------------------------------------------------------------------------------- the real venv


@pytest.mark.slow
def test_real_worker_runs_bc_in_the_venv(tmp_path):
    python = d3rlpy_peer.venv_python(d3rlpy_peer.venv_path())
    if not (python.is_file() and (d3rlpy_peer.venv_path() / d3rlpy_peer.MARKER).is_file()):
        pytest.skip(f"no d3rlpy venv at {d3rlpy_peer.venv_path()} (make it with ensure_d3rlpy_env())")
    dataset = collect("Hopper-v5", "random", n_steps=400, seed=0)
    runs = [d3rlpy_peer.run_d3rlpy("bc", dataset, "Hopper-v5", 200, 7, 2, tmp_path / f"run{i}", python=python,
                                   n_steps_per_epoch=100) for i in range(2)]
    first, second = runs
    assert first["eval_returns"] == second["eval_returns"]  # same seed, same numbers on CPU
    assert first["eval_seeds"] == d3rlpy_peer.eval_seeds(7, 2)
    assert first["dataset"] == {"episodes": dataset.num_episodes, "transitions": dataset.num_steps}  # lossless
    assert first["normalized_mean"] == pytest.approx(normalized_score("Hopper-v5", first["mean_return"]))
    assert [epoch["step"] for epoch in first["epochs"]] == [100, 200] and first["updates_per_second"] > 0
    # d3rlpy's own BCConfig defaults were used, in the venv's gymnasium.
    assert first["config"]["batch_size"] == 100 and first["config"]["learning_rate"] == 1e-3
    assert first["config"]["policy_type"] == "deterministic" and first["versions"]["gymnasium"] == "1.0.0"
    assert not (tmp_path / "run0" / "dataset.npz").exists()
    with pytest.raises(d3rlpy_peer.PeerError, match="has no scalar hyperparameter"):
        d3rlpy_peer.run_d3rlpy("bc", dataset, "Hopper-v5", 10, 0, 1, tmp_path / "bad", {"no_such": 1}, python=python)
    with pytest.raises(d3rlpy_peer.PeerError, match="reward_scaler_multiplier must be a positive number"):
        d3rlpy_peer.run_d3rlpy("iql", dataset, "Hopper-v5", 10, 0, 1, tmp_path / "bad2",
                               {"reward_scaler_multiplier": -1}, python=python)
    # IQL's MuJoCo reward normalisation on the d3rlpy side: fitted on the data's episode returns.
    iql = d3rlpy_peer.run_d3rlpy("iql", dataset, "Hopper-v5", 10, 0, 1, tmp_path / "iql",
                                 {"reward_scaler_multiplier": 1000.0}, python=python, n_steps_per_epoch=10)
    scaler = iql["config"]["reward_scaler"]
    returns = dataset.returns()
    assert scaler["type"] == "return" and scaler["params"]["multiplier"] == 1000.0
    assert scaler["params"]["return_max"] == pytest.approx(returns.max(), rel=1e-5)
    assert scaler["params"]["return_min"] == pytest.approx(returns.min(), rel=1e-5)
    td3bc = d3rlpy_peer.run_d3rlpy("td3bc", dataset, "Hopper-v5", 10, 0, 1, tmp_path / "td3bc",
                                   {"observation_scaler": "standard"}, python=python, n_steps_per_epoch=10)
    assert td3bc["config"]["observation_scaler"]["type"] == "standard"  # fitted on the transitions' observations
    assert np.allclose(td3bc["config"]["observation_scaler"]["params"]["mean"],
                       dataset.to_d4rl()["observations"].mean(0), atol=1e-4)
