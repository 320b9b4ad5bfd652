"""Fixtures of the cairnrl.hpo tests."""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from hpo_helpers import SQIRL_STUDY

from cairnrl.hpo import tune


@pytest.fixture(scope="session")
def sqirl_study(tmp_path_factory):
    """A finished 3-trial SQIRL study with its report (shared: tests must not add trials to it)."""
    torch.set_num_threads(1)
    return tune("sqirl", "CartPole-v1", run_dir=tmp_path_factory.mktemp("sqirl_study"), **SQIRL_STUDY)


def _postgres_bin() -> Path | None:
    """The folder of initdb/pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    candidates = ([Path(found).parent] if found else []) + sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")), reverse=True
    )
    return next((folder for folder in candidates if (folder / "initdb").exists()), None)


def _unavailable(reason: str):
    if os.environ.get("CAIRNRL_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"CAIRNRL_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server on loopback (initdb + pg_ctl in a temporary folder), as a SQLAlchemy URL.

    PostgreSQL refuses to run as root, so as root the server runs as ``nobody``. Skips with the reason when the
    server or the psycopg (3) driver of the ``postgres`` extra is missing; with ``CAIRNRL_REQUIRE_POSTGRES=1`` (CI)
    that is a failure. The URL is the plain ``postgresql://`` form users write.
    """
    if importlib.util.find_spec("psycopg") is None:
        _unavailable("the psycopg driver is not installed (pip install 'cairnrl[postgres]')")
    folder = _postgres_bin()
    if folder is None:
        _unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    run_as: dict = {}
    root = tempfile.mkdtemp(prefix="cairnrl-pg-")
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=40"
    commands = [
        [str(folder / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--locale=C", "-E", "UTF8",
         "--no-sync"],
        [str(folder / "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "30", "-o", options, "start"],
    ]
    try:
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=root,
                                  **run_as)
            if done.returncode != 0:
                server_log = Path(log).read_text()[-500:] if Path(log).exists() else ""
                _unavailable(f"{Path(command[0]).name} failed: {(done.stderr or done.stdout)[-500:]} {server_log}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(folder / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True,
                       timeout=60, check=False, cwd=root, **run_as)
        shutil.rmtree(root, ignore_errors=True)
