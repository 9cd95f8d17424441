"""Every ``--fault`` is observable by a dock, as specified, over a real pty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from camsim.recordings import recording_id
from firmware_protocol import messages as m
from firmware_protocol.frames import FrameError, FrameErrorKind
from firmware_protocol.signing import public_key_raw

from .camsim_process import Camsim, run_to_exit, running, start_camsim, wait_until
from .host import ChunkRead, Host, LineClosed, NoReply

UID = "00112233445566778899aabbccddeeff"
K = 1024


def _session(host: Host, cam: Camsim) -> list[m.RecordingInfo]:
    host.hello()
    assert host.authenticate(cam.public_key)
    return host.list_recordings()


def test_corrupt_chunk_fails_the_hash_of_that_chunk_only(tmp_path: Path) -> None:
    by_id = recording_id(bytes.fromhex(UID), "generated-0000.mp4").hex()
    with running(tmp_path / "cam0", "--camera-uid", UID, "--generate", "2:1M",
                 "--fault", "corrupt-chunk=1:2", "--fault", f"corrupt-chunk={by_id}:0"
                 ) as cam, cam.host() as host:
        recs = _session(host, cam)
        second = host.read_recording(recs[1], cam.public_key)
        assert (second.bad_sha, second.bad_signature, second.bad_chain) == ([2], [], [])
        assert second.seal_problems == ["sha256"]  # the whole-recording hash fails with it
        first = host.read_recording(recs[0], cam.public_key)
        assert (first.bad_sha, first.bad_signature, first.bad_chain) == ([0], [], [])


def test_bad_signature_fails_that_signature_only(tmp_path: Path) -> None:
    with running(tmp_path / "cam0", "--generate", "1:1M", "--fault", "bad-signature=0:1"
                 ) as cam, cam.host() as host:
        rec = _session(host, cam)[0]
        check = host.read_recording(rec, cam.public_key)
        assert (check.bad_sha, check.bad_signature, check.bad_chain) == ([], [1], [])
        assert check.seal_problems == []


def test_wrong_key_fails_auth_chunks_and_seal_against_the_enrolled_key(tmp_path: Path) -> None:
    with running(tmp_path / "cam0", "--generate", "1:600K", "--fault", "wrong-key"
                 ) as cam, cam.host() as host:
        identity = host.hello()
        assert identity.public_key == public_key_raw(cam.public_key)  # it claims the enrolled key
        assert not host.authenticate(cam.public_key)
        rec = host.list_recordings()[0]
        check = host.read_recording(rec, cam.public_key)
        assert check.bad_signature == [0, 1, 2] and check.bad_sha == []
        assert check.seal_problems == ["signature"]


def test_unplug_after_bytes_closes_the_line_mid_transfer(tmp_path: Path) -> None:
    port = tmp_path / "cam0"
    limit = 150_000
    cam = start_camsim(port, "--generate", "1:1M", "--fault", f"unplug-after-bytes={limit}")
    with cam.host() as host:
        rec = _session(host, cam)[0]
        with pytest.raises(LineClosed):
            host.read_chunk(rec.recording_id, 0)
        # The emulator lets the host drain the line before closing it (best effort: a pty may
        # still lose what the kernel had in flight, as a pulled cable would).
        assert limit - 16 * K <= host.received <= limit
    wait_until(lambda: not os.path.lexists(port), 10, "the link to disappear")
    assert cam.proc.wait(10) == 3
    assert f"line closed after {limit} bytes" in cam.stderr


def test_stall_after_bytes_stops_answering_but_keeps_the_line(tmp_path: Path) -> None:
    port = tmp_path / "cam0"
    with running(port, "--generate", "1:1M", "--fault", "stall-after-bytes=100K"
                 ) as cam, cam.host() as host:
        rec = _session(host, cam)[0]
        with pytest.raises(NoReply):
            host.read_chunk(rec.recording_id, 0, timeout=1.0)
        received = host.received
        host.conn.cancel()
        with pytest.raises(NoReply):
            host.request(m.GetStatus(), timeout=0.5)
        assert host.received == received == 100 * K
        assert cam.proc.poll() is None and os.path.islink(port)
    assert cam.proc.returncode == 0


def test_garbage_between_frames_is_skipped_without_loss(tmp_path: Path) -> None:
    with running(tmp_path / "cam0", "--generate", "2:700K", "--fault", "garbage-every=10000"
                 ) as cam, cam.host() as host:
        recs = _session(host, cam)
        for rec in recs:
            check = host.read_recording(rec, cam.public_key)
            assert check.ok, check
        errors = [e for e in host.events if isinstance(e, FrameError)]
        # Noise goes between frames only: one burst before (nearly) every 64 KiB data frame.
        assert len(errors) >= 20
        assert {e.kind for e in errors} == {FrameErrorKind.GARBAGE}
        assert all(1 <= e.skipped <= 8 for e in errors)
        assert not any(type(e).__name__ == "StaleFrame" for e in host.events)
        chunk = host.read_chunk(recs[0].recording_id, 0)
        assert isinstance(chunk, ChunkRead)


@pytest.mark.parametrize(("args", "message"), [
    (["--fault", "bogus"], "bad --fault 'bogus'"),
    (["--fault", "corrupt-chunk=x"], "expected corrupt-chunk=REC:IDX"),
    (["--fault", "bad-signature=zz:1"], "bad recording 'zz'"),
    (["--fault", "unplug-after-bytes=lots"], "bad size 'lots'"),
    (["--fault", "garbage-every=0"], "must be at least 1"),
    (["--fault", "stall-after-bytes=1", "--fault", "stall-after-bytes=2"], "given twice"),
    (["--fault", "corrupt-chunk=5:0"], "no recording 5"),
    (["--fault", "bad-signature=0:4"], "has 4 chunks"),
    (["--log-event", "meltdown@0"], "kind must be one of"),
    (["--log-event", "fault@soon"], "expected KIND@OFFSET_S[:REC]"),
    (["--log-event", "fault@0:9"], "no recording 9"),
])
def test_bad_specs_exit_2_with_a_clear_message(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    port = tmp_path / "cam0"
    status, stderr = run_to_exit("--port", port, "--generate", "2:1M", *args)
    assert status == 2, stderr
    assert message in stderr
    assert not os.path.lexists(port)
