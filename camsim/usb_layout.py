"""What a simulated USB bus directory looks like; shared by the emulator and the pyusb backend.

::

    BUS_DIR/
      .lock                 flock'ed by an emulator while it plugs in, sweeps or unplugs
      .last-address         the USB address handed out last (round robin, like the kernel)
      1-1.3/                one plugged-in device, named by its port chain (bus 1, port 1, port 3)
        pid                 "PID INSTANCE": flock'ed (LOCK_EX) by the emulator for its lifetime
        bulk.sock           Unix stream socket: host→device = bulk OUT, device→host = bulk IN
        device.json         the descriptors (DeviceRecord), renamed into place last

A device is *present* when ``device.json`` exists and the lock on ``pid`` is held by a process
that wrote the same instance. A directory whose lock is free belongs to an emulator that died
(``kill -9``): the backend ignores it, and the next emulator to plug in removes it.

On connecting to ``bulk.sock`` (the host claiming the interface) the emulator first sends a
17-byte greeting: a status byte (:data:`GREETING_OK` or :data:`GREETING_BUSY` when another host
holds the interface) and the 16-byte instance, so a host can never talk to a later device that
took the same port. Every byte after that is the camera's bulk IN stream.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "CHAIN_RE",
    "GREETING_BUSY",
    "GREETING_OK",
    "GREETING_SIZE",
    "LAST_ADDRESS_NAME",
    "LOCK_NAME",
    "PID_NAME",
    "RECORD_NAME",
    "SOCKET_BUFFER",
    "SOCKET_NAME",
    "device_present",
    "is_gone",
    "lock_is_held",
    "read_pid_file",
    "tune",
    "unix_address",
]

LOCK_NAME = ".lock"
LAST_ADDRESS_NAME = ".last-address"
PID_NAME = "pid"
SOCKET_NAME = "bulk.sock"
RECORD_NAME = "device.json"
CHAIN_RE = re.compile(r"^[1-9][0-9]{0,2}-[1-9][0-9]{0,2}(\.[1-9][0-9]{0,2}){0,6}$")
GREETING_OK, GREETING_BUSY = 0x00, 0x01
GREETING_SIZE = 17
SOCKET_BUFFER = 4 << 20  # bytes in flight each way; the kernel caps it at net.core.[rw]mem_max
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus the terminating NUL


def lock_is_held(fd: int) -> bool:
    """Whether some other open file description holds a lock on the file open at ``fd``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def read_pid_file(device_dir: Path) -> tuple[int, str] | None:
    """(pid, instance) if ``pid`` exists and its emulator is alive, else None."""
    try:
        fd = os.open(device_dir / PID_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, 128).decode("ascii", "replace").split()
        if len(text) != 2 or not text[0].isdigit() or not lock_is_held(fd):
            return None
        return int(text[0]), text[1]
    finally:
        os.close(fd)


def device_present(device_dir: Path, instance: str) -> bool:
    """Whether the device ``instance`` is still plugged in at ``device_dir``."""
    if not (device_dir / RECORD_NAME).exists():
        return False
    owner = read_pid_file(device_dir)
    return owner is not None and owner[1] == instance


@contextlib.contextmanager
def unix_address(device_dir: Path) -> Iterator[str]:
    """The address to bind or connect ``device_dir/bulk.sock``.

    sun_path holds 107 bytes; a longer path (deep test directories) goes through
    ``/proc/self/fd/N/``, a directory descriptor held open for the duration of the block.
    """
    path = device_dir / SOCKET_NAME
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(device_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


def tune(sock: socket.socket) -> None:
    """Large buffers both ways, non-blocking: the data path is one recv_into per transfer."""
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    sock.setblocking(False)


def is_gone(exc: OSError) -> bool:
    """Whether a socket error means the other end has vanished."""
    return exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNREFUSED, errno.ENOENT,
                         errno.ENOTCONN, errno.ESHUTDOWN)
