import math

import pytest

from cairnrl.core.fileio import atomic_write, is_json_value


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")

    def broken(temporary):
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    atomic_write(target, lambda temporary: temporary.write_text("new"))
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_a_folder_replaces_the_old_folder_through_a_named_temporary(tmp_path):
    target = tmp_path / "run"
    (target / "stale").mkdir(parents=True)

    def fill(temporary):
        assert temporary == tmp_path / "run.partial"
        (temporary / "data").mkdir(parents=True)

    atomic_write(target, fill, temporary=tmp_path / "run.partial")
    assert sorted(p.name for p in target.iterdir()) == ["data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_json_values_are_finite_and_str_keyed():
    assert is_json_value({"a": [1, 2.5, None, True, "x", (3, 4)]})
    assert not is_json_value(math.nan) and not is_json_value([math.inf])
    assert not is_json_value({1: "int key"}) and not is_json_value(object())
