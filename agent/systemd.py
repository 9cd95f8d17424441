"""sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET`` per state change.

Outside systemd (``$NOTIFY_SOCKET`` unset) every call is a no-op returning False, so the daemon
runs unchanged in a shell or a test. A socket that is set but unusable is logged: under
``Type=notify`` a lost ``READY=1`` or ``WATCHDOG=1`` gets the service killed, and the log line is
what explains why.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = [
    "notify",
    "ready",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval_s",
]

_log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes | None:
    if raw.startswith("@"):
        # Abstract namespace: the name starts with a NUL byte instead of '@'.
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    return None


def notify(state: str) -> bool:
    """Send ``state`` (``KEY=value`` lines) to the service manager; True when it was sent."""
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw:
        return False
    address = _address(raw)
    if address is None:
        # vsock: and other transports are for VMs/containers talking to a host manager; not ours.
        _log.error("sd_notify: unsupported NOTIFY_SOCKET %r", raw)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        _log.error("sd_notify to %r failed: %s", raw, exc)
        return False
    return True


def ready() -> bool:
    """``READY=1``: state is loaded and the daemon serves (ends ``Type=notify`` start-up)."""
    return notify("READY=1")


def status(text: str) -> bool:
    """``STATUS=…``: the one-line summary ``systemctl status`` shows."""
    if "\n" in text:
        # A newline would start another assignment in the same datagram (e.g. a stray READY=1).
        raise ValueError("status text must be a single line")
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    """``WATCHDOG=1``: the main loop is alive; send at least every half watchdog interval."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """``STOPPING=1``: a graceful shutdown has begun."""
    return notify("STOPPING=1")


def watchdog_interval_s() -> float | None:
    """The watchdog timeout systemd expects us to honour, or None when there is none for us.

    Mirrors sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` is the timeout; ``$WATCHDOG_PID``, if
    set, must be our pid (the variable may have been inherited from a parent that is watched).
    """
    raw_usec = os.environ.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = os.environ.get("WATCHDOG_PID")
    if raw_pid:
        try:
            pid = int(raw_pid)
        except ValueError:
            _log.error("ignoring watchdog: WATCHDOG_PID=%r is not a pid", raw_pid)
            return None
        if pid != os.getpid():
            return None
    try:
        usec = int(raw_usec)
    except ValueError:
        usec = 0
    if usec <= 0:
        _log.error("ignoring watchdog: WATCHDOG_USEC=%r is not a positive integer", raw_usec)
        return None
    return usec / 1_000_000
