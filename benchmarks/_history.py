"""A synthetic compliance history, written through the project's own code (issue 5 figures).

``generate_history(state_dir, years=10, cameras=20, per_day=40)`` makes the state dir of a dock
that has been in service that long: the cameras enrolled in the `Registry`, the dock's keys
(`KeyStore`), the compliance journal (``journal/records``), the audit log (``journal/audit``)
and ``compliance.json``. No footage: only the bookkeeping is there, which is what the scale
figures measure.

Every record is made by the real `Compliance` (hand-out, hand-in, recording stored, readiness
and integrity failures, gaps from the camera's own log, work records, late offloads, overdue
cameras, assignments, holds) with an injected clock, so each record's ``at`` and month
partition are those of the simulated moment. Only two things are swapped for speed, neither of
which changes what is written:

* the journals collect a day's records and write them with one `Journal.append_many` (one
  write and fsync instead of ~900); a segment can therefore overshoot its 4 MiB by up to a
  day's records (~0.6 MB) before it rotates;
* the small current state (``compliance.json``), the registry's officer lookups and the
  footage store's ``stored`` check (for holds) are in memory during the run; the final state
  is then written to the real files, with the daemon's compliance loop marked as having queued
  every record for ``…/ledger`` long ago (as on a dock in service).

A day, per camera (own random stream per camera and day, so a shorter history over the same
dates holds nearly the same records): hand-out between 06:00 and 07:30 UTC; ``per_day``
recordings of 1-12 min, 0.5-7 min apart, with the odd long interruption (a gap, usually left
open until a work record a day or two later) or device stop (battery empty, storage full or a
fault in the camera's log: an explained gap); hand-in after the last one, then the offload
(one recording stored every 5-25 s) and the gap check. Now and then a camera is not ready at
docking, stays out overnight (its recordings are then late, and it is reported overdue), fails
an integrity check, or is reassigned; the office side files work records, holds and lifts
holds, exports and verifies footage (audit entries) and the daemon restarts once a month
(``config_loaded``). Between the journal flushes the history needs no other process.

Standalone: ``python benchmarks/_history.py STATE_DIR [--years N] [--cameras N] [--per-day N]``
prints how long generation took and the journal sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.loop import _PUBLISHED as LEDGER_QUEUED
from agent.compliance.service import Compliance, ComplianceSettings
from agent.compliance.state import ComplianceState
from agent.manifest import format_timestamp
from agent.registry import Registry
from agent.store.footage import FootageStore
from agent.store.journal import Journal
from agent.store.keys import KeyStore
from camsim.keys import derive_camera_uid

__all__ = ["MARKER", "HistoryInfo", "camera_key", "generate_history", "journal_bytes",
           "main", "month_start_ms"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
YEAR_DAYS = 365.25
MARKER = "bench-history.json"  # written last into the state dir: the history is complete
CONSOLE_ACTOR = "console:3f1c9a0b7d2e4c55"
READINESS_REASONS = ("battery_low", "storage_low", "footage_pending", "self_test_failed",
                     "clock_unsynced")
STOP_KINDS = ("battery_empty", "storage_full", "fault")


def camera_key(index: int, seed: int = 1) -> Ed25519PrivateKey:
    """Camera `index`'s device key, derived from the seed (nothing to keep on disk)."""
    raw = hashlib.sha256(f"bwc-dock synthetic history {seed} camera {index}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(raw)


def month_start_ms(ms: int, months_back: int = 0) -> int:
    """First millisecond (UTC) of the month of `ms`, `months_back` months earlier."""
    t = datetime.fromtimestamp(ms / 1000, UTC)
    index = t.year * 12 + t.month - 1 - months_back
    return int(datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC).timestamp() * 1000)


def journal_bytes(directory: Path) -> tuple[int, int]:
    """(total bytes, segment files) of a journal directory."""
    files = list(directory.glob("*.jsonl")) if directory.is_dir() else []
    return sum(p.stat().st_size for p in files), len(files)


