"""The harness: run records, resuming, restarting interrupted or changed runs, failures, parallel workers, CLI."""

import argparse
import json
import shutil
import sys
from pathlib import Path

import bench_toy
import pytest

from cairnrl.bench import RunSpec, load_results, run_experiment
from cairnrl.bench.execution import experiment_reference
from cairnrl.bench.experiment import Experiment
from cairnrl.bench.suites import list_benchmarks
from cairnrl.cli import main as cairnrl_main
from cairnrl.cli.bench import register, run_benchmark
from cairnrl.exceptions import CairnError, ConfigError


def _executions(out: Path) -> list[str]:
    log = out / bench_toy.EXECUTIONS
    return log.read_text().split() if log.exists() else []


def test_serial_suite_writes_one_record_per_run_and_resumes(tmp_path):
    results = run_experiment(bench_toy.EXPERIMENT, tmp_path, quick=True, progress=False, command="cairnrl bench toy")
    assert len(results) == 8 and len(_executions(tmp_path)) == 8
    run_dir = tmp_path / "runs" / "hard__slow__seed1"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["seed"] == 1 and record["bench_command"] == "cairnrl bench toy"
    assert record["hyperparameters"] == {"tau": 800.0, "budget": 1000, "eval_freq": 100}
    for key in ("command", "git_commit", "versions", "machine", "start_time", "end_time", "fingerprint"):
        assert key in record
    assert record["versions"]["stable-baselines3"] and record["versions"]["torch"]
    rows = (run_dir / "evaluations.csv").read_text().splitlines()
    assert rows[0] == "timesteps,normalized" and len(rows) == 12
    assert list(run_dir.glob("events.out.tfevents.*")), "TensorBoard events are missing"

    again = run_experiment(bench_toy.EXPERIMENT, tmp_path, quick=True, progress=False)
    assert len(_executions(tmp_path)) == 8, "finished runs must be skipped"
    assert [r.result for r in again] == [r.result for r in results]


def test_interrupted_and_changed_runs_start_again_cleanly(tmp_path):
    run_experiment(bench_toy.EXPERIMENT, tmp_path, quick=True, progress=False)
    runs = tmp_path / "runs"
    # An interrupted run: the folder is still ".partial" and the final one is missing.
    shutil.move(runs / "easy__fast__seed0", runs / "easy__fast__seed0.partial")
    # A finished run whose declaration changed since (its recorded fingerprint no longer matches).
    record_path = runs / "easy__slow__seed1" / "run.json"
    record = json.loads(record_path.read_text())
    record["fingerprint"] = "0" * 64
    record_path.write_text(json.dumps(record))
    results = run_experiment(bench_toy.EXPERIMENT, tmp_path, quick=True, progress=False)
    assert _executions(tmp_path)[8:] == ["easy__fast__seed0", "easy__slow__seed1"]
    assert len(results) == 8 and not list(runs.glob("*.partial"))
    assert json.loads(record_path.read_text())["fingerprint"] != "0" * 64


def test_a_failing_run_is_named_after_the_others_finish(tmp_path):
    with pytest.raises(CairnError, match=r"4 of 12 runs .*broken__fast__seed0.*broken on purpose"):
        run_experiment(bench_toy.BROKEN, tmp_path, quick=True, progress=False)
    assert len(load_results(bench_toy.BROKEN, tmp_path, quick=True)) == 8
    assert not list((tmp_path / "runs").glob("broken*"))


def test_parallel_workers_give_the_serial_results_and_report_failures(tmp_path):
    serial = run_experiment(bench_toy.EXPERIMENT, tmp_path / "serial", quick=True, progress=False)
    parallel = tmp_path / "parallel"
    # BROKEN declares the same 8 runs plus 4 on a task that always fails.
    with pytest.raises(CairnError, match="broken on purpose"):
        run_experiment(bench_toy.BROKEN, parallel, quick=True, workers=2, progress=False)
    assert sorted(_executions(parallel)) == sorted(r.spec.run_id for r in serial)
    results = load_results(bench_toy.BROKEN, parallel, quick=True)
    assert {r.spec.run_id: r.result for r in results} == {r.spec.run_id: r.result for r in serial}


