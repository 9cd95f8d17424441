"""A real mosquitto broker on a free loopback port, owned by one test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from .net import free_port, wait_for_port

__all__ = ["Mosquitto", "find_mosquitto"]

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary; /usr/sbin is often missing from a non-root PATH."""
    found = shutil.which("mosquitto")
    if found is None and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    return found


class Mosquitto:
    """One broker: config, ACL and log live in ``workdir``; the port survives restarts.

    ``acl`` is the text of an ``acl_file`` (lines before any ``user`` apply to anonymous
    clients); ``extra_conf`` is appended to the generated mosquitto.conf verbatim.
    """

    host = "127.0.0.1"

    def __init__(
        self, executable: str, workdir: Path, *, acl: str | None = None, extra_conf: str = ""
    ) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = free_port(self.host)
        self.conf_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self._stderr_path = workdir / "mosquitto.stderr"
        self._proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to user "mosquitto", which cannot write our tmp dir.
            lines.append("user root")
        if acl is not None:
            acl_path = workdir / "acl"
            acl_path.write_text(acl)
            lines.append(f"acl_file {acl_path}")
        self.conf_path.write_text("\n".join(lines) + "\n" + extra_conf)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart, on the same port) and return once the port accepts connections."""
        if self.running:
            raise RuntimeError("mosquitto already running")
        with self._stderr_path.open("ab") as stderr:
            self._proc = subprocess.Popen(
                [self.executable, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )
        try:
            wait_for_port(self.host, self.port, _START_TIMEOUT_S, alive=lambda: self.running)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {exc}\n{self.diagnostics()}") from exc

    def stop(self) -> None:
        """Graceful stop (SIGTERM): clients see their connection closed."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Abrupt stop (SIGKILL)."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def diagnostics(self) -> str:
        stderr = self._stderr_path.read_text(errors="replace") if self._stderr_path.exists() else ""
        return (
            f"--- {self.conf_path}\n{self.conf_path.read_text()}"
            f"--- stderr\n{stderr}"
            f"--- {self.log_path} (tail)\n{self.log_text()[-4000:]}"
        )
