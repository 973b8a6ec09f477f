"""core/files.py: a file is written whole or not at all, and no temporary file is left behind."""
import os
import stat

import pytest

from llmkit.core.files import atomic_open, atomic_path, atomic_write


def test_write_replaces_whole_files_readable_by_others(tmp_path):
    target = tmp_path / "sub" / "out.json"
    assert atomic_write(target, "first") == target and target.read_text() == "first"
    atomic_write(target, b"\x00second")
    assert target.read_bytes() == b"\x00second"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644   # not mkstemp's private 0600
    assert os.listdir(target.parent) == ["out.json"]


def test_a_failure_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "rows.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("new, half")
        raise RuntimeError("crash")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["rows.jsonl"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "model.gguf") as tmp:
        tmp.write_bytes(b"GGUF")
        raise RuntimeError("crash")
    assert os.listdir(tmp_path) == ["rows.jsonl"]
