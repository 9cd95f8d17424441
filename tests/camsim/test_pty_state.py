"""``--state-dir``: what a camera remembers across restarts (unplug/replug)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from firmware_protocol.messages import EventKind

from .camsim_process import run_to_exit, running

MiB = 1 << 20


def test_release_survives_a_restart(tmp_path: Path) -> None:
    state, port = tmp_path / "state", tmp_path / "cam0"
    args = ("--generate", "3:1M", "--storage-total", "1G", "--state-dir", state)
    key = state / "device-key.pem"  # where the key lives without --key
    with running(port, *args, key=key, pass_key=False) as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        before = host.list_recordings()
        free_before = host.status().storage_free
        assert host.release(before[0].recording_id).freed_bytes == MiB
        log_before = host.event_log()
    with running(port, *args, key=key, pass_key=False) as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        after = host.list_recordings()
        assert after == before[1:]  # same ids, same times
        assert host.status().storage_free == free_before + MiB
        assert host.release(before[0].recording_id).freed_bytes == 0
        log_after = host.event_log()
    assert log_after[: len(log_before)] == log_before
    tail = [e.kind for e in log_after[len(log_before):]]
    assert tail == [EventKind.POWER_OFF, EventKind.POWER_ON]  # no duplicate record events
    assert [e.seq for e in log_after] == list(range(1, len(log_after) + 1))


def test_clock_set_survives_a_restart_and_recording_times_do_not_move(tmp_path: Path) -> None:
    state, port = tmp_path / "state", tmp_path / "cam0"
    target_us = 2_000_000_000_000_000
    with running(port, "--generate", "1:100K", "--state-dir", state, key=state / "k.pem"
                 ) as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        listing = host.list_recordings()
        set_at = time.monotonic()
        host.set_time(target_us)
    # Restarted with a skew: a camera with saved state keeps its own clock.
    with running(port, "--generate", "1:100K", "--state-dir", state, "--clock-skew", "-86400",
                 key=state / "k.pem") as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        _, t1, _, _ = host.probe()
        elapsed_us = (time.monotonic() - set_at) * 1e6
        assert target_us <= t1 <= target_us + elapsed_us + 1_000_000
        assert host.list_recordings() == listing
        assert host.read_recording(listing[0], cam.public_key).ok
        kinds = [e.kind for e in host.event_log()]
        assert kinds.count(EventKind.CLOCK_SET) == 1
    saved = json.loads((state / "state.json").read_text())
    assert saved["camera_uid"] == cam.uid.hex()
    assert "PRIVATE" not in (state / "state.json").read_text()


def test_state_of_another_camera_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running(tmp_path / "cam0", "--state-dir", state):
        pass
    status, stderr = run_to_exit("--port", tmp_path / "cam0", "--state-dir", state,
                                 "--key", tmp_path / "other.pem")
    assert status == 2
    assert "--state-dir belongs to camera" in stderr
