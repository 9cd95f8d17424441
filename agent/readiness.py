"""Art. 7 readiness: is a docked camera fit to be handed out for duty, and if not, why not.

Pure functions from what the session measured to a verdict; no I/O, no clocks. The session does
the measuring (clock sync, status, pending recordings) and publishes the verdict.

Reason codes, always in this order (the order of :class:`Reason`):

1. ``clock_unsynced``   the residual offset after sync is unknown or above tolerance, or the camera
                        clock could not be set (e.g. the dock's own clock is not synchronised).
2. ``battery_low``      battery below ``battery_min_pct``.
3. ``storage_low``      free storage cannot hold ``storage_min_hours`` at the camera's bitrate.
4. ``self_test_failed`` the camera's self-test failed or it reports fault codes.
5. ``footage_pending``  recordings remain on the camera that the dock has not stored yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = [
    "Readiness",
    "ReadinessInput",
    "ReadinessThresholds",
    "Reason",
    "assess",
    "required_storage_bytes",
]


class Reason(StrEnum):
    """Why a camera is not ready; the declaration order is the order reasons are reported in."""

    CLOCK_UNSYNCED = "clock_unsynced"
    BATTERY_LOW = "battery_low"
    STORAGE_LOW = "storage_low"
    SELF_TEST_FAILED = "self_test_failed"
    FOOTAGE_PENDING = "footage_pending"


def _nonneg_int(name: str, value: object) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class ReadinessInput:
    """What the session measured on docking."""

    battery_pct: int
    storage_free_bytes: int
    bitrate_bps: int
    self_test_ok: bool
    fault_codes: tuple[int, ...]
    clock_residual_ms: int | None  # camera minus dock after the sync; None = not measured
    clock_set: bool  # False when the camera clock could not (or must not) be set
    pending_recordings: int  # recordings on the camera not yet durably stored by the dock

    def __post_init__(self) -> None:
        if type(self.battery_pct) is not int or not 0 <= self.battery_pct <= 100:
            raise ValueError(f"battery_pct must be an integer 0..100, got {self.battery_pct!r}")
        _nonneg_int("storage_free_bytes", self.storage_free_bytes)
        _nonneg_int("bitrate_bps", self.bitrate_bps)
        _nonneg_int("pending_recordings", self.pending_recordings)
        if self.clock_residual_ms is not None and type(self.clock_residual_ms) is not int:
            raise ValueError(f"clock_residual_ms must be an integer or None, "
                             f"got {self.clock_residual_ms!r}")
        if not isinstance(self.self_test_ok, bool) or not isinstance(self.clock_set, bool):
            raise ValueError("self_test_ok and clock_set must be booleans")
        if not isinstance(self.fault_codes, tuple):
            raise ValueError("fault_codes must be a tuple")


class _ReadinessSettings(Protocol):
    """Anything carrying the three thresholds, e.g. ``agent.config.ReadinessConfig``."""

    @property
    def battery_min_pct(self) -> int: ...
    @property
    def storage_min_hours(self) -> int: ...
    @property
    def clock_tolerance_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ReadinessThresholds:
    battery_min_pct: int = 90
    storage_min_hours: int = 8
    clock_tolerance_ms: int = 1000

    def __post_init__(self) -> None:
        if type(self.battery_min_pct) is not int or not 0 <= self.battery_min_pct <= 100:
            raise ValueError(f"battery_min_pct must be 0..100, got {self.battery_min_pct!r}")
        _nonneg_int("storage_min_hours", self.storage_min_hours)
        _nonneg_int("clock_tolerance_ms", self.clock_tolerance_ms)

    @classmethod
    def from_config(cls, settings: _ReadinessSettings) -> ReadinessThresholds:
        # Typed structurally so this module does not import the config layer.
        return cls(settings.battery_min_pct, settings.storage_min_hours,
                   settings.clock_tolerance_ms)


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[Reason, ...]  # empty exactly when ready; ordered as Reason is declared


def required_storage_bytes(thresholds: ReadinessThresholds, bitrate_bps: int) -> int:
    """Bytes needed for ``storage_min_hours`` of recording at ``bitrate_bps`` (rounded up)."""
    bits = thresholds.storage_min_hours * 3600 * bitrate_bps
    return -(-bits // 8)


def assess(status: ReadinessInput, thresholds: ReadinessThresholds) -> Readiness:
    """Apply the Art. 7 checks; every failing check contributes its reason."""
    failing = {
        Reason.CLOCK_UNSYNCED: (
            not status.clock_set
            or status.clock_residual_ms is None
            or abs(status.clock_residual_ms) > thresholds.clock_tolerance_ms
        ),
        Reason.BATTERY_LOW: status.battery_pct < thresholds.battery_min_pct,
        # Integer arithmetic: free*8 < hours*3600*bitrate, no rounding at the boundary.
        Reason.STORAGE_LOW: (
            status.storage_free_bytes * 8
            < thresholds.storage_min_hours * 3600 * status.bitrate_bps
        ),
        Reason.SELF_TEST_FAILED: not status.self_test_ok or bool(status.fault_codes),
        Reason.FOOTAGE_PENDING: status.pending_recordings > 0,
    }
    reasons = tuple(reason for reason in Reason if failing[reason])
    return Readiness(ready=not reasons, reasons=reasons)
