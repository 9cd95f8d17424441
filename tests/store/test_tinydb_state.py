"""Tests for agent.store.state: TinyDB over atomic JSON storage."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from tinydb import Query

from agent.store.errors import CorruptStoreError
from agent.store.state import AtomicJSONStorage, open_state
from tests.helpers.crash import kill_writer_after


def test_write_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "agent.json"
    db = open_state(path)
    assert not path.exists()  # created lazily on first write
    db.insert({"camera": "c1", "count": 1})
    db.table("docks").insert({"slot": 3})
    db.update({"count": 2}, Query().camera == "c1")
    db.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    reopened = open_state(path)
    assert reopened.all() == [{"camera": "c1", "count": 2}]
    assert reopened.table("docks").all() == [{"slot": 3}]
    reopened.close()


def test_storage_read_missing_file_is_none(tmp_path: Path) -> None:
    assert AtomicJSONStorage(tmp_path / "nothing.json").read() is None


@pytest.mark.parametrize("content", [b"", b'{"_default": {"1": {"a"', b"[1, 2]", b"\xff\xfe"])
def test_damaged_state_file_raises_instead_of_resetting(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(content)
    db = open_state(path)
    with pytest.raises(CorruptStoreError) as info:
        db.all()
    assert info.value.path == path
    assert path.read_bytes() == content  # never overwritten by a "fresh" state


def test_stale_temp_from_interrupted_write_is_ignored_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    open_state(path).insert({"k": 1})
    (tmp_path / ".s.json.zz9.tmp").write_bytes(b'{"_default": {"1": {"k": 99')
    db = open_state(path)
    assert db.all() == [{"k": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


_WRITER = """
import sys
from pathlib import Path
from agent.store.state import open_state
db = open_state(Path(sys.argv[1]))
i = 0
while True:
    db.insert({"i": i, "pad": "x" * 200})
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_kill_during_write_loop_leaves_parseable_prefix(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    acked = kill_writer_after(_WRITER, str(path), acked_at_least=150)

    json.loads(path.read_bytes())  # always parses
    values = [doc["i"] for doc in open_state(path).all()]
    assert values == list(range(len(values)))  # a prefix of what was written
    assert len(values) - 1 >= acked  # including everything acknowledged