@dataclass
class HistoryInfo:
    state_dir: str
    start_ms: int
    end_ms: int
    cameras: list[str]
    officers: list[str]
    per_day: int
    seed: int
    dock_id: str
    unit: str
    seconds: float = 0.0
    recordings: int = 0
    records: int = 0
    audit_entries: int = 0
    records_bytes: int = 0
    records_segments: int = 0
    audit_bytes: int = 0
    audit_segments: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # records by type
    audit_counts: dict[str, int] = field(default_factory=dict)  # audit entries by action

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, state_dir: Path) -> HistoryInfo | None:
        """The info of a complete history in `state_dir`, None if there is none."""
        try:
            return cls(**json.loads((state_dir / MARKER).read_text()))
        except (OSError, ValueError, TypeError):
            return None


# -- stand-ins used during generation only --------------------------------------------------

class _Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class _DayBatch:
    """Takes a `Journal`'s place inside `ComplianceRecords` / `AuditLog`: appends are kept and
    written by `flush` with one `append_many` (the clock still in the same day, so the month
    partition is the records' own). The seq it returns is the one the record will get."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.pending: list[dict[str, Any]] = []
        self.written = 0
        self.counts: dict[str, int] = {}

    def append(self, record: dict[str, Any]) -> int:
        self.pending.append(record)
        return self.journal.last_seq + len(self.pending)

    def flush(self) -> None:
        if self.pending:
            self.journal.append_many(self.pending)
            self.written += len(self.pending)
            for rec in self.pending:
                kind = rec.get("type") or rec["action"]
                self.counts[kind] = self.counts.get(kind, 0) + 1
            self.pending = []


class _MemoryState:
    """`ComplianceState`'s interface in memory; `save` writes it to the real file."""

    def __init__(self) -> None:
        self.cameras: dict[str, dict[str, Any]] = {}
        self.gaps: dict[str, dict[str, Any]] = {}
        self.holds_: dict[str, dict[str, Any]] = {}
        self.meta_: dict[str, Any] = {}

    def close(self) -> None:
        pass

    def meta(self, name: str, default: Any = 0) -> Any:
        return self.meta_.get(name, default)

    def set_meta(self, name: str, value: Any) -> None:
        self.meta_[name] = value

    def camera(self, camera_uid: str) -> dict[str, Any]:
        base: dict[str, Any] = {"camera_uid": camera_uid, "open_handout": None, "handouts": [],
                                "log_entries": []}
        return {**base, **self.cameras.get(camera_uid, {})}

    def all_cameras(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self.cameras.values()]

    def update_camera(self, camera_uid: str, fields: dict[str, Any]) -> None:
        self.cameras.setdefault(camera_uid, {"camera_uid": camera_uid}).update(fields)

    def add_open_gap(self, gap: dict[str, Any]) -> None:
        self.gaps[gap["gap_id"]] = dict(gap)

    def open_gap(self, gap_id: str) -> dict[str, Any] | None:
        return self.gaps.get(gap_id)

    def close_gap(self, gap_id: str) -> bool:
        return self.gaps.pop(gap_id, None) is not None

    def open_gaps(self) -> list[dict[str, Any]]:
        return sorted(self.gaps.values(), key=lambda g: (g["from"], g["gap_id"]))

    def hold(self, recording_id: str) -> dict[str, Any] | None:
        return self.holds_.get(recording_id)

    def set_hold(self, hold: dict[str, Any]) -> None:
        self.holds_[hold["recording_id"]] = dict(hold)

    def remove_hold(self, recording_id: str) -> bool:
        return self.holds_.pop(recording_id, None) is not None

    def holds(self) -> list[dict[str, Any]]:
        return sorted(self.holds_.values(), key=lambda h: h["recording_id"])

    def save(self, real: ComplianceState) -> None:
        for uid, doc in self.cameras.items():
            real.update_camera(uid, {k: v for k, v in doc.items() if k != "camera_uid"})
        for gap in self.gaps.values():
            real.add_open_gap(gap)
        for hold in self.holds_.values():
            real.set_hold(hold)
        for name, value in self.meta_.items():
            real.set_meta(name, value)


class _MemoryRegistry:
    """The officer lookups `Compliance` makes (``get(uid).officer_id``, ``set_officer``)."""

    def __init__(self, officers: dict[bytes, str | None]) -> None:
        self.officers = dict(officers)

    def get(self, camera_uid: bytes) -> Any:
        if camera_uid not in self.officers:
            return None
        return SimpleNamespace(officer_id=self.officers[camera_uid])

    def set_officer(self, camera_uid: bytes, officer_id: str | None) -> None:
        if camera_uid not in self.officers:
            raise KeyError(camera_uid.hex())
        self.officers[camera_uid] = officer_id


