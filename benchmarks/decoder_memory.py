"""Worst-case memory of the frame decoder under adversarial input (issue 6 figure).

docs/protocol.md §1.2 promises that a receiver "never holds more than one maximum frame plus one
read". Each scenario feeds a FrameDecoder (and, for the last ones, a DOCK Connection) a hostile
stream in reads of a given size, with tracemalloc on, and prints one JSON line:

- ``peak``: the most bytes allocated at any moment, the decoder itself and every frame it hands
  out included (a frame handed out is dropped at once, as a receiver that rejects it would);
- ``held``: the most bytes still allocated between reads, once drained (what the decoder keeps);
- ``max_buffered``: the decoder's own count of bytes held (``FrameDecoder.buffered``);
- ``bound``: one maximum frame plus one read, and ``peak_ratio`` / ``held_ratio`` against it.

Scenarios: endless garbage; garbage dense with start markers; oversized length headers; maximum
size frames fed one byte at a time and in 4 KiB reads; a maximum-size frame with a bad CRC whose
body holds the header of another maximum-size frame (fed bytewise and in 4 KiB reads); and the
largest event log and recording list a camera can send as one frame, through a DOCK connection.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_protocol import messages as m
from firmware_protocol._state import Role
from firmware_protocol.connection import NEED_DATA, SUPPORTED_VERSIONS, Connection
from firmware_protocol.errors import RemoteProtocolError
from firmware_protocol.frames import (
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    TRAILER_SIZE,
    FrameDecoder,
)
from firmware_protocol.signing import Media

MIB = 1 << 20
SERIAL, USB = 262_144, 1_048_580  # the payload limits the reference dock offers


def frame(msg_type: int, seq: int, payload: bytes) -> bytes:
    head = MAGIC + bytes([PROTOCOL_VERSION, msg_type]) + seq.to_bytes(2, "big")
    head += len(payload).to_bytes(4, "big")
    head += zlib.crc32(head).to_bytes(4, "big")
    return head + payload + zlib.crc32(payload, zlib.crc32(head)).to_bytes(4, "big")


def header(seq: int, length: int) -> bytes:
    head = MAGIC + bytes([PROTOCOL_VERSION, 0x0F]) + seq.to_bytes(2, "big")
    head += length.to_bytes(4, "big")
    return head + zlib.crc32(head).to_bytes(4, "big")


def reads(stream: bytes, size: int) -> Iterator[memoryview]:
    view = memoryview(stream)
    for i in range(0, len(view), size):
        yield view[i : i + size]


# -- scenarios: (name, max_payload, read size, stream builder) -----------------------------------


def endless_garbage(limit: int) -> bytes:
    return bytes(range(0xB7)) * (64 * MIB // 0xB7)  # 64 MiB without one 0xB7


def dense_markers(limit: int) -> bytes:
    # start markers everywhere, each followed by a header whose CRC fails
    return (MAGIC + bytes(12)) * (2 * MIB // 14)


def oversized_lengths(limit: int) -> bytes:
    return header(5, 0xFFFF_FFFF) * (2 * MIB // HEADER_SIZE)


def max_frames(limit: int) -> bytes:
    return b"".join(frame(0x0F, 5, bytes([i]) * limit) for i in range(3))


def max_frame(limit: int) -> bytes:
    return frame(0x0F, 5, bytes([7]) * limit)


def bad_crc_hiding_a_max_header(limit: int) -> bytes:
    """A max-size frame with a bad CRC whose body starts with the header of another max-size
    frame: after the bad CRC the decoder hunts through the body and finds that header."""
    inner = header(6, limit)
    outer_body = inner + bytes(limit - len(inner))
    bad = frame(0x0F, 5, outer_body)[:-4] + b"\0\0\0\0"
    return bad + bytes(limit + TRAILER_SIZE)  # the inner frame's body arrives


def truncated_then_good(limit: int) -> bytes:
    """A max-size header with no body, then ordinary frames: they are swallowed as its body."""
    return header(5, limit) + frame(0x06, 6, bytes(60)) * ((limit + 4096) // 78)


SCENARIOS: list[tuple[str, Callable[[int], bytes], int]] = [
    ("endless garbage", endless_garbage, 64 * 1024),
    ("endless garbage", endless_garbage, MIB),
    ("dense start markers, bad headers", dense_markers, 64 * 1024),
    ("oversized length headers", oversized_lengths, 64 * 1024),
    ("max-size frame, one byte a read", max_frame, 1),
    ("max-size frames, 4 KiB reads", max_frames, 4096),
    ("max-size frames, 1 MiB reads", max_frames, MIB),
    ("bad CRC hiding a max-size header, one byte a read", bad_crc_hiding_a_max_header, 1),
    ("bad CRC hiding a max-size header, 4 KiB reads", bad_crc_hiding_a_max_header, 4096),
    ("truncated max-size frame, then frames", truncated_then_good, 4096),
]


def measure_decoder(stream: bytes, limit: int, read: int) -> dict[str, int | float]:
    """Peak and held bytes under tracemalloc (``seconds`` is with tracing on)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    held = max_buffered = events = 0
    start = time.perf_counter()
    decoder = FrameDecoder(limit)
    for piece in reads(stream, read):
        decoder.feed(piece)
        max_buffered = max(max_buffered, decoder.buffered)
        while decoder.next() is not None:
            events += 1
        held = max(held, tracemalloc.get_traced_memory()[0] - base)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - base
    del decoder
    tracemalloc.stop()
    return {"peak": peak, "held": held, "max_buffered": max_buffered, "events": events,
            "seconds": round(seconds, 2)}


