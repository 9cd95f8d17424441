"""A whole dock session against the emulator over a real pty with pyserial."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from firmware_protocol import messages as m
from firmware_protocol._state import Role
from firmware_protocol.connection import Connection, EndOfChunk
from firmware_protocol.errors import ErrorCode
from firmware_protocol.messages import EventKind
from firmware_protocol.signing import Media, load_private_key, public_key_raw

from .camsim_process import running, start_camsim, wait_until
from .host import ChunkRead, LineClosed

MiB = 1 << 20


def test_full_session_verifies_every_chunk_chain_and_seal(tmp_path: Path) -> None:
    port = tmp_path / "cam0"
    with running(port, "--generate", "3:1M", "--chunk-size", "300K", "--battery", "64",
                 "--not-charging", "--storage-total", "1G", "--self-test-fault", "17",
                 "--self-test-fault", "42", "--officer-id", "010203", "--officer-name", "张三",
                 "--unit-code", "410402", "--unit-name", "湛河区司法局", "--model", "BWC-9",
                 "--serial", "SN0001") as cam, cam.host(max_payload=65536) as host:
        identity = host.hello()
        assert identity.camera_uid == cam.uid
        assert identity.max_payload == 65536  # the smaller of ours and the camera's 256 KiB
        assert identity.public_key == public_key_raw(cam.public_key)
        assert (identity.model, identity.serial, identity.officer_name, identity.unit_name) == (
            "BWC-9", "SN0001", "张三", "湛河区司法局")
        assert host.authenticate(cam.public_key)

        status = host.status()
        assert (status.battery_pct, status.charging, status.recording) == (64, False, False)
        assert status.storage_total == 1 << 30
        assert status.storage_free == (1 << 30) - 3 * MiB
        assert (status.self_test_ok, status.fault_codes) == (False, (17, 42))
        assert abs(status.clock_ms - time.time() * 1000) < 5000

        t0, t1, t2, t3 = host.probe()
        assert t1 <= t2
        offset = ((t1 - t0) + (t2 - t3)) / 2
        assert abs(offset) < 1_000_000  # no --clock-skew: within a second of the host

        target = 1_900_000_000_000_000
        ts = host.set_time(target)
        assert abs(ts.previous_us - time.time_ns() / 1000) < 5_000_000
        assert target <= ts.current_us < target + 1_000_000
        t0, t1, t2, t3 = host.probe()
        assert abs(t1 - target) < 5_000_000  # the camera now runs on the set clock

        listing = host.list_recordings(page=2)  # paged: 2 + 1
        assert len(listing) == 3
        assert [r.media for r in listing] == [Media.VIDEO] * 3
        assert all(r.size == MiB and r.chunk_size == 300 * 1024 and r.chunk_count == 4
                   and r.sealed for r in listing)
        assert len({r.recording_id for r in listing}) == 3
        assert all(r.started_ms < r.ended_ms for r in listing)

        check = host.read_recording(listing[1], cam.public_key)
        assert check.ok, check
        assert len(check.data) == MiB
        assert [h.info.index for h in check.headers] == [0, 1, 2, 3]
        assert check.seal.info.sha256 == hashlib.sha256(check.data).digest()

        resumed = host.read_chunk(listing[1].recording_id, 2)  # resume at any index
        assert isinstance(resumed, ChunkRead)
        assert resumed.data == check.data[600 * 1024 : 900 * 1024]

        events = host.event_log()
        kinds = [e.kind for e in events]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert kinds.count(EventKind.RECORD_START) == kinds.count(EventKind.RECORD_STOP) == 3
        stops = {e.recording_id: e.at_ms for e in events if e.kind is EventKind.RECORD_STOP}
        assert stops == {r.recording_id: r.ended_ms for r in listing}
        assert kinds[6] is EventKind.POWER_ON and kinds[-1] is EventKind.CLOCK_SET

        released = host.release(listing[1].recording_id)
        assert released.freed_bytes == MiB
        again = host.release(listing[1].recording_id)  # repeated: harmless, frees nothing
        assert again.freed_bytes == 0
        assert [r.recording_id for r in host.list_recordings()] == [
            listing[0].recording_id, listing[2].recording_id]
        assert host.status().storage_free == status.storage_free + MiB
        last = host.event_log(since=events[-1].seq + 1)
        assert [(e.kind, e.recording_id) for e in last] == [
            (EventKind.RELEASED, listing[1].recording_id)]
        gone = host.read_chunk(listing[1].recording_id, 0)
        assert isinstance(gone, m.Error) and gone.code == ErrorCode.UNKNOWN_RECORDING
    assert cam.proc.returncode == 0
    assert not os.path.lexists(port), "the link must go when the emulator stops"
    log = cam.stderr
    assert "ReadChunk rec=" in log and "-> Released 1048576 B" in log
    key_hex = load_private_key(cam.key.read_bytes()).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption()).hex()
    assert key_hex not in log


def test_key_is_created_private_and_reused(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "camera.pem"
    key.parent.mkdir()
    with running(tmp_path / "cam0", key=key) as first:
        pass
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = Path(f"{key}.pub").read_bytes()
    assert pub.startswith(b"-----BEGIN PUBLIC KEY-----")
    with running(tmp_path / "cam0", key=key) as second, second.host() as host:
        assert host.hello().camera_uid == first.uid == second.uid
        assert host.authenticate(second.public_key)
    assert Path(f"{key}.pub").read_bytes() == pub


def test_camera_uid_flag_and_requests_before_auth(tmp_path: Path) -> None:
    uid = "00112233445566778899aabbccddeeff"
    with running(tmp_path / "cam0", "--camera-uid", uid) as cam, cam.host() as host:
        frame, error = host.exchange_raw(m.GetStatus.TYPE, b"", seq=500)
        assert isinstance(error, m.Error) and frame.seq == 500
        assert (error.code, error.request_type) == (ErrorCode.BAD_STATE, m.GetStatus.TYPE)
        assert host.hello().camera_uid.hex() == uid == cam.uid.hex()
        assert host.authenticate(cam.public_key)


def test_clock_skew_and_drift_over_the_line(tmp_path: Path) -> None:
    # 1,000,000 ppm: the camera clock runs at twice the host's rate.
    with running(tmp_path / "cam0", "--generate", "1:2M", "--clock-skew", "3600",
                 "--drift-ppm", "1000000") as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        t0a, t1a, _, t3a = host.probe()
        assert 3_600_000_000 < t1a - t0a < 3_660_000_000
        assert host.read_recording(host.list_recordings()[0], cam.public_key).ok  # time passes
        t0b, t1b, _, t3b = host.probe()
        # The camera received each probe between its t0 and t3 (host clock), so at double rate:
        assert 2 * (t0b - t3a) - 2 <= t1b - t1a <= 2 * (t3b - t0a) + 2


def test_host_can_close_and_reopen_the_port(tmp_path: Path) -> None:
    with running(tmp_path / "cam0", "--generate", "1:100K") as cam:
        with cam.host() as host:
            host.hello()
            assert host.authenticate(cam.public_key)
            rec = host.list_recordings()[0]
            # Leave a reply unread in the line, then hang up mid-conversation.
            host.serial.write(host.conn.send(m.ReadChunk(rec.recording_id, 0)))
        cam.wait_for_line("host closed")
        with cam.host() as host:  # a new session starts with HELLO
            host.hello()
            assert host.authenticate(cam.public_key)
            assert host.read_recording(rec, cam.public_key).ok
            assert all(isinstance(e, m.Message | EndOfChunk) for e in host.events), (
                "stale bytes from the old session reached the new one")


def test_hello_mid_session_restarts_the_session(tmp_path: Path) -> None:
    with running(tmp_path / "cam0") as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        host.status()
        # A dock that restarted without closing the line: a fresh Connection, same port.
        host.conn = Connection(Role.DOCK, max_payload=65536)
        host.hello()
        assert host.authenticate(cam.public_key)
        assert host.status().battery_pct == 100


def test_sigterm_removes_the_link_and_exits_zero(tmp_path: Path) -> None:
    port = tmp_path / "by-id" / "usb-BWC_camera-if00"
    port.parent.mkdir()
    cam = start_camsim(port)
    assert os.readlink(port).startswith("/dev/pts/")
    assert cam.stop() == 0
    assert not os.path.lexists(port)
    wait_until(lambda: "stopped: SIGTERM" in cam.stderr, 5, "the stop line")


def test_stopping_mid_session_ends_the_hosts_reads(tmp_path: Path) -> None:
    cam = start_camsim(tmp_path / "cam0")
    with cam.host() as host:
        host.hello()
        assert cam.stop() == 0
        with pytest.raises(LineClosed):
            host.request(m.AuthChallenge(bytes(32)), timeout=5)
