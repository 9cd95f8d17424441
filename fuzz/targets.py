"""The fuzz targets: each takes one input and checks the protocol's promises on it.

Every target swallows ``RemoteProtocolError`` (the one exception a peer may cause) and lets
anything else escape: the engine records an escaping exception, a broken invariant
(:class:`Violation`), an input slower than the limit, or memory beyond the bound as a finding.
With ``trace`` a target also measures its peak memory with tracemalloc and returns it with the
bound it must stay under.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from firmware_protocol import messages as m
from firmware_protocol._state import STABLE_STATES, TRANSITIONS, Role, State
from firmware_protocol.connection import NEED_DATA, Connection, EndOfChunk, StaleFrame
from firmware_protocol.errors import LocalProtocolError, RemoteProtocolError
from firmware_protocol.frames import (
    HEADER_SIZE,
    INITIAL_MAX_PAYLOAD,
    TRAILER_SIZE,
    Frame,
    FrameDecoder,
    FrameError,
    FrameErrorKind,
)
from firmware_protocol.signing import ChunkMessage, SealMessage

from . import seeds
from .streams import Input, build_stream, cut, frame

__all__ = ["TARGETS", "Config", "Measure", "Probe", "Target", "Violation"]

# Fixed costs the memory bounds allow beyond the frame and read sizes: the decoder's own empty
# buffer (one initial frame), objects, the tracemalloc bookkeeping of a few allocations.
SLACK = 16 * 1024
EVENT_TYPES = (m.Message, EndOfChunk, FrameError, StaleFrame)


class Violation(AssertionError):
    """A promise of the protocol code broke on this input."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Violation(what)


@dataclass(frozen=True)
class Config:
    # The largest payload the reference dock ever negotiates (USB: a 1 MiB chunk in one frame).
    max_payload: int = 1_048_580


@dataclass(frozen=True)
class Measure:
    peak: int  # bytes allocated at the worst moment (tracemalloc)
    bound: int  # what the protocol promises
    what: str


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes, Probe, Config], Measure | None]
    seeds: Callable[[Config], list[bytes]]
    max_len: Callable[[Config], int] = field(default=lambda cfg: 1 << 16)
    weight: int = 1  # shares of the time budget


