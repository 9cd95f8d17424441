"""Run ``bwc-camsim`` as a subprocess on a real pty (or a simulated USB bus) and wait for it by
condition, not by time."""

from __future__ import annotations

import contextlib
import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_protocol.signing import load_public_key

from .host import Host

START_TIMEOUT = 20.0


def camsim_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "camsim.cli", *map(str, args)]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # a poll interval, not a synchronisation delay


@dataclass
class Camsim:
    proc: subprocess.Popen[bytes]
    port: Path
    key: Path
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    uid: bytes = b""

    def _reader(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<EOF>")
            self._cond.notify_all()

    def wait_for_line(self, needle: str, timeout: float = START_TIMEOUT) -> str:
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(needle in ln or ln == "<EOF>" for ln in self.lines), timeout)
            hits = [ln for ln in self.lines if needle in ln]
        if not found or not hits:
            raise AssertionError(f"no {needle!r} on camsim stderr:\n" + "\n".join(self.lines))
        return hits[0]

    @property
    def public_key(self) -> Ed25519PublicKey:
        return load_public_key(Path(f"{self.key}.pub").read_bytes())

    def host(self, **kwargs: int) -> Host:
        return Host(self.port, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


def _launch(line_args: tuple[str | Path, ...], port: Path, key: Path,
            key_args: tuple[str | Path, ...], args: tuple[str | Path, ...]) -> tuple[Camsim, str]:
    proc = subprocess.Popen(camsim_command(*line_args, *key_args, *args),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    cam = Camsim(proc, port, key)
    threading.Thread(target=cam._reader, daemon=True).start()
    try:
        ready = cam.wait_for_line("camsim ready ")
    except AssertionError:
        cam.stop(signal.SIGKILL)
        raise
    cam.uid = bytes.fromhex(ready.rsplit("uid=", 1)[1])
    return cam, ready


def start_camsim(port: Path, *args: str | Path, key: Path | None = None,
                 pass_key: bool = True) -> Camsim:
    """Start camsim and wait for its ready line. ``key`` is passed as ``--key`` unless
    ``pass_key`` is false (the emulator then picks it, e.g. in ``--state-dir``)."""
    key = key or port.with_name(port.name + "-key.pem")
    key_args = ("--key", key) if pass_key else ()
    cam, _ = _launch(("--port", port), port, key, key_args, args)
    assert port.is_symlink(), "ready before the link exists"
    return cam


_usb_keys = itertools.count()


def start_usb_camsim(bus_dir: Path, *args: str | Path, key: Path | None = None) -> Camsim:
    """Start camsim on the USB bus ``bus_dir``; ``cam.port`` is its device directory
    (``BUS_DIR/1-1.N``) from the ready line. Each emulator gets its own key by default."""
    key = key or bus_dir.parent / f"usb-cam{next(_usb_keys)}-key.pem"
    cam, ready = _launch(("--usb", bus_dir), bus_dir, key, ("--key", key), args)
    cam.port = Path(ready.split("usb=", 1)[1].split(" uid=", 1)[0])
    assert cam.port.parent == bus_dir and (cam.port / "device.json").exists(), ready
    return cam


@contextlib.contextmanager
def running_usb(bus_dir: Path, *args: str | Path, key: Path | None = None) -> Iterator[Camsim]:
    cam = start_usb_camsim(bus_dir, *args, key=key)
    try:
        yield cam
    finally:
        if cam.proc.poll() is None:
            cam.stop()


@contextlib.contextmanager
def running(port: Path, *args: str | Path, key: Path | None = None,
            pass_key: bool = True) -> Iterator[Camsim]:
    cam = start_camsim(port, *args, key=key, pass_key=pass_key)
    try:
        yield cam
    finally:
        if cam.proc.poll() is None:
            cam.stop()


def run_to_exit(*args: str | Path, timeout: float = START_TIMEOUT) -> tuple[int, str]:
    """Run camsim expecting it to exit on its own (bad configuration): (status, stderr)."""
    done = subprocess.run(camsim_command(*args), capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    return done.returncode, done.stderr.decode("utf-8", "replace")
