"""The chunk record built in place (``ChunkCipher.encode_into``) and the append path that uses
one reused record buffer per thread."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from agent.store.chunkfile import ChunkCipher, iter_records, read_ciphertext
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore

KEY = bytes(range(32))
RID = bytes(16)


def test_a_record_built_in_place_reads_back_like_any_other() -> None:
    cipher = ChunkCipher(KEY, RID, 3)
    out = bytearray(10_000)
    out[:] = b"\xee" * len(out)  # leftovers of an earlier, larger record
    data = os.urandom(1000)
    record = cipher.encode_into(out, 1, memoryview(data), b"msg", b"sig")
    assert len(record) == ChunkCipher.record_size(len(data), b"msg", b"sig")
    assert record.obj is out  # a view of the caller's buffer, not a new object
    raw = bytes(cipher.encode(0, data, b"msg", b"sig")) + bytes(record)
    f = io.BytesIO(raw)
    records = list(iter_records(f, Path("x"), len(raw)))
    assert [r.index for r in records] == [0, 1]
    for r in records:
        assert cipher.decrypt(r, read_ciphertext(f, r), Path("x")) == data
        assert (r.chunk_message, r.signature) == (b"msg", b"sig")


def test_a_record_buffer_too_small_is_refused() -> None:
    cipher = ChunkCipher(KEY, RID, 1)
    with pytest.raises(ValueError, match="record buffer"):
        cipher.encode_into(bytearray(100), 0, bytes(100), b"m", b"s")


def test_chunks_of_any_size_and_from_any_thread_append_and_read_back(tmp_path: Path) -> None:
    """The per-thread record buffer is reused across sizes (large, then smaller) and threads."""
    store = FootageStore(tmp_path / "store", KeyStore(tmp_path / "keys"))
    sizes = [300_000, 10, 200_000, 300_001, 1]
    parts = [os.urandom(n) for n in sizes]
    with store.open_partial(RID, b"u" * 16, len(parts), {}) as partial:
        for index, part in enumerate(parts):
            data = memoryview(part) if index % 2 else bytearray(part)
            if index == 2:
                worker = threading.Thread(target=partial.append_chunk,
                                          args=(index, data, b"m%d" % index, b"s"))
                worker.start()
                worker.join()
            else:
                partial.append_chunk(index, data, b"m%d" % index, b"s")
        assert list(partial.read_chunks()) == parts
        assert [msg for msg, _ in partial.chunks()] == [b"m%d" % i for i in range(len(parts))]
