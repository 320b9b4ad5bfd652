"""The Ray launcher on a local multi-process Ray cluster (loopback): the same results as the local launcher."""

import json

import bench_toy
import pytest

from cairnrl.bench import load_results, run_experiment
from cairnrl.cli import main
from cairnrl.exceptions import CairnError

ray = pytest.importorskip("ray", reason="the ray launcher needs Ray (pip install ray; the bench and test extras "
                                        "install it)")


@pytest.fixture(scope="module")
def cluster():
    """A Ray instance of this test process: its own GCS, raylet and two worker processes on 127.0.0.1."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             configure_logging=False)
    yield
    ray.shutdown()


def _by_run(results):
    return {result.spec.run_id: result.result for result in results}


def test_ray_tasks_give_the_local_launchers_results_and_report_failures(tmp_path, monkeypatch, cluster):
    monkeypatch.chdir(tmp_path)  # a relative output folder means this process's directory, not the tasks'
    local = run_experiment(bench_toy.EXPERIMENT, tmp_path / "local", quick=True, progress=False)
    on_ray = run_experiment(bench_toy.EXPERIMENT, "ray", quick=True, workers=2, progress=False,
                            launcher="ray", command="cairnrl bench toy --launcher ray")
    assert _by_run(on_ray) == _by_run(local) and len(on_ray) == 8
    assert sorted((tmp_path / "ray" / bench_toy.EXECUTIONS).read_text().split()) == sorted(_by_run(local))
    record = json.loads((tmp_path / "ray" / "runs" / "hard__slow__seed1" / "run.json").read_text())
    assert record["status"] == "finished" and record["bench_command"] == "cairnrl bench toy --launcher ray"
    # BROKEN declares the same 8 runs plus 4 that fail: those are named, the 8 are resumed, nothing runs twice.
    with pytest.raises(CairnError, match=r"4 of 12 runs .*broken on purpose"):
        run_experiment(bench_toy.BROKEN, "ray", quick=True, workers=2, progress=False, launcher="ray")
    assert len((tmp_path / "ray" / bench_toy.EXECUTIONS).read_text().split()) == 8
    assert _by_run(load_results(bench_toy.BROKEN, tmp_path / "ray", quick=True)) == _by_run(local)
    assert not list((tmp_path / "ray" / "runs").glob("broken*"))


def test_cairnrl_bench_launcher_ray(tmp_path, cluster, capsys):
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "toy.py").write_text('"""Toy benchmark."""\nfrom bench_toy import EXPERIMENT\n')
    out = tmp_path / "out"
    assert main(["bench", "toy", "--suites", str(folder), "--quick", "--workers", "2", "--launcher", "ray",
                 "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["command"] == f"cairnrl bench toy --suites {folder} --quick --workers 2 --launcher ray --out {out}"
    assert summary["n_runs"] == summary["n_executed"] == 8
