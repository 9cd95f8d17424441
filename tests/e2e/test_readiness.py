"""Art. 7 on docking: unknown cameras left untouched, readiness reasons for battery, storage,
self-test and clock, the clock offset kept as evidence and corrected."""

from __future__ import annotations

from agent.clock import dock_clock_synchronised
from tests.e2e.harness import Harness, make_media
from tests.helpers import Mosquitto

K = 1024
SKEW_MS = 120_000
# The offset is measured over a pty: well within a second even on a loaded machine.
MEASURE_TOLERANCE_MS = 1000


def test_unknown_camera_and_readiness_reasons(e2e: Harness, mosquitto: Mosquitto) -> None:
    stranger = e2e.camera("stranger", media=make_media([64 * K]), args=["--clock-skew", "30"])
    lowbat = e2e.camera("lowbat", args=["--battery", "20"])
    lowstore = e2e.camera("lowstore", args=["--storage-total", "2G", "--storage-free", "1G",
                                            "--bitrate", "8000000"])
    skewed = e2e.camera("skewed", media=make_media([100 * K + 1]),
                        args=["--clock-skew", str(SKEW_MS // 1000)])
    selftest = e2e.camera("selftest", args=["--self-test-fault", "7"])
    agent = e2e.make_agent(mosquitto)
    agent.enroll(lowbat, lowstore, skewed, selftest)  # not the stranger
    console = e2e.console(mosquitto)
    agent.start()

    # Not enrolled: an event, and the camera is left exactly as it was.
    event = e2e.wait(lambda: console.events_named("unknown_device", stranger),
                     "unknown_device")[0]
    assert event["details"]["slot"] == str(stranger.port)
    assert event["details"]["serial"] == f"SIM-{stranger.uid_hex[:8].upper()}"
    e2e.wait(lambda: agent.steps("refused", camera=stranger), "the refusal in the journal")
    assert [s["step"] for s in agent.steps(camera=stranger)] == ["hello", "refused"]
    assert agent.steps("refused", camera=stranger)[0]["reason"] == "unknown_device"

    # One reason each, also announced as a not_ready event.
    for cam, reason in ((lowbat, "battery_low"), (lowstore, "storage_low"),
                        (selftest, "self_test_failed")):
        status = e2e.wait(lambda cam=cam: console.docked_status(cam), f"{cam.name} readiness")
        assert (status["ready"], status["reasons"]) == (False, [reason]), status
        events = e2e.wait(lambda cam=cam: console.events_named("not_ready", cam),
                          f"not_ready of {cam.name}")
        assert events[0]["details"]["reasons"] == [reason]
    assert console.docked_status(lowbat)["battery_pct"] == 20  # type: ignore[index]
    assert console.docked_status(lowstore)["storage_free"] == 1 << 30  # type: ignore[index]
    st = console.docked_status(selftest)
    assert st is not None and st["self_test_ok"] is False and st["fault_codes"] == [7]

    # The skewed clock: the offset before is kept as evidence, then the clock is set.
    status = e2e.wait(lambda: console.docked_status(skewed), "skewed readiness")
    offset = status["clock_offset_before_ms"]
    assert abs(offset - SKEW_MS) < MEASURE_TOLERANCE_MS, status
    assert status["clock_set"] is True
    assert abs(status["clock_residual_ms"]) <= 500, status  # target 20 ms; slack for CI load
    assert "clock_unsynced" not in status["reasons"]
    measured = agent.steps("clock_measured", camera=skewed)[0]
    assert measured["offset_ms"] == offset
    clock_sets = skewed.camera_events("CLOCK_SET")
    assert len(clock_sets) >= 1 and clock_sets[0]["detail"].startswith("-1")  # back ~120 s
    manifest = e2e.wait(lambda: console.verified_for(skewed), "the skewed camera's manifest")
    (only,) = manifest.values()
    assert only["clock_offset_ms"] == offset  # recordings made on that clock are off by it
    e2e.wait(lambda: console.docked_status(skewed, lambda s: s["ready"]), "skewed ready")

    # Checked last, when the others have long been served: the stranger is still untouched.
    assert stranger.camera_events("CLOCK_SET") == []
    assert stranger.released() == set()
    assert not {m["camera_uid"] for m in console.snapshot()["manifest_msgs"]} & {
        stranger.uid_hex}
    assert [s["step"] for s in agent.steps(camera=stranger)] == ["hello", "refused"]


def test_unsynchronised_dock_clock_does_not_set_the_camera_clock(
    e2e: Harness, mosquitto: Mosquitto
) -> None:
    # This invariant depends on the host: a dock whose clock is NTP-synchronised must set the
    # camera clock, one whose clock is not must leave it alone and say clock_unsynced.
    synced = dock_clock_synchronised()
    cam = e2e.camera("skewed", args=["--clock-skew", str(SKEW_MS // 1000)])
    agent = e2e.make_agent(mosquitto, require_ntp_sync=True)
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start()

    status = e2e.wait(lambda: console.docked_status(cam), "readiness")
    assert abs(status["clock_offset_before_ms"] - SKEW_MS) < MEASURE_TOLERANCE_MS, status
    assert agent.steps("clock_measured", camera=cam)[0]["dock_clock_trusted"] is synced
    if synced:
        assert status["clock_set"] is True
        assert "clock_unsynced" not in status["reasons"]
        assert cam.camera_events("CLOCK_SET")
        return
    assert status["clock_set"] is False
    assert status["ready"] is False and status["reasons"] == ["clock_unsynced"], status
    assert abs(status["clock_residual_ms"] - SKEW_MS) < MEASURE_TOLERANCE_MS
    event = e2e.wait(lambda: console.events_named("not_ready", cam), "not_ready")[0]
    assert event["details"]["reasons"] == ["clock_unsynced"]
    assert agent.steps("clock_not_set", camera=cam)
    assert agent.steps("clock_set", camera=cam) == []
    assert cam.camera_events("CLOCK_SET") == []
