"""Scenario 7: clock faults.

* The dock's own clock is not NTP-synchronised (``adjtimex`` reports ``TIME_ERROR``) and
  ``clock.require_ntp_sync = true``: the camera's clock is not set (camsim logs no CLOCK_SET and
  keeps its skew), the readiness says ``clock_unsynced`` (status and ``not_ready`` event), the
  session step says why — and the offload is not held up by it. Once through the shim (any
  machine), once with whatever this machine's kernel reports.
* A docked camera's clock jumps (backwards an hour, forwards two minutes) between two status
  readings: the session records a ``camera_clock_jump`` step and event with the jump and the
  offset measured again, and the camera is reported ``clock_unsynced`` from then on; a camera
  docked alongside whose clock keeps time raises nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.clock import dock_clock_synchronised
from tests.e2e.harness import Camera, Console, Harness, make_media
from tests.faults.harness import FaultAgent, Invariants, Summary, make_fault_agent
from tests.helpers import Mosquitto

K = 1024
SKEW_S = 45
TOLERANCE_MS = 1000  # readiness.clock_tolerance_ms (default)


def _unsynced_docking(e2e: Harness, mosquitto: Mosquitto, *, forced: bool
                      ) -> tuple[FaultAgent, Console, Camera, Invariants]:
    cam = e2e.camera("skewed", media=make_media([150 * K]), args=["--clock-skew", str(SKEW_S)],
                     start=False)
    cam.create_key()
    agent = make_fault_agent(e2e, mosquitto.url, require_ntp_sync=True)
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start(shim={"clock_unsynced": True} if forced else None)
    cam.start()
    return agent, console, cam, Invariants(e2e, console, [cam])


def _assert_not_set(e2e: Harness, agent: FaultAgent, console: Console, cam: Camera,
                    inv: Invariants) -> None:
    inv.wait_complete("the offload, clock or no clock")
    measured = agent.steps("clock_measured", camera=cam)
    assert measured and measured[0]["dock_clock_trusted"] is False, measured
    assert abs(measured[0]["offset_ms"] - SKEW_S * 1000) <= TOLERANCE_MS, measured
    not_set = agent.steps("clock_not_set", camera=cam)
    assert [s["reason"] for s in not_set] == ["dock clock not synchronised"], not_set
    assert not agent.steps("clock_set", camera=cam)
    assert cam.camera_events("CLOCK_SET") == [], "the camera's clock was set"
    status = e2e.wait(lambda: console.docked_status(cam), "a readiness verdict")
    assert status["clock_set"] is False and "clock_unsynced" in status["reasons"], status
    assert abs(status["clock_residual_ms"] - SKEW_S * 1000) <= TOLERANCE_MS, status
    not_ready = console.events_named("not_ready", cam)
    assert not_ready and "clock_unsynced" in not_ready[0]["details"]["reasons"], not_ready
    agent.stop()
    inv.check_final()
    inv.assert_ok()


def test_dock_clock_not_synchronised_camera_clock_not_set(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    """adjtimex answers TIME_ERROR through the shim: the same on every machine."""
    s = summary("clock-dock-unsynchronised")
    agent, console, cam, inv = _unsynced_docking(e2e, mosquitto, forced=True)
    assert "bwc-fault-shim: installed (clock_unsynced)" in agent.run_log()
    _assert_not_set(e2e, agent, console, cam, inv)
    s.run("forced_by_shim")


def test_dock_clock_as_this_kernel_reports_it(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    """No shim: whatever adjtimex says here decides, and the agent follows it."""
    s = summary("clock-dock-kernel")
    synced = dock_clock_synchronised()
    s.extra["kernel_synchronised"] = synced
    agent, console, cam, inv = _unsynced_docking(e2e, mosquitto, forced=False)
    if not synced:
        _assert_not_set(e2e, agent, console, cam, inv)
        s.run("kernel_unsynchronised")
        return
    inv.wait_complete("the offload")
    assert agent.steps("clock_set", camera=cam) and cam.camera_events("CLOCK_SET")
    status = e2e.wait(lambda: console.docked_status(cam), "a readiness verdict")
    assert status["clock_set"] is True and "clock_unsynced" not in status["reasons"], status
    s.run("kernel_synchronised")


def test_camera_clock_jump_mid_session_is_detected_and_recorded(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    s = summary("clock-camera-jump")
    jumps = {"back": -3600.0, "forward": 120.0}
    cams = {name: e2e.camera(name, media=make_media([200 * K, 90 * K], prefix=name),
                             start=False) for name in (*jumps, "steady")}
    for cam in cams.values():
        cam.create_key()
    agent = make_fault_agent(e2e, mosquitto.url, settings={"status_interval_s": 0.5})
    agent.enroll(*cams.values())
    console = e2e.console(mosquitto)
    inv = Invariants(e2e, console, list(cams.values()))
    agent.start()
    for name, seconds in jumps.items():
        cams[name].start(f"clock-jump={seconds}@2")  # after its second status reading
    cams["steady"].start()

    for name, seconds in jumps.items():
        cam = cams[name]
        event = e2e.wait(lambda cam=cam: console.events_named("camera_clock_jump", cam),
                         f"camera_clock_jump from {name}")[0]
        details: dict[str, Any] = event["details"]
        assert details["slot"] == str(cam.port)
        assert abs(details["jump_ms"] - seconds * 1000) <= TOLERANCE_MS, details
        assert abs(details["offset_ms"] - seconds * 1000) <= TOLERANCE_MS, details
        assert "clock jump fault" in cam.log_text()
        steps = agent.steps("camera_clock_jump", camera=cam)
        assert len(steps) == 1 and steps[0]["jump_ms"] == details["jump_ms"], steps
        status = e2e.wait(lambda cam=cam: console.docked_status(
            cam, lambda st: "clock_unsynced" in st["reasons"]),
            f"{name} reported clock_unsynced after the jump")
        assert abs(status["clock_residual_ms"] - seconds * 1000) <= TOLERANCE_MS, status
        s.run(name)

    # The offloads went on; the steady camera, read as often, raised nothing.
    inv.wait_complete("every recording stored, published and released")
    steady = cams["steady"]
    e2e.wait(lambda: len(agent.steps("camera_clock_jump")) == 2
             and len([st for st in console.camera_statuses(steady) if st.get("docked")]) >= 6,
             "several status readings of the steady camera")
    assert console.events_named("camera_clock_jump", steady) == []
    assert "clock_unsynced" not in console.camera_statuses(steady)[-1]["reasons"]
    s.run("steady")
    agent.stop()
    inv.check_final()
    inv.assert_ok()
