"""Small network utilities for tests that run real servers on loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

__all__ = ["free_port", "wait_for_port"]

# Between two refused connects: short enough not to slow start-up, long enough not to spin.
_POLL_INTERVAL_S = 0.01


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picked it for a port-0 bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    host: str, port: int, timeout: float, *, alive: Callable[[], bool] = lambda: True
) -> None:
    """Poll until ``host:port`` accepts TCP connections.

    Raises TimeoutError at the deadline, RuntimeError as soon as ``alive()`` says the server
    process is gone (no point waiting for a dead server).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if not alive():
            raise RuntimeError(f"server for {host}:{port} exited before accepting connections")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} not accepting connections after {timeout}s")
        time.sleep(_POLL_INTERVAL_S)
