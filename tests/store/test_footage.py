"""Tests for agent.store.footage (and its record format in agent.store.chunkfile)."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import stat
from pathlib import Path

import pytest

from agent.store.errors import CorruptStoreError, StoreError
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore
from tests.helpers.crash import kill_writer_after

RID = bytes.fromhex("00112233445566778899aabbccddeeff")
CAM = b"CAM-0001"
CHUNK = 4096


def _chunk(index: int, size: int = CHUNK) -> bytes:
    return random.Random(index).randbytes(size)


def _msg(index: int) -> bytes:
    return index.to_bytes(4, "big") * 30  # 120 bytes, stands in for the camera's metadata


def _sig(index: int) -> bytes:
    return bytes([index % 256]) * 64


def _store(tmp_path: Path) -> FootageStore:
    return FootageStore(tmp_path / "store", KeyStore(tmp_path / "state"), clock=lambda: 1700.0)


def _write(store: FootageStore, count: int, upto: int | None = None, rid: bytes = RID) -> None:
    partial = store.open_partial(rid, CAM, count, {"listing": {"size": count * CHUNK}})
    for i in range(partial.next_index, count if upto is None else upto):
        partial.append_chunk(i, _chunk(i), _msg(i), _sig(i))
    partial.close()


def _finalised(tmp_path: Path, count: int = 5) -> FootageStore:
    store = _store(tmp_path)
    _write(store, count)
    store.open_partial(RID, CAM, count, {}).finalise(b"seal", b"S" * 64, {"v": 1})
    return store


def _data_file(store: FootageStore) -> Path:
    return store.store_dir / "recordings" / RID.hex() / "chunks.dat"


def test_round_trip_export_equals_original(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sizes = [CHUNK, CHUNK, 1, CHUNK * 3, 777]
    partial = store.open_partial(RID, CAM, len(sizes), {"listing": {"n": 5}})
    original = b""
    for i, size in enumerate(sizes):
        data = _chunk(i, size)
        original += data
        partial.append_chunk(i, data, _msg(i), _sig(i))
    assert partial.next_index == 5
    assert b"".join(partial.read_chunks()) == original
    stored = partial.finalise(b"seal-msg", b"S" * 64)
    assert store.is_stored(RID)
    assert list(store.list_stored()) == [RID]
    assert store.partials() == []
    assert stored.seal_message == b"seal-msg"
    assert stored.seal_signature == b"S" * 64
    assert stored.chunks() == [(_msg(i), _sig(i)) for i in range(5)]
    assert stored.info.meta == {"listing": {"n": 5}}
    assert stored.manifest is None
    stored.set_manifest({"recording": RID.hex(), "sig": "abc"})
    again = store.stored(RID)
    assert again is not None
    assert again.manifest == {"recording": RID.hex(), "sig": "abc"}
    out = tmp_path / "export.bin"
    again.export(out)
    assert out.read_bytes() == original
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert original not in _data_file(store).read_bytes()  # encrypted at rest


def test_resume_after_reopen(tmp_path: Path) -> None:
    _write(_store(tmp_path), 6, upto=2)
    store = _store(tmp_path)  # a fresh process would do this
    assert store.partials() == [RID]
    partial = store.open_partial(RID, CAM, 6, {"ignored": "on resume"})
    assert partial.next_index == 2
    assert partial.chunks() == [(_msg(0), _sig(0)), (_msg(1), _sig(1))]
    for i in range(2, 6):
        partial.append_chunk(i, _chunk(i), _msg(i), _sig(i))
    stored = partial.finalise(b"seal", b"s" * 64)
    assert stored.info.meta == {"listing": {"size": 6 * CHUNK}}
    assert b"".join(stored.read_chunks()) == b"".join(_chunk(i) for i in range(6))


def test_resume_with_different_parameters_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write(store, 4, upto=1)
    with pytest.raises(StoreError, match="chunk_count"):
        store.open_partial(RID, CAM, 5, {})
    with pytest.raises(StoreError, match="camera_uid"):
        store.open_partial(RID, b"other-cam", 4, {})
    assert store.open_partial(RID, CAM, 4, {}).next_index == 1


def test_append_out_of_order_twice_or_beyond_count_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    partial = store.open_partial(RID, CAM, 2, {})
    with pytest.raises(StoreError, match="next expected is 0"):
        partial.append_chunk(1, _chunk(1), _msg(1), _sig(1))
    partial.append_chunk(0, _chunk(0), _msg(0), _sig(0))
    with pytest.raises(StoreError, match="chunk 0 offered"):
        partial.append_chunk(0, _chunk(0), _msg(0), _sig(0))
    partial.append_chunk(1, _chunk(1), _msg(1), _sig(1))
    with pytest.raises(StoreError, match="beyond"):
        partial.append_chunk(2, _chunk(2), _msg(2), _sig(2))
    assert partial.next_index == 2
    assert b"".join(partial.read_chunks()) == _chunk(0) + _chunk(1)


def test_incomplete_recording_cannot_be_finalised(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write(store, 3, upto=2)
    partial = store.open_partial(RID, CAM, 3, {})
    with pytest.raises(StoreError, match="2 of 3"):
        partial.finalise(b"seal", b"s")
    assert not store.is_stored(RID)


def test_second_writer_for_same_recording_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    partial = store.open_partial(RID, CAM, 2, {})
    with pytest.raises(StoreError, match="another writer"):
        _store(tmp_path).open_partial(RID, CAM, 2, {})
    partial.close()
    assert _store(tmp_path).open_partial(RID, CAM, 2, {}).next_index == 0


def test_stored_recording_cannot_be_reopened_as_partial(tmp_path: Path) -> None:
    store = _finalised(tmp_path)
    with pytest.raises(StoreError, match="already stored"):
        store.open_partial(RID, CAM, 5, {})
    assert store.partials() == []


@pytest.mark.parametrize("cut", [1, 30, 4000])
def test_torn_last_record_is_truncated_on_resume(tmp_path: Path, cut: int,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    store = _store(tmp_path)
    _write(store, 5, upto=3)
    data = store.store_dir / "partial" / RID.hex() / "chunks.dat"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size - cut)
    with caplog.at_level(logging.WARNING):
        partial = store.open_partial(RID, CAM, 5, {})
    assert partial.next_index == 2
    assert "torn tail" in caplog.text
    for i in range(2, 5):
        partial.append_chunk(i, _chunk(i), _msg(i), _sig(i))
    stored = partial.finalise(b"seal", b"s")
    assert b"".join(stored.read_chunks()) == b"".join(_chunk(i) for i in range(5))


def test_zero_filled_or_unauthentic_tail_is_truncated(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write(store, 4, upto=2)
    data = store.store_dir / "partial" / RID.hex() / "chunks.dat"
    with open(data, "ab") as f:
        f.write(b"\x00" * 5000)  # file grew but the pages never reached the disk
    first = store.open_partial(RID, CAM, 4, {})
    assert first.next_index == 2
    with pytest.raises(StoreError, match="already open"):
        store.open_partial(RID, CAM, 4, {})
    first.close()
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF  # last record complete but garbage: its append never returned
    data.write_bytes(bytes(raw))
    partial = store.open_partial(RID, CAM, 4, {})
    assert partial.next_index == 1
    assert b"".join(partial.read_chunks()) == _chunk(0)


def test_garbage_in_the_middle_of_a_partial_is_corruption(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write(store, 4, upto=3)
    data = store.store_dir / "partial" / RID.hex() / "chunks.dat"
    raw = bytearray(data.read_bytes())
    first_end = len(raw) // 3
    raw[first_end : first_end + 4] = b"XXXX"  # second record's magic
    data.write_bytes(bytes(raw))
    with pytest.raises(CorruptStoreError, match="magic"):
        store.open_partial(RID, CAM, 4, {})


def test_flipped_ciphertext_byte_is_detected(tmp_path: Path) -> None:
    store = _finalised(tmp_path)
    path = _data_file(store)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    stored = store.stored(RID)
    assert stored is not None
    with pytest.raises(CorruptStoreError, match="authentication") as info:
        b"".join(stored.read_chunks())
    assert info.value.path == path
    with pytest.raises(CorruptStoreError):
        stored.export(tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_flipped_chunk_message_byte_is_detected(tmp_path: Path) -> None:
    store = _finalised(tmp_path, count=2)
    path = _data_file(store)
    raw = bytearray(path.read_bytes())
    raw[28 + 5] ^= 0x01  # inside chunk 0's camera metadata, right after the header
    path.write_bytes(bytes(raw))
    stored = store.stored(RID)
    assert stored is not None
    with pytest.raises(CorruptStoreError, match="chunk 0"):
        list(stored.read_chunks())


def _record_bounds(path: Path) -> list[tuple[int, int]]:
    from agent.store.chunkfile import iter_records

    with open(path, "rb") as f:
        return [(r.offset, r.end) for r in iter_records(f, path, path.stat().st_size)]


def test_swapped_records_are_detected(tmp_path: Path) -> None:
    store = _finalised(tmp_path)
    path = _data_file(store)
    raw = path.read_bytes()
    bounds = _record_bounds(path)
    (a0, a1), (b0, b1) = bounds[1], bounds[2]
    swapped = raw[:a0] + raw[b0:b1] + raw[a0:a1] + raw[b1:]
    assert len(swapped) == len(raw)
    path.write_bytes(swapped)
    stored = store.stored(RID)
    assert stored is not None
    with pytest.raises(CorruptStoreError, match="chunk 2 where 1 expected"):
        list(stored.read_chunks())
    # Even with the index fields swapped back, the AAD binds each record to its position.
    fixed = bytearray(swapped)
    fixed[a0 + 4 : a0 + 8] = (1).to_bytes(4, "big")
    second = a0 + (b1 - b0)
    fixed[second + 4 : second + 8] = (2).to_bytes(4, "big")
    path.write_bytes(bytes(fixed))
    with pytest.raises(CorruptStoreError, match="authentication"):
        list(stored.read_chunks())


def test_dropped_last_record_and_extra_bytes_are_detected(tmp_path: Path) -> None:
    store = _finalised(tmp_path)
    path = _data_file(store)
    raw = path.read_bytes()
    last_start = _record_bounds(path)[-1][0]
    path.write_bytes(raw[:last_start])
    stored = store.stored(RID)
    assert stored is not None
    with pytest.raises(CorruptStoreError, match="4 of 5"):
        list(stored.read_chunks())
    with pytest.raises(CorruptStoreError, match="4 of 5"):
        stored.chunks()
    path.write_bytes(raw + raw[last_start:])  # a duplicated last record
    with pytest.raises(CorruptStoreError):
        list(stored.read_chunks())
    path.write_bytes(raw[:-3])  # torn inside a stored recording: corruption, not recovery
    with pytest.raises(CorruptStoreError, match="incomplete record"):
        list(stored.read_chunks())


def test_records_cannot_be_spliced_between_recordings(tmp_path: Path) -> None:
    store = _store(tmp_path)
    other = bytes(16)
    for rid in (RID, other):
        _write(store, 2, rid=rid)
        store.open_partial(rid, CAM, 2, {}).finalise(b"seal", b"s")
    a = store.store_dir / "recordings" / RID.hex() / "chunks.dat"
    b = store.store_dir / "recordings" / other.hex() / "chunks.dat"
    a.write_bytes(b.read_bytes())
    stored = store.stored(RID)
    assert stored is not None
    with pytest.raises(CorruptStoreError, match="authentication"):
        list(stored.read_chunks())


def test_quarantine_moves_files_and_keeps_everything(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write(store, 3, upto=2)
    before = (store.store_dir / "partial" / RID.hex() / "chunks.dat").read_bytes()
    first = store.quarantine(RID, "seal signature invalid")
    assert first == store.store_dir / "quarantine" / f"{RID.hex()}.0"
    assert (first / "chunks.dat").read_bytes() == before
    assert (first / "meta.json").exists()
    reason = json.loads((first / "reason.json").read_bytes())
    assert reason == {"recording_id": RID.hex(), "reason": "seal signature invalid",
                      "quarantined_at": 1700.0}
    assert store.partials() == []
    # Offloaded again and failed again: a second, separate quarantine entry.
    partial = store.open_partial(RID, CAM, 3, {})
    partial.append_chunk(0, _chunk(0), _msg(0), _sig(0))
    second = store.quarantine(RID, "hash mismatch")  # also closes the open partial
    assert second.name == f"{RID.hex()}.1"
    assert (first / "chunks.dat").read_bytes() == before
    with pytest.raises(StoreError):
        partial.append_chunk(1, _chunk(1), _msg(1), _sig(1))
    with pytest.raises(StoreError, match="no partial"):
        store.quarantine(RID, "again")


def test_files_0600_and_directories_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = _finalised(tmp_path)
        _write(store, 2, upto=1, rid=b"\x01" * 16)
        store.quarantine(b"\x01" * 16, "test")
    finally:
        os.umask(old)
    checked = 0
    for path in (store.store_dir).rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
        checked += 1
    assert checked >= 12
    assert stat.S_IMODE(store.store_dir.stat().st_mode) == 0o700


def test_crash_between_seal_and_rename_is_recovered(tmp_path: Path) -> None:
    store = _finalised(tmp_path)
    # Put the directory back where a crash just before the rename would have left it.
    rid_hex = RID.hex()
    os.rename(store.store_dir / "recordings" / rid_hex, store.store_dir / "partial" / rid_hex)
    _write(store, 3, upto=1, rid=b"\x02" * 16)  # an unfinished one must be left alone
    reopened = _store(tmp_path)
    assert reopened.recover() == [RID]
    stored = reopened.stored(RID)
    assert stored is not None
    assert stored.manifest == {"v": 1}
    assert b"".join(stored.read_chunks()) == b"".join(_chunk(i) for i in range(5))
    assert reopened.partials() == [b"\x02" * 16]


def test_a_recording_both_stored_and_partial_stops_recovery_for_an_operator(
    tmp_path: Path
) -> None:
    store = _finalised(tmp_path)
    # What a filesystem that does not keep renames atomic could leave after a power cut.
    rid_hex = RID.hex()
    shutil.copytree(store.store_dir / "recordings" / rid_hex, store.store_dir / "partial" / rid_hex)
    with pytest.raises(CorruptStoreError, match="both stored and partial: a move was torn") as exc:
        _store(tmp_path).recover()
    assert exc.value.path == store.store_dir / "partial" / rid_hex
    assert (store.store_dir / "recordings" / rid_hex).is_dir()  # nothing deleted


def test_complete_partial_without_seal_is_finalisable_again(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write(store, 3)
    reopened = _store(tmp_path)
    assert reopened.recover() == []  # no seal yet: offload has not verified it
    partial = reopened.open_partial(RID, CAM, 3, {})
    assert partial.next_index == 3
    assert partial.finalise(b"seal", b"s").seal_message == b"seal"
    assert reopened.is_stored(RID)


def test_free_bytes_and_invalid_ids(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.free_bytes() > 0
    assert store.stored(RID) is None
    with pytest.raises(ValueError):
        store.open_partial(b"", CAM, 1, {})
    with pytest.raises(ValueError):
        store.is_stored(b"x" * 65)


_WRITER = """
import random, sys
from pathlib import Path
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore
root = Path(sys.argv[1])
store = FootageStore(root / "store", KeyStore(root / "state"))
partial = store.open_partial(bytes(16), b"CAM", 100000, {})
i = 0
while True:
    data = random.Random(i).randbytes(256 * 1024)
    partial.append_chunk(i, data, i.to_bytes(4, "big") * 30, bytes(64))
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_kill_during_appends_keeps_verifiable_prefix(tmp_path: Path) -> None:
    acked = kill_writer_after(_WRITER, str(tmp_path), acked_at_least=40)
    store = FootageStore(tmp_path / "store", KeyStore(tmp_path / "state"))
    partial = store.open_partial(bytes(16), b"CAM", 100000, {})
    assert partial.next_index >= acked + 1
    chunks = list(partial.read_chunks())
    assert len(chunks) == partial.next_index
    for i, data in enumerate(chunks):
        assert data == random.Random(i).randbytes(256 * 1024)
    assert [m for m, _ in partial.chunks()] == [i.to_bytes(4, "big") * 30
                                                for i in range(len(chunks))]
    partial.append_chunk(partial.next_index, b"more", b"m", b"s")
    assert partial.next_index == len(chunks) + 1
