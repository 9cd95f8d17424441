"""USB front end: the camera plugged into a simulated USB bus (a directory, see ``usb_layout``).

Plugging in (:meth:`UsbPort.open`) and unplugging (:meth:`UsbPort.close`) happen under the bus
lock, so allocation is race-free: stale devices of dead emulators are swept, the lowest free hub
port is taken (``mkdir`` claims it), the pid file is locked, the socket bound and ``device.json``
renamed into place **last**, so a half-created device is never visible. Unplugging removes
``device.json`` first (the device leaves enumeration), then breaks the host's connection (its
next transfer fails with ENODEV), then removes the rest.

The pump moves bytes between the host's connection and the same
:class:`~camsim.pump.ReplyQueue` (session + line faults) as the pty front end. Host semantics:

* connecting to ``bulk.sock`` is claiming the interface; only one host at a time (a second gets
  a BUSY greeting), and a host that disconnects (release, close, process exit) ends its session,
  like closing the serial port: unread replies are dropped;
* the unplug fault waits (up to 2 s) for the host to read every byte sent so far, then unplugs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import select
import shutil
import socket
import struct
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ConfigError
from .line import LineShaper
from .pump import ExitReason, ReplyQueue
from .session import CameraSession
from .usb_descriptors import DeviceRecord, camera_record
from .usb_layout import (
    CHAIN_RE,
    GREETING_BUSY,
    GREETING_OK,
    LAST_ADDRESS_NAME,
    LOCK_NAME,
    PID_NAME,
    RECORD_NAME,
    is_gone,
    read_pid_file,
    tune,
    unix_address,
)

__all__ = ["DEFAULT_USB_ID", "UsbPort", "UsbPump", "parse_usb_id"]

log = logging.getLogger(__name__)

DEFAULT_USB_ID = (0x1D6B, 0x0104)
MANUFACTURER = "bwc-dock camsim"
BUS, ROOT_PORT = 1, 1  # devices hang off the hub in root port 1: chains 1-1.1, 1-1.2, …
MAX_PORTS = 32
FIRST_ADDRESS, LAST_ADDRESS = 3, 127  # 1 and 2: the root hub and the hub we hang off


def parse_usb_id(text: str) -> tuple[int, int]:
    vendor, sep, product = text.partition(":")
    try:
        if not sep or len(vendor) != 4 or len(product) != 4:
            raise ValueError
        return int(vendor, 16), int(product, 16)
    except ValueError:
        raise ConfigError(f"bad --usb-id {text!r}: expected VVVV:PPPP in hex") from None


class UsbPort:
    """One device directory on the bus, and the host connection to it."""

    def __init__(self, bus_dir: Path, *, usb_id: tuple[int, int], product: str,
                 serial: str) -> None:
        self.bus_dir = bus_dir
        self._usb_id = usb_id
        self._product = product
        self._serial = serial
        self.instance = secrets.token_hex(16)
        self.path: Path | None = None  # BUS_DIR/1-1.N once plugged in
        self.record: DeviceRecord | None = None
        self.listener: socket.socket | None = None
        self.conn: socket.socket | None = None
        self._pid_fd = -1

    # -- plugging in and out ----------------------------------------------------------------

    @contextlib.contextmanager
    def _bus_locked(self) -> Iterator[None]:
        fd = os.open(self.bus_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def open(self) -> None:
        try:
            self.bus_dir.mkdir(parents=True, exist_ok=True)
            with self._bus_locked():
                self._sweep_stale()
                self._plug_in()
        except BaseException as exc:
            self.close()  # outside the bus lock: close() takes it again
            if isinstance(exc, OSError):
                raise ConfigError(f"cannot plug into --usb {self.bus_dir}: {exc}") from None
            raise

    def _sweep_stale(self) -> None:
        """Remove the devices of emulators that died without unplugging (bus lock held)."""
        for entry in self.bus_dir.iterdir():
            if CHAIN_RE.match(entry.name) and entry.is_dir() and read_pid_file(entry) is None:
                log.info("removing stale device %s", entry)
                shutil.rmtree(entry, ignore_errors=True)

    def _plug_in(self) -> None:
        for port in range(1, MAX_PORTS + 1):
            path = self.bus_dir / f"{BUS}-{ROOT_PORT}.{port}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            break
        else:
            raise ConfigError(f"--usb {self.bus_dir}: all {MAX_PORTS} hub ports are in use")
        self.path = path
        self._pid_fd = os.open(path / PID_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._pid_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self._pid_fd, f"{os.getpid()} {self.instance}\n".encode())
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener = listener
        with unix_address(path) as address:
            listener.bind(address)
        listener.listen(8)
        listener.setblocking(False)
        record = camera_record(
            instance=self.instance, pid=os.getpid(), port_numbers=(ROOT_PORT, port),
            address=self._next_address(), id_vendor=self._usb_id[0], id_product=self._usb_id[1],
            manufacturer=MANUFACTURER, product=self._product, serial=self._serial)
        tmp = path / f".{RECORD_NAME}.tmp"
        tmp.write_text(json.dumps(record.to_json(), indent=1) + "\n")
        os.replace(tmp, path / RECORD_NAME)  # the device is visible from here on
        self.record = record

    def _next_address(self) -> int:
        """Round robin over 3..127 skipping addresses in use, as the kernel hands them out."""
        in_use = set()
        for entry in self.bus_dir.iterdir():
            if CHAIN_RE.match(entry.name) and entry != self.path:
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    in_use.add(int(json.loads((entry / RECORD_NAME).read_text())["address"]))
        last_file = self.bus_dir / LAST_ADDRESS_NAME
        try:
            last = int(last_file.read_text())
        except (OSError, ValueError):
            last = FIRST_ADDRESS - 1
        span = LAST_ADDRESS - FIRST_ADDRESS + 1
        for step in range(1, span + 1):
            address = FIRST_ADDRESS + (last - FIRST_ADDRESS + step) % span
            if address not in in_use:
                last_file.write_text(f"{address}\n")
                return address
        raise ConfigError(f"--usb {self.bus_dir}: no free USB address")

    def close(self) -> None:
        """Unplug: leave enumeration, break the host's connection, remove the directory."""
        path = self.path
        if path is None:
            self._close_sockets()
            return
        try:
            with self._bus_locked():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path / RECORD_NAME)
                self._close_sockets()
                shutil.rmtree(path, ignore_errors=True)
        except OSError as exc:  # the bus directory itself went away: nothing left to unplug
            log.warning("unplugging from %s: %s", self.bus_dir, exc)
            self._close_sockets()
        finally:
            if self._pid_fd >= 0:
                os.close(self._pid_fd)  # releases the lock: only now may the port be reused
                self._pid_fd = -1
            self.path = None

    def _close_sockets(self) -> None:
        self.drop_conn()
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    # -- the host connection ----------------------------------------------------------------

    def accept(self) -> socket.socket | None:
        """A host connecting (claiming the interface); None if refused or it vanished."""
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return None
        tune(conn)
        busy = self.conn is not None
        greeting = bytes([GREETING_BUSY if busy else GREETING_OK]) + bytes.fromhex(self.instance)
        try:
            conn.send(greeting)  # 17 bytes into an empty socket buffer: never short
        except OSError:
            conn.close()
            return None
        if busy:
            log.info("host refused: the interface is claimed by another host")
            conn.close()
            return None
        self.conn = conn
        return conn

    def drop_conn(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def unread(self) -> int:
        """Bytes sent to the host that it has not read yet (0 without a host)."""
        if self.conn is None:
            return 0
        try:
            raw = fcntl.ioctl(self.conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0])


