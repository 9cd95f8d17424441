"""The emulator's building blocks, in process: clock, line shaper, event log, sources, state."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from camsim.clock import CameraClock, ClockAnchor
from camsim.errors import ConfigError
from camsim.eventlog import EventLog, parse_log_event
from camsim.faults import ClockJump, parse_faults
from camsim.keys import load_or_create_key
from camsim.line import LineFaults, LineShaper, LineState
from camsim.recordings import GENERATED_BLOCK, GeneratedSource, parse_recording_ref, parse_size
from camsim.state import CameraState, StateStore
from firmware_protocol.frames import Frame, FrameDecoder, FrameError, FrameErrorKind, encode_frame
from firmware_protocol.messages import EventKind, LogEntry
from firmware_protocol.messages import EventLog as EventLogMessage


class FakeHostClock:
    """A host clock the test advances explicitly (µs)."""

    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


def test_clock_skew_drift_and_set() -> None:
    host = FakeHostClock(1_700_000_000_000_000)
    clock = CameraClock(skew_s=-2.5, drift_ppm=100, host_clock=host)
    assert clock.now_us() == host.now_us - 2_500_000
    host.now_us += 10_000_000  # 10 s later the camera has gained 1 ms
    assert clock.now_us() == host.now_us - 2_500_000 + 1_000
    previous, current = clock.set(1_800_000_000_000_000)
    assert previous == host.now_us - 2_499_000 and current == 1_800_000_000_000_000
    host.now_us += 1_000_000  # drift starts over from the set
    assert clock.now_us() == 1_800_000_000_000_000 + 1_000_100
    assert clock.anchor == ClockAnchor(host.now_us - 1_000_000, 1_800_000_000_000_000)
    restored = CameraClock(drift_ppm=100, anchor=clock.anchor, host_clock=host)
    assert restored.now_us() == clock.now_us()


def _frames(sizes: list[int]) -> list[bytes]:
    return [encode_frame(0x0F, n, bytes([n % 251]) * size, 1 << 20) for n, size in
            enumerate(sizes, 1)]


def test_garbage_goes_between_frames_and_never_forms_a_marker() -> None:
    frames = _frames([100, 3000, 5, 70000, 10, 10, 10, 2000] * 20)
    shaper = LineShaper(LineFaults(garbage_every=100), seed=1)
    out = b"".join(shaper.shape(frames[:50]) + shaper.shape(frames[50:]))
    assert shaper.noise_bursts > 60 and len(out) > sum(map(len, frames))
    decoder = FrameDecoder(1 << 20)
    decoder.feed(out)
    got: list[Frame | FrameError] = []
    while (item := decoder.next()) is not None:
        got.append(item)
    assert [encode_frame(f.type, f.seq, f.payload, 1 << 20) for f in got
            if isinstance(f, Frame)] == frames
    errors = [e for e in got if isinstance(e, FrameError)]
    assert {e.kind for e in errors} == {FrameErrorKind.GARBAGE}
    assert sum(e.skipped for e in errors) == len(out) - sum(map(len, frames))


@pytest.mark.parametrize(("faults", "state"), [
    (LineFaults(unplug_after_bytes=5000), LineState.UNPLUGGED),
    (LineFaults(stall_after_bytes=5000), LineState.STALLED),
    (LineFaults(unplug_after_bytes=5000, stall_after_bytes=5000), LineState.UNPLUGGED),
    (LineFaults(unplug_after_bytes=9000, stall_after_bytes=5000), LineState.STALLED),
])
def test_line_is_cut_after_exactly_n_bytes(faults: LineFaults, state: LineState) -> None:
    shaper = LineShaper(faults)
    first = shaper.shape(_frames([1000, 1000]))
    assert shaper.state is LineState.OPEN
    rest = shaper.shape(_frames([10000, 10]))
    assert shaper.state is state
    assert sum(map(len, first + rest)) == shaper.written == 5000
    assert shaper.shape(_frames([10])) == []


def test_unplug_after_zero_bytes_writes_nothing() -> None:
    shaper = LineShaper(LineFaults(unplug_after_bytes=0))
    assert shaper.shape(_frames([10])) == [] and shaper.state is LineState.UNPLUGGED


def test_event_log_pages_fit_the_payload_and_say_more() -> None:
    log = EventLog()
    for n in range(300):
        log.append(EventKind.FAULT, n, detail="x" * (n % 40))
    since, seen = 1, []
    while True:
        entries, more = log.page(since, 1000, 4096)
        assert len(EventLogMessage(entries, more).encode()) <= 4096
        seen += entries
        if not more:
            break
        since = entries[-1].seq + 1
    assert [e.seq for e in seen] == list(range(1, 301))
    assert log.page(299, 1, 4096) == (log.entries[298:299], True)
    assert log.page(301, 10, 4096) == ((), False)
    assert EventLog(log.entries).next_seq == 301


def test_generated_content_is_deterministic_and_independent_of_how_it_is_read() -> None:
    size = 3 * GENERATED_BLOCK + 123
    source = GeneratedSource("seed", size)
    whole = source.read(0, size)
    assert len(whole) == size and whole == GeneratedSource("seed", size).read(0, size)
    assert whole != GeneratedSource("other", size).read(0, size)
    rng = random.Random(3)
    for _ in range(50):
        offset = rng.randrange(size)
        length = rng.randrange(1, size - offset + 1)
        assert source.read(offset, length) == whole[offset : offset + length]


def test_size_and_spec_parsers() -> None:
    assert [parse_size(s) for s in ("0", "17", "2k", "3M", "1G")] == [
        0, 17, 2048, 3 << 20, 1 << 30]
    for bad in ("", "1.5M", "-1", "1T", "M"):
        with pytest.raises(ConfigError):
            parse_size(bad)
    assert parse_recording_ref("3").position == 3
    assert parse_recording_ref("ab" * 16).recording_id == bytes([0xAB] * 16)
    faults = parse_faults(["wrong-key", "corrupt-chunk=1:2", "bad-signature=" + "cd" * 16 + ":0",
                           "garbage-every=1K", "unplug-after-bytes=0"])
    assert faults.wrong_key and str(faults.corrupt_chunks[0]) == "1:2"
    assert faults.bad_signatures[0].recording.recording_id == bytes([0xCD] * 16)
    assert faults.line == LineFaults(unplug_after_bytes=0, garbage_every=1024)
    assert parse_faults(["clock-jump=-3600@2"]).clock_jump == ClockJump(-3600.0, 2)
    assert parse_faults(["clock-jump=5"]).clock_jump == ClockJump(5.0, 1)
    for bad in ("clock-jump=x", "clock-jump=0@1", "clock-jump=1@0", "clock-jump=inf"):
        with pytest.raises(ConfigError):
            parse_faults([bad])
    inj = parse_log_event("Battery_Empty@-3600:0")
    assert (inj.kind, inj.offset_ms, inj.recording) == (
        EventKind.BATTERY_EMPTY, -3_600_000, parse_recording_ref("0"))
    with pytest.raises(ConfigError, match="kind must be one of"):
        parse_log_event("power_on@0")


def test_state_round_trips_and_a_damaged_file_is_refused(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    assert store.load() is None
    state = CameraState(bytes(range(16)), ClockAnchor(1, 2), frozenset({bytes(16)}),
                        {bytes([1] * 16): (5, 6)},
                        (LogEntry(1, 10, EventKind.POWER_ON), LogEntry(2, 11, EventKind.FAULT,
                                                                       bytes([2] * 16), "née")),
                        3)
    store.save(state)
    assert store.load() == state
    assert not list((tmp_path / "state").glob(".*tmp"))  # the temporary file was renamed
    store.path.write_text('{"format": 1, "camera_uid": "zz"}')
    with pytest.raises(ConfigError, match="damaged"):
        store.load()


def test_a_key_file_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="not an unencrypted Ed25519 PKCS#8 PEM key"):
        load_or_create_key(bad)
    _, created = load_or_create_key(tmp_path / "new.pem")
    assert created and (tmp_path / "new.pem.pub").exists()
    (tmp_path / "new.pem.pub").write_text("stale")
    _, created = load_or_create_key(tmp_path / "new.pem")
    assert not created and (tmp_path / "new.pem.pub").read_text().startswith("-----BEGIN PUB")
