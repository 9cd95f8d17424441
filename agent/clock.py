"""The dock's own clock and NTP-style offset measurement against a camera.

Art. 7 requires the camera clock to be set to the current time; the dock only sets it from a
clock it can vouch for. "Synchronised" is the kernel's view (``adjtimex``): an NTP daemon
(chrony, systemd-timesyncd, ntpd) clears ``STA_UNSYNC`` while it disciplines the clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import subprocess
import time
from dataclasses import dataclass
from errno import EPERM
from pathlib import Path

from firmware_protocol import messages as m

from .channel import Channel

__all__ = ["ClockSample", "dock_clock_synchronised", "measure_offset", "now_us"]

log = logging.getLogger(__name__)

_TIME_ERROR = 5  # adjtimex return value: clock not synchronised


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: modes, then longs; padding at the end is generous.
    _fields_ = [("modes", ctypes.c_uint)] + [(f"f{i}", ctypes.c_long) for i in range(40)]


_TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


def dock_clock_synchronised() -> bool:
    """True when the kernel reports the system clock as NTP-synchronised.

    A hardened unit (``ProtectClock=``) may refuse even the read-only ``adjtimex`` call; then
    timedated (asked over D-Bus by ``timedatectl``, which reads the same kernel flag for any NTP
    daemon: chrony, ntpd, timesyncd) is the evidence, then systemd-timesyncd's flag file, and
    without any of them the answer is "no".
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    tx = _Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    if state >= 0:
        return int(state) != _TIME_ERROR
    errno = ctypes.get_errno()
    if errno != EPERM:
        raise OSError(errno, "adjtimex failed")
    try:
        out = subprocess.run(["timedatectl", "show", "--property=NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=3, check=True)
        return out.stdout.strip() == "yes"
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("adjtimex not permitted and timedatectl unusable (%s)", exc)
    synced = _TIMESYNCD_FLAG.exists()
    log.debug("timesyncd flag present=%s", synced)
    return synced


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class ClockSample:
    offset_us: int  # camera minus dock
    rtt_us: int

    @property
    def offset_ms(self) -> int:
        return round(self.offset_us / 1000)


def measure_offset(channel: Channel, probes: int = 4) -> ClockSample:
    """The probe with the shortest round trip: its offset estimate has the smallest error."""
    best: ClockSample | None = None
    for _ in range(probes):
        t0 = now_us()
        reply = channel.request(m.TimeProbe(t0), m.TimeReply)
        t3 = now_us()
        sample = ClockSample(
            offset_us=((reply.t1_us - t0) + (reply.t2_us - t3)) // 2,
            rtt_us=max(0, (t3 - t0) - (reply.t2_us - reply.t1_us)),
        )
        if best is None or sample.rtt_us < best.rtt_us:
            best = sample
    assert best is not None
    return best
