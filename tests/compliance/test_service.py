"""agent.compliance.service: ledger, gaps, 24 h rule, retention and purge, holds (Art. 4-16)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.service import (
    Compliance,
    ComplianceError,
    ComplianceSettings,
    add_months,
)
from agent.publish.topics import iso_ms
from agent.registry import Registry
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore
from tests.helpers.recordings import store_recording

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
CAM_KEY = Ed25519PrivateKey.generate()
DOCK_KEY = Ed25519PrivateKey.generate()
UID = bytes(range(16))


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def book(tmp_path: Path, clock: Clock) -> Iterator[Compliance]:
    keys = KeyStore(tmp_path)
    registry = Registry(tmp_path / "state.json")
    registry.enroll(UID, CAM_KEY.public_key(), officer_id="PD-0042", by="cli")
    c = Compliance(tmp_path, ComplianceSettings(dock_id="dock-01", gap_threshold_s=600),
                   store=FootageStore(tmp_path / "footage", keys), registry=registry,
                   clock=clock)
    yield c
    c.close()
    registry.close()


def _store(book: Compliance, start: int, end: int, **kw: Any) -> dict[str, Any]:
    fx = store_recording(book.store, camera_key=CAM_KEY, dock_key=DOCK_KEY, camera_uid=UID,
                         started_ms=start, ended_ms=end, **kw)
    return book.recording_stored(fx.manifest) | {"manifest": fx.manifest}


def _shift(book: Compliance, clock: Clock, *, recordings: list[tuple[int, int]],
           log: Sequence[dict[str, Any]] = (), back_at: int) -> list[dict[str, Any]]:
    """One hand-out: undock at T0, record, dock at `back_at`, offload, pull the log."""
    book.hand_out(UID, slot="s1", status={"battery_pct": 100, "storage_free_bytes": 9},
                  ready=True, reasons=[])
    clock.ms = back_at
    book.hand_in(UID, slot="s2", status={"battery_pct": 20, "storage_free_bytes": 5},
                 clock_offset_ms=0)
    for start, end in recordings:
        _store(book, start, end)
    book.camera_log(UID, list(log))
    return book.check_gaps(UID)


def test_hand_out_and_in_are_in_the_ledger_with_their_recordings(book: Compliance,
                                                                 clock: Clock) -> None:
    handout = book.hand_out(UID, slot="slot-3", status={"battery_pct": 98,
                            "storage_free_bytes": 10**9}, ready=True, reasons=[])
    clock.ms = T0 + 9 * HOUR
    assert book.hand_in(UID, slot="slot-5", status={"battery_pct": 31,
                        "storage_free_bytes": 10**8}, clock_offset_ms=40) == handout
    rec = _store(book, T0 + HOUR, T0 + 2 * HOUR, clock_offset_ms=40)
    assert rec["handout_id"] == handout
    before = _store(book, T0 - HOUR, T0 - HOUR // 2)  # made before the hand-out
    assert before["handout_id"] is None
    rows = list(book.ledger(camera_uid=UID.hex(), from_ms=T0 - HOUR, to_ms=T0 + 10 * HOUR))
    assert [r["type"] for r in rows] == ["hand_out", "hand_in", "recording", "recording"]
    out, back = rows[0], rows[1]
    assert (out["slot"], out["officer_id"], out["battery_pct"]) == ("slot-3", "PD-0042", 98)
    assert (back["handout_id"], back["battery_pct"], back["storage_free_bytes"]) == (
        handout, 31, 10**8)
    assert list(book.ledger(officer_id="nobody", from_ms=T0, to_ms=T0 + 10 * HOUR)) == []
    assert list(book.ledger(from_ms=T0 + 20 * HOUR, to_ms=T0 + 30 * HOUR)) == []


def test_first_docking_has_no_hand_out_to_close(book: Compliance) -> None:
    assert book.hand_in(UID, slot="s", status={}, clock_offset_ms=0) is None


def test_assignment_changes_the_officer_of_later_records(book: Compliance) -> None:
    book.assign(UID, "PD-0077", actor="console")
    book.hand_out(UID, slot="s", status={}, ready=True, reasons=[])
    rows = list(book.ledger(officer_id="PD-0077", from_ms=T0, to_ms=T0 + 1))
    assert [r["type"] for r in rows] == ["assignment", "hand_out"]
    with pytest.raises(ComplianceError) as err:
        book.assign(b"\x01" * 16, "PD-1", actor="console")
    assert err.value.code == "not_found"
    assert [e["action"] for e in book.audit.journal.read()] == ["assign"]


def test_unexplained_interruption_stays_open_until_a_work_record(book: Compliance,
                                                                 clock: Clock) -> None:
    gaps = _shift(book, clock, recordings=[(T0 + HOUR, T0 + 2 * HOUR),
                                           (T0 + 3 * HOUR, T0 + 4 * HOUR)], back_at=T0 + 9 * HOUR)
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap["kind"], gap["status"], gap["reason"], gap["duration_s"]) == (
        "interruption", "open", None, 3600)
    assert [g["gap_id"] for g in book.state.open_gaps()] == [gap["gap_id"]]
    assert book.check_gaps(UID) == []  # checked once per hand-out
    with pytest.raises(ComplianceError):
        book.work_record(gap["gap_id"], reason=5, text="x", approver="chief", actor="console")
    book.work_record(gap["gap_id"], reason=2, text="heavy rain", approver="chief",
                     actor="console")
    assert book.state.open_gaps() == []
    with pytest.raises(ComplianceError) as err:
        book.work_record(gap["gap_id"], reason=2, text="again", approver="c", actor="console")
    assert err.value.code == "not_found"


def test_battery_empty_in_the_camera_log_explains_the_gap(book: Compliance,
                                                          clock: Clock) -> None:
    entry = {"seq": 7, "at_ms": T0 + 2 * HOUR + 1000, "kind": "battery_empty",
             "recording_id": None, "detail": ""}
    gaps = _shift(book, clock, recordings=[(T0 + HOUR, T0 + 2 * HOUR),
                                           (T0 + 3 * HOUR, T0 + 4 * HOUR)],
                  log=[entry], back_at=T0 + 9 * HOUR)
    assert [(g["kind"], g["status"], g["reason"]) for g in gaps] == [
        ("device_stop", "explained", 1)]
    assert gaps[0]["evidence"] == [entry]
    assert book.state.open_gaps() == []


def test_a_last_recording_ended_by_full_storage_is_a_gap_until_hand_in(
        book: Compliance, clock: Clock) -> None:
    entry = {"seq": 3, "at_ms": T0 + 2 * HOUR, "kind": "storage_full",
             "recording_id": None, "detail": ""}
    gaps = _shift(book, clock, recordings=[(T0 + HOUR, T0 + 2 * HOUR)], log=[entry],
                  back_at=T0 + 9 * HOUR)
    assert [(g["kind"], g["to"], g["after_recording"]) for g in gaps] == [
        ("device_stop", iso_ms(T0 + 9 * HOUR), None)]


def test_short_pauses_are_not_gaps(book: Compliance, clock: Clock) -> None:
    assert _shift(book, clock, recordings=[(T0 + HOUR, T0 + 2 * HOUR),
                                           (T0 + 2 * HOUR + 60_000, T0 + 3 * HOUR)],
                  back_at=T0 + 9 * HOUR) == []


def test_late_offload_is_recorded(book: Compliance) -> None:
    rec = _store(book, T0 - 50 * HOUR, T0 - 48 * HOUR, stored_at_ms=T0)
    late = list(book.records.read_all(types=("late_offload",)))
    assert [(r["recording_id"], r["offload_delay_s"]) for r in late] == [
        (rec["recording_id"], 48 * 3600)]


def test_overdue_camera_is_reported_once(book: Compliance, clock: Clock) -> None:
    book.hand_out(UID, slot="s", status={}, ready=True, reasons=[])
    clock.ms = T0 + 23 * HOUR
    assert book.overdue() == []
    clock.ms = T0 + 25 * HOUR
    found = book.overdue()
    assert [(r["camera_uid"], r["out_since"]) for r in found] == [(UID.hex(), iso_ms(T0))]
    assert book.overdue() == []


def test_expiry_is_120_calendar_months_and_only_upward(tmp_path: Path,
                                                        book: Compliance) -> None:
    assert iso_ms(add_months(T0, 120)) == "2036-01-01T00:00:00.000Z"
    leap = 1_709_164_800_000  # 2024-02-29
    assert iso_ms(add_months(leap, 12)) == "2025-02-28T00:00:00.000Z"
    with pytest.raises(ValueError, match="at least 120"):
        Compliance(tmp_path / "other", ComplianceSettings(dock_id="d", retention_months=119),
                   store=book.store, registry=book.registry)


def test_purge_needs_expiry_no_hold_and_leaves_a_tombstone(book: Compliance,
                                                          clock: Clock) -> None:
    rec = _store(book, T0, T0 + HOUR)
    rid = str(rec["recording_id"])
    with pytest.raises(ComplianceError) as err:
        book.purge([rid], admin_id="adm-1", reason="no value", actor="console")
    assert err.value.code == "not_expired"
    clock.ms = add_months(T0, 120) + 1
    assert [r["recording_id"] for r in book.expired()] == [rid]
    book.hold([rid], reason="dispute", text="complaint 114", actor="console")
    with pytest.raises(ComplianceError) as err:
        book.purge([rid], admin_id="adm-1", reason="no value", actor="console")
    assert err.value.code == "held"
    assert book.store.is_stored(bytes.fromhex(rid))
    book.unhold([rid], text="settled", actor="console")
    (tomb,) = book.purge([rid], admin_id="adm-1", reason="no value", actor="console")
    manifest = rec["manifest"]
    assert isinstance(manifest, dict)
    assert (tomb["manifest_id"], tomb["sha256"], tomb["admin_id"], tomb["reason"]) == (
        manifest["manifest_id"], manifest["sha256"], "adm-1", "no value")
    assert not book.store.is_stored(bytes.fromhex(rid))
    assert book.store.is_purged(bytes.fromhex(rid))
    assert not any((book.store.store_dir / "purging").iterdir())
    assert list(book.expired()) == []
    assert [e["action"] for e in book.audit.journal.read()] == ["hold", "unhold", "purge"]
    with pytest.raises(ComplianceError) as err:
        book.purge([rid], admin_id="adm-1", reason="again", actor="console")
    assert err.value.code == "not_found"


def test_purge_is_all_or_nothing(book: Compliance, clock: Clock) -> None:
    old = str(_store(book, T0, T0 + HOUR)["recording_id"])
    new = str(_store(book, T0 + 24 * HOUR, T0 + 25 * HOUR)["recording_id"])
    clock.ms = add_months(T0, 120) + HOUR
    with pytest.raises(ComplianceError):
        book.purge([old, new], admin_id="a", reason="r", actor="console")
    assert book.store.is_stored(bytes.fromhex(old))


def test_interrupted_purges_are_finished_or_undone(book: Compliance, clock: Clock) -> None:
    done = str(_store(book, T0, T0 + HOUR)["recording_id"])
    undone = str(_store(book, T0, T0 + HOUR)["recording_id"])
    clock.ms = add_months(T0, 121)
    book.purge([done], admin_id="a", reason="r", actor="console")
    # A crash after the tombstone but before the deletion, and one before the tombstone:
    (book.store.store_dir / "purged" / done).unlink()
    os.makedirs(book.store.store_dir / "purging" / done)
    book.store.begin_purge(bytes.fromhex(undone))
    book.recover_purges()
    assert book.store.is_purged(bytes.fromhex(done))
    assert book.store.is_stored(bytes.fromhex(undone))
    assert book.store.purges_in_progress() == []


def test_hold_refuses_unknown_recordings_and_reasons(book: Compliance) -> None:
    with pytest.raises(ComplianceError) as err:
        book.hold(["00" * 16], reason="dispute", text="", actor="console")
    assert err.value.code == "not_found"
    rid = str(_store(book, T0, T0 + HOUR)["recording_id"])
    with pytest.raises(ComplianceError) as err:
        book.hold([rid], reason="curiosity", text="", actor="console")
    assert err.value.code == "malformed"
    with pytest.raises(ComplianceError):
        book.unhold([rid], text="", actor="console")


def test_records_chain_verifies_and_a_cli_process_shares_it(tmp_path: Path, book: Compliance,
                                                           clock: Clock) -> None:
    book.hand_out(UID, slot="s", status={}, ready=True, reasons=[])
    other = Compliance(tmp_path, book.settings, store=book.store, registry=book.registry,
                       clock=clock)
    try:
        other.assign(UID, "PD-9", actor="cli:alice")
        book.hand_in(UID, slot="s", status={}, clock_offset_ms=0)
    finally:
        other.close()
    assert book.records.verify() == 3
    assert [r["type"] for r in book.records.read_all()] == ["hand_out", "assignment", "hand_in"]
    assert book.registry.get(UID).officer_id == "PD-9"  # type: ignore[union-attr]
