from __future__ import annotations

from pathlib import Path

import pytest

from prunetuna.files import atomic_write, write_atomically


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text("old")
    atomic_write(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_failing_writer_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"kept")

    def half_then_fail(temporary: Path) -> None:
        temporary.write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pt"]


def test_the_writer_result_is_returned(tmp_path: Path) -> None:
    assert write_atomically(tmp_path / "a.txt", lambda temporary: temporary.write_text("abc")) == 3
    assert (tmp_path / "a.txt").read_text() == "abc"
