"""agent.readiness: each Art. 7 reason, their combinations and their fixed order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import load_config
from agent.readiness import (
    Readiness,
    ReadinessInput,
    ReadinessThresholds,
    Reason,
    assess,
    required_storage_bytes,
)

T = ReadinessThresholds()  # 90 %, 8 h, 1000 ms
BITRATE = 8_000_000  # 1 MB/s → 8 h = 28.8 GB
EIGHT_HOURS = 8 * 3600 * BITRATE // 8

GOOD = ReadinessInput(
    battery_pct=100, storage_free_bytes=64 * 10**9, bitrate_bps=BITRATE, self_test_ok=True,
    fault_codes=(), clock_residual_ms=3, clock_set=True, pending_recordings=0,
)


def with_(**changes: object) -> ReadinessInput:
    return dataclasses.replace(GOOD, **changes)  # type: ignore[arg-type]


def test_all_good_is_ready() -> None:
    assert assess(GOOD, T) == Readiness(ready=True, reasons=())


def test_reason_codes_and_order_are_fixed() -> None:
    assert [r.value for r in Reason] == [
        "clock_unsynced", "battery_low", "storage_low", "self_test_failed", "footage_pending"]


@pytest.mark.parametrize(("changes", "reason"), [
    ({"clock_residual_ms": None}, Reason.CLOCK_UNSYNCED),
    ({"clock_residual_ms": 1001}, Reason.CLOCK_UNSYNCED),
    ({"clock_residual_ms": -1001}, Reason.CLOCK_UNSYNCED),
    ({"clock_set": False}, Reason.CLOCK_UNSYNCED),
    ({"battery_pct": 89}, Reason.BATTERY_LOW),
    ({"battery_pct": 0}, Reason.BATTERY_LOW),
    ({"storage_free_bytes": EIGHT_HOURS - 1}, Reason.STORAGE_LOW),
    ({"storage_free_bytes": 0}, Reason.STORAGE_LOW),
    ({"self_test_ok": False}, Reason.SELF_TEST_FAILED),
    ({"fault_codes": (7,)}, Reason.SELF_TEST_FAILED),
    ({"pending_recordings": 1}, Reason.FOOTAGE_PENDING),
])
def test_each_reason(changes: dict[str, object], reason: Reason) -> None:
    result = assess(with_(**changes), T)
    assert result == Readiness(ready=False, reasons=(reason,))
    assert result.reasons == (reason.value,)  # StrEnum: publishes as the plain code


@pytest.mark.parametrize("changes", [
    {"clock_residual_ms": 1000},
    {"clock_residual_ms": -1000},
    {"clock_residual_ms": 0},
    {"battery_pct": 90},
    {"storage_free_bytes": EIGHT_HOURS},
    {"bitrate_bps": 0, "storage_free_bytes": 0},
])
def test_boundaries_are_ready(changes: dict[str, object]) -> None:
    assert assess(with_(**changes), T).ready


def test_all_reasons_in_order() -> None:
    worst = with_(clock_residual_ms=None, battery_pct=5, storage_free_bytes=1,
                  self_test_ok=False, fault_codes=(1, 2), pending_recordings=3)
    assert assess(worst, T).reasons == tuple(Reason)


def test_thresholds_change_the_verdict() -> None:
    status = with_(battery_pct=50, clock_residual_ms=1500, storage_free_bytes=EIGHT_HOURS // 8)
    assert assess(status, T).reasons == (
        Reason.CLOCK_UNSYNCED, Reason.BATTERY_LOW, Reason.STORAGE_LOW)
    lax = ReadinessThresholds(battery_min_pct=50, storage_min_hours=1, clock_tolerance_ms=2000)
    assert assess(status, lax).ready


def test_required_storage_bytes() -> None:
    assert required_storage_bytes(T, BITRATE) == EIGHT_HOURS == 28_800_000_000
    assert required_storage_bytes(ReadinessThresholds(storage_min_hours=1), 1) == 450


def test_thresholds_from_config(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('dock_id = "d"\nunit = "u"\n[readiness]\nbattery_min_pct = 70\n'
                    "storage_min_hours = 2\nclock_tolerance_ms = 250\n")
    thresholds = ReadinessThresholds.from_config(load_config(path).readiness)
    assert thresholds == ReadinessThresholds(70, 2, 250)


@pytest.mark.parametrize("changes", [
    {"battery_pct": 101}, {"battery_pct": -1}, {"battery_pct": True},
    {"storage_free_bytes": -1}, {"bitrate_bps": 1.5}, {"pending_recordings": -2},
    {"clock_residual_ms": 1.0}, {"fault_codes": [1]}, {"self_test_ok": 1},
])
def test_invalid_input_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        with_(**changes)


def test_invalid_thresholds_refused() -> None:
    with pytest.raises(ValueError, match="battery_min_pct"):
        ReadinessThresholds(battery_min_pct=101)
    with pytest.raises(ValueError, match="storage_min_hours"):
        ReadinessThresholds(storage_min_hours=-1)


inputs = st.builds(
    ReadinessInput,
    battery_pct=st.integers(0, 100),
    storage_free_bytes=st.integers(0, 2**64),
    bitrate_bps=st.integers(0, 2**32 - 1),
    self_test_ok=st.booleans(),
    fault_codes=st.lists(st.integers(0, 0xFFFF), max_size=3).map(tuple),
    clock_residual_ms=st.none() | st.integers(-10**7, 10**7),
    clock_set=st.booleans(),
    pending_recordings=st.integers(0, 1000),
)
thresholds = st.builds(
    ReadinessThresholds,
    battery_min_pct=st.integers(0, 100),
    storage_min_hours=st.integers(0, 1000),
    clock_tolerance_ms=st.integers(1, 3_600_000),
)


@given(inputs, thresholds)
@settings(deadline=None)  # a busy CI core is not a property failure
def test_property_each_reason_iff_its_rule(status: ReadinessInput, t: ReadinessThresholds) -> None:
    result = assess(status, t)
    expected = {
        Reason.CLOCK_UNSYNCED: not status.clock_set or status.clock_residual_ms is None
        or abs(status.clock_residual_ms) > t.clock_tolerance_ms,
        Reason.BATTERY_LOW: status.battery_pct < t.battery_min_pct,
        Reason.STORAGE_LOW: status.storage_free_bytes < required_storage_bytes(
            t, status.bitrate_bps),
        Reason.SELF_TEST_FAILED: not status.self_test_ok or len(status.fault_codes) > 0,
        Reason.FOOTAGE_PENDING: status.pending_recordings > 0,
    }
    assert set(result.reasons) == {r for r, failing in expected.items() if failing}
    assert list(result.reasons) == sorted(result.reasons, key=list(Reason).index)
    assert len(set(result.reasons)) == len(result.reasons)
    assert result.ready == (result.reasons == ())