def dock_awaiting(request: m.Message, limit: int) -> Connection:
    """A DOCK that negotiated ``limit`` and sent ``request`` (seq 3); replies built by hand."""
    from tests.protocol.helpers import identity

    dock = Connection(Role.DOCK, max_payload=limit)
    dock.send(m.Hello(SUPPORTED_VERSIONS, limit))
    for reply in (frame(m.Identity.TYPE, 1, identity(limit).encode()),
                  frame(m.AuthResponse.TYPE, 2, bytes(64))):
        dock.receive_data(reply)
        while dock.next_event() is not NEED_DATA:
            pass
        if reply[3] == m.Identity.TYPE:
            dock.send(m.AuthChallenge(bytes(32)))
    dock.send(request)
    return dock


def largest_event_log(limit: int) -> bytes:
    n = min(0xFFFF, (limit - 3) // m.LOG_ENTRY_FIXED_SIZE)
    log = m.EventLog(tuple(m.LogEntry(i, i, m.EventKind.FAULT) for i in range(n)), False)
    return frame(m.EventLog.TYPE, 3, log.encode())


def largest_listing(limit: int) -> bytes:
    n = min(0xFFFF, (limit - 10) // m.RECORDING_INFO_SIZE)
    info = m.RecordingInfo(bytes(16), Media.VIDEO, 1, 1, 1, 0, 0, True)
    return frame(m.RecordingList.TYPE, 3, m.RecordingList(n, 0, (info,) * n).encode())


def measure_dock(request: m.Message, reply: bytes, limit: int, read: int
                 ) -> dict[str, int | float | str]:
    """Memory with tracemalloc; time in a second run without it (tracing slows allocation)."""
    dock = dock_awaiting(request, limit)
    start = time.perf_counter()
    try:
        for piece in reads(reply, read):
            dock.receive_data(piece)
            while dock.next_event() is not NEED_DATA:
                pass
    except RemoteProtocolError:
        pass
    seconds = time.perf_counter() - start
    dock = dock_awaiting(request, limit)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    outcome = "accepted"
    try:
        for piece in reads(reply, read):
            dock.receive_data(piece)
            while dock.next_event() is not NEED_DATA:
                pass
    except RemoteProtocolError as exc:
        outcome = f"RemoteProtocolError {exc.code.name}: {exc.args[0]}"
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"peak": peak, "held": 0, "max_buffered": 0, "events": 0,
            "seconds": round(seconds, 3), "outcome": outcome}


Result = dict[str, int | float | str]
Case = tuple[str, int, Callable[[], Result]]


def _decoder_case(build: Callable[[int], bytes], limit: int, read: int) -> Result:
    return dict(measure_decoder(build(limit), limit, read))


def cases(limit: int) -> list[Case]:
    """Every scenario at one payload limit: (name, read size, measurement)."""
    out: list[Case] = [
        (name, read, functools.partial(_decoder_case, build, limit, read))
        for name, build, read in SCENARIOS
    ]
    out += [
        ("DOCK: largest event log as one reply", MIB,
         functools.partial(measure_dock, m.GetEventLog(0, 64), largest_event_log(limit), limit,
                           MIB)),
        ("DOCK: largest recording list as one reply", MIB,
         functools.partial(measure_dock, m.ListRecordings(0, 64), largest_listing(limit), limit,
                           MIB)),
    ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, action="append",
                        help=f"max payload(s) to test (default {SERIAL} and {USB})")
    args = parser.parse_args()
    worst: dict[str, object] = {}
    for limit in args.limit or [SERIAL, USB]:
        frame_max = HEADER_SIZE + limit + TRAILER_SIZE
        for name, read, run in cases(limit):
            result = run()
            bound = frame_max + read
            ratio = round(int(result["peak"]) / bound, 3)
            record = {"figure": "decoder_memory", "scenario": name, "max_payload": limit,
                      "read": read, **result, "bound": bound, "peak_ratio": ratio,
                      "held_ratio": round(int(result["held"]) / bound, 3)}
            print(json.dumps(record), flush=True)
            if not worst or ratio > float(str(worst["peak_ratio"])):
                worst = record
    print(json.dumps({"figure": "decoder_memory_worst", **{k: worst[k] for k in (
        "scenario", "max_payload", "read", "peak", "held", "bound", "peak_ratio")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
