"""A whole dock at once: 16 cameras (8 on the simulated USB bus, 8 on serial ptys) docked
together, offloading at most ``max_concurrent_offloads = 4`` at a time. All of them complete,
every manifest verifies, and the console sees every camera's status while the run goes on —
including the cameras that wait for an offload slot.

How long an offload holds its slot depends on the machine, so the test makes "waiting for a
slot" certain rather than likely: the footage store (a tmpfs) starts just below its reserve.
The first four cameras to start offloading hold the four slots, paused on the reserve; the
other twelve wait for a slot. Both kinds must keep publishing a fresh status meanwhile (the
camera is asked again every status interval, 5 s). Then space returns and all 16 complete."""

from __future__ import annotations

import shutil
from typing import Any

from tests.e2e.harness import CHUNK, Harness, assert_contiguous, make_media, sha256_hex
from tests.helpers import Mosquitto, tmpfs

K = 1024
M = 1024 * K
USB_CAMERAS = 8
SERIAL_CAMERAS = 8
SLOTS = 4  # max_concurrent_offloads
RESERVE = 1 * M  # storage_reserve_bytes
RECORDINGS = (192 * K, 192 * K)  # per camera: 2 recordings of 3 chunks


def _pending(status: dict[str, Any]) -> bool:
    """Docked, with footage still to store."""
    off = status.get("offload") or {}
    return bool(status.get("docked")) and off.get("bytes_stored", 0) < off.get("bytes_total", 0)


def _all_stored(status: dict[str, Any]) -> bool:
    """Docked, with every recording stored — or already released after the console's ack, when
    that came first (progress is published at most once a second, so the agent may go straight
    from some progress to the emptied camera)."""
    off = status.get("offload") or {}
    stored = (off.get("recordings_stored"), off.get("bytes_stored"))
    return bool(status.get("docked")) and off.get("bytes_stored") == off.get("bytes_total") and (
        stored in ((len(RECORDINGS), sum(RECORDINGS)), (0, 0)))


