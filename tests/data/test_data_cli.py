"""``cairnrl data make | collect | info | validate | convert`` run through cli.main and cli.register."""

from __future__ import annotations

import argparse
import json

import numpy as np

from cairnrl.cli import main
from cairnrl.cli.data import register
from cairnrl.data import collect, load

MIXED = [(4, "terminal"), (5, "timeout"), (3, "both")]


def test_register_adds_data_to_an_outer_parser():
    parser = argparse.ArgumentParser(prog="cairnrl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "validate", "somewhere"])
    assert args.path == "somewhere" and callable(args.func)


def test_validate_info_and_convert(tmp_path, make_flat, hdf5_writer, capsys):
    path = hdf5_writer(tmp_path / "hopper_random-v2.hdf5", make_flat(MIXED))
    assert main(["data", "validate", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["data", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["summary"]["episodes"] == 3 and info["metadata"]["ref_max_score"] == 3234.3
    assert main(["data", "convert", str(path), str(tmp_path / "copy")]) == 0
    assert main(["data", "convert", str(tmp_path / "copy"), str(tmp_path / "copy.npz")]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(load(tmp_path / "copy.npz").observations, load(path).observations)
    assert main(["data", "info", str(tmp_path / "copy")]) == 0
    assert "3 episodes, 12 steps" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(tmp_path, make_flat, hdf5_writer, capsys):
    arrays = make_flat(MIXED)
    arrays["rewards"][2] = np.nan
    path = hdf5_writer(tmp_path / "bad.hdf5", arrays)
    assert main(["data", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cairnrl: error:" in err and "key 'rewards', episode 0, step 2" in err and "Traceback" not in err
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    assert main(["data", "info", str(text)]) == 2
    assert "not an .npz file" in capsys.readouterr().err
    assert main(["data", "make", "hopper-mediocre", "--out", str(tmp_path)]) == 2
    assert "unknown dataset recipe" in capsys.readouterr().err


def test_collect_and_make(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("cairnrl.data.recipes.TEACHERS_ROOT", tmp_path / "no-committed-teachers")
    out = tmp_path / "pendulum"
    assert main(["data", "collect", "Pendulum-v1", "--episodes", "1", "--seed", "4", "--out", str(out),
                 "--no-progress"]) == 0
    np.testing.assert_array_equal(load(out).actions, collect("Pendulum-v1", "random", n_episodes=1, seed=4).actions)
    made = tmp_path / "made"
    assert main(["data", "make", "hopper-random", "hopper-medium-replay", "--budget", "200", "--steps", "60",
                 "--eval-every", "100", "--eval-episodes", "1", "--out", str(made), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "hopper-random: wrote" in printed and "normalized" in printed
    random_data = load(made / "hopper-random")
    assert random_data.num_steps == 60 and random_data.metadata["recipe"]["kind"] == "random"
    replay = load(made / "hopper-medium-replay")
    teacher_dir = made / "teachers" / "hopper-sac-budget200-seed0" / "teacher"
    assert replay.num_steps == replay.metadata["teacher"]["medium"]["step"]
    assert main(["data", "collect", "Hopper-v5", "--policy", str(teacher_dir), "--which", "medium", "--steps", "30",
                 "--out", str(tmp_path / "medium.npz"), "--no-progress"]) == 0
    assert load(tmp_path / "medium.npz").num_steps == 30
    assert main(["data", "make", "hopper-random", "--steps", "60", "--out", str(made), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_teacher_train_in_chunks_publish_and_make_from_it(tmp_path, capsys):
    run_dir, published = tmp_path / "run", tmp_path / "teachers" / "hopper"
    train = ["data", "teacher", "train", "Hopper-v5", "--budget", "200", "--run-dir", str(run_dir), "--chunk", "120",
             "--eval-every", "100", "--eval-episodes", "1", "--deterministic-eval-episodes", "1", "--no-progress"]
    assert main(train) == 0
    assert "120 of 200 steps" in capsys.readouterr().out
    assert main(train) == 0
    assert "200 of 200 steps" in capsys.readouterr().out
    assert main(["data", "teacher", "publish", str(run_dir), "--out", str(published), "--replay-snapshots", "2"]) == 0
    printed = capsys.readouterr().out
    assert "| env | SAC steps |" in printed and "| Hopper-v5 | 200 |" in printed
    info = json.loads((published / "teacher.json").read_text())
    assert info["command"].split()[:5] == ["cairnrl", "data", "teacher", "train", "Hopper-v5"]
    assert main(["data", "make", "hopper-medium", "--teacher", str(published), "--steps", "40", "--out",
                 str(tmp_path / "made"), "--no-progress"]) == 0
    assert load(tmp_path / "made" / "hopper-medium").metadata["teacher"]["medium"]["step"] == info["medium"]["step"]
    assert main(["data", "teacher", "publish", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "run.json is missing" in capsys.readouterr().err
