"""Finding interruptions in what a camera recorded during one hand-out (Art. 8, 12).

Pure: recordings and the camera's own event log in, gap records out. All times are the
camera's clock (ms), which recordings and log entries share; the caller converts to dock time
with the clock offset measured at docking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEVICE_STOP_KINDS", "DEVICE_STOP_SLACK_MS", "FoundGap", "RecordingSpan",
           "find_gaps"]

# The camera's log kinds that are an Art. 12 (1) reason: device fault, low battery, full storage.
DEVICE_STOP_KINDS = frozenset({"battery_empty", "storage_full", "fault"})
# A device-stop entry this close to a recording's end is what ended it (the camera logs the
# event and closes the file within a few seconds of each other, in either order).
DEVICE_STOP_SLACK_MS = 10_000


@dataclass(frozen=True)
class RecordingSpan:
    recording_id: str
    started_ms: int
    ended_ms: int


@dataclass(frozen=True)
class FoundGap:
    gap_id: str
    kind: str  # "interruption" | "device_stop"
    from_ms: int
    to_ms: int
    before_recording: str
    after_recording: str | None
    evidence: tuple[dict[str, Any], ...]

    @property
    def explained(self) -> bool:
        return bool(self.evidence)


def _gap_id(camera_uid: str, before: str, kind: str) -> str:
    # Deterministic: finding the same gap again (a re-docking, a restart) yields the same id,
    # so it is recorded once.
    return hashlib.sha256(f"{camera_uid}:{before}:{kind}".encode()).hexdigest()[:32]


def find_gaps(camera_uid: str, recordings: Sequence[RecordingSpan],
              log_entries: Iterable[dict[str, Any]], *, threshold_ms: int,
              hand_in_ms: int | None) -> list[FoundGap]:
    """Gaps in one hand-out's `recordings` (any order).

    * ``interruption``: the time between the end of one recording and the start of the next is
      longer than `threshold_ms`;
    * ``device_stop``: a recording ended with a battery-empty, storage-full or fault log entry
      (within `DEVICE_STOP_SLACK_MS` of its end); the gap runs to the next recording's start,
      or to `hand_in_ms` (camera clock) after the last one.

    A gap is explained (it carries ``evidence``) when device-stop log entries fall inside it
    or, for ``device_stop``, at the recording's end. An interruption that starts with a device
    stop is reported once, as ``device_stop``.
    """
    stops = sorted((e for e in log_entries if e.get("kind") in DEVICE_STOP_KINDS),
                   key=lambda e: (e["at_ms"], e["seq"]))
    ordered = sorted(recordings, key=lambda r: (r.started_ms, r.recording_id))
    found: list[FoundGap] = []
    for i, rec in enumerate(ordered):
        nxt = ordered[i + 1] if i + 1 < len(ordered) else None
        end_of_gap = nxt.started_ms if nxt is not None else hand_in_ms
        # An entry naming a recording belongs to that recording only; an anonymous one to the
        # recording that ended within the slack of it.
        at_end = tuple(e for e in stops if e.get("recording_id") == rec.recording_id or (
            not e.get("recording_id") and abs(e["at_ms"] - rec.ended_ms) <= DEVICE_STOP_SLACK_MS))
        if at_end:
            to_ms = max(end_of_gap if end_of_gap is not None else rec.ended_ms, rec.ended_ms)
            found.append(FoundGap(_gap_id(camera_uid, rec.recording_id, "device_stop"),
                                  "device_stop", rec.ended_ms, to_ms, rec.recording_id,
                                  nxt.recording_id if nxt else None, at_end))
            continue
        if nxt is None or nxt.started_ms - rec.ended_ms <= threshold_ms:
            continue
        inside = tuple(e for e in stops if rec.ended_ms < e["at_ms"] <= nxt.started_ms
                       and not e.get("recording_id"))
        found.append(FoundGap(_gap_id(camera_uid, rec.recording_id, "interruption"),
                              "interruption", rec.ended_ms, nxt.started_ms, rec.recording_id,
                              nxt.recording_id, inside))
    return found