def _slot_intervals(steps: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Camera uid → journal positions of its first ``offload_start`` and its last ``stored``:
    when it held an offload slot, in the journal's own (append) order."""
    start: dict[str, int] = {}
    end: dict[str, int] = {}
    for pos, step in enumerate(steps):
        if step["step"] == "offload_start":
            start.setdefault(step["camera_uid"], pos)
        elif step["step"] == "stored":
            end[step["camera_uid"]] = pos
    return {uid: (start[uid], end[uid]) for uid in start if uid in end}


def test_sixteen_cameras_usb_and_serial_offload_together(e2e: Harness, mosquitto: Mosquitto
                                                         ) -> None:
    cams = [e2e.camera(f"usb{i:02d}", usb=True, media=make_media(RECORDINGS), start=False)
            for i in range(USB_CAMERAS)]
    cams += [e2e.camera(f"tty{i:02d}", media=make_media(RECORDINGS), start=False)
             for i in range(SERIAL_CAMERAS)]
    agent = e2e.make_agent(mosquitto, usb=True, settings={
        "max_concurrent_offloads": SLOTS, "storage_reserve_bytes": RESERVE,
        "session_timeout_s": 10})  # 16 sessions and their cameras share 2 cores
    e2e.start_cameras(cams)
    assert len({cam.slot for cam in cams}) == len(cams)
    assert sorted(cam.slot for cam in cams if cam.usb) == [
        f"usb:1-1.{n}" for n in range(1, USB_CAMERAS + 1)]
    agent.enroll(*cams)
    console = e2e.console(mosquitto)
    by_uid = {cam.uid_hex: cam for cam in cams}

    with tmpfs(agent.state_dir / "footage", 16 * M) as footage:
        ballast = footage / "ballast.bin"  # deleting it is "space returns"
        ballast.write_bytes(bytes(shutil.disk_usage(footage).free - RESERVE - 16 * K))
        assert shutil.disk_usage(footage).free - RESERVE < CHUNK  # not one chunk fits
        agent.start()

        # All 16 docked: each has a readiness verdict out, with its footage pending.
        e2e.wait(lambda: console.events_named("storage_low"), "storage_low")
        for cam in cams:
            status = e2e.wait(lambda cam=cam: console.docked_status(cam, _pending),
                              f"readiness of {cam.name}")
            assert status["slot"] == cam.slot and status["reasons"] == ["footage_pending"]
        # Exactly four hold a slot (started, paused on the reserve); the twelve others wait.
        def started() -> set[str] | None:
            uids = {s["camera_uid"] for s in agent.steps("offload_start")}
            ready = {s["camera_uid"] for s in agent.steps("readiness")}
            return uids if ready == set(by_uid) and len(uids) >= SLOTS else None
        holders = e2e.wait(started, "every readiness and four offloads in the journal")
        assert len(holders) == SLOTS, holders
        # Every camera's status keeps being refreshed meanwhile: a second reading of the
        # camera (its clock moved on), still docked with footage pending.
        for cam in cams:
            e2e.wait(lambda cam=cam: len({s["camera_clock_ms"] for s in
                                          console.camera_statuses(cam) if _pending(s)}) >= 2,
                     f"a refreshed status of {cam.name} while "
                     f"{'paused in its slot' if cam.uid_hex in holders else 'waiting for a slot'}")
        # A waiting camera taken out of the dock is noticed while it waits (not only once a
        # slot comes free), and is served again when it comes back.
        leaver = next(cam for cam in cams if cam.usb and cam.uid_hex not in holders)
        assert leaver.stop() == 0
        e2e.wait(lambda: (console.last_status(leaver) or {}).get("docked") is False,
                 f"{leaver.name} reported undocked while waiting for a slot")
        assert [s["step"] for s in agent.steps(camera=leaver)][-1] == "unplugged"
        leaver.start()
        e2e.wait(lambda: len(agent.steps("readiness", camera=leaver)) == 2,
                 f"{leaver.name} docked again")
        assert {s["camera_uid"] for s in agent.steps("offload_start")} == holders
        assert agent.stored_ids() == set() and console.snapshot()["manifest_msgs"] == []

        ballast.unlink()  # space returns: everyone completes
        e2e.wait(lambda: console.events_named("storage_ok"), "storage_ok")
        expected = {rid: data for cam in cams for rid, data in cam.recordings.items()}
        e2e.wait(lambda: {m["recording_id"] for m in console.snapshot()["verified"].values()}
                 >= set(expected), "a verified manifest for every recording", poll=0.1)
        for cam in cams:
            e2e.wait(lambda cam=cam: console.docked_status(cam, _all_stored),
                     f"{cam.name}: a status with everything stored")
        for cam in cams:
            e2e.wait(lambda cam=cam: cam.released() == set(cam.recordings),
                     f"{cam.name} released", poll=0.1)
        lines = agent.verify_all()
        steps = agent.steps()
        assert agent.stop() == 0

    snap = console.snapshot()
    assert snap["rejected"] == []
    manifests = {m["recording_id"]: m for m in snap["verified"].values()}
    assert set(manifests) == set(expected)
    for cam in cams:
        for rid, data in cam.recordings.items():
            assert manifests[rid]["camera_uid"] == cam.uid_hex
            assert manifests[rid]["sha256"] == sha256_hex(data)
            assert_contiguous(manifests[rid])
    assert sorted(lines) == sorted(f"{rid} OK" for rid in expected)
    # One storage episode for the whole dock, not one per camera.
    for name in ("storage_low", "storage_ok"):
        assert len({e["id"] for e in console.events_named(name)}) == 1, name

    # What the console saw of each camera, in arrival order: retained statuses from its own
    # slot, docked with footage pending before docked with everything stored.
    for cam in cams:
        mine = [(s, retain) for s, retain in snap["statuses"] if s["camera_uid"] == cam.uid_hex]
        assert all(retain for _, retain in mine), cam.name
        assert all(s["slot"] == cam.slot for s, _ in mine), (cam.name, cam.slot)
        first_pending = next(i for i, (s, _) in enumerate(mine) if _pending(s))
        first_done = next(i for i, (s, _) in enumerate(mine) if _all_stored(s))
        assert first_pending < first_done, (cam.name, mine)

    # Never more than four offloads at once, and four did run at once; every camera offloaded.
    intervals = _slot_intervals(steps)
    assert {by_uid[uid].name for uid in intervals} == {cam.name for cam in cams}
    busy = [sum(a <= pos <= b for a, b in intervals.values()) for pos in range(len(steps))]
    assert max(busy) == SLOTS, busy