class _RecentManifests:
    """What `Compliance.hold` asks the footage store: is the recording stored (recent ones)."""

    def __init__(self) -> None:
        self.manifests: dict[str, dict[str, Any]] = {}

    def stored(self, recording_id: bytes) -> Any:
        m = self.manifests.get(recording_id.hex())
        return SimpleNamespace(manifest=m) if m is not None else None


# -- the simulation -------------------------------------------------------------------------

@dataclass
class _Camera:
    index: int
    uid: bytes
    slot: str
    docked: bool = True
    offset_ms: int = 0  # camera clock - dock clock during the current hand-out
    log_seq: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)  # recorded, not yet stored
    log: list[dict[str, Any]] = field(default_factory=list)  # device stops since docking
    not_ready: list[str] = field(default_factory=list)


class _Sim:
    def __init__(self, book: Compliance, clock: _Clock, cams: list[_Camera],
                 officers: list[str], per_day: int, seed: int, dock_id: str) -> None:
        self.book = book
        self.clock = clock
        self.cams = cams
        self.officers = officers
        self.per_day = per_day
        self.seed = seed
        self.dock_id = dock_id
        self.recent = cast(_RecentManifests, book.store)
        self.registry = cast(_MemoryRegistry, book.registry)
        self.work_due: list[tuple[int, str]] = []  # (due ms, gap id), a heap
        self.unhold_due: list[tuple[int, str]] = []
        self.recordings = 0

    # Each actor is a generator: it yields the dock time of its next action, and performs it
    # when resumed (with the clock set to that time). `run_day` interleaves them in time order.

    def camera_day(self, cam: _Camera, day_ms: int, rng: random.Random) -> Iterator[int]:
        book = self.book
        t = day_ms + 6 * HOUR_MS + rng.randrange(90 * MIN_MS)
        stay_out = rng.random() < 0.005
        # Drawn whether or not the camera is docked, so that the day's recordings are the same
        # in a history where it was still out from the day before.
        status = {"battery_pct": rng.randint(92, 100),
                  "storage_free_bytes": rng.randrange(50 << 30, 60 << 30)}
        offset_ms = rng.randint(-2000, 2000)
        if cam.docked:
            yield t
            book.hand_out(cam.uid, slot=cam.slot, status=status, ready=not cam.not_ready,
                          reasons=cam.not_ready)
            cam.docked, cam.not_ready, cam.offset_ms = False, [], offset_ms
        # The shift: the camera records; nothing reaches the dock until it is back.
        t += rng.randint(5, 20) * MIN_MS
        for _ in range(self.per_day):
            duration = rng.randint(60_000, 720_000)
            rid = rng.randbytes(16).hex()
            started, ended = t + cam.offset_ms, t + duration + cam.offset_ms  # camera clock
            registry_officer = self.registry.officers[cam.uid]
            cam.pending.append({
                "type": "manifest", "schema": 1, "manifest_id": rng.randbytes(32).hex(),
                "dock_id": self.dock_id, "camera_uid": cam.uid.hex(),
                "officer_id": registry_officer, "recording_id": rid, "media": "video",
                "started_at": format_timestamp(started), "ended_at": format_timestamp(ended),
                "size": duration * rng.randint(900, 1100), "sha256": rng.randbytes(32).hex(),
                "_ended_cam_ms": ended})
            t += duration
            r = rng.random()
            if r < 0.001:  # the camera stopped itself (Art. 12 (1)): an explained gap
                cam.log_seq += 1
                cam.log.append({"seq": cam.log_seq, "at_ms": ended + rng.randint(-3000, 3000),
                                "kind": rng.choice(STOP_KINDS), "recording_id": rid,
                                "detail": "synthetic"})
                t += rng.randint(10, 40) * MIN_MS
            elif r < 0.005 and t < day_ms + 17 * HOUR_MS:  # an unexplained interruption
                t += rng.randint(15, 90) * MIN_MS
            else:
                t += rng.randint(30_000, 420_000)
        if stay_out:
            return  # kept overnight: offloaded (late) at tomorrow's docking
        t = min(t + rng.randint(10, 60) * MIN_MS, day_ms + 22 * HOUR_MS)
        yield t
        status = {"battery_pct": rng.randint(5, 60),
                  "storage_free_bytes": rng.randrange(40 << 30, 55 << 30)}
        book.hand_in(cam.uid, slot=cam.slot, status=status, clock_offset_ms=cam.offset_ms)
        if rng.random() < 0.03:
            t += rng.randint(1000, 3000)
            yield t
            cam.not_ready = sorted(rng.sample(READINESS_REASONS[:3], rng.randint(1, 2)))
            book.readiness_failure(cam.uid, slot=cam.slot, reasons=cam.not_ready)
            if rng.random() < 0.5:  # charged by the morning
                cam.not_ready = []
        for manifest in cam.pending:
            t += rng.randint(5000, 25_000)
            yield t
            ended_cam = manifest.pop("_ended_cam_ms")
            if rng.random() < 0.0002:
                book.integrity_failure(cam.uid, recording_id=bytes.fromhex(
                    manifest["recording_id"]), reason="chunk_signature",
                    detail="chunk 3: signature does not verify")
                continue
            manifest["clock_offset_ms"] = cam.offset_ms
            manifest["stored_at"] = format_timestamp(t)
            manifest["offload_delay_s"] = (t - (ended_cam - cam.offset_ms)) // 1000
            book.recording_stored(manifest)
            self.recent.manifests[manifest["recording_id"]] = manifest
            self.recordings += 1
        cam.pending = []
        t += rng.randint(500, 2000)
        yield t
        book.camera_log(cam.uid, cam.log)
        cam.log = []
        for gap in book.check_gaps(cam.uid):
            if gap["status"] == "open" and rng.random() < 0.995:
                heapq.heappush(self.work_due, (day_ms + DAY_MS + rng.randrange(
                    9 * HOUR_MS, 40 * HOUR_MS), gap["gap_id"]))
        cam.docked = True

    def office_day(self, day_ms: int, rng: random.Random) -> Iterator[int]:
        book = self.book
        events: list[tuple[int, str, Any]] = []
        if datetime.fromtimestamp(day_ms / 1000, UTC).day == 1:  # monthly update and restart
            events.append((day_ms + 3 * HOUR_MS + rng.randrange(HOUR_MS), "restart", None))
        for cam in self.cams:
            if rng.random() < 0.002:  # reassigned before the shift
                events.append((day_ms + 5 * HOUR_MS + rng.randrange(HOUR_MS), "assign", cam))
        while self.work_due and self.work_due[0][0] < day_ms + DAY_MS:
            due, gap_id = heapq.heappop(self.work_due)
            events.append((max(due, day_ms), "work_record", gap_id))
        while self.unhold_due and self.unhold_due[0][0] < day_ms + DAY_MS:
            due, rid = heapq.heappop(self.unhold_due)
            events.append((max(due, day_ms), "unhold", rid))
        if rng.random() < 0.02:
            events.append((day_ms + rng.randrange(8 * HOUR_MS, 18 * HOUR_MS), "hold", None))
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            events.append((day_ms + rng.randrange(8 * HOUR_MS, 18 * HOUR_MS), "access", None))
        for i in range(24):  # the daemon's overdue check (hourly here)
            events.append((day_ms + i * HOUR_MS + 30 * MIN_MS, "overdue", None))
        events.sort(key=lambda e: (e[0], e[1]))
        for at, kind, arg in events:
            yield at
            if kind == "restart":  # as the daemon audits a start with a changed config
                digest = rng.randbytes(32).hex()
                book.audit.append("config_loaded", "daemon", config_sha256=digest)
                book.state.set_meta("config_sha256", digest)
            elif kind == "assign":
                self._command("assign", rng, partial(book.assign, arg.uid,
                                                     rng.choice(self.officers),
                                                     actor=CONSOLE_ACTOR))
            elif kind == "work_record" and book.state.open_gap(arg) is not None:
                self._command("work_record", rng, partial(
                    book.work_record, arg, reason=rng.choice((2, 3, 4)),
                    text="officer's work record filed", approver=f"SGT-{rng.randint(1, 6):02d}",
                    actor=CONSOLE_ACTOR))
            elif kind == "unhold" and book.state.hold(arg) is not None:
                self._command("unhold", rng, partial(book.unhold, [arg], text="case closed",
                                                     actor=CONSOLE_ACTOR))
            elif kind == "hold" and self.recent.manifests:
                ids = rng.sample(sorted(self.recent.manifests), rng.randint(1, 3))
                self._command("hold", rng, partial(
                    book.hold, ids, reason=rng.choice(("dispute", "obstruction", "major_case")),
                    text=f"case {rng.randint(1000, 9999)}", actor=CONSOLE_ACTOR))
                if rng.random() < 0.6:
                    for r in ids:
                        heapq.heappush(self.unhold_due, (at + rng.randint(30, 400) * DAY_MS, r))
            elif kind == "access" and self.recent.manifests:
                rid = rng.choice(sorted(self.recent.manifests))
                if rng.random() < 0.5:
                    book.audit.append("export", "cli:clerk", recording_id=rid,
                                      out=f"/srv/exports/{rid}.bin")
                else:
                    book.audit.append("verify", "cli:clerk", recordings=[rid], failures=0)
            elif kind == "overdue":
                book.overdue()

    def _command(self, name: str, rng: random.Random, run: Callable[..., None]) -> None:
        """A console command carried out and audited as the daemon does (``command``)."""
        request_id = uuid.UUID(bytes=rng.randbytes(16)).hex
        run(request_id=request_id)
        self.book.audit.append("command", CONSOLE_ACTOR, command=name, request_id=request_id,
                               outcome="ok", signed=True)

    def run_day(self, day_ms: int, end_ms: int) -> None:
        d = datetime.fromtimestamp(day_ms / 1000, UTC).date().isoformat()
        actors: list[Iterator[int]] = [
            self.camera_day(cam, day_ms, random.Random(f"{self.seed}:{d}:{cam.index}"))
            for cam in self.cams]
        actors.append(self.office_day(day_ms, random.Random(f"{self.seed}:{d}:office")))
        heap: list[tuple[int, int, Iterator[int]]] = []
        for i, actor in enumerate(actors):
            first = next(actor, None)
            if first is not None:
                heapq.heappush(heap, (first, i, actor))
        while heap:
            at, i, actor = heapq.heappop(heap)
            if at >= end_ms:
                continue  # after the end of the history: this actor stops here
            self.clock.ms = at
            nxt = next(actor, None)
            if nxt is not None:
                heapq.heappush(heap, (max(nxt, at), i, actor))
        if len(self.recent.manifests) > 4 * self.per_day * len(self.cams):
            keep = list(self.recent.manifests)[-2 * self.per_day * len(self.cams):]
            self.recent.manifests = {k: self.recent.manifests[k] for k in keep}


