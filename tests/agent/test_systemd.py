"""agent.systemd: sd_notify datagrams received on a real AF_UNIX socket."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import systemd


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    assert len(str(path)) < 108, "AF_UNIX path too long for this tmp dir"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)  # a local datagram is queued by the time sendto() returns
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_unset_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    assert systemd.ready() is False and systemd.watchdog() is False


def test_helpers_send_their_state(receiver: socket.socket) -> None:
    assert systemd.ready()
    assert systemd.status("3 cameras docked, 1 offloading")
    assert systemd.watchdog()
    assert systemd.stopping()
    assert systemd.notify("STATUS=a\nWATCHDOG=1")
    assert received(receiver) == [
        b"READY=1", b"STATUS=3 cameras docked, 1 offloading", b"WATCHDOG=1", b"STOPPING=1",
        b"STATUS=a\nWATCHDOG=1",
    ]


def test_status_is_utf8(receiver: socket.socket) -> None:
    assert systemd.status("摄像头 3")
    assert received(receiver) == ["STATUS=摄像头 3".encode()]


def test_status_refuses_newline(receiver: socket.socket) -> None:
    with pytest.raises(ValueError, match="single line"):
        systemd.status("ok\nREADY=1")
    assert received(receiver) == []


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"bwc-dock-test-{os.getpid()}-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready()
        assert received(sock) == [b"READY=1"]


def test_missing_socket_is_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.ERROR, logger="agent.systemd"):
        assert systemd.watchdog() is False
    assert "sd_notify" in caplog.text and "gone" in caplog.text


def test_unsupported_address_is_logged(monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with caplog.at_level(logging.ERROR, logger="agent.systemd"):
        assert systemd.ready() is False
    assert "unsupported NOTIFY_SOCKET" in caplog.text


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    (None, None, None),
    ("30000000", None, 30.0),
    ("30000000", "self", 30.0),
    ("2500", "self", 0.0025),
    ("30000000", "other", None),
    ("0", None, None),
    ("-5", None, None),
    ("soon", None, None),
    ("30000000", "pid1?", None),
])
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None,
                           expected: float | None) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(name, value)
    assert systemd.watchdog_interval_s() == expected
