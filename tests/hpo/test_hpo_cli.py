"""The ``cairnrl tune`` command: end to end with SQIRL and SB3 PPO, ``tune report``, clear errors."""

from __future__ import annotations

import json

from cairnrl.cli import main


def test_tune_sqirl_then_report(tmp_path, capsys):
    arguments = ["tune", "sqirl", "--env", "CartPole-v1", "--trials", "2", "--budget", "200", "--tuning-seeds", "0-1",
                 "--test-seeds", "1000-1001", "--eval-episodes", "2", "--evaluations", "1", "--sampler", "random",
                 "--set", "n_epochs=20", "--run-dir", str(tmp_path)]
    space = {"episodes_per_timestep": {"type": "categorical", "choices": [8, 16]}}
    (tmp_path / "space.json").write_text(json.dumps(space))
    assert main([*arguments, "--search-space", str(tmp_path / "space.json")]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "trials: 100%" in captured.err and "2/2" in captured.err  # the progress bar over the study's trials
    assert "final phase: retraining the best 1 configuration(s) and the defaults on 2 test seeds" in captured.err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    best = summary["configs"][0]
    assert best["hyperparameters"]["n_epochs"] == 20 and summary["default"]["hyperparameters"] == {"n_epochs": 20}
    assert summary["settings"]["tuning_seeds"] == [0, 1] and summary["settings"]["test_seeds"] == [1000, 1001]
    assert f"test mean {best['test_mean']:.4g}" in printed and f"report: {tmp_path / 'report'}" in printed

    assert main(["tune", "report", "--storage", str(tmp_path / "study.journal"), "--study",
                 "sqirl-CartPole-v1"]) == 0
    assert f"test mean {best['test_mean']:.4g}" in capsys.readouterr().out


def test_tune_sb3_ppo_end_to_end(tmp_path, capsys):
    space = tmp_path / "ppo.json"
    space.write_text(json.dumps({"search_space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2,
                                                                      "log": True}}}))
    code = main(["tune", "sb3-ppo", "--env", "CartPole-v1", "--trials", "2", "--budget", "128", "--tuning-seeds",
                 "0", "--test-seeds", "1", "--eval-episodes", "2", "--evaluations", "2", "--search-space", str(space),
                 "--set", "n_steps=64", "--set", "batch_size=32", "--study", "ppo", "--run-dir", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    assert "trials:" not in captured.err
    best_config = json.loads((tmp_path / "report" / "best_config.json").read_text())
    assert best_config["algorithm"] == "sb3-ppo" and best_config["env"] == "CartPole-v1"
    assert set(best_config["hyperparameters"]) == {"learning_rate", "n_steps", "batch_size"}
    assert "best: tuning" in captured.out


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["tune", "sqirl", "--env", "CartPole-v1"]) == 2
    assert "cairnrl tune sqirl needs --trials, --budget" in capsys.readouterr().err
    assert main(["tune", "sqirl", "--env", "CartPole-v1", "--trials", "1", "--budget", "10", "--tuning-seeds",
                 "0-4", "--test-seeds", "4-6", "--run-dir", str(tmp_path)]) == 2
    assert "tuning and test seeds overlap: [4]" in capsys.readouterr().err
    assert main(["tune", "report", "--study", "x"]) == 2
    assert "needs --storage" in capsys.readouterr().err
    assert main(["tune", "report", "--storage", str(tmp_path / "none.journal"), "--study", "x"]) == 2
    assert "no study 'x'" in capsys.readouterr().err
    assert main(["tune", "nope", "--env", "CartPole-v1", "--trials", "1", "--budget", "10"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    # report and join take their own options, not the tuning ones.
    assert main(["tune", "report", "--storage", "x.journal", "--study", "x", "--trials", "3"]) == 2
    assert "unrecognized arguments: --trials 3" in capsys.readouterr().err
