"""``--fault`` specifications: what a fault names, parsed and checked before anything starts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .errors import ConfigError
from .line import LineFaults
from .recordings import RecordingRef, parse_recording_ref, parse_size

__all__ = ["FAULT_HELP", "ChunkRef", "Faults", "parse_faults"]

FAULT_HELP = (
    "corrupt-chunk=REC:IDX (served bytes differ from the signed ones), "
    "bad-signature=REC:IDX, wrong-key (auth, chunks and seals signed with a random key), "
    "unplug-after-bytes=N, stall-after-bytes=N, garbage-every=N (noise between frames); "
    "REC is a 0-based position in name order or a 32-hex recording id, IDX a chunk index"
)


@dataclass(frozen=True, slots=True)
class ChunkRef:
    recording: RecordingRef
    index: int

    def __str__(self) -> str:
        return f"{self.recording}:{self.index}"


@dataclass(frozen=True, slots=True)
class Faults:
    corrupt_chunks: tuple[ChunkRef, ...] = ()
    bad_signatures: tuple[ChunkRef, ...] = ()
    wrong_key: bool = False
    line: LineFaults = field(default_factory=LineFaults)


def _chunk_ref(name: str, value: str) -> ChunkRef:
    rec, sep, idx = value.rpartition(":")
    if not sep or not idx.isdigit():
        raise ConfigError(f"bad --fault {name}={value!r}: expected {name}=REC:IDX")
    return ChunkRef(parse_recording_ref(rec), int(idx))


def _count(name: str, value: str, minimum: int) -> int:
    n = parse_size(value)
    if n < minimum:
        raise ConfigError(f"bad --fault {name}={value!r}: must be at least {minimum}")
    return n


_LINE_FIELDS = {
    "unplug-after-bytes": ("unplug_after_bytes", 0),
    "stall-after-bytes": ("stall_after_bytes", 0),
    "garbage-every": ("garbage_every", 1),
}


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
        elif name in _LINE_FIELDS and sep:
            attr, minimum = _LINE_FIELDS[name]
            if getattr(faults.line, attr) is not None:
                raise ConfigError(f"--fault {name} given twice")
            line = replace(faults.line, **{attr: _count(name, value, minimum)})
            faults = replace(faults, line=line)
        else:
            raise ConfigError(f"bad --fault {spec!r}: expected one of {FAULT_HELP}")
    return faults
