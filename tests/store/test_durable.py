"""Tests for agent.store.durable: atomic replace, append+fsync, directory creation."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.store.durable import (
    AppendOnlyFile,
    append_and_fsync,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_stream,
    ensure_dir,
    fsync_dir,
    move_durable,
    remove_stale_temps,
)
from agent.store.errors import StoreError
from tests.helpers.crash import kill_writer_after


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_bytes_replaces_content_with_mode_and_no_temp_left(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two, longer", mode=0o640)
    assert target.read_bytes() == b"two, longer"
    assert _mode(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_atomic_write_default_mode_is_0600_regardless_of_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        atomic_write_bytes(tmp_path / "k", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o600


def test_no_overwrite_keeps_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "key"
    atomic_write_bytes(target, b"original", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_bytes(target, b"clobber", overwrite=False)
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_failing_stream_leaves_target_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "out"
    atomic_write_bytes(target, b"old")

    def gen() -> Iterator[bytes]:
        yield b"partial new content"
        raise RuntimeError("verification failed")

    with pytest.raises(RuntimeError):
        atomic_write_stream(target, gen())
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_write_json_is_canonical(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_json(target, {"b": 1, "a": [1, "é"]})
    assert target.read_bytes() == b'{"a":[1,"\\u00e9"],"b":1}\n'
    assert json.loads(target.read_bytes()) == {"a": [1, "é"], "b": 1}
    with pytest.raises(ValueError):
        atomic_write_json(target, {"nan": float("nan")})
    assert json.loads(target.read_bytes())["b"] == 1


def test_append_and_fsync_accepts_fd_and_file_object(tmp_path: Path) -> None:
    target = tmp_path / "log"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        append_and_fsync(fd, b"a" * 10)
    finally:
        os.close(fd)
    with open(target, "ab") as f:
        append_and_fsync(f, b"bc")
    assert target.read_bytes() == b"a" * 10 + b"bc"


def test_ensure_dir_creates_parents_0700_and_fsync_dir_works(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    ensure_dir(deep)
    ensure_dir(deep)  # idempotent
    assert deep.is_dir()
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(deep) == 0o700
    fsync_dir(deep)
    atomic_write_bytes(deep / "f", b"")
    with pytest.raises(NotADirectoryError):
        fsync_dir(deep / "f")


def test_move_durable_refuses_to_replace(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"1")
    (tmp_path / "dst").mkdir()  # empty: os.rename would silently replace it
    with pytest.raises(FileExistsError):
        move_durable(tmp_path / "src", tmp_path / "dst")
    move_durable(tmp_path / "src", tmp_path / "other")
    assert (tmp_path / "other" / "f").read_bytes() == b"1"
    assert not (tmp_path / "src").exists()


def test_remove_stale_temps_only_touches_temps_of_that_name(tmp_path: Path) -> None:
    (tmp_path / ".wrap.key.abc123.tmp").write_bytes(b"secret")
    (tmp_path / ".other.abc.tmp").write_bytes(b"x")
    (tmp_path / "wrap.key").write_bytes(b"k")
    assert remove_stale_temps(tmp_path, "wrap.key") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.abc.tmp", "wrap.key"]


def test_append_only_file_appends_truncates_and_locks(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with AppendOnlyFile(path, lock=True) as f:
        assert f.size == 0
        assert f.append(b"hello") == 0
        assert f.append(b" world") == 5
        f.truncate(5)
        assert f.append(b"!") == 5
        with pytest.raises(StoreError, match="another writer"):
            AppendOnlyFile(path, lock=True)
        with pytest.raises(ValueError):
            f.truncate(100)
    assert path.read_bytes() == b"hello!"
    assert _mode(path) == 0o600
    with AppendOnlyFile(path, lock=True) as again:  # lock released on close
        assert again.size == 6
    closed = AppendOnlyFile(path)
    closed.close()
    with pytest.raises(StoreError, match="closed"):
        closed.append(b"x")


_WRITER = """
import sys
from pathlib import Path
from agent.store.durable import atomic_write_bytes
target = Path(sys.argv[1])
i = 0
while True:
    atomic_write_bytes(target, (b"%08d" % i) * 20000)
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_kill_during_atomic_writes_leaves_a_complete_version(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    acked = kill_writer_after(_WRITER, str(target), acked_at_least=30)
    data = target.read_bytes()
    assert len(data) == 8 * 20000
    version = int(data[:8])
    assert data == (b"%08d" % version) * 20000
    assert version >= acked
    remove_stale_temps(tmp_path, "big.bin")
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]
