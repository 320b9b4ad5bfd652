"""The console script: train then eval, config files, --set parsing and clean errors."""

import json
import subprocess
import sys

import pytest

from cairnrl.algos.registry import algorithm_names
from cairnrl.cli import ALGORITHM_NAMES, build_parser, main, parse_assignments, read_config
from cairnrl.exceptions import ConfigError


def _run(argv: list[str]) -> int:
    """``main`` with argparse's own exits (bad arguments) returned as codes."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


def _mean(printed: str) -> str:
    return printed.split("mean return ")[1].split(" ")[0]


def test_train_then_eval(tmp_path, capsys):
    code = main([
        "train", "sqirl", "--env", "CartPole-v1", "--timesteps", "150", "--seed", "1", "--logdir", str(tmp_path),
        "--set", "episodes_per_timestep=2", "--set", "net_arch=[16]", "--eval-episodes", "2", "--no-progress",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "final evaluation over 2 episodes" in out
    run_dir = tmp_path / "SQIRL_1"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["env_id"] == "CartPole-v1" and record["seed"] == 1
    assert record["hyperparameters"]["net_arch"] == [16]
    final = _mean(out)
    assert main(["eval", str(run_dir)]) == 0  # by default the same env, episodes and seed as the final evaluation
    printed = capsys.readouterr().out
    assert "over 2 episodes" in printed and _mean(printed) == final
    assert main(["eval", str(run_dir), "--episodes", "3", "--seed", "5"]) == 0
    assert "(seed 5) over 3 episodes" in capsys.readouterr().out


def test_train_sb3_peer_saves_safely_with_cairnrls_run_layout(tmp_path, capsys):
    code = main(["train", "sb3-dqn", "--env", "CartPole-v1", "--timesteps", "64", "--logdir", str(tmp_path),
                 "--set", "learning_starts=16", "--eval-episodes", "2", "--no-progress"])
    assert code == 0
    final = _mean(capsys.readouterr().out)
    run_dir = tmp_path / "SB3-DQN_1"  # named like cairnrl's own runs (SQIRL_1)
    assert (run_dir / "model" / "manifest.json").is_file()
    assert (run_dir / "progress.csv").read_text().startswith(("time/", "rollout/", "train/"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["algorithm"] == "sb3-dqn" and record["hyperparameters"]["learning_starts"] == 16
    assert record["hyperparameters"]["gamma"] == 0.99 and record["hyperparameters"]["policy"] == "MlpPolicy"
    assert main(["eval", str(run_dir)]) == 0
    assert _mean(capsys.readouterr().out) == final


def test_config_file_and_assignments(tmp_path):
    config = tmp_path / "best.json"
    config.write_text(json.dumps({"hyperparameters": {"planning_depth": 2}}))
    assert read_config(str(config)) == {"planning_depth": 2}
    assert parse_assignments(["a=3", "b=1e-4", "c=[1,2]", "d=true", "e=text"]) == {
        "a": 3, "b": 1e-4, "c": [1, 2], "d": True, "e": "text"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["novalue"])
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(str(tmp_path / "missing.json"))


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["train", "nosuchalgo", "--env", "CartPole-v1", "--timesteps", "10", "--logdir", str(tmp_path)]) == 2
    assert "unknown algorithm 'nosuchalgo'" in capsys.readouterr().err
    code = main(["train", "sqirl", "--env", "CartPole-v1", "--timesteps", "10", "--logdir", str(tmp_path),
                 "--set", "planning_depth=0"])
    assert code == 2 and "planning_depth must be >= 1" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nowhere")]) == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "sb3-ppo", "--set", "learning_rate=-0.001"], "invalid hyperparameters for PPO: Invalid learning rate"),
    (["train", "sb3-sac"], "SAC cannot train on CartPole-v1"),
    (["train", "sb3-ppo", "--threads", "0"], "argument --threads: expected a positive integer, got '0'"),
    (["train", "sb3-ppo", "--timesteps", "-5"], "argument --timesteps: expected a positive integer, got '-5'"),
    (["train", "sqirl", "--eval-episodes", "-1"], "argument --eval-episodes: expected an integer >= 0"),
    (["train", "sb3-ppo", "--set", "no_such_param=3"],
     "hyperparameter 'no_such_param' is not a constructor argument of PPO; valid names: ['policy', 'learning_rate'"),
    (["train", "sqirl", "--set", "no_such_param=3"],
     "hyperparameter 'no_such_param' is not a constructor argument of SQIRL; valid names: ['policy', 'planning"),
])
def test_bad_train_input_is_one_error_line_before_any_training(tmp_path, capsys, argv, message):
    # A repeated option (--timesteps) takes its last value, so the case's own comes after the defaults.
    defaults = ["--env", "CartPole-v1", "--timesteps", "64", "--logdir", str(tmp_path / "runs"), "--no-progress"]
    assert _run([*argv[:2], *defaults, *argv[2:]]) == 2
    err = capsys.readouterr().err
    assert f"cairnrl: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing trained, no half-written run folder


@pytest.mark.parametrize("argv", [
    ["nosuchcommand"],
    ["train", "sqirl", "--env", "CartPole-v1", "--timesteps", "0"],
    ["eval", "nowhere"],
    ["data", "info", "missing.npz"],
    ["data", "collect", "CartPole-v1", "--episodes", "1"],
    ["tune", "sqirl", "--trials", "zero"],
    ["tune", "report", "--study", "x"],
    ["tune", "join", "--storage", "missing.journal", "--study", "x"],
    ["bench", "--list"],
    ["bench", "--suites", "nowhere", "toy"],
    ["bench", "toy", "--workers", "0"],
])
def test_every_command_reports_a_user_error_alike(tmp_path, monkeypatch, capsys, argv):
    """Bad arguments, cairnrl errors and missing files: exit code 2 and one ``cairnrl: error:`` line, no traceback."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cairnrl: error: " in err and "Traceback" not in err


