"""Files the plugin writes get the user's umask (0666 less it), not mkstemp's private 0600."""

from __future__ import annotations

import os
import stat

import pytest

from recbole_gfm.artifacts import atomic_write, write_json


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    previous = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_honours_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    path = tmp_path / "result.json"
    write_json(str(path), {"a": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    with atomic_write(str(path), "w") as f:  # replacing a file gives the same mode
        f.write("{}")
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert os.listdir(tmp_path) == ["result.json"]


def test_json_files_carry_a_content_hash_checked_on_read(tmp_path):
    from recbole_gfm.artifacts import CorruptArtifactError, read_json, write_json

    path = str(tmp_path / "cell.json")
    write_json(path, {"test_result": {"hit@10": 0.25}, "seed": 2020, "note": ("a", 1)})
    assert read_json(path) == {"test_result": {"hit@10": 0.25}, "seed": 2020, "note": ["a", 1]}
    text = open(path).read()
    open(path, "w").write(text[: len(text) // 2])
    with pytest.raises(CorruptArtifactError, match=rf"{path}: not valid JSON.*truncated"):
        read_json(path)
    open(path, "w").write(text.replace("0.25", "0.35"))
    with pytest.raises(CorruptArtifactError, match="does not match its sha256"):
        read_json(path)
