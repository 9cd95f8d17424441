"""The camera's real-time clock: skewed from the host at start, drifting at a fixed rate.

The clock is a line through one anchor point: at host time ``base_host_us`` the camera read
``base_camera_us``, and since then it has advanced ``1 + drift_ppm / 1e6`` camera microseconds per
host microsecond. ``SetTime`` moves the anchor to (now, the time the dock sent), which is how a real
RTC behaves: setting it removes the offset but not the crystal's rate error, so drift starts over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CameraClock", "ClockAnchor", "HostClock", "host_now_us"]

_U64_MAX = (1 << 64) - 1  # the wire's time fields are u64

HostClock = Callable[[], int]
"""Returns the host's unix time in microseconds."""


def host_now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class ClockAnchor:
    """At host time ``host_us`` the camera clock read ``camera_us`` (both unix µs)."""

    host_us: int
    camera_us: int


class CameraClock:
    def __init__(
        self,
        *,
        drift_ppm: float = 0.0,
        skew_s: float = 0.0,
        anchor: ClockAnchor | None = None,
        host_clock: HostClock = host_now_us,
    ) -> None:
        """A clock anchored at ``anchor`` (restored state) or at host now + ``skew_s``."""
        self._host_clock = host_clock
        self._rate = 1.0 + drift_ppm / 1e6
        if anchor is None:
            now = host_clock()
            anchor = ClockAnchor(now, now + round(skew_s * 1e6))
        self._anchor = anchor

    @property
    def anchor(self) -> ClockAnchor:
        return self._anchor

    def at_host_us(self, host_us: int) -> int:
        """What the camera clock reads (read) at host instant ``host_us``, within u64."""
        elapsed = host_us - self._anchor.host_us
        return min(_U64_MAX, max(0, self._anchor.camera_us + round(elapsed * self._rate)))

    def now_us(self) -> int:
        return self.at_host_us(self._host_clock())

    def now_ms(self) -> int:
        return self.now_us() // 1000

    def set(self, unix_us: int) -> tuple[int, int]:
        """Set the clock; returns its reading just before and just after."""
        host = self._host_clock()
        previous = self.at_host_us(host)
        self._anchor = ClockAnchor(host, unix_us)
        return previous, self.at_host_us(self._host_clock())