def test_eval_reports_a_damaged_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "SQIRL_1"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "run.json").write_text("{not json")
    assert main(["eval", str(run_dir)]) == 2
    assert "run.json is not valid JSON" in capsys.readouterr().err
    (run_dir / "run.json").write_text("[]")
    assert main(["eval", str(run_dir)]) == 2
    assert "has no 'algorithm' entry" in capsys.readouterr().err


def test_skipped_final_evaluation_says_why(tmp_path, capsys):
    assert main(["train", "sqirl", "--env", "cairnrl/TwoStepTrap-v0", "--timesteps", "20", "--logdir",
                 str(tmp_path), "--eval-episodes", "0", "--no-progress"]) == 0
    assert "final evaluation skipped: --eval-episodes 0" in capsys.readouterr().out


def test_version_list_and_help(capsys):
    assert _run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "cairnrl 0.1.0"
    assert set(ALGORITHM_NAMES) == set(algorithm_names())
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in algorithm_names())
    assert "cairnrl/StickyCorridor-v0" in listed and "horizon 30" in listed
    train_help = build_parser().format_help() + build_parser()._subparsers._group_actions[0].choices[
        "train"].format_help()
    assert all(name in train_help for name in ALGORITHM_NAMES)
    tune_help = build_parser("tune")._subparsers._group_actions[0].choices["tune"].format_help()
    assert "``" not in tune_help and ":mod:" not in tune_help
    # The help-only stubs name the same commands with the same one-line help as the full parser.
    assert build_parser("").format_help() == build_parser().format_help()


def test_help_and_import_cairnrl_stay_light():
    """--help parses without torch, SciPy or Optuna; import cairnrl registers the envs for gymnasium.make."""
    code = (
        "import sys, gymnasium as gym, cairnrl\n"
        "gym.make('cairnrl/StickyCorridor-v0')\n"
        "from cairnrl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'scipy', 'optuna', 'stable_baselines3', 'mujoco') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_sequoia_run_folder_evaluates(tmp_path, capsys):
    """SEQUOIA acts through its env's feasible set: eval rebuilds the env and loads the model with it."""
    assert main(["train", "sequoia", "--env", "cairnrl/CoRMAB-Capacity-v0", "--timesteps", "5", "--eval-episodes",
                 "1", "--logdir", str(tmp_path), "--set", "warm_start=false", "--no-progress"]) == 0
    final = _mean(capsys.readouterr().out)
    assert main(["eval", str(tmp_path / "SEQUOIA_1")]) == 0
    assert _mean(capsys.readouterr().out) == final
    assert main(["eval", str(tmp_path / "SEQUOIA_1"), "--env", "cairnrl/CoRMAB-Capacity-v0", "--seed", "3"]) == 0
    assert "(seed 3) over 1 episodes" in capsys.readouterr().out
