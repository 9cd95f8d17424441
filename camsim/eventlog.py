"""The camera's own event log (Art. 12 evidence) and the ``--log-event`` injections.

Entries are numbered from 1 in the order the camera logged them; ``at_ms`` is the camera clock,
which is why entries about the past (recordings found at start-up) may carry earlier times than
entries logged before them. Pages are cut to fit the negotiated frame payload.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

from firmware_protocol.messages import LOG_ENTRY_FIXED_SIZE, EventKind, LogEntry

from .errors import ConfigError
from .recordings import RecordingRef, parse_recording_ref

__all__ = ["INJECTABLE", "EventLog", "InjectedEvent", "parse_log_event"]

NO_RECORDING = bytes(16)
INJECTABLE = (EventKind.BATTERY_EMPTY, EventKind.STORAGE_FULL, EventKind.FAULT)
_PAGE_OVERHEAD = 3  # u16 entry count + the ``more`` flag
_SPEC = re.compile(r"(?P<kind>[a-z_]+)@(?P<offset>[-+]?\d+(?:\.\d*)?)(?::(?P<rec>\w+))?",
                   re.IGNORECASE)


class EventLog:
    def __init__(self, entries: Iterable[LogEntry] = (), next_seq: int = 1) -> None:
        self._entries = list(entries)
        if any(a.seq >= b.seq for a, b in zip(self._entries, self._entries[1:], strict=False)):
            raise ValueError("event log entries out of order")
        last = self._entries[-1].seq if self._entries else 0
        self.next_seq = max(next_seq, last + 1)

    @property
    def entries(self) -> tuple[LogEntry, ...]:
        return tuple(self._entries)

    def append(self, kind: EventKind, at_ms: int, recording_id: bytes = NO_RECORDING,
               detail: str = "") -> LogEntry:
        entry = LogEntry(self.next_seq, max(0, at_ms), kind, recording_id, detail)
        self._entries.append(entry)
        self.next_seq += 1
        return entry

    def contains(self, kind: EventKind, at_ms: int, recording_id: bytes) -> bool:
        return any(e.kind is kind and e.at_ms == at_ms and e.recording_id == recording_id
                   for e in self._entries)

    def page(self, since: int, max_entries: int, max_payload: int
             ) -> tuple[tuple[LogEntry, ...], bool]:
        """Entries with ``seq >= since``: as many as ``max_entries`` and the payload allow."""
        start = bisect.bisect_left(self._entries, since, key=lambda e: e.seq)
        budget = max_payload - _PAGE_OVERHEAD
        page: list[LogEntry] = []
        for entry in self._entries[start:]:
            cost = LOG_ENTRY_FIXED_SIZE + len(entry.detail.encode("utf-8"))
            if len(page) == max_entries or cost > budget:
                break
            page.append(entry)
            budget -= cost
        return tuple(page), start + len(page) < len(self._entries)


@dataclass(frozen=True, slots=True)
class InjectedEvent:
    """``--log-event KIND@OFFSET_S[:REC]``: at now + offset, or at recording REC's end + offset."""

    kind: EventKind
    offset_ms: int
    recording: RecordingRef | None = None


def parse_log_event(spec: str) -> InjectedEvent:
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ConfigError(f"bad --log-event {spec!r}: expected KIND@OFFSET_S[:REC], "
                          "e.g. battery_empty@-3600 or battery_empty@0:1")
    name = match.group("kind").upper()
    kind = EventKind.__members__.get(name)
    if kind not in INJECTABLE:
        names = ", ".join(k.name.lower() for k in INJECTABLE)
        raise ConfigError(f"bad --log-event {spec!r}: kind must be one of {names}")
    assert kind is not None
    rec = match.group("rec")
    return InjectedEvent(kind, round(float(match.group("offset")) * 1000),
                         parse_recording_ref(rec) if rec is not None else None)
