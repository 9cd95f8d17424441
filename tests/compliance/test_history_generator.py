"""benchmarks/_history.py: the synthetic compliance history the scale benchmark runs against.

A tiny history (2 cameras, 3 recordings a camera and day, 40 days over a month boundary) must
be what the real `Compliance` writes: a chain that verifies, one partition per calendar month,
records shaped as docs/compliance.md says, and a ledger that answers from it. No timing here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agent.compliance.audit import AuditLog
from agent.compliance.records import ComplianceRecords
from agent.compliance.service import Compliance, ComplianceSettings
from agent.compliance.state import RECENT_HANDOUTS
from agent.registry import Registry
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore

ROOT = Path(__file__).resolve().parents[2]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_history",
                                                  ROOT / "benchmarks" / "_history.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_history", module)
    spec.loader.exec_module(module)
    return module


history = _load_generator()


def _ms(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp() * 1000)


START, END = _ms(2026, 1, 10), _ms(2026, 2, 19)  # 40 days, January and February
FEB, MARCH = _ms(2026, 2, 1), _ms(2026, 3, 1)
RECORDING_FIELDS = {"type", "at", "seq", "prev", "recording_id", "manifest_id", "camera_uid",
                    "officer_id", "handout_id", "media", "started_at", "ended_at", "duration_s",
                    "size", "sha256", "stored_at", "offload_delay_s", "expires_at"}
HAND_OUT_FIELDS = {"type", "at", "seq", "prev", "handout_id", "camera_uid", "officer_id", "slot",
                   "battery_pct", "storage_free_bytes", "ready", "reasons"}
HAND_IN_FIELDS = {"type", "at", "seq", "prev", "handout_id", "camera_uid", "officer_id", "slot",
                  "battery_pct", "storage_free_bytes", "clock_offset_ms"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    state = tmp_path_factory.mktemp("history") / "state"
    info = history.generate_history(state, cameras=2, per_day=3, start_ms=START, end_ms=END)
    return state, info


def _records(state: Path) -> list[dict[str, Any]]:
    records = ComplianceRecords(state)
    try:
        return list(records.read_all())
    finally:
        records.close()


@pytest.fixture
def book(generated: tuple[Path, Any]) -> Iterator[Compliance]:
    state, info = generated
    keys = KeyStore(state, create=False)
    registry = Registry(state / "state.json")
    c = Compliance(state, ComplianceSettings(dock_id=info.dock_id),
                   store=FootageStore(state / "footage", keys), registry=registry)
    yield c
    c.close()
    registry.close()


def test_the_chains_verify_and_match_what_it_reports(generated: tuple[Path, Any]) -> None:
    state, info = generated
    records, audit = ComplianceRecords(state), AuditLog(state)
    try:
        assert records.verify() == info.records
        assert audit.verify() == info.audit_entries
    finally:
        records.close()
        audit.close()
    recs = _records(state)
    assert sum(1 for r in recs if r["type"] == "recording") == info.recordings
    assert {r["type"] for r in recs} >= {"hand_out", "hand_in", "recording"}
    assert json.loads((state / history.MARKER).read_text())["records"] == info.records


def test_partitions_are_calendar_months_of_each_records_at(generated: tuple[Path, Any]) -> None:
    state, _info = generated
    for kind in ("records", "audit"):
        segments = sorted((state / "journal" / kind).glob("*.jsonl"))
        labels = [p.name.split(".")[1] for p in segments]
        assert sorted(set(labels)) == ["2026-01", "2026-02"], kind
        for path, label in zip(segments, labels, strict=True):
            for line in path.read_bytes().splitlines():
                assert json.loads(line)["at"][:7] == label, (path.name, line[:80])


def test_records_look_like_what_compliance_writes(generated: tuple[Path, Any]) -> None:
    state, info = generated
    recs = _records(state)
    hand_outs = {r["handout_id"]: r for r in recs if r["type"] == "hand_out"}
    assert len(hand_outs) >= 2 * 38  # one per camera and day, bar nights out
    for r in recs:
        assert START <= history_ms(r["at"]) < END
        if r["type"] == "recording":
            assert set(r) == RECORDING_FIELDS
            assert r["camera_uid"] in info.cameras
            out = hand_outs[r["handout_id"]]  # linked to the hand-out it was made during
            assert out["camera_uid"] == r["camera_uid"]
            assert r["stored_at"] == r["at"] and r["offload_delay_s"] >= 0
            assert r["expires_at"][:4] == str(int(r["started_at"][:4]) + 10)
        elif r["type"] == "hand_out":
            assert set(r) == HAND_OUT_FIELDS
        elif r["type"] == "hand_in":
            assert set(r) == HAND_IN_FIELDS
    # Only the bookkeeping: no footage was written.
    assert [p for p in (state / "footage").rglob("*") if p.is_file()] == []
    registry = Registry(state / "state.json")
    try:
        assert sorted(c.camera_uid.hex() for c in registry.cameras()) == sorted(info.cameras)
    finally:
        registry.close()
    assert (state / "dock_key.pem").exists()


def test_the_current_state_stays_small(generated: tuple[Path, Any]) -> None:
    """Per-camera state holds recent hand-outs and unconsumed log entries, not the history."""
    state, info = generated
    doc = json.loads((state / "compliance.json").read_text())
    cameras = [json.loads(p.read_text())
               for p in (state / "compliance" / "cameras").glob("*.json")]
    assert len(cameras) == len(info.cameras)
    queued = {d["name"]: d["value"] for d in doc["meta"].values()}["ledger_queued_seq"]
    assert queued == info.records  # the daemon's loop has nothing left to publish
    for cam in cameras:
        assert len(cam["handouts"]) <= RECENT_HANDOUTS
        checked = [h["in_ms"] + h["in_offset_ms"] for h in cam["handouts"] if h["gaps_checked"]]
        assert all(e["at_ms"] > max(checked) for e in cam["log_entries"])


def history_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_ledger_returns_the_months_rows_for_the_camera(generated: tuple[Path, Any],
                                                      book: Compliance) -> None:
    _state, info = generated
    cam = info.cameras[0]
    rows = list(book.ledger(camera_uid=cam, from_ms=FEB, to_ms=MARCH - 1))
    expected = [r for r in _records(_state)
                if r["type"] in ("assignment", "hand_out", "hand_in", "recording")
                and r.get("camera_uid") == cam and FEB <= history_ms(r["at"]) < MARCH]
    assert rows == expected
    recordings = [r for r in rows if r["type"] == "recording"]
    days = (END - FEB) // 86_400_000
    assert days * 3 - 6 <= len(recordings) <= days * 3 + 6  # per_day, give or take a night out
    assert sum(1 for r in rows if r["type"] == "hand_out") >= days - 2


def test_a_shorter_history_holds_the_same_recordings_for_its_dates(
        generated: tuple[Path, Any], tmp_path: Path) -> None:
    """The benchmark's one-month baseline relies on this: same seed, same days, same records."""
    state, _info = generated
    short = history.generate_history(tmp_path / "state", cameras=2, per_day=3, start_ms=FEB,
                                     end_ms=END)

    def started_in_feb(s: Path) -> set[str]:
        return {r["recording_id"] for r in _records(s)
                if r["type"] == "recording" and history_ms(r["started_at"]) >= FEB + 60_000}

    ids = started_in_feb(state)
    assert len(ids) > 2 * 3 * 15
    assert ids == started_in_feb(Path(short.state_dir))