def generate_history(state_dir: Path, *, years: float = 10, cameras: int = 20,
                     per_day: int = 40, end_ms: int | None = None,
                     start_ms: int | None = None, seed: int = 1, dock_id: str = "bench-dock",
                     unit: str = "bench-unit",
                     progress: Callable[[str], None] | None = None) -> HistoryInfo:
    """Write a compliance history into the (new or empty) `state_dir`; see the module docstring.

    The history runs from `start_ms` (default: `years` before `end_ms`, at a UTC midnight) to
    `end_ms` (default: now); nothing is dated at or after `end_ms`. Returns what was written
    (also saved as ``MARKER`` in the state dir).
    """
    t_start = time.perf_counter()
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # keys live here: 0700
    if (state_dir / "journal").exists():
        raise FileExistsError(f"{state_dir} already holds journals")
    end = end_ms if end_ms is not None else time.time_ns() // 1_000_000
    if start_ms is None:
        first_day = (datetime.fromtimestamp(end / 1000, UTC).date()
                     - timedelta(days=round(years * YEAR_DAYS)))
    else:
        first_day = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    start = int(datetime(first_day.year, first_day.month, first_day.day,
                         tzinfo=UTC).timestamp() * 1000)
    officers = [f"PD-{i:04d}" for i in range(1, cameras * 3 // 2 + 2)]

    clock = _Clock(start)
    dock_keys = KeyStore(state_dir)  # the dock's identity and footage wrapping key
    dock_keys.wrap_key_id  # noqa: B018 - loads or creates them
    dock_keys.signing_key  # noqa: B018
    registry = Registry(state_dir / "state.json")
    keys = [camera_key(i, seed) for i in range(cameras)]
    uids = [derive_camera_uid(k) for k in keys]
    for i, (key, uid) in enumerate(zip(keys, uids, strict=True)):
        registry.enroll(uid, key.public_key(), officer_id=officers[i], by="cli")

    mem_registry = _MemoryRegistry({uid: officers[i] for i, uid in enumerate(uids)})
    book = Compliance(state_dir, ComplianceSettings(dock_id=dock_id),
                      store=cast(FootageStore, _RecentManifests()),
                      registry=cast(Registry, mem_registry), clock=clock)
    records, audit, real_state = book.records, book.audit, book.state
    real_records_journal, real_audit_journal = records.journal, audit.journal
    rec_batch, audit_batch = _DayBatch(records.journal), _DayBatch(audit.journal)
    records.journal = cast(Journal, rec_batch)
    audit.journal = cast(Journal, audit_batch)
    mem_state = _MemoryState()
    book.state = cast(ComplianceState, mem_state)

    for i, uid in enumerate(uids):
        audit.append("enroll", "cli:installer", camera_uid=uid.hex(), officer_id=officers[i])
    cams = [_Camera(i, uid, f"slot-{i + 1:02d}") for i, uid in enumerate(uids)]
    sim = _Sim(book, clock, cams, officers, per_day, seed, dock_id)
    day = start
    n_days = 0
    total_days = max(1, (end - start + DAY_MS - 1) // DAY_MS)
    while day < end:
        sim.run_day(day, end)
        rec_batch.flush()
        audit_batch.flush()
        day += DAY_MS
        n_days += 1
        if progress is not None and n_days % 100 == 0:
            progress(f"history: {n_days}/{total_days} days, {rec_batch.written} records, "
                     f"{time.perf_counter() - t_start:.0f} s")
    rec_batch.flush()  # an empty history still has the enrolments in its audit log
    audit_batch.flush()
    # The daemon's compliance loop has long queued every record for …/ledger (loop.py).
    mem_state.set_meta(LEDGER_QUEUED, real_records_journal.last_seq)

    records.journal, audit.journal = real_records_journal, real_audit_journal
    for uid in uids:
        registry.set_officer(uid, mem_registry.officers[uid])
    mem_state.save(real_state)
    book.state = real_state
    book.close()
    registry.close()
    rb, rs = journal_bytes(state_dir / "journal" / "records")
    ab, as_ = journal_bytes(state_dir / "journal" / "audit")
    info = HistoryInfo(state_dir=str(state_dir), start_ms=start, end_ms=end,
                       cameras=[u.hex() for u in uids], officers=officers, per_day=per_day,
                       seed=seed, dock_id=dock_id, unit=unit,
                       seconds=round(time.perf_counter() - t_start, 1),
                       recordings=sim.recordings, records=rec_batch.written,
                       audit_entries=audit_batch.written, records_bytes=rb,
                       records_segments=rs, audit_bytes=ab, audit_segments=as_,
                       counts=dict(sorted(rec_batch.counts.items())),
                       audit_counts=dict(sorted(audit_batch.counts.items())))
    (state_dir / MARKER).write_text(json.dumps(info.to_json(), indent=1) + "\n")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("state_dir", type=Path)
    p.add_argument("--years", type=float, default=10.0)
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--per-day", type=int, default=40, help="recordings per camera and day")
    p.add_argument("--end", type=date.fromisoformat, default=None,
                   help="YYYY-MM-DD (UTC): the history ends at that midnight (default: now)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    end_ms = (int(datetime(args.end.year, args.end.month, args.end.day, tzinfo=UTC).timestamp()
                  * 1000) if args.end is not None else None)

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    info = generate_history(args.state_dir, years=args.years, cameras=args.cameras,
                            per_day=args.per_day, end_ms=end_ms, seed=args.seed, progress=say)
    mb = 1_000_000
    print(f"generated {info.records} compliance records ({info.recordings} recordings) and "
          f"{info.audit_entries} audit entries in {info.seconds:.1f} s")
    print(f"journal/records: {info.records_bytes / mb:.1f} MB in {info.records_segments} "
          f"segments; journal/audit: {info.audit_bytes / mb:.2f} MB in {info.audit_segments} "
          "segments")
    print("record types: " + ", ".join(f"{k}={v}" for k, v in info.counts.items()))
    print("audit actions: " + ", ".join(f"{k}={v}" for k, v in info.audit_counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