def test_run_specs_and_experiments_are_validated():
    with pytest.raises(ConfigError, match="seed"):
        RunSpec(task="a", algorithm="b", seed=-1)
    with pytest.raises(ConfigError, match="JSON"):
        RunSpec(task="a", algorithm="b", seed=0, config={"x": object()})
    with pytest.raises(ConfigError, match="steps"):
        RunSpec(task="a", algorithm="b", seed=0, steps=0)
    spec = RunSpec(task="lock 5", algorithm="sb3-ppo[n_steps=128]", seed=3, config={"a": [1, 2]})
    assert spec.run_id == "lock_5__sb3-ppo_n_steps=128___seed3"
    assert RunSpec.from_json(spec.to_json()) == spec and spec.family == spec.algorithm
    duplicate = Experiment(name="dup", description="", runs=lambda quick: [spec, spec],
                           execute=bench_toy.execute, summarize=bench_toy.summarize)
    with pytest.raises(ConfigError, match="twice"):
        duplicate.specs(True)
    with pytest.raises(ConfigError, match="name"):
        Experiment(name="Bad Name", description="", runs=bench_toy.runs, execute=bench_toy.execute,
                   summarize=bench_toy.summarize)
    with pytest.raises(ConfigError, match="workers"):
        run_experiment(bench_toy.EXPERIMENT, "unused", workers=0)
    assert experiment_reference(bench_toy.EXPERIMENT)[::2] == ("bench_toy", "EXPERIMENT")
    with pytest.raises(ConfigError, match="module-level"):
        experiment_reference(duplicate)


def _benchmarks_folder(root: Path) -> Path:
    folder = root / "toybench"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "toy.py").write_text('"""Toy benchmark for the CLI test."""\nfrom bench_toy import EXPERIMENT\n')
    (folder / "helper.py").write_text('"""Not a benchmark: declares no EXPERIMENT."""\nVALUE = 1\n')
    return folder


def test_cli_lists_runs_publishes_and_regenerates_benchmarks_md(tmp_path, monkeypatch, capsys):
    folder = _benchmarks_folder(tmp_path)

    def main(argv: list[str]) -> int:
        return cairnrl_main(["bench", *argv, "--suites", str(folder)])

    assert list_benchmarks(folder) == {"toy": "Toy benchmark for the CLI test."}
    assert main(["--list"]) == 0 and "toy" in capsys.readouterr().out
    assert main(["nope"]) == 2 and "unknown benchmark 'nope'" in capsys.readouterr().err
    assert main([]) == 2

    private = tmp_path / "private"
    assert main(["toy", "--quick", "--out", str(private), "--no-progress"]) == 0  # tracked files stay untouched
    assert (private / "report" / "summary.json").is_file() and "pass --publish" in capsys.readouterr().out
    assert not (folder / "results").exists() and not (tmp_path / "BENCHMARKS.md").exists()

    out = tmp_path / "out"
    assert main(["toy", "--quick", "--out", str(out), "--no-progress", "--publish"]) == 0
    published = folder / "results" / "toy" / "quick"
    summary = json.loads((published / "summary.json").read_text())
    assert summary["command"] == f"cairnrl bench toy --suites {folder} --quick --workers 1 --out {out}"
    assert summary["n_runs"] == summary["n_executed"] == 8 and set(summary["numbers"]) == {"fast", "slow"}
    run_seconds = sum(json.loads(path.read_text())["wall_time_s"] for path in out.glob("runs/*/run.json"))
    assert summary["summed_run_time_s"] == round(run_seconds, 1)
    assert summary["numbers"]["fast"] > summary["numbers"]["slow"]  # tau is 4x smaller for "fast"
    assert (published / "curves.png").stat().st_size > 1000
    document = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## toy (quick)" in document and "toybench/results/toy/quick/curves.png" in document
    assert f"`cairnrl bench toy --suites {folder} --quick --workers 1 --out {out}`" in document

    assert "all 8 runs executed in it" in document
    assert main(["toy", "--quick", "--out", str(out), "--no-progress", "--publish"]) == 0  # resumes: nothing runs again
    assert "0 of 8 runs executed in it" in (tmp_path / "BENCHMARKS.md").read_text()
    assert "runs ran on" not in (tmp_path / "BENCHMARKS.md").read_text()  # here, at this commit: the header says it
    moved = next(out.glob("runs/*/run.json"))  # a run resumed from another machine is named with its count
    record = json.loads(moved.read_text())
    moved.write_text(json.dumps({**record, "machine": {**record["machine"], "platform": "OtherBox-1.0"}}))
    assert main(["toy", "--quick", "--out", str(out), "--no-progress", "--publish"]) == 0
    ran_on = next(line for line in (tmp_path / "BENCHMARKS.md").read_text().splitlines() if "runs ran on" in line)
    assert "OtherBox-1.0, commit " in ran_on and "(1 runs)" in ran_on and "(7 runs)" in ran_on
    (tmp_path / "BENCHMARKS.md").unlink()
    assert main(["--report"]) == 0 and "## toy (quick)" in (tmp_path / "BENCHMARKS.md").read_text()


