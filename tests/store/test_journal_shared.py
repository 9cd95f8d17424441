"""Partitioned and shared journals: the compliance records and the audit log (Art. 4, 18)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from agent.store.errors import CorruptStoreError, StoreError
from agent.store.journal import Journal


class Months:
    """A settable partition label (the journal calls it at each append)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self) -> str:
        return self.label


def test_segments_follow_the_partition_label(tmp_path: Path) -> None:
    month = Months("2026-01")
    with Journal(tmp_path, partition=month) as j:
        j.append({"n": 1})
        j.append({"n": 2})
        month.label = "2026-02"
        j.append({"n": 3})
        month.label = "2026-04"
        j.append({"n": 4})
        assert j.partitions() == ["2026-01", "2026-02", "2026-04"]
        assert [r["n"] for r in j.read_partitions("2026-02", "2026-03")] == [3]
        assert [r["n"] for r in j.read_partitions("2026-01", "2026-02")] == [1, 2, 3]
        assert [r["n"] for r in j.read_partitions("2027-01", "2027-12")] == []
        assert j.verify() == 4
    names = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert names == ["00000000000000000001.2026-01.jsonl", "00000000000000000003.2026-02.jsonl",
                     "00000000000000000004.2026-04.jsonl"]


def test_a_label_that_goes_back_stays_in_the_current_segment(tmp_path: Path) -> None:
    month = Months("2026-05")
    with Journal(tmp_path, partition=month) as j:
        j.append({"n": 1})
        month.label = "2026-04"  # the dock clock stepped back across a month boundary
        j.append({"n": 2})
        assert j.partitions() == ["2026-05"]
        assert [r["n"] for r in j.read_partitions("2026-05", "2026-05")] == [1, 2]


def test_size_rotation_within_a_month_keeps_the_label(tmp_path: Path) -> None:
    with Journal(tmp_path, partition=Months("2026-03"), segment_max_bytes=200) as j:
        for n in range(20):
            j.append({"n": n, "pad": "x" * 50})
        assert len(j.segment_starts) > 3
        assert j.partitions() == ["2026-03"]
        assert [r["n"] for r in j.read_partitions("2026-03", "2026-03")] == list(range(20))
    with Journal(tmp_path, partition=Months("2026-03")) as j:  # reopen: labels from names
        assert j.verify() == 20


def test_partition_read_checks_the_chain_inside_the_segments(tmp_path: Path) -> None:
    month = Months("2026-01")
    with Journal(tmp_path, partition=month) as j:
        j.append({"n": 1})
        month.label = "2026-02"
        j.append({"n": 2})
        j.append({"n": 3})
        seg = tmp_path / "00000000000000000002.2026-02.jsonl"
        lines = seg.read_bytes().splitlines(keepends=True)
        seg.write_bytes(lines[0].replace(b'"n":2', b'"n":9') + lines[1])
        with pytest.raises(CorruptStoreError, match="chain broken at seq 3"):
            list(j.read_partitions("2026-02", "2026-02"))
    with pytest.raises(CorruptStoreError):  # and reopening refuses the damaged tail
        Journal(tmp_path, partition=month)


def test_two_shared_writers_keep_one_linear_chain(tmp_path: Path) -> None:
    a = Journal(tmp_path, shared=True, partition=Months("2026-11"))
    b = Journal(tmp_path, shared=True, partition=Months("2026-11"))
    try:
        assert a.append({"by": "a"}) == 1
        assert b.append({"by": "b"}) == 2  # b catches up with a's line first
        assert a.append({"by": "a"}) == 3
        b.refresh()
        assert b.last_seq == 3 and b.head_hash == a.head_hash
        assert [r["by"] for r in b.read()] == ["a", "b", "a"]
        assert a.verify() == 3
    finally:
        a.close()
        b.close()


def test_shared_writer_follows_a_new_segment_opened_by_another(tmp_path: Path) -> None:
    month = Months("2026-01")
    a = Journal(tmp_path, shared=True, partition=month)
    b = Journal(tmp_path, shared=True, partition=month)
    try:
        a.append({"n": 1})
        month.label = "2026-02"
        a.append({"n": 2})  # a opens the February segment
        b.append({"n": 3})  # b must append behind it, in February
        assert b.partitions() == ["2026-01", "2026-02"]
        assert [r["n"] for r in a.read_partitions("2026-02", "2026-02")] == [2]  # a is stale
        a.refresh()
        assert [r["n"] for r in a.read_partitions("2026-02", "2026-02")] == [2, 3]
    finally:
        a.close()
        b.close()


def test_shared_writer_cuts_a_line_torn_by_a_dead_writer(tmp_path: Path) -> None:
    a = Journal(tmp_path, shared=True)
    b = Journal(tmp_path, shared=True)
    try:
        a.append({"n": 1})
        b.refresh()
        seg = next(tmp_path.glob("*.jsonl"))
        with open(seg, "ab") as f:  # a writer killed mid-line
            f.write(b'{"n":2,"prev":"')
        assert b.append({"n": 3}) == 2
        assert [r["n"] for r in a.read()] == [1]  # a has not looked yet
        a.refresh()
        assert [r["n"] for r in a.read()] == [1, 3]
    finally:
        a.close()
        b.close()


def test_shared_journals_are_never_compacted(tmp_path: Path) -> None:
    with Journal(tmp_path, shared=True) as j:
        j.append({"n": 1})
        with pytest.raises(StoreError, match="never compacted"):
            j.drop_segments_before(2)


def test_closed_journal_refuses_appends(tmp_path: Path) -> None:
    j = Journal(tmp_path, shared=True)
    j.close()
    with pytest.raises(StoreError, match="closed"):
        j.append({"n": 1})


def _writer(directory: str, who: int, count: int) -> None:
    j = Journal(Path(directory), shared=True, segment_max_bytes=4096)
    try:
        for n in range(count):
            j.append({"who": who, "n": n})
    finally:
        j.close()


def test_processes_append_concurrently_without_losing_or_forking(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), who, 150)) for who in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Journal(tmp_path, shared=True) as j:
        assert j.verify() == 600
        seen: dict[int, list[int]] = {}
        for rec in j.read():
            seen.setdefault(rec["who"], []).append(rec["n"])
    assert all(ns == list(range(150)) for ns in seen.values()) and len(seen) == 4
