"""Tests for agent.publish.outbox: durable, idempotent, ack-driven, compacting."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.publish.outbox import Outbox, OutboxItem
from agent.store.errors import CorruptStoreError
from tests.helpers.crash import kill_writer_after


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _open(tmp_path: Path, segment_max_bytes: int = 4 * 1024 * 1024) -> Outbox:
    return Outbox(tmp_path / "outbox", clock=FakeClock(), segment_max_bytes=segment_max_bytes)


def _items_segments(tmp_path: Path, which: str = "items") -> list[str]:
    return sorted(p.name for p in (tmp_path / "outbox" / which).glob("*.jsonl"))


def test_put_pending_mark_done(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        assert box.depth == 0
        assert box.oldest_pending_created_at is None
        assert box.pending(10) == []
        assert box.put("manifest", "bwc/dock1/manifest", {"n": 1}, "m-1") is True
        assert box.put("event", "bwc/dock1/event", {"n": 2}, "e-1") is True
        assert box.put_many([("event", "t", {"n": 3}, "e-2"), ("event", "t", {"n": 4}, "e-3")]
                            ) == [True, True]
        assert box.depth == 4
        assert box.oldest_pending_created_at == 1001.0
        items = box.pending(3)
        assert items[0] == OutboxItem(1, "manifest", "bwc/dock1/manifest", "m-1", {"n": 1}, 1001.0)
        assert [i.item_id for i in items] == ["m-1", "e-1", "e-2"]
        assert box.mark_done(["e-1", "unknown", "e-1"]) == 1
        assert box.mark_done(["e-1"]) == 0
        assert [i.item_id for i in box.pending(10)] == ["m-1", "e-2", "e-3"]
        assert box.mark_done(iter(["m-1"])) == 1
        assert box.oldest_pending_created_at == 1003.0
        assert box.depth == 2
        assert box.pending(0) == []


def test_duplicates_ignored_within_and_across_batches(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        assert box.put("k", "t", {"v": 1}, "x") is True
        assert box.put("k", "t", {"v": 2}, "x") is False
        assert box.put_many([("k", "t", {}, "y"), ("k", "t", {}, "y"), ("k", "t", {}, "x")]
                            ) == [True, False, False]
        box.mark_done(["x"])
        assert box.put("k", "t", {"v": 3}, "x") is False  # done but still retained
        assert [i.item_id for i in box.pending(10)] == ["y"]
        assert box.pending(10)[0].payload == {}


def test_invalid_items_are_rejected_before_writing(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        with pytest.raises(ValueError):
            box.put("", "t", {}, "a")
        with pytest.raises(TypeError):
            box.put("k", "t", [1, 2], "a")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            box.put("k", "t", {"x": object()}, "a")
        assert box.depth == 0
        assert box.put("k", "t", {}, "a") is True


def test_restart_keeps_pending_and_done(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        for i in range(5):
            box.put("event", "t", {"i": i, "text": "é"}, f"id-{i}")
        box.mark_done(["id-1", "id-3"])
    with _open(tmp_path) as box:
        assert box.depth == 3
        pending = box.pending(10)
        assert [i.item_id for i in pending] == ["id-0", "id-2", "id-4"]
        assert [i.payload for i in pending] == [{"i": 0, "text": "é"}, {"i": 2, "text": "é"},
                                                {"i": 4, "text": "é"}]
        assert box.oldest_pending_created_at == 1001.0
        assert box.put("event", "t", {}, "id-2") is False  # pending, across restart
        assert box.put("event", "t", {}, "id-3") is False  # done, across restart
        assert box.put("event", "t", {}, "id-5") is True
        assert box.pending(10)[-1].seq == 6


def test_compaction_drops_fully_done_segments_of_both_journals(tmp_path: Path) -> None:
    with _open(tmp_path, segment_max_bytes=600) as box:
        for i in range(60):
            box.put("event", "t", {"pad": "x" * 80}, f"id-{i}")
        before = _items_segments(tmp_path)
        assert len(before) > 8
        box.mark_done([f"id-{i}" for i in range(1, 40)])
        assert _items_segments(tmp_path) == before  # id-0 still pending holds everything
        for i in range(40, 59):  # many small acks so the done journal rotates too
            box.mark_done([f"id-{i}"])
        done_before = _items_segments(tmp_path, "done")
        assert len(done_before) > 2
        box.mark_done(["id-0"])
        after = _items_segments(tmp_path)
        assert len(after) < len(before)
        assert after[0] != before[0]
        assert len(_items_segments(tmp_path, "done")) < len(done_before)
        assert [i.item_id for i in box.pending(10)] == ["id-59"]
        assert box.put("event", "t", {}, "id-0") is True  # compacted away: may be queued again
    with _open(tmp_path, segment_max_bytes=600) as box:
        assert [i.item_id for i in box.pending(10)] == ["id-59", "id-0"]


def test_everything_done_compacts_to_the_newest_segment(tmp_path: Path) -> None:
    with _open(tmp_path, segment_max_bytes=300) as box:
        for i in range(30):
            box.put("event", "t", {"pad": "y" * 50}, f"id-{i}")
        box.mark_done([f"id-{i}" for i in range(30)])
        assert box.depth == 0
        assert len(_items_segments(tmp_path)) == 1
    with _open(tmp_path, segment_max_bytes=300) as box:
        assert box.depth == 0
        assert box.put("event", "t", {}, "new") is True
        assert [i.seq for i in box.pending(5)] == [31]


def test_damaged_items_journal_is_reported(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        for i in range(3):
            box.put("event", "t", {"i": i}, f"id-{i}")
    segment = tmp_path / "outbox" / "items" / _items_segments(tmp_path)[0]
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"i":0', b'"i":7')
    segment.write_bytes(b"".join(lines))
    with pytest.raises(CorruptStoreError, match="hash chain"):
        _open(tmp_path)


_WRITER = """
import sys
from pathlib import Path
from agent.publish.outbox import Outbox
box = Outbox(Path(sys.argv[1]), segment_max_bytes=50000)
n = 0
while True:
    batch = [("event", "bwc/t", {"n": n + k, "pad": "q" * 2000}, f"id-{n + k}")
             for k in range(10)]
    box.put_many(batch)
    box.mark_done([f"id-{n}"])
    sys.stdout.write(f"{n + 9}\\n")
    sys.stdout.flush()
    n += 10
