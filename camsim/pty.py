"""Serial front end: a pseudo-terminal linked at ``--port`` (like /dev/serial/by-id/…) and the
byte pump between it and a :class:`~camsim.session.CameraSession`.

Line behaviour the dock can rely on:

* the slave is in raw mode (8-bit clean, no echo, no CR/LF translation);
* when the host closes the port, the master reads EIO: the session is reset, output not yet
  read by the host is discarded, and the pump waits for the port to be opened again;
* removing the link (at exit, for whatever reason) is the unplug.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import struct
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError
from .line import LineShaper
from .pump import ExitReason, ReplyQueue
from .session import CameraSession

__all__ = ["ExitReason", "PtyPort", "PtyPump"]

log = logging.getLogger(__name__)


class PtyPort:
    """A pty whose slave device is reachable through the symlink ``link``."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.slave_name = ""

    def open(self) -> None:
        if os.path.lexists(self.link) and not self.link.is_symlink():
            raise ConfigError(f"--port {self.link} exists and is not a symlink: refusing to "
                              "replace it")
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            name = os.ttyname(slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            # Holding the slave would hide the host's close (no EIO on the master).
            os.close(slave)
        if self.link.is_symlink():
            target = os.readlink(self.link)
            if target != name and os.path.exists(self.link):
                os.close(master)
                raise ConfigError(f"--port {self.link} links to {target}, which exists: another "
                                  "emulator? remove the link first")
            log.info("replacing stale link %s -> %s", self.link, target)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        try:
            os.symlink(name, tmp)
            os.replace(tmp, self.link)
        except OSError as exc:
            os.close(master)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ConfigError(f"cannot create --port {self.link}: {exc.strerror}") from None
        os.set_blocking(master, False)
        self.master, self.slave_name = master, name

    def close(self) -> None:
        """Remove the link (if it is still ours) and close the pty: the cable is pulled."""
        with contextlib.suppress(OSError):
            if os.readlink(self.link) == self.slave_name:
                os.unlink(self.link)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def _with_slave(self, action: Callable[[int], int]) -> int | None:
        try:
            fd = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return action(fd)
        except OSError:
            return None
        finally:
            os.close(fd)

    def discard_unread(self) -> None:
        """Drop bytes written for a host that has gone, so a reopened port starts clean."""
        def flush(fd: int) -> int:
            termios.tcflush(fd, termios.TCIFLUSH)
            return 0
        self._with_slave(flush)

    def unread(self) -> int | None:
        """Bytes written to the line that the host has not read yet (None if unknown)."""
        def inq(fd: int) -> int:
            raw = fcntl.ioctl(fd, termios.TIOCINQ, b"\0\0\0\0")
            return int(struct.unpack("i", raw)[0])
        return self._with_slave(inq)


class PtyPump:
    READ_SIZE = 64 * 1024
    CLOSED_POLL_S = 0.05  # how often to look for the host reopening a closed port
    UNPLUG_DRAIN_S = 2.0  # how long an unplug waits for the host to read what was "in the cable"

    def __init__(self, port: PtyPort, session: CameraSession, shaper: LineShaper,
                 wake_fd: int | None = None) -> None:
        self._port = port
        self._shaper = shaper
        self._queue = ReplyQueue(session, shaper)
        self._wake = wake_fd
        self._host_open = False

    def run(self, stop_requested: Callable[[], bool]) -> ExitReason:
        master = self._port.master
        while not stop_requested():
            if self._queue.unplug_due:
                self._wait_host_drained()
                return ExitReason.UNPLUGGED
            rlist = [] if self._wake is None else [self._wake]
            wlist = []
            timeout: float | None = None
            if self._host_open:
                rlist.append(master)
                wait = self._queue.ready_in()
                if wait == 0:
                    wlist.append(master)
                elif wait is not None:
                    timeout = wait  # a slow-loris line's next byte
            else:
                timeout = self.CLOSED_POLL_S  # a closed master polls readable (HUP) forever
            readable, writable, _ = select.select(rlist, wlist, [], timeout)
            if self._wake is not None and self._wake in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake, 512)
            if master in writable:
                self._write()
            if master in readable or not self._host_open:
                self._read()
        return ExitReason.STOPPED

    def _read(self) -> None:
        try:
            data = os.read(self._port.master, self.READ_SIZE)
        except BlockingIOError:
            if not self._host_open:
                self._opened()
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            if self._host_open:
                self._closed()
            return
        if not data:
            return
        if not self._host_open:
            self._opened()
        self._queue.receive(data)
        self._write()

    def _write(self) -> None:
        master = self._port.master
        try:
            self._queue.flush(lambda data: os.write(master, data))
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self._closed()

    def _opened(self) -> None:
        log.info("host opened %s", self._port.link)
        self._host_open = True

    def _closed(self) -> None:
        dropped = self._queue.host_gone()
        log.info("host closed %s%s", self._port.link,
                 f", {dropped} unsent bytes dropped" if dropped else "")
        self._port.discard_unread()
        self._host_open = False

    def _wait_host_drained(self) -> None:
        """Give the host a chance to read what is "in the cable" before it is pulled.

        Best effort: the kernel moves pty bytes to the host's queue asynchronously, so an empty
        queue only counts once it has stayed empty for a few polls.
        """
        deadline = time.monotonic() + self.UNPLUG_DRAIN_S
        empty_polls = 0
        while self._host_open and time.monotonic() < deadline and empty_polls < 5:
            empty_polls = empty_polls + 1 if not self._port.unread() else 0
            select.select([], [], [], 0.01)
        log.info("unplug fault: line closed after %d bytes", self._shaper.written)
