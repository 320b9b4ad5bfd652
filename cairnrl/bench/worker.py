"""A worker process of :func:`cairnrl.bench.runner.run_experiment`: ``python -m cairnrl.bench.worker``.

Arguments: the experiment's module name, its import root, the attribute holding the experiment, the runs
folder, ``quick``/``full`` and the suite's command line (recorded in each ``run.json``).  It reads one run spec
per line (JSON) on stdin and answers with JSON lines on stdout: ``{"event": "progress", "run_id", "steps"}``
while a run goes, then ``{"event": "done", "run_id"}`` or ``{"event": "failed", "run_id", "error"}``.
Anything the run itself prints goes to stderr, so it cannot corrupt the protocol.  It exits when stdin closes.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import TextIO

from cairnrl.bench.execution import execute_run, load_experiment_reference
from cairnrl.bench.experiment import RunSpec

# Progress messages are rate-limited: the bar does not need more than a few updates per second.
_PROGRESS_PERIOD_S = 0.5


class _Channel:
    """JSON lines to the parent, with rate-limited progress reports for the current run."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last_progress = 0.0
        self.run_id = ""

    def send(self, message: dict) -> None:
        self._stream.write(json.dumps(message) + "\n")
        self._stream.flush()

    def progress(self, steps: int) -> None:
        now = time.monotonic()
        if now - self._last_progress >= _PROGRESS_PERIOD_S:
            self._last_progress = now
            self.send({"event": "progress", "run_id": self.run_id, "steps": steps})


def main(argv: list[str]) -> int:
    """Serve run specs from stdin until it closes."""
    module, root, attribute, runs_dir, mode, command = argv
    channel = _Channel(sys.stdout)
    sys.stdout = sys.stderr
    experiment = load_experiment_reference(module, root, attribute)
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = RunSpec.from_json(json.loads(line))
        channel.run_id = spec.run_id
        try:
            execute_run(experiment, spec, Path(runs_dir), mode == "quick", channel.progress, command)
        except Exception:  # reported to the parent, which lists every failed run at the end; no partial folder is left
            channel.send({"event": "failed", "run_id": spec.run_id, "error": traceback.format_exc()})
        else:
            channel.send({"event": "done", "run_id": spec.run_id})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
