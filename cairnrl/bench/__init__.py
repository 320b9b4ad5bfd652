"""The benchmark harness: declared experiments, a resumable parallel runner, honest aggregates, plots and the
BENCHMARKS.md generator (``cairnrl bench``).  The benchmark scripts are not part of the package: they live in a
suites folder (:mod:`cairnrl.bench.suites`), such as the ``benchmarks/`` folder of a cairnrl clone.
"""

from __future__ import annotations

from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary
from cairnrl.bench.runner import load_results, run_experiment

__all__ = ["Experiment", "RunContext", "RunResult", "RunSpec", "Summary", "load_results", "run_experiment"]
