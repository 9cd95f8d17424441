"""``--media-dir``: files become sealed recordings, served byte for byte."""

from __future__ import annotations

import os
import random
from pathlib import Path

from firmware_protocol import messages as m
from firmware_protocol.errors import ErrorCode
from firmware_protocol.messages import EventKind
from firmware_protocol.signing import Media

from .camsim_process import run_to_exit, running
from .host import ChunkRead

K = 1024
MTIME_S = 1_750_000_000  # 2025-06-15


def _media(tmp_path: Path, files: dict[str, bytes]) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    for name, data in files.items():
        (media / name).write_bytes(data)
        os.utime(media / name, (MTIME_S, MTIME_S))
    (media / "subdir").mkdir()  # not a regular file: ignored
    return media


def test_media_dir_serves_file_bytes_unchanged(tmp_path: Path) -> None:
    rng = random.Random(7)
    files = {
        "a-0001.mp4": rng.randbytes(700 * K),
        "b-0002.WAV": rng.randbytes(100 * K),
        "c-0003.jpg": rng.randbytes(5 * K),
        "d-0004.ts": b"",
    }
    media = _media(tmp_path, files)
    with running(tmp_path / "cam0", "--media-dir", media, "--bitrate", "4000000",
                 "--log-event", "battery_empty@0:0"
                 ) as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        listing = host.list_recordings()
        assert [r.media for r in listing] == [Media.VIDEO, Media.AUDIO, Media.PHOTO, Media.VIDEO]
        for rec, data in zip(listing, files.values(), strict=True):
            assert rec.ended_ms == MTIME_S * 1000
            check = host.read_recording(rec, cam.public_key)
            assert check.ok, check
            assert check.data == data
        durations = [r.ended_ms - r.started_ms for r in listing]
        assert durations == [700 * K * 8 * 1000 // 4_000_000, 100 * K * 8 * 1000 // 128_000, 0, 0]
        assert listing[3].chunk_count == 0

        # A recording that ends with a battery-empty event (the cause logged before the stop).
        events = [e for e in host.event_log() if e.recording_id == listing[0].recording_id]
        assert [e.kind for e in events] == [EventKind.RECORD_START, EventKind.BATTERY_EMPTY,
                                            EventKind.RECORD_STOP]
        assert events[1].at_ms == events[2].at_ms == listing[0].ended_ms

        assert host.release(listing[0].recording_id).freed_bytes == 700 * K
        assert (media / "a-0001.mp4").read_bytes() == files["a-0001.mp4"]  # never deleted


def test_a_file_changed_since_signed_is_refused_not_served(tmp_path: Path) -> None:
    original = random.Random(3).randbytes(300 * K)
    media = _media(tmp_path, {"a-0001.mp4": original})
    with running(tmp_path / "cam0", "--media-dir", media, "--chunk-size", str(64 * K)
                 ) as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        (rec,) = host.list_recordings()
        assert isinstance(host.read_chunk(rec.recording_id, 0), ChunkRead)
        # Same size, same mtime: only the content (and so the inode, as editors write) differs.
        edited = media / "a-0001.mp4.new"
        edited.write_bytes(bytes(b ^ 0xFF for b in original))
        os.utime(edited, (MTIME_S, MTIME_S))
        edited.replace(media / "a-0001.mp4")
        refused = host.read_chunk(rec.recording_id, 1)
        assert isinstance(refused, m.Error), refused
        assert refused.code == ErrorCode.STORAGE_FAULT
        assert "a-0001.mp4 changed since signed" in refused.message


def test_a_gibibyte_recording_is_served_in_bounded_memory(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    big = media / "long.mkv"
    with open(big, "wb") as f:  # sparse: cheap to make, read back as zeros
        f.truncate(1 << 30)
        f.seek((1 << 30) - 5)
        f.write(b"tail!")
    with running(tmp_path / "cam0", "--media-dir", media, "--chunk-size", "1M") as cam, \
            cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        rec = host.list_recordings()[0]
        assert (rec.size, rec.chunk_count) == (1 << 30, 1024)
        last = host.read_chunk(rec.recording_id, 1023)
        assert isinstance(last, ChunkRead)
        assert last.data.endswith(b"tail!") and len(last.data) == 1 << 20
        seal = host.seal(rec.recording_id)
        assert seal.info.last_chunk_digest.hex() != "00" * 32
        status = Path(f"/proc/{cam.proc.pid}/status").read_text()
        peak_kib = int(next(ln.split()[1] for ln in status.splitlines()
                            if ln.startswith("VmHWM:")))
        assert peak_kib < 200 * K, f"peak RSS {peak_kib} KiB for a 1 GiB recording"


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    media = _media(tmp_path, {"a.mp4": b"x", "notes.txt": b"y"})
    status, stderr = run_to_exit("--port", tmp_path / "cam0", "--media-dir", media)
    assert status == 2
    assert "notes.txt: unsupported extension '.txt'" in stderr


def test_existing_file_at_port_is_not_replaced(tmp_path: Path) -> None:
    port = tmp_path / "cam0"
    port.write_text("not a link")
    status, stderr = run_to_exit("--port", port)
    assert status == 2 and "not a symlink" in stderr
    assert port.read_text() == "not a link"


def test_stale_link_is_replaced(tmp_path: Path) -> None:
    port = tmp_path / "cam0"
    port.symlink_to(tmp_path / "gone")
    with running(port) as cam, cam.host() as host:
        assert os.readlink(port).startswith("/dev/pts/")
        assert host.hello().camera_uid == cam.uid
