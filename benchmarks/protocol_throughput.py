"""Dock-side cost of the wire protocol vs hashing alone (issue 2 figure).

A 256 MiB recording in 1 MiB chunks goes through an in-memory DOCK <-> CAMERA pair. The camera's
signatures and reply frames are prepared before the timed part (a real camera signs while it
records, not while it serves), so the timed part is what the dock pays: framing, CRC, copying,
SHA-256 and Ed25519 verification of every chunk and the chain. The baseline, in the same run,
only SHA-256-hashes the same bytes in the same 1 MiB pieces. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.memory import tune_malloc
from firmware_protocol import messages as m
from firmware_protocol._state import Role
from firmware_protocol.connection import NEED_DATA, Connection, EndOfChunk
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage, verify_signature
from tests.protocol.helpers import CAMERA_KEY, identity, make_recording

MIB = 1024 * 1024


def handshake(dock: Connection, cam: Connection, max_payload: int) -> None:
    for request, reply in (
        (m.Hello((1,), max_payload), lambda: cam.send(identity(max_payload))),
        (m.AuthChallenge(bytes(32)), lambda: cam.send(m.AuthResponse(bytes(64)))),
    ):
        cam.receive_data(dock.send(request))
        while cam.next_event() is not NEED_DATA:
            pass
        dock.receive_data(reply())
        while dock.next_event() is not NEED_DATA:
            pass


def prepare(size: int, chunk: int, max_payload: int) -> tuple[bytes, list[bytes], m.RecordingInfo]:
    rng = random.Random(1)
    data = b"".join(rng.randbytes(min(16 * MIB, size - i)) for i in range(0, size, 16 * MIB))
    rec = make_recording(data, chunk)
    dock, cam = Connection(Role.DOCK, max_payload=max_payload), Connection(
        Role.CAMERA, max_payload=max_payload)
    handshake(dock, cam, max_payload)
    replies = []
    for header in rec.headers:
        cam.receive_data(dock.send(m.ReadChunk(rec.info.recording_id, header.info.index)))
        while cam.next_event() is not NEED_DATA:
            pass
        off = header.info.offset
        replies.append(b"".join(cam.send_chunk(header, data[off : off + header.info.size])))
        dock.cancel()
    return data, replies, rec.info


class InlineHasher:
    """Hashes on the decoding thread."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> Callable[[], bytes]:
        digest = self._h.digest()
        self._h = hashlib.sha256()
        return lambda: digest


class PipelinedHasher:
    """Hashes on a worker thread: hashlib releases the GIL for large buffers, so SHA-256 of one
    frame runs on the second core while the decoding thread does CRC, framing and Ed25519."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._h = hashlib.sha256()

    def update(self, data: bytes | memoryview) -> None:
        self._pool.submit(self._h.update, data)

    def digest(self) -> Callable[[], bytes]:
        future = self._pool.submit(self._h.digest)  # FIFO single worker: after every update
        self._h = hashlib.sha256()
        return future.result


def dock_run(replies: list[bytes], info: m.RecordingInfo, max_payload: int, read: int,
             hasher: InlineHasher | PipelinedHasher) -> int:
    dock, cam = Connection(Role.DOCK, max_payload=max_payload), Connection(
        Role.CAMERA, max_payload=max_payload)
    handshake(dock, cam, max_payload)
    public = CAMERA_KEY.public_key()
    prev = ZERO_DIGEST
    total = 0
    pending: list[tuple[Callable[[], bytes], bytes]] = []  # digest getters not yet checked
    for index, stream in enumerate(replies):
        dock.send(m.ReadChunk(info.recording_id, index))
        expected: ChunkMessage | None = None
        view = memoryview(stream)
        done = False
        for pos in range(0, len(stream), read):
            dock.receive_data(view[pos : pos + read])
            while (ev := dock.next_event()) is not NEED_DATA:
                if isinstance(ev, m.ChunkData):
                    hasher.update(ev.data)
                    total += len(ev.data)
                elif isinstance(ev, m.ChunkHeader):
                    if not verify_signature(public, ev.chunk_message, ev.signature):
                        raise SystemExit("bad signature")
                    if ev.info.prev != prev:
                        raise SystemExit("chain broken")
                    expected = ev.info
                elif isinstance(ev, EndOfChunk):
                    assert expected is not None
                    pending.append((hasher.digest(), expected.sha256))
                    prev = expected.digest()
                    done = True
        assert done
        while len(pending) > 1:  # check chunk N-1 while chunk N is being hashed
            got, want = pending.pop(0)
            if got() != want:
                raise SystemExit("chunk hash mismatch")
    for got, want in pending:
        if got() != want:
            raise SystemExit("chunk hash mismatch")
    return total


def baseline(data: bytes, chunk: int) -> int:
    view = memoryview(data)
    for pos in range(0, len(data), chunk):
        hashlib.sha256(view[pos : pos + chunk]).digest()
    return len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=MIB)
    parser.add_argument("--max-payload", type=int, default=MIB + 4, help="1 MiB chunk = 1 frame")
    parser.add_argument("--read", type=int, default=MIB, help="transport read size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tune_malloc()
    data, replies, info = prepare(args.size_mib * MIB, args.chunk, args.max_payload)
    pool = ThreadPoolExecutor(1)
    best = {"baseline": float("inf"), "serial": float("inf"), "pipelined": float("inf")}
    for _ in range(args.rounds):
        t = time.perf_counter()
        baseline(data, args.chunk)
        best["baseline"] = min(best["baseline"], time.perf_counter() - t)
        for name, hasher in (("serial", InlineHasher()), ("pipelined", PipelinedHasher(pool))):
            t = time.perf_counter()
            n = dock_run(replies, info, args.max_payload, args.read, hasher)
            best[name] = min(best[name], time.perf_counter() - t)
            assert n == len(data)
    pool.shutdown()
    mib = len(data) / MIB
    common = {"bench": "protocol_throughput", "mib": mib, "chunk": args.chunk,
              "max_payload": args.max_payload, "read": args.read}
    for name, seconds in best.items():
        print(json.dumps({**common, "what": name, "seconds": round(seconds, 4),
                          "mib_per_s": round(mib / seconds, 1)}))
    for name in ("serial", "pipelined"):
        print(json.dumps({**common, "what": f"ratio_{name}",
                          "ratio": round(best["baseline"] / best[name], 3), "target": 0.8}))


if __name__ == "__main__":
    main()