class UsbPump:
    READ_SIZE = 256 * 1024
    UNPLUG_DRAIN_S = 2.0  # how long an unplug waits for the host to read what it was sent

    def __init__(self, port: UsbPort, session: CameraSession, shaper: LineShaper,
                 wake_fd: int | None = None) -> None:
        self._port = port
        self._queue = ReplyQueue(session, shaper)
        self._shaper = shaper
        self._wake = wake_fd

    def run(self, stop_requested: Callable[[], bool]) -> ExitReason:
        port = self._port
        assert port.listener is not None
        while not stop_requested():
            if self._queue.unplug_due:
                self._wait_host_drained()
                return ExitReason.UNPLUGGED
            rlist: list[socket.socket | int] = [port.listener]
            if self._wake is not None:
                rlist.append(self._wake)
            conn = port.conn
            wlist = []
            timeout: float | None = None
            if conn is not None:
                rlist.append(conn)
                wait = self._queue.ready_in()
                if wait == 0:
                    wlist.append(conn)
                elif wait is not None:
                    timeout = wait  # a slow-loris line's next byte
            readable, writable, _ = select.select(rlist, wlist, [], timeout)
            if self._wake is not None and self._wake in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake, 512)
            if conn is not None and conn in writable:
                self._write()
            if conn is not None and conn in readable and port.conn is conn:
                self._read(conn)
            if port.listener in readable and port.accept() is not None:
                log.info("host claimed %s", port.path)
        return ExitReason.STOPPED

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(self.READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if not is_gone(exc):
                raise
            data = b""
        if not data:
            self._closed()
            return
        self._queue.receive(data)
        self._write()

    def _write(self) -> None:
        conn = self._port.conn
        if conn is None:
            return
        try:
            self._queue.flush(conn.send)
        except OSError as exc:
            if not is_gone(exc):
                raise
            self._closed()

    def _closed(self) -> None:
        dropped = self._queue.host_gone()
        log.info("host released %s%s", self._port.path,
                 f", {dropped} unsent bytes dropped" if dropped else "")
        self._port.drop_conn()

    def _wait_host_drained(self) -> None:
        """Let the host read what was sent before the cable is pulled (up to 2 s)."""
        deadline = time.monotonic() + self.UNPLUG_DRAIN_S
        while self._port.unread() and time.monotonic() < deadline:
            select.select([], [], [], 0.005)
        log.info("unplug fault: line closed after %d bytes", self._shaper.written)
