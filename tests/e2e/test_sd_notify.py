"""The daemon speaks sd_notify like a ``Type=notify`` service: READY=1 once its state is loaded,
WATCHDOG=1 from the main loop at half the watchdog interval, a STATUS= line, STOPPING=1 on
SIGTERM, and a clean exit well inside the unit's 10 s TimeoutStopSec."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.harness import PY, REPO, toml_text, wait_until


def test_ready_watchdog_status_and_stopping(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(sock_path))
    receiver.settimeout(0.2)
    config = tmp_path / "agent.toml"
    config.write_text(toml_text({
        "dock_id": "dock-n", "unit": "unit-n", "state_dir": tmp_path / "state",
        "serial_ports": [f"{tmp_path}/dev/*bwc*"], "broker": "",
    }))
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    env.pop("WATCHDOG_PID", None)
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen([PY, "-m", "agent.cli", "run", "--config", str(config)], cwd=REPO,
                            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    seen: list[str] = []

    def receive() -> None:
        with contextlib.suppress(TimeoutError):  # nothing this round: the caller polls again
            seen.extend(receiver.recv(4096).decode().splitlines())

    def receive_until(prefix: str, count: int = 1) -> str:
        def got() -> str | None:
            receive()
            lines = [line for line in seen if line.startswith(prefix)]
            return lines[-1] if len(lines) >= count else None
        return wait_until(got, f"{count} x {prefix} from the agent (seen {seen})", 30)

    try:
        receive_until("READY=1")
        assert (tmp_path / "state" / "dock_key.pem").exists()  # state was loaded before READY
        receive_until("WATCHDOG=1")
        start = time.monotonic()
        receive_until("WATCHDOG=1", count=seen.count("WATCHDOG=1") + 2)
        assert time.monotonic() - start < 5  # every 0.5 s: a stalled loop would be noticed
        status = receive_until("STATUS=")
        assert "docked" in status and "outbox" in status
        stop_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert proc.wait(10) == 0
        assert time.monotonic() - stop_at < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        receiver.close()
