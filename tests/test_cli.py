"""The console script: train then eval, config files, --set parsing and clean errors."""

import json

import pytest

from cairnrl.cli import main, parse_assignments, read_config
from cairnrl.exceptions import ConfigError


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
    assert main(["eval", str(run_dir), "--episodes", "3"]) == 0
    assert "final evaluation over 3 episodes" in capsys.readouterr().out


def test_train_sb3_peer_saves_safely(tmp_path, capsys):
    code = main(["train", "sb3-dqn", "--env", "CartPole-v1", "--timesteps", "64", "--logdir", str(tmp_path),
                 "--set", "learning_starts=16", "--eval-episodes", "1", "--no-progress"])
    assert code == 0
    run_dir = tmp_path / "sb3-dqn_1"
    assert (run_dir / "model" / "manifest.json").is_file()
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0


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
