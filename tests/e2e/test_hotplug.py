"""Hot-plug, end to end (issue 4, item 3): a docked camera sitting idle in the dock is reported
undocked when it is unplugged, over a pty and over the simulated USB bus, with the slot named by
its physical place; plugged in again, it is served again in the same slot.

The agent's status poll is set an hour apart (``status_interval_s``), so nothing but hot-plug
can notice the unplug of an idle camera before the test's deadline: the test asserts *that* it
is noticed and how it is reported, never how fast (benchmarks/usb_readiness.py measures that).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.harness import Camera, Console, Harness, make_media
from tests.helpers import Mosquitto

K = 1024
HOUR_S = 3600
LEFT = "device left (no longer found by hot-plug)"  # the journal's reason (agent/session.py)


def _emptied(s: dict[str, Any]) -> bool:
    """Docked, ready, and nothing left on the camera: the status a session publishes last,
    after its releases, before it goes idle (no line traffic until the next status poll)."""
    return (s["docked"] is True and s.get("ready") is True
            and s["offload"]["recordings_total"] == 0)


def _first(console: Console, cam: Camera, since: int, match: Callable[[dict[str, Any]], bool]
           ) -> Callable[[], dict[str, Any] | None]:
    """A condition: the first status of ``cam`` from the ``since``-th on that matches."""
    def found() -> dict[str, Any] | None:
        return next((s for s in console.camera_statuses(cam)[since:] if match(s)), None)
    return found


@pytest.mark.parametrize("usb", [False, True], ids=["pty", "usb"])
def test_an_idle_docked_camera_unplugged_is_reported_undocked_then_served_again(
    e2e: Harness, mosquitto: Mosquitto, usb: bool
) -> None:
    cam = e2e.camera("idler", usb=usb, media=make_media([96 * K + 5]))
    # Released as soon as stored, so the session's own sequence ends idle with an empty camera
    # (an acknowledged release could fall to the next status poll, an hour away).
    agent = e2e.make_agent(mosquitto, usb=usb, settings={
        "status_interval_s": HOUR_S, "erase_after": "stored"})
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start()

    since = 0  # statuses of the current docking start here
    for run in range(2):
        slot = cam.slot
        idle = e2e.wait(_first(console, cam, since, _emptied),
                        f"{cam.name} offloaded, emptied and idle in the dock (run {run})")
        assert idle is not None and idle["slot"] == slot
        assert cam.released() == set(cam.recordings)
        assert [h["slot"] for h in agent.steps("hello", camera=cam)] == [slot] * (run + 1)

        # Unplugged while idle: reported undocked, from the slot it was in.
        before = len(console.camera_statuses(cam))
        assert cam.stop() == 0
        assert not cam.plugged
        left = e2e.wait(_first(console, cam, before, lambda s: s["docked"] is False),
                        f"{cam.name} reported undocked after the unplug (run {run})")
        assert left is not None and left["slot"] == slot
        assert left["ready"] is True  # the last values stay, with docked: false
        last = agent.steps(camera=cam)[-1]
        assert last["step"] == "unplugged" and last["slot"] == slot, last
        assert last["reason"].endswith(LEFT), last  # hot-plug noticed it, not a status poll

        if run == 0:
            # Back in the dock with a new recording: the pty link, or the lowest free USB
            # port (the one it just left).
            assert cam.media_dir is not None
            cam.media["clip-09.mp4"] = os.urandom(40 * K + 1)
            (cam.media_dir / "clip-09.mp4").write_bytes(cam.media["clip-09.mp4"])
            since = len(console.camera_statuses(cam))
            cam.start()
            assert cam.slot == slot

    e2e.wait(lambda: set(console.verified_for(cam)) == set(cam.recordings),
             "a verified manifest for both recordings")
    assert console.events_named("protocol_error") == []
    assert console.events_named("session_crashed") == []
    assert agent.stop() == 0
