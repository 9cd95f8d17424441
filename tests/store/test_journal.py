"""Tests for agent.store.journal: hash-chained, segmented, crash-recovering JSONL."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from agent.store.errors import CorruptStoreError, StoreError
from agent.store.journal import GENESIS_HASH, Journal
from tests.helpers.crash import kill_writer_after


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def _fill(journal: Journal, n: int, pad: int = 0) -> None:
    for i in range(n):
        journal.append({"i": i, "pad": "p" * pad})


def test_append_assigns_seq_and_hash_chain(tmp_path: Path) -> None:
    with Journal(tmp_path / "j") as j:
        assert (j.last_seq, j.head_hash) == (0, GENESIS_HASH)
        assert j.append({"event": "a"}) == 1
        assert j.append_many([{"event": "b"}, {"event": "c"}]) == [2, 3]
        assert j.append_many([]) == []
        records = list(j.read())
    assert [r["event"] for r in records] == ["a", "b", "c"]
    assert [r["seq"] for r in records] == [1, 2, 3]
    lines = (tmp_path / "j" / "00000000000000000001.jsonl").read_bytes().splitlines()
    assert records[0]["prev"] == GENESIS_HASH
    assert records[1]["prev"] == hashlib.sha256(lines[0]).hexdigest()
    assert records[2]["prev"] == hashlib.sha256(lines[1]).hexdigest()
    assert j.head_hash == hashlib.sha256(lines[2]).hexdigest()


def test_read_from_seq_and_reserved_fields(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_max_bytes=200) as j:
        _fill(j, 20)
        assert [r["i"] for r in j.read(from_seq=15)] == [14, 15, 16, 17, 18, 19]
        assert list(j.read(from_seq=21)) == []
        with pytest.raises(ValueError):
            j.append({"seq": 5})
        with pytest.raises(TypeError):
            j.append({"bad": object()})
        assert j.last_seq == 20  # failed appends wrote nothing
        assert j.verify() == 20


def test_reopen_continues_seq_and_chain(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        _fill(j, 5)
        head = j.head_hash
    with Journal(tmp_path) as j:
        assert (j.last_seq, j.head_hash) == (5, head)
        assert j.append({"after": True}) == 6
        assert next(j.read(6))["prev"] == head
        assert j.verify() == 6


def test_rotation_by_size_and_segment_names(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_max_bytes=500) as j:
        _fill(j, 30, pad=40)
        starts = j.segment_starts
        assert len(starts) > 3
        assert starts[0] == 1
        assert [p.name for p in _segments(tmp_path)] == [f"{s:020d}.jsonl" for s in starts]
        for path in _segments(tmp_path)[:-1]:
            assert path.stat().st_size >= 500
        assert j.verify() == 30
    with Journal(tmp_path, segment_max_bytes=500) as j:
        assert j.last_seq == 30
        assert [r["i"] for r in j.read()] == list(range(30))


def test_torn_incomplete_last_line_is_truncated(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with Journal(tmp_path) as j:
        _fill(j, 3)
        head = j.head_hash
    segment = _segments(tmp_path)[-1]
    good = segment.read_bytes()
    with open(segment, "ab") as f:
        f.write(b'{"i":3,"pad":"","prev":"ab')
    with caplog.at_level(logging.WARNING), Journal(tmp_path) as j:
        assert (j.last_seq, j.head_hash) == (3, head)
        assert j.append({"i": 3}) == 4
        assert j.verify() == 4
    assert "torn tail" in caplog.text
    assert segment.read_bytes().startswith(good)


@pytest.mark.parametrize("garbage", [b"\x00" * 300, b"{garbled json}\n", b"\xff\n"])
def test_garbled_last_line_is_truncated(tmp_path: Path, garbage: bytes) -> None:
    with Journal(tmp_path) as j:
        _fill(j, 3)
    segment = _segments(tmp_path)[-1]
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(garbage)
    with Journal(tmp_path) as j:
        assert j.last_seq == 3
    assert segment.stat().st_size == size


def test_truncated_mid_last_line_recovers_previous(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        _fill(j, 4)
    segment = _segments(tmp_path)[-1]
    with open(segment, "r+b") as f:
        f.truncate(segment.stat().st_size - 7)
    with Journal(tmp_path) as j:
        assert j.last_seq == 3
        assert j.verify() == 3


def test_bad_line_in_the_middle_raises_naming_file_and_line(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        _fill(j, 5)
    segment = _segments(tmp_path)[-1]
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[2] = b"not json at all\n"
    segment.write_bytes(b"".join(lines))
    with pytest.raises(CorruptStoreError) as info:
        Journal(tmp_path)
    assert info.value.path == segment
    assert info.value.line == 3


def test_edited_record_breaks_the_chain(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        _fill(j, 5)
    segment = _segments(tmp_path)[-1]
    lines = segment.read_bytes().splitlines(keepends=True)
    rec = json.loads(lines[1])
    rec["i"] = 999  # well-formed but altered evidence
    lines[1] = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    segment.write_bytes(b"".join(lines))
    with pytest.raises(CorruptStoreError, match="hash chain") as info:
        Journal(tmp_path)
    assert info.value.line == 3


def test_complete_last_line_with_wrong_seq_is_not_silently_dropped(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        _fill(j, 3)
        head = j.head_hash
    segment = _segments(tmp_path)[-1]
    line = json.dumps({"prev": head, "seq": 9}, sort_keys=True, separators=(",", ":"))
    with open(segment, "ab") as f:
        f.write(line.encode() + b"\n")
    with pytest.raises(CorruptStoreError, match="seq gap"):
        Journal(tmp_path)


def test_missing_middle_segment_is_a_seq_gap(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_max_bytes=300) as j:
        _fill(j, 30, pad=20)
    segments = _segments(tmp_path)
    assert len(segments) >= 4
    segments[1].unlink()
    with Journal(tmp_path, segment_max_bytes=300) as j, \
            pytest.raises(CorruptStoreError, match="expected") as info:
        j.verify()
    assert info.value.path == segments[2]


def test_missing_segment_before_tail_detected_on_open(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_max_bytes=300) as j:
        _fill(j, 30, pad=20)
    segments = _segments(tmp_path)
    segments[-2].unlink()
    with pytest.raises(CorruptStoreError, match="previous segment ends"):
        Journal(tmp_path)


def test_drop_segments_before_keeps_chain_and_tail(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_max_bytes=300) as j:
        _fill(j, 40, pad=20)
        starts = j.segment_starts
        cut = starts[3]
        assert j.drop_segments_before(cut) == 3
        assert j.segment_starts == starts[3:]
        assert j.first_seq == cut
        assert next(j.read())["seq"] == cut
        assert j.verify() == 40 - cut + 1
        assert j.drop_segments_before(10**9) == len(starts) - 4  # the tail always stays
        assert len(j.segment_starts) == 1
        j.append({"more": 1})
    with Journal(tmp_path, segment_max_bytes=300) as j:
        assert j.last_seq == 41
        assert j.verify() == 41 - j.first_seq + 1


def test_empty_tail_segment_after_crash_is_reused(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_max_bytes=100) as j:
        _fill(j, 3, pad=100)
        head = j.head_hash
    # Crash between creating the next segment and writing to it.
    (tmp_path / f"{4:020d}.jsonl").touch()
    with Journal(tmp_path, segment_max_bytes=100) as j:
        assert (j.last_seq, j.head_hash) == (3, head)
        assert j.drop_segments_before(100) == 2  # keeps the segment holding the head
        assert j.append({"i": 3}) == 4
    with Journal(tmp_path, segment_max_bytes=100) as j:
        assert j.verify() == 2


def test_second_open_of_same_directory_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path), pytest.raises(StoreError, match="open elsewhere"):
        Journal(tmp_path)


_WRITER = """
import sys
from pathlib import Path
from agent.store.journal import Journal
j = Journal(Path(sys.argv[1]), segment_max_bytes=20000)
i = 0
while True:
    j.append_many([{"i": i, "pad": "z" * 3000}, {"i": i + 1, "pad": "z" * 3000}])
    sys.stdout.write(f"{i + 1}\\n")
    sys.stdout.flush()
    i += 2
"""


def test_kill_during_append_loop_keeps_acknowledged_prefix(tmp_path: Path) -> None:
    acked = kill_writer_after(_WRITER, str(tmp_path), acked_at_least=120)
    with Journal(tmp_path, segment_max_bytes=20000) as j:
        values = [r["i"] for r in j.read()]
        assert values == list(range(len(values)))
        assert values[-1] >= acked
        assert j.verify() == len(values) == j.last_seq
        assert len(j.segment_starts) > 1
        assert j.append({"i": len(values)}) == len(values) + 1


def test_open_reads_only_the_tail_not_the_history(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_max_bytes=300) as j:
        _fill(j, 30, pad=20)
    first = _segments(tmp_path)[0]
    lines = first.read_bytes().splitlines(keepends=True)
    lines[0] = b"#" * (len(lines[0]) - 1) + b"\n"  # damage far from the tail
    first.write_bytes(b"".join(lines))
    with Journal(tmp_path, segment_max_bytes=300) as j:  # opening stays cheap...
        assert j.last_seq == 30
        with pytest.raises(CorruptStoreError) as info:  # ...verification finds it
            j.verify()
        assert (info.value.path, info.value.line) == (first, 1)
