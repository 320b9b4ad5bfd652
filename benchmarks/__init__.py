"""Reproducible benchmark scripts: each declares ``EXPERIMENT`` and runs as ``cairnrl bench NAME`` or
``python -m benchmarks.NAME`` (see ``cairnrl/bench``)."""
