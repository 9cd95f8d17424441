"""Camera state that survives restarts (``--state-dir``), so unplug/replug is realistic.

One JSON document, replaced atomically after every change: the clock anchor, released recording
ids, the times each recording was first given (a recording's times never move, even after the
clock is set), the event log and its sequence counter. No keys and no media bytes go in here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_protocol.errors import ProtocolError
from firmware_protocol.messages import EventKind, LogEntry

from .clock import ClockAnchor
from .durable import write_atomic
from .errors import ConfigError

__all__ = ["FORMAT", "STATE_FILE", "CameraState", "StateStore"]

STATE_FILE = "state.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class CameraState:
    camera_uid: bytes
    clock: ClockAnchor
    released: frozenset[bytes]
    recording_times: dict[bytes, tuple[int, int]]  # id → (started_ms, ended_ms)
    events: tuple[LogEntry, ...]
    next_event_seq: int


def _to_json(state: CameraState) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "camera_uid": state.camera_uid.hex(),
        "clock": {"host_us": state.clock.host_us, "camera_us": state.clock.camera_us},
        "released": sorted(rid.hex() for rid in state.released),
        "recordings": {rid.hex(): list(times) for rid, times in state.recording_times.items()},
        "events": [
            {"seq": e.seq, "at_ms": e.at_ms, "kind": e.kind.name,
             "recording_id": e.recording_id.hex(), "detail": e.detail}
            for e in state.events
        ],
        "next_event_seq": state.next_event_seq,
    }


def _from_json(doc: dict[str, Any]) -> CameraState:
    if doc.get("format") != FORMAT:
        raise ValueError(f"unknown format {doc.get('format')!r}")
    clock = doc["clock"]
    return CameraState(
        camera_uid=bytes.fromhex(doc["camera_uid"]),
        clock=ClockAnchor(int(clock["host_us"]), int(clock["camera_us"])),
        released=frozenset(bytes.fromhex(r) for r in doc["released"]),
        recording_times={bytes.fromhex(rid): (int(t[0]), int(t[1]))
                         for rid, t in doc["recordings"].items()},
        events=tuple(
            LogEntry(int(e["seq"]), int(e["at_ms"]), EventKind[e["kind"]],
                     bytes.fromhex(e["recording_id"]), str(e["detail"]))
            for e in doc["events"]
        ),
        next_event_seq=int(doc["next_event_seq"]),
    )


class StateStore:
    def __init__(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create --state-dir {directory}: {exc.strerror}") from None
        self.path = directory / STATE_FILE

    def load(self) -> CameraState | None:
        """The saved state, or ``None`` for a camera that has never run with this directory."""
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            return _from_json(json.loads(text))
        except (ValueError, KeyError, TypeError, IndexError, ProtocolError) as exc:
            raise ConfigError(f"{self.path} is damaged ({exc}); move it away to start afresh"
                              ) from None

    def save(self, state: CameraState) -> None:
        data = json.dumps(_to_json(state), indent=1, ensure_ascii=False).encode("utf-8")
        write_atomic(self.path, data + b"\n", 0o644)
