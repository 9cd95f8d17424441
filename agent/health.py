"""The periodic ``…/health`` payload (psutil): disk, temperature, load, uptime, outbox."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psutil

from .publish.topics import SCHEMA, iso_now

__all__ = ["health_payload"]

_BOOT = psutil.boot_time()


def _cpu_temp_mc() -> int | None:
    """Highest CPU temperature in milli-°C, or None where the board has no sensor."""
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return None
    try:
        sensors = reader()
    except OSError:
        return None
    temps = [t.current for entries in sensors.values() for t in entries if t.current]
    return int(max(temps) * 1000) if temps else None


def health_payload(*, dock_id: str, store_dir: Path, outbox_depth: int,
                   oldest_unacked: float | None, docked: int, offloading: int,
                   started: float, publishes_refused: int = 0) -> dict[str, Any]:
    disk = psutil.disk_usage(str(store_dir))
    load1, load5, load15 = os.getloadavg()
    now = time.time()
    return {
        "type": "health", "schema": SCHEMA, "dock_id": dock_id, "at": iso_now(),
        "store_free_bytes": int(disk.free), "store_total_bytes": int(disk.total),
        "cpu_temp_millicelsius": _cpu_temp_mc(),
        "load_milli": [int(load1 * 1000), int(load5 * 1000), int(load15 * 1000)],
        "uptime_s": int(now - _BOOT), "agent_uptime_s": int(now - started),
        "outbox_depth": outbox_depth,
        "oldest_unacked_age_s": int(now - oldest_unacked) if oldest_unacked else None,
        "publishes_refused": publishes_refused,
        "cameras_docked": docked, "cameras_offloading": offloading,
    }
