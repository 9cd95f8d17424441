"""``--fault`` specifications: what a fault names, parsed and checked before anything starts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from firmware_protocol import messages as m

from .errors import ConfigError
from .line import LineFaults
from .recordings import RecordingRef, parse_recording_ref, parse_size

__all__ = [
    "FAULT_HELP",
    "MALFORMED_NAMES",
    "ChunkRef",
    "ChunkReplay",
    "ClockJump",
    "ExtraBytes",
    "Faults",
    "ForeignChunk",
    "parse_faults",
]

FAULT_HELP = (
    "corrupt-chunk=REC:IDX (served bytes differ from the signed ones), "
    "bad-signature=REC:IDX, wrong-key (auth, chunks and seals signed with a random key), "
    "unplug-after-bytes=N, stall-after-bytes=N, garbage-every=N (noise between frames), "
    "clock-jump=SECONDS@N (the clock jumps by SECONDS right after the N-th status reply); "
    "hostile cameras: replay-chunk=REC:IDX@REC2:IDX2 (chunk IDX answered with chunk IDX2 of "
    "REC2), swap-chunks=REC:I:J, duplicate-chunk=REC:IDX (chunk IDX again in place of IDX+1), "
    "foreign-chunk=REC:IDX@KEY (the chunk as the camera with device key KEY signed it), "
    "bad-seal=REC (signed seal with a wrong SHA-256), extra-chunk=REC, extra-bytes=REC:N "
    "(listed N bytes smaller than served), malformed=MSG (MSG replies cut short), "
    "oversize-length=N, endless-garbage=N, slowloris=MS[@N] (line faults from the N-th byte on); "
    "REC is a 0-based position in name order or a 32-hex recording id, IDX a chunk index"
)

# malformed=MSG: the camera's replies by name (docs/protocol.md section 3), snake case.
MALFORMED_NAMES: dict[str, int] = {
    "identity": m.Identity.TYPE, "auth_response": m.AuthResponse.TYPE,
    "status": m.Status.TYPE, "time_reply": m.TimeReply.TYPE, "time_set": m.TimeSet.TYPE,
    "recording_list": m.RecordingList.TYPE, "chunk_header": m.ChunkHeader.TYPE,
    "chunk_data": m.ChunkData.TYPE, "seal": m.Seal.TYPE, "event_log": m.EventLog.TYPE,
    "released": m.Released.TYPE, "error": m.Error.TYPE,
}


@dataclass(frozen=True, slots=True)
class ChunkRef:
    recording: RecordingRef
    index: int

    def __str__(self) -> str:
        return f"{self.recording}:{self.index}"


@dataclass(frozen=True, slots=True)
class ClockJump:
    """The real-time clock jumps by ``seconds`` (negative: backwards) right after the camera
    answered its ``after_status``-th GET_STATUS of the run, as a failing RTC would."""

    seconds: float
    after_status: int


@dataclass(frozen=True, slots=True)
class ChunkReplay:
    """READ_CHUNK for ``target`` is answered with the signed header and bytes of ``source``."""

    target: ChunkRef
    source: ChunkRef
    spec: str  # the --fault it came from, for messages


@dataclass(frozen=True, slots=True)
class ForeignChunk:
    """READ_CHUNK for ``target`` is answered with the same bytes as the camera holding the
    device key ``key`` signed them: its uid, its recording id for the same file name, chained in
    its own copy of the recording. A valid signature, by another camera."""

    target: ChunkRef
    key: Path


@dataclass(frozen=True, slots=True)
class ExtraBytes:
    """The listing shows the recording ``extra`` bytes smaller than the chunks and the seal
    (the truth) make it; ``None``: smaller by its whole last chunk."""

    recording: RecordingRef
    extra: int | None


@dataclass(frozen=True, slots=True)
class Faults:
    corrupt_chunks: tuple[ChunkRef, ...] = ()
    bad_signatures: tuple[ChunkRef, ...] = ()
    wrong_key: bool = False
    line: LineFaults = field(default_factory=LineFaults)
    clock_jump: ClockJump | None = None
    replays: tuple[ChunkReplay, ...] = ()
    foreign_chunks: tuple[ForeignChunk, ...] = ()
    bad_seals: tuple[RecordingRef, ...] = ()
    extra_bytes: tuple[ExtraBytes, ...] = ()


def _chunk_ref(name: str, value: str) -> ChunkRef:
    rec, sep, idx = value.rpartition(":")
    if not sep or not idx.isdigit():
        raise ConfigError(f"bad --fault {name}={value!r}: expected {name}=REC:IDX")
    return ChunkRef(parse_recording_ref(rec), int(idx))


def _clock_jump(value: str) -> ClockJump:
    seconds, sep, after = value.partition("@")
    try:
        jump = ClockJump(float(seconds), int(after) if sep else 1)
    except ValueError:
        raise ConfigError(f"bad --fault clock-jump={value!r}: expected clock-jump=SECONDS@N"
                          ) from None
    if jump.after_status < 1 or not jump.seconds or not math.isfinite(jump.seconds):
        raise ConfigError(f"bad --fault clock-jump={value!r}: SECONDS must be non-zero and "
                          "N at least 1")
    return jump


def _replay(name: str, value: str) -> ChunkReplay:
    target, sep, source = value.partition("@")
    if not sep:
        raise ConfigError(f"bad --fault {name}={value!r}: expected {name}=REC:IDX@REC2:IDX2")
    return ChunkReplay(_chunk_ref(name, target), _chunk_ref(name, source), f"{name}={value}")


def _swap(name: str, value: str) -> tuple[ChunkReplay, ChunkReplay]:
    rec, _, rest = value.partition(":")
    first, sep, second = rest.partition(":")
    if not (sep and first.isdigit() and second.isdigit()) or first == second:
        raise ConfigError(f"bad --fault {name}={value!r}: expected {name}=REC:I:J, I != J")
    ref = parse_recording_ref(rec)
    i, j = ChunkRef(ref, int(first)), ChunkRef(ref, int(second))
    return ChunkReplay(i, j, f"{name}={value}"), ChunkReplay(j, i, f"{name}={value}")


def _duplicate(name: str, value: str) -> ChunkReplay:
    ref = _chunk_ref(name, value)
    return ChunkReplay(ChunkRef(ref.recording, ref.index + 1), ref, f"{name}={value}")


def _foreign(name: str, value: str) -> ForeignChunk:
    target, sep, key = value.partition("@")
    if not sep or not key:
        raise ConfigError(f"bad --fault {name}={value!r}: expected {name}=REC:IDX@KEYFILE")
    return ForeignChunk(_chunk_ref(name, target), Path(key))


def _extra_bytes(name: str, value: str) -> ExtraBytes:
    if name == "extra-chunk":
        return ExtraBytes(parse_recording_ref(value), None)
    rec, sep, n = value.rpartition(":")
    if not sep:
        raise ConfigError(f"bad --fault {name}={value!r}: expected {name}=REC:N")
    return ExtraBytes(parse_recording_ref(rec), _count(name, n, 1))


def _malformed(value: str) -> int:
    msg_type = MALFORMED_NAMES.get(value.strip().lower())
    if msg_type is None:
        raise ConfigError(f"bad --fault malformed={value!r}: expected one of "
                          + ", ".join(MALFORMED_NAMES))
    return msg_type


def _slowloris(value: str) -> tuple[int, int]:
    ms, sep, after = value.partition("@")
    if not ms.isdigit() or int(ms) < 1:
        raise ConfigError(f"bad --fault slowloris={value!r}: expected slowloris=MS[@N], "
                          "MS at least 1")
    return int(ms), _count("slowloris", after, 0) if sep else 0


def _count(name: str, value: str, minimum: int) -> int:
    n = parse_size(value)
    if n < minimum:
        raise ConfigError(f"bad --fault {name}={value!r}: must be at least {minimum}")
    return n


_LINE_FIELDS = {
    "unplug-after-bytes": ("unplug_after_bytes", 0),
    "stall-after-bytes": ("stall_after_bytes", 0),
    "garbage-every": ("garbage_every", 1),
    "endless-garbage": ("endless_garbage_after", 0),
    "oversize-length": ("oversize_after", 0),
}


def _line(faults: Faults, name: str, **values: Any) -> Faults:
    """``faults`` with line fields set. The first field is None until the fault is given, and
    a line fault may be given once."""
    if getattr(faults.line, next(iter(values))) is not None:
        raise ConfigError(f"--fault {name} given twice")
    return replace(faults, line=replace(faults.line, **values))


def parse_faults(specs: Iterable[str]) -> Faults:
    faults = Faults()
    for spec in specs:
        name, sep, value = spec.strip().partition("=")
        name = name.lower()
        if name == "wrong-key" and not sep:
            faults = replace(faults, wrong_key=True)
        elif name == "corrupt-chunk" and sep:
            faults = replace(faults, corrupt_chunks=(*faults.corrupt_chunks,
                                                     _chunk_ref(name, value)))
        elif name == "bad-signature" and sep:
            faults = replace(faults, bad_signatures=(*faults.bad_signatures,
                                                     _chunk_ref(name, value)))
        elif name == "clock-jump" and sep:
            if faults.clock_jump is not None:
                raise ConfigError("--fault clock-jump given twice")
            faults = replace(faults, clock_jump=_clock_jump(value))
        elif name == "replay-chunk" and sep:
            faults = replace(faults, replays=(*faults.replays, _replay(name, value)))
        elif name == "swap-chunks" and sep:
            faults = replace(faults, replays=(*faults.replays, *_swap(name, value)))
        elif name == "duplicate-chunk" and sep:
            faults = replace(faults, replays=(*faults.replays, _duplicate(name, value)))
        elif name == "foreign-chunk" and sep:
            faults = replace(faults, foreign_chunks=(*faults.foreign_chunks,
                                                     _foreign(name, value)))
        elif name == "bad-seal" and sep:
            faults = replace(faults, bad_seals=(*faults.bad_seals, parse_recording_ref(value)))
        elif name in ("extra-chunk", "extra-bytes") and sep:
            faults = replace(faults, extra_bytes=(*faults.extra_bytes,
                                                  _extra_bytes(name, value)))
        elif name == "malformed" and sep:
            line = replace(faults.line, malformed=faults.line.malformed | {_malformed(value)})
            faults = replace(faults, line=line)
        elif name == "slowloris" and sep:
            ms, after = _slowloris(value)
            faults = _line(faults, name, slowloris_ms=ms, slowloris_after=after)
        elif name in _LINE_FIELDS and sep:
            attr, minimum = _LINE_FIELDS[name]
            faults = _line(faults, name, **{attr: _count(name, value, minimum)})
        else:
            raise ConfigError(f"bad --fault {spec!r}: expected one of {FAULT_HELP}")
    return faults