class Probe:
    """Time spent in the code under test (not in the harness around it) and, when ``trace``,
    the peak bytes it allocated."""

    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.seconds = 0.0

    @contextmanager
    def busy(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


@contextmanager
def traced(enabled: bool) -> Iterator[list[int]]:
    """Peak bytes allocated inside the block (``[0]`` when not enabled)."""
    result = [0]
    if not enabled:
        yield result
        return
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        yield result
        result[0] = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# -- the frame decoder ----------------------------------------------------------------------------


def _frame_limits(cfg: Config) -> tuple[int, ...]:
    return (64, INITIAL_MAX_PAYLOAD, 65536, cfg.max_payload)


def _decode_all(decoder: FrameDecoder, pieces: list[bytes], reuse: bool
                ) -> tuple[list[Frame], list[FrameError]]:
    """Feed and drain, checking the buffering bound after every feed and every drain."""
    limit = HEADER_SIZE + decoder.max_payload + TRAILER_SIZE
    frames: list[Frame] = []
    errors: list[FrameError] = []
    scratch = bytearray(max((len(p) for p in pieces), default=0))
    for piece in pieces:
        if reuse:  # a transport reading into one buffer: the decoder reads it in place
            scratch[: len(piece)] = piece
            with memoryview(scratch) as view:
                decoder.feed(view[: len(piece)])
        else:
            decoder.feed(piece)
        check(decoder.buffered <= limit + len(piece),
              f"holds {decoder.buffered} bytes after a {len(piece)}-byte read (frame {limit})")
        budget = len(piece) + decoder.buffered + 2
        while (item := decoder.next()) is not None:
            budget -= 1
            check(budget >= 0, "next() keeps yielding without consuming input")
            if isinstance(item, Frame):
                check(len(item.payload) <= decoder.max_payload, "frame above the limit")
                frames.append(Frame(item.type, item.seq, bytes(item.payload)))
            else:
                check(item.skipped >= 1, f"{item.kind.value} skipped nothing")
                errors.append(item)
        check(decoder.buffered < limit, f"holds {decoder.buffered} bytes once drained")
        if reuse:
            scratch[: len(piece)] = b"\xb7" * len(piece)  # the next read lands here
    return frames, errors


def _summary(frames: list[Frame], errors: list[FrameError]
             ) -> tuple[list[Frame], list[tuple[str, int, int | None]], int]:
    """What must not depend on how the stream was cut: the frames, the errors other than
    garbage (in order), and the garbage skipped in all."""
    others = [(e.kind.value, e.skipped, e.seq) for e in errors
              if e.kind is not FrameErrorKind.GARBAGE]
    garbage = sum(e.skipped for e in errors if e.kind is FrameErrorKind.GARBAGE)
    return frames, others, garbage


def run_frames(data: bytes, probe: Probe, cfg: Config) -> Measure | None:
    inp = Input(data)
    flags = inp.uint(1)
    max_payload = _frame_limits(cfg)[flags & 3]
    direct_min = (1, 64, 16 * 1024, max_payload + 1)[(flags >> 2) & 3]
    if flags & 0x10:
        stream = build_stream(inp, max_payload, 1, seeds.frame_pool())
    else:
        stream = inp.take(inp.uint(2))
    pieces = cut(inp, stream)
    with probe.busy():
        decoder = FrameDecoder(max_payload, direct_min=direct_min)
        frames, errors = _decode_all(decoder, pieces, reuse=bool(flags & 0x20))
    for f in frames:  # CRCs let nothing through that was not sent as one frame
        check(frame(f.type, f.seq, f.payload) in stream, f"forged frame type {f.type}")
    accounted = sum(HEADER_SIZE + len(f.payload) + TRAILER_SIZE for f in frames)
    accounted += sum(e.skipped for e in errors) + decoder.buffered
    check(accounted == len(stream), f"{accounted} bytes accounted for, {len(stream)} fed")
    reference = FrameDecoder(max_payload, direct_min=max_payload + 1)
    ref = _decode_all(reference, [stream] if stream else [], reuse=False)
    check(_summary(frames, errors) == _summary(*ref), "the outcome depends on the read sizes")
    check(decoder.buffered == reference.buffered, "what is left depends on the read sizes")
    if not probe.trace:
        return None
    read = max((len(p) for p in pieces), default=0)
    frame_max = HEADER_SIZE + max_payload + TRAILER_SIZE
    with traced(True) as peak:
        fresh = FrameDecoder(max_payload, direct_min=direct_min)
        for piece in pieces:
            fresh.feed(piece)
            while fresh.next() is not None:
                pass
        del fresh
    # The decoder holds one frame plus the last read; the frame it hands out is the caller's.
    return Measure(peak[0], frame_max + read + max_payload + SLACK,
                   f"frames max_payload={max_payload} direct_min={direct_min} read={read}")


# -- message decoders -------------------------------------------------------------------------

# Payloads up to 64 KiB: more than any message the DOCK decodes but chunk data, which is decoded
# as a view at any size (the ``dock`` target sends it at 1 MiB). The dock refuses a listing or
# event-log page longer than it asked for (64 entries, under 70 KB) before decoding it; decoding
# costs objects ~10x the payload and ~0.2 s for a page filling 1 MiB (benchmarks/decoder_memory).
MESSAGE_MAX_LEN = 1 << 16


def _decode_checked(msg_type: int, data: bytes, probe: Probe) -> int:
    """Decode (measuring the decoder's memory when tracing), then check the result."""
    msg: m.Message | None = None
    with traced(probe.trace) as peak, probe.busy(), suppress(RemoteProtocolError):
        msg = m.decode_message(msg_type, data)
    if msg is None:
        return peak[0]
    check(msg_type == msg.TYPE, f"type {msg_type:#x} decoded as {type(msg).__name__}")
    # One encoding per message: a decoder that accepted two spellings of one message would let
    # signed content be restated.
    check(msg.encode() == data, f"{type(msg).__name__} does not re-encode to its input")
    return peak[0]


def message_target(cls: type[m.Message] | None) -> Target:
    name = "messages" if cls is None else f"message.{cls.__name__}"

    def run(data: bytes, probe: Probe, cfg: Config) -> Measure | None:
        if cls is None:  # the first byte picks the type: unknown types included
            msg_type, payload = (data[0], data[1:]) if data else (0, b"")
        else:
            msg_type, payload = cls.TYPE, data
        peak = _decode_checked(msg_type, payload, probe)
        if not probe.trace:
            return None
        return Measure(peak, HEADER_SIZE + cfg.max_payload + TRAILER_SIZE + SLACK,
                       f"{name} payload={len(payload)}")

    def seed(cfg: Config) -> list[bytes]:
        found = seeds.message_seeds(MESSAGE_MAX_LEN)
        if cls is None:
            return [bytes([t]) + p for t, p in found]
        return [p for t, p in found if t == cls.TYPE]

    return Target(name, run, seed, lambda cfg: MESSAGE_MAX_LEN + (cls is None),
                  weight=2 if cls is None else 1)


def signed_target(cls: type[ChunkMessage] | type[SealMessage]) -> Target:
    name = f"signed.{cls.__name__}"

    def run(data: bytes, probe: Probe, cfg: Config) -> Measure | None:
        with traced(probe.trace) as peak, probe.busy():
            try:
                msg = cls.unpack(data)
            except RemoteProtocolError:
                msg = None
            if msg is not None:
                check(msg.pack() == data, f"{cls.__name__} does not re-pack to its input")
        return Measure(peak[0], len(data) + SLACK, name) if probe.trace else None

    def seed(cfg: Config) -> list[bytes]:
        return seeds.signed_seeds(cls)

    return Target(name, run, seed, lambda cfg: 512)


# -- the DOCK connection ----------------------------------------------------------------------


def run_dock(data: bytes, probe: Probe, cfg: Config) -> Measure | None:
    inp = Input(data)
    setup = seeds.dock_setups(cfg.max_payload)
    case = setup[inp.uint(1) % len(setup)]
    dock = case.start()
    stream = build_stream(inp, dock.max_payload, case.seq, seeds.reply_pool(cfg.max_payload),
                          case.reply)
    pieces = cut(inp, stream)
    with traced(probe.trace) as peak, probe.busy():
        failed = _feed_dock(dock, pieces)
    if failed is None:
        _check_usable(dock)
    else:
        try:
            dock.send(m.GetStatus())
        except LocalProtocolError:
            pass
        else:
            raise Violation("a failed dock still sends")
    if not probe.trace:
        return None
    read = max((len(p) for p in pieces), default=0)
    frame_max = HEADER_SIZE + dock.max_payload + TRAILER_SIZE
    return Measure(peak[0], frame_max + read + dock.max_payload + SLACK,
                   f"dock {case.name} max_payload={dock.max_payload} read={read}")


def _feed_dock(dock: Connection, pieces: list[bytes]) -> RemoteProtocolError | None:
    limit = HEADER_SIZE + dock.max_payload + TRAILER_SIZE
    for piece in pieces:
        dock.receive_data(piece)
        check(_buffered(dock) <= limit + len(piece),
              f"holds {_buffered(dock)} bytes after a {len(piece)}-byte read (frame {limit})")
        budget = 2 * _buffered(dock) + 2
        while True:
            budget -= 1
            check(budget >= 0, "next_event() keeps yielding without consuming input")
            before = dock.state
            try:
                ev = dock.next_event()
            except RemoteProtocolError as exc:
                try:
                    dock.next_event()
                except RemoteProtocolError as again:
                    check(again is exc, "a dock's RemoteProtocolError is not sticky")
                else:
                    raise Violation("a dock's RemoteProtocolError is not sticky") from None
                return exc
            if ev is NEED_DATA:
                break
            check(isinstance(ev, EVENT_TYPES), f"unknown event {ev!r}")
            if isinstance(ev, m.Message):
                check((before, Role.CAMERA, type(ev)) in TRANSITIONS,
                      f"{type(ev).__name__} accepted in {before.value}")
            check((dock.outstanding is None) == (dock.state in STABLE_STATES),
                  f"outstanding request and state {dock.state.value} disagree")
        limit = HEADER_SIZE + dock.max_payload + TRAILER_SIZE
        check(_buffered(dock) < limit, f"holds {_buffered(dock)} bytes once drained")
    return None


def _buffered(dock: Connection) -> int:
    """Bytes the connection holds undecoded (its decoder is private; the bound is public)."""
    return dock._decoder.buffered


def _check_usable(dock: Connection) -> None:
    """A dock that raised nothing can always cancel what it waits for and ask again."""
    if dock.state not in STABLE_STATES:
        dock.cancel()
    check(dock.state in STABLE_STATES and dock.outstanding is None, "cancel left a request")
    follow_up: m.Message = {State.HANDSHAKE: seeds.HELLO, State.IDENTIFIED: seeds.AUTH,
                            State.READY: m.GetStatus()}[dock.state]
    dock.send(follow_up)


# -- the catalogue ----------------------------------------------------------------------------


def _all() -> dict[str, Target]:
    targets = [
        Target("frames", run_frames, seeds.frame_seeds, lambda cfg: 1 << 16, weight=4),
        Target("dock", run_dock, seeds.dock_seeds, lambda cfg: 1 << 16, weight=4),
        message_target(None),
        *(message_target(cls) for cls in m.MESSAGE_TYPES.values()),
        signed_target(ChunkMessage),
        signed_target(SealMessage),
    ]
    return {t.name: t for t in targets}


TARGETS = _all()