"""


def test_kill_during_put_many_reopens_consistent(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    acked = kill_writer_after(_WRITER, str(directory), acked_at_least=400)
    with Outbox(directory, segment_max_bytes=50000) as box:
        items = box.pending(100000)
        ids = [i.item_id for i in items]
        assert len(ids) == len(set(ids)) == box.depth
        numbers = [i.payload["n"] for i in items]
        assert numbers == sorted(numbers)
        assert all(i.item_id == f"id-{i.payload['n']}" for i in items)
        assert all(n % 10 != 0 for n in numbers[:-10])  # acknowledged ones stay done
        # every acknowledged put is still there (done or pending)
        expected = {f"id-{n}" for n in range(acked + 1) if n % 10 != 0}
        assert expected <= set(ids)
        # re-putting the interrupted batch only adds what is missing
        last_batch = (max(numbers) // 10) * 10
        redo = [("event", "bwc/t", {"n": last_batch + k}, f"id-{last_batch + k}")
                for k in range(10)]
        added = box.put_many(redo)
        after = [i.item_id for i in box.pending(100000)]
        assert len(after) == len(set(after))
        assert {f"id-{last_batch + k}" for k in range(1, 10)} <= set(after)
        for k, was_added in enumerate(added):
            if f"id-{last_batch + k}" in ids:
                assert not was_added


def test_torn_put_many_tail_is_dropped_on_reopen(tmp_path: Path) -> None:
    with _open(tmp_path) as box:
        box.put_many([("event", "t", {"i": i}, f"id-{i}") for i in range(3)])
    segment = tmp_path / "outbox" / "items" / _items_segments(tmp_path)[-1]
    whole = segment.read_bytes()
    # A batch of two more items whose write was cut inside the second line.
    with _open(tmp_path) as box:
        box.put_many([("event", "t", {"i": 3}, "id-3"), ("event", "t", {"i": 4}, "id-4")])
    grown = segment.read_bytes()
    segment.write_bytes(grown[: len(whole) + (len(grown) - len(whole)) * 3 // 4])
    with _open(tmp_path) as box:
        assert [i.item_id for i in box.pending(10)] == ["id-0", "id-1", "id-2", "id-3"]
        assert box.put_many([("event", "t", {"i": 3}, "id-3"), ("event", "t", {"i": 4}, "id-4")]
                            ) == [False, True]
        assert [i.seq for i in box.pending(10)] == [1, 2, 3, 4, 5]
