"""Storage URLs as users write them: a plain postgresql:// uses the driver the postgres extra installs."""

import importlib.util
import sys

import pytest

from cairnrl.exceptions import ConfigError
from cairnrl.hpo import storage
from cairnrl.hpo.storage import StorageSpec, rdb_url


def _installed(*present: str):
    return lambda name: object() if name in present else None


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (("psycopg", "psycopg2"), "postgresql+psycopg://u@h/db"),
        (("psycopg2",), "postgresql+psycopg2://u@h/db"),
        ((), "postgresql+psycopg://u@h/db"),
    ],
)
def test_plain_postgres_url_gets_an_installed_driver(monkeypatch, present, expected):
    monkeypatch.setattr(storage.importlib.util, "find_spec", _installed(*present))
    assert rdb_url("postgresql://u@h/db") == expected
    assert rdb_url("postgres://u@h/db") == expected


def test_explicit_drivers_and_other_urls_are_kept():
    for url in ("postgresql+psycopg2://u@h/db", "postgresql+psycopg://u@h/db", "sqlite:///x.db", "runs/x.journal"):
        assert rdb_url(url) == url


def test_missing_driver_message_names_what_to_install(monkeypatch):
    monkeypatch.setattr(storage.importlib.util, "find_spec", _installed())
    for module in ("psycopg", "psycopg2"):
        monkeypatch.setitem(sys.modules, module, None)  # makes "import psycopg" fail as if not installed
    with pytest.raises(ConfigError, match=r"driver is missing .*pip install 'cairnrl\[postgres\]' \(psycopg 3\)"):
        StorageSpec("postgresql://user@127.0.0.1:1/db").open()


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is None, reason="the postgres extra is not installed")
def test_plain_url_reaches_the_server_with_psycopg3():
    # No server listens on port 1: the error must be the connection, not a missing driver.
    with pytest.raises(ConfigError, match="cannot open storage") as caught:
        StorageSpec("postgresql://user@127.0.0.1:1/db").open()
    assert "driver is missing" not in str(caught.value)
