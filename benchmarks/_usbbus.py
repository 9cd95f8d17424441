"""Shared plumbing for the benchmarks on the simulated USB bus (``camsim --usb BUS_DIR``).

A :class:`UsbCamera` is one ``camsim`` process plugged into a bus directory (docs/protocol.md
§7): its device is ``BUS_DIR/1-1.N/``, present from the moment ``device.json`` is renamed into
place (the emulator's ready line follows) until the emulator exits. The port number is picked
by the emulator (lowest free), so the camera finds its own device by the pid in the device's
``pid`` file. :func:`usb_settings` is what an ``agent.toml`` needs to watch the bus.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import PY, camera_key, spawn, stop_process, wait_for

USB_ID = "1d6b:0104"  # camsim's default VID:PID

__all__ = ["USB_ID", "UsbCamera", "make_bus", "usb_settings"]


def make_bus(work: Path, name: str = "bus") -> Path:
    bus = work / name
    bus.mkdir()
    return bus


def usb_settings(bus: Path, chunk: int) -> dict[str, Any]:
    """``write_config`` extras: the agent watches ``bus`` through the camsim pyusb backend."""
    return {"usb_backend": f"camsim:{bus}", "usb_ids": [USB_ID], "chunk_size_usb": chunk}


def _device_of(bus: Path, pid: int) -> Path | None:
    """The device directory the emulator ``pid`` plugged in, once it is visible."""
    from camsim.usb_layout import PID_NAME, RECORD_NAME

    try:
        entries = list(os.scandir(bus))
    except FileNotFoundError:
        return None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            with open(os.path.join(entry.path, PID_NAME), "rb") as f:
                owner = f.read(64).split()
        except OSError:
            continue
        if owner and owner[0] == str(pid).encode() and os.path.exists(
                os.path.join(entry.path, RECORD_NAME)):
            return Path(entry.path)
    return None


class UsbCamera:
    """One ``camsim --usb`` process; ``device`` is its directory on the bus once plugged in."""

    def __init__(self, stack: ExitStack, work: Path, name: str, bus: Path, args: list[str], *,
                 key: Path | None = None, state_dir: Path | None = None) -> None:
        self.name = name
        self.bus = bus
        self.key = key or work / f"{name}.pem"
        self.state_dir = state_dir or work / f"{name}-state"
        self.log = work / f"camsim-{name}.log"
        self.log.write_bytes(b"")
        self.device: Path | None = None
        self.uid = camera_key(self.key)
        self.proc = spawn(stack, [PY, "-m", "camsim.cli", "--usb", str(bus), "--key",
                                  str(self.key), "--state-dir", str(self.state_dir),
                                  "--officer-id", f"OF-{name}", *args], self.log)

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"camsim {self.name} exited with {self.proc.returncode}: "
                               f"{self.log.read_text()[-2000:]}")

    def wait_ready(self, timeout: float = 300.0) -> str:
        """Wait for the ready line (the device is on the bus); returns the camera uid."""
        def ready() -> bool:
            self._alive()
            return "ready usb=" in self.log.read_text()

        wait_for(ready, timeout, f"camera {self.name}", interval=0.005)
        text = self.log.read_text()
        self.device = Path(text.split("ready usb=")[1].split()[0])
        self.uid = text.split(" uid=")[1].split()[0]
        return self.uid

    def wait_link(self, timeout: float, interval: float = 0.0005) -> float:
        """Poll for the device appearing (its ``device.json``); returns ``time.monotonic()``."""
        def present() -> bool:
            self._alive()
            self.device = _device_of(self.bus, self.proc.pid)
            return self.device is not None

        wait_for(present, timeout, f"camera {self.name}'s device", interval=interval)
        return time.monotonic()

    def stop(self) -> None:
        stop_process(self.proc)

