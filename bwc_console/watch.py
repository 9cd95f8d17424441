"""``bwc-console watch``: the fleet table, redrawn as messages arrive; or one snapshot.

The live view clears the terminal with plain ANSI codes and redraws at most a few times a
second. ``--once`` subscribes, waits until every retained message is in (the
:meth:`~bwc_console.mqtt.Link.sync` round trip, or, if the broker does not let the console
publish its token, until ``--quiet`` seconds pass without a message; both bounded by
``--timeout``), prints the snapshot (``--json``: the :class:`~bwc_console.fleet.Fleet` snapshot)
and exits.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TextIO

from .fleet import Fleet, watch_filters
from .mqtt import Link

__all__ = ["render_table", "run_watch"]

_CLEAR = "\x1b[H\x1b[2J"
_REDRAW_S = 0.25


def _size(n: object) -> str:
    if type(n) is not int:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return "-"  # pragma: no cover


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _offload(status: dict[str, Any]) -> str:
    o = status.get("offload")
    if not isinstance(o, dict):
        return "-"
    text = f"{o.get('recordings_stored')}/{o.get('recordings_total')} rec"
    total, done = o.get("bytes_total"), o.get("bytes_stored")
    if type(total) is int and type(done) is int and total > 0:
        text += f" {done * 100 // total}%"
    return text


def _camera_row(c: dict[str, Any]) -> list[str]:
    ready = c.get("ready")
    verdict = "-" if ready is None else "ready" if ready else ",".join(c.get("reasons") or [])
    battery = "-" if c.get("battery_pct") is None else f"{c['battery_pct']}%" + (
        " chg" if c.get("charging") else "")
    storage = f"{_size(c.get('storage_free'))} / {_size(c.get('storage_total'))}" \
        if c.get("storage_total") is not None else "-"
    offset = c.get("clock_offset_before_ms")
    clock = "-" if offset is None else f"{offset} ms" + (
        "" if c.get("clock_residual_ms") is None else f" → {c['clock_residual_ms']} ms")
    docked = ("docked" if c.get("docked") else "away") + (" (stale)" if c.get("stale") else "")
    return [c["dock_id"], c["camera_uid"], _text(c.get("officer_id")), docked,
            _text(c.get("slot")), battery, storage, clock, verdict, _offload(c)]


def render_table(snapshot: dict[str, Any]) -> str:
    docks = [[d["unit"], d["dock_id"], _text(d["state"]), _text(d["health_at"]),
              f"{_size(d['store_free_bytes'])} free", _text(d["outbox_depth"]),
              "-" if d["oldest_unacked_age_s"] is None else f"{d['oldest_unacked_age_s']} s",
              _text(d["cameras_docked"]), _text(d["audit_seq"])] for d in snapshot["docks"]]
    out = [f"bwc-console watch — {snapshot['at']}", "", "DOCKS"]
    out += _table(["UNIT", "DOCK", "STATE", "LAST HEALTH", "STORE", "OUTBOX", "OLDEST UNACKED",
                   "DOCKED", "AUDIT SEQ"], docks)
    out += ["", "CAMERAS"]
    out += _table(["DOCK", "CAMERA", "OFFICER", "WHERE", "SLOT", "BATTERY", "STORAGE FREE",
                   "CLOCK OFFSET", "READY / REASONS", "OFFLOAD"],
                  [_camera_row(c) for c in snapshot["cameras"]])
    return "\n".join(out) + "\n"


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _quiet_wait(last_message: Callable[[], float], quiet: float, deadline: float) -> None:
    while time.monotonic() < deadline:
        idle = time.monotonic() - last_message()
        if idle >= quiet:
            return
        time.sleep(min(quiet - idle, deadline - time.monotonic(), 0.05) or 0.01)


def run_watch(broker: str, unit: str | None, out: TextIO, *, once: bool, as_json: bool,
              timeout: float, quiet: float, ca_file: str | None = None) -> int:
    fleet = Fleet()
    changed = threading.Event()
    last = [time.monotonic()]

    def on_message(topic: str, raw: bytes, _retain: bool) -> None:
        last[0] = time.monotonic()
        if fleet.apply(topic, raw):
            changed.set()

    link = Link(broker, watch_filters(unit), on_message, role="watch",
                ca_file=ca_file).start(timeout)
    try:
        if once:
            deadline = time.monotonic() + timeout
            if not link.sync(timeout):
                _quiet_wait(lambda: last[0], quiet, deadline)
            snap = fleet.snapshot()
            out.write(json.dumps(snap, indent=2) + "\n" if as_json else render_table(snap))
            out.flush()
            return 0
        clear = _CLEAR if out.isatty() else "\n"
        # Ctrl-C and SIGTERM end the live view cleanly even when started with SIGINT ignored
        # (a background job of a non-interactive shell inherits that, and Python then keeps
        # it ignored instead of raising KeyboardInterrupt).
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        changed.set()
        while True:
            changed.wait()
            changed.clear()
            snap = fleet.snapshot()
            out.write(clear + (json.dumps(snap) + "\n" if as_json else render_table(snap)))
            out.flush()
            time.sleep(_REDRAW_S)  # pace the redraws; messages meanwhile are in the next one
    except KeyboardInterrupt:
        return 0
    finally:
        link.stop()