def test_cli_finds_the_suites_folder_in_the_current_directory_and_takes_every_path_as_an_option(
        tmp_path, monkeypatch, capsys):
    """An installed cairnrl runs the ./benchmarks of any directory; results go where the options say."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "benchmarks", raising=False)  # the repository's, when another test imported it
    assert cairnrl_main(["bench", "--list"]) == 2
    assert "is not a suites folder" in capsys.readouterr().err
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "toy.py").write_text('"""Toy benchmark for the CLI test."""\nfrom bench_toy import EXPERIMENT\n')
    assert cairnrl_main(["bench", "--list"]) == 0 and "toy" in capsys.readouterr().out
    published, document = tmp_path / "pub", tmp_path / "docs" / "BENCH.md"
    document.parent.mkdir()
    assert cairnrl_main(["bench", "toy", "--quick", "--no-progress", "--publish", "--published", str(published),
                         "--document", str(document)]) == 0
    assert (tmp_path / "results" / "bench" / "toy" / "quick" / "report" / "summary.json").is_file()
    assert (published / "toy" / "quick" / "summary.json").is_file() and not (folder / "results").exists()
    text = document.read_text()
    assert "`cairnrl bench toy --quick --workers 1`" in text and "../pub/toy/quick/curves.png" in text
    assert cairnrl_main(["bench", "toy", "--ray-address", "auto"]) == 2
    assert "--ray-address is for --launcher ray" in capsys.readouterr().err


def test_register_adds_the_bench_subcommand():
    parser = argparse.ArgumentParser(prog="cairnrl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "sqirl", "--quick", "--workers", "2", "--out", "somewhere", "--launcher", "ray"])
    assert (args.name, args.quick, args.workers, args.out, args.func) == ("sqirl", True, 2, "somewhere", run_benchmark)
    assert (args.launcher, args.ray_address, args.suites) == ("ray", None, None)
    assert parser.parse_args(["bench", "--list"]).list


def test_recorded_command_carries_the_scale_variables(monkeypatch):
    import argparse
    import os

    from cairnrl.cli.bench import _command

    for name in [name for name in os.environ if name.startswith("CAIRNRL_")]:
        monkeypatch.delenv(name)
    args = argparse.Namespace(name="offline", suites=None, quick=False, workers=2, launcher="local", out=None)
    assert _command(args) == "cairnrl bench offline --workers 2"
    monkeypatch.setenv("CAIRNRL_OFFLINE_SCALE", "five-seed")
    monkeypatch.setenv("CAIRNRL_D3RLPY_VENV", "/somewhere")  # not a scale: left out
    assert _command(args) == "CAIRNRL_OFFLINE_SCALE=five-seed cairnrl bench offline --workers 2"
