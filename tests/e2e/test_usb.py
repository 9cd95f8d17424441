"""Cameras on the simulated USB bus, end to end: ``camsim --usb`` devices found by the agent's
pyusb discovery (``usb_backend = "camsim:…"``), served by the same session code as serial, with
the slot named by the port chain (``usb:1-1.N``). Unplug and replug (into another port) resume
the offload; a stalled camera ends its session cleanly while the others are served, and stays
reported docked until it is unplugged."""

from __future__ import annotations

import os
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    EXIT_UNPLUGGED,
    Camera,
    Harness,
    assert_contiguous,
    make_media,
    sha256_hex,
)
from tests.helpers import Mosquitto

K = 1024
_USB_SLOT = re.compile(r"usb:1-1\.\d+")
_READ_CHUNK = re.compile(r"ReadChunk rec=([0-9a-f]{8}) idx=(\d+) ->")


def _assert_offloaded(e2e: Harness, cam: Camera) -> dict[str, dict[str, Any]]:
    """Every recording of ``cam`` has a verified manifest with its exact bytes, chunk by chunk."""
    console = e2e.consoles[0]
    e2e.wait(lambda: set(console.verified_for(cam)) == set(cam.recordings),
             f"a verified manifest for every recording of {cam.name}")
    manifests = console.verified_for(cam)
    for rid, data in cam.recordings.items():
        assert manifests[rid]["camera_uid"] == cam.uid_hex
        assert manifests[rid]["officer_id"] == cam.officer
        assert manifests[rid]["size"] == len(data)
        assert manifests[rid]["sha256"] == sha256_hex(data)
        assert_contiguous(manifests[rid])
    return manifests


def test_usb_session_dock_readiness_offload_verify_export_ack_release(
    e2e: Harness, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    alpha = e2e.camera("alpha", usb=True, media=make_media([200 * K + 123, 64 * K, 300 * K]))
    bravo = e2e.camera("bravo", usb=True, media=make_media([150 * K + 7]))
    cams = (alpha, bravo)
    assert {cam.slot for cam in cams} == {"usb:1-1.1", "usb:1-1.2"}  # lowest free ports
    expected = {rid: data for cam in cams for rid, data in cam.recordings.items()}
    agent = e2e.make_agent(mosquitto, usb=True)
    agent.enroll(*cams)
    console = e2e.console(mosquitto, ack_manifests=False)  # acks by hand, below
    agent.start()

    # Docked over USB: the readiness verdict on the camera status (retained), and the slot is
    # the physical port chain. The retained topic carries the latest status only, so on a fast
    # machine the first one seen may already be "ready"; the verdict at docking time is in the
    # not_ready event, which goes through the outbox and is never coalesced.
    first = {cam.name: e2e.wait(lambda cam=cam: console.docked_status(cam),
                                f"readiness of {cam.name}") for cam in cams}
    for cam in cams:
        status = first[cam.name]
        assert _USB_SLOT.fullmatch(status["slot"]) and status["slot"] == cam.slot, status
        event = e2e.wait(lambda cam=cam: console.events_named("not_ready", cam),
                         f"not_ready of {cam.name}")[0]
        assert event["details"]["reasons"] == ["footage_pending"], event
        assert event["details"]["slot"] == cam.slot, event
        assert status["offload"]["recordings_total"] == len(cam.media)
        assert status["offload"]["bytes_total"] == sum(map(len, cam.media.values()))
        assert status["battery_pct"] == 100 and status["clock_set"] is True
        hello = agent.steps("hello", camera=cam)
        assert [s["slot"] for s in hello] == [cam.slot], hello
        assert agent.steps("readiness", camera=cam)[0]["slot"] == cam.slot
    retained = {cam.name: [s for s, retain in console.snapshot()["statuses"]
                           if retain and s["camera_uid"] == cam.uid_hex and s.get("docked")]
                for cam in cams}
    assert all(retained.values()), retained

    # Offloaded through the bulk endpoints; each manifest verifies; the export is the original.
    for cam in cams:
        _assert_offloaded(e2e, cam)
    assert console.snapshot()["rejected"] == []
    for rid, data in expected.items():
        assert agent.export(rid, tmp_path / f"{rid}.export") == data

    # Nothing released before the console's acknowledgement; then each recording exactly once.
    assert agent.steps("released") == []
    assert all(cam.released() == set() for cam in cams)
    console.ack(m["manifest_id"] for m in console.snapshot()["verified"].values())
    e2e.wait(lambda: {s["recording_id"] for s in agent.steps("released")} >= set(expected),
             "RELEASE of every acknowledged recording")
    released = agent.steps("released")
    assert sorted(s["recording_id"] for s in released) == sorted(expected)
    assert {s["recording_id"]: s["freed_bytes"] for s in released} == {
        rid: len(data) for rid, data in expected.items()}
    assert all(s["slot"] == cam.slot for cam in cams for s in agent.steps("released", camera=cam))
    for cam in cams:
        ready = e2e.wait(lambda cam=cam: console.docked_status(
            cam, lambda s: s["ready"] and s["offload"]["recordings_total"] == 0),
            f"{cam.name} emptied and ready for duty")
        assert ready["reasons"] == [] and ready["slot"] == cam.slot
        assert ready["storage_free"] == first[cam.name]["storage_free"] + sum(
            len(d) for d in cam.media.values())
        assert cam.released() == set(cam.recordings)

    assert sorted(agent.verify_all()) == sorted(f"{rid} OK" for rid in expected)
    assert agent.stop() == 0
    for cam in cams:  # the agent let go of the interface: the camera saw its host leave
        assert f"host released {cam.device}" in cam.log_text(), cam.diagnostics()


def _chunk_requests(cam: Camera, run: int) -> dict[str, list[int]]:
    """Recording id prefix → chunk indices the camera was asked for in one run, in order."""
    requests: dict[str, list[int]] = defaultdict(list)
    for rid, idx in _READ_CHUNK.findall(cam.log_text(run)):
        requests[rid].append(int(idx))
    return requests


def test_usb_unplug_mid_transfer_then_replug_into_another_port_resumes(
    e2e: Harness, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    seed = int(os.environ.get("BWC_E2E_SEED", random.randrange(1 << 32)))
    # 500 KiB is 8 chunks: past the first chunk (and its headers) and well before the end of
    # the first recording, so chunk 0 is durable when the cable is pulled and the rest is not.
    offset = random.Random(seed).randrange(80 * K, 400 * K)
    why = f"seed={seed} unplug offset={offset} (BWC_E2E_SEED={seed} reproduces it)"
    cam = e2e.camera("wobbly", usb=True, media=make_media([500 * K, 333 * K + 5]),
                     faults=[f"unplug-after-bytes={offset}"])
    first_slot = cam.slot
    agent = e2e.make_agent(mosquitto, usb=True)
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start()

    assert cam.wait_exit() == EXIT_UNPLUGGED, why
    assert f"unplug fault: line closed after {offset} bytes" in cam.log_text(0), why
    assert not cam.plugged  # the device left the bus
    e2e.wait(lambda: agent.steps("unplugged", camera=cam), f"the agent to see the unplug; {why}")
    assert agent.stored_ids() == set(), why
    e2e.wait(lambda: (console.last_status(cam) or {}).get("docked") is False,
             f"{cam.name} reported undocked; {why}")

    # Another camera takes the freed port, so the replug lands in the next one.
    squatter = e2e.camera("squatter", usb=True, media=make_media([100 * K]), start=False)
    squatter.create_key()
    agent.enroll(squatter)  # before it plugs in: an unknown device would be refused
    console.trust(squatter)
    squatter.start()
    assert squatter.slot == first_slot, (squatter.slot, first_slot)
    cam.start()  # the replug, without the fault
    assert cam.slot != first_slot and _USB_SLOT.fullmatch(cam.slot), (cam.slot, first_slot)

    manifests = _assert_offloaded(e2e, cam)
    _assert_offloaded(e2e, squatter)
    assert console.snapshot()["rejected"] == [], why
    status = e2e.wait(lambda: console.docked_status(cam, lambda s: s["slot"] == cam.slot),
                      f"{cam.name}'s status from its new port")
    assert status["docked"] is True
    assert [s["slot"] for s in agent.steps("hello", camera=cam)] == [first_slot, cam.slot]

    # Resumed, never refetched: the replugged camera is first asked for the chunk in flight
    # at the unplug (or the next), never an earlier one; chunk 0 was durable by then.
    assert "resume at chunk" in agent.log_text(), why
    before, after = _chunk_requests(cam, 0), _chunk_requests(cam, 1)
    rid0 = cam.rid("clip-00.mp4")[:8]
    assert before[rid0] and after[rid0], (before, after, why)
    assert after[rid0][0] >= max(before[rid0]) and after[rid0][0] >= 1, (before, after, why)
    count = len(manifests[cam.rid("clip-00.mp4")]["chunks"])
    assert set(after[rid0]) == set(range(after[rid0][0], count)), (after, why)

    # Every chunk exactly once: the manifests are contiguous (checked above), the store holds
    # each chunk once (verify re-reads them all) and the export is the original.
    for rid, data in cam.recordings.items():
        assert agent.export(rid, tmp_path / f"{rid}.export") == data, why
    everything = {**cam.recordings, **squatter.recordings}
    assert sorted(agent.verify_all()) == sorted(f"{rid} OK" for rid in everything)
    assert sorted(s["recording_id"] for s in agent.steps("stored")) == sorted(everything)
    assert agent.partials() == {}
    e2e.wait(lambda: cam.released() == set(cam.recordings), "RELEASE after the replug")


def test_usb_stall_times_out_and_ends_the_session_cleanly(e2e: Harness, mosquitto: Mosquitto
                                                          ) -> None:
    staller = e2e.camera("staller", usb=True, media=make_media([300 * K, 100 * K]),
                         faults=["stall-after-bytes=150K"])
    steady = e2e.camera("steady", usb=True, media=make_media([256 * K, 64 * K + 1]))
    agent = e2e.make_agent(mosquitto, usb=True, settings={"session_timeout_s": 2})
    agent.enroll(staller, steady)
    console = e2e.console(mosquitto)
    agent.start()

    event = e2e.wait(lambda: console.events_named("protocol_error", staller),
                     "the session to end on the stalled camera")[0]
    assert event["details"]["code"] == "ReplyTimeout", event  # it stopped answering
    assert event["details"]["slot"] == staller.slot
    assert "stall fault" in staller.log_text()
    e2e.wait(lambda: f"host released {staller.device}" in staller.log_text(),
             "the agent to release the stalled camera's interface")
    assert staller.running and staller.plugged  # the camera is still there, just hung
    steps = [s["step"] for s in agent.steps(camera=staller)]
    assert steps[-1] == "session_failed" and "offload_start" in steps, steps
    # Nothing of the stalled recording is stored, published or released.
    stalled = staller.rid("clip-00.mp4")
    assert stalled not in agent.stored_ids()
    assert not [m for m in console.snapshot()["manifest_msgs"]
                if m["camera_uid"] == staller.uid_hex]
    assert agent.steps("released", camera=staller) == [] and staller.released() == set()
    # Still in its slot, just not communicating: docked, never reported as having left.
    assert all(s["docked"] is True for s in console.camera_statuses(staller))

    # The agent keeps serving: the camera docked alongside, and one plugged in afterwards.
    _assert_offloaded(e2e, steady)
    late = e2e.camera("late", usb=True, media=make_media([128 * K + 5]), start=False)
    late.create_key()
    agent.enroll(late)
    console.trust(late)
    late.start()
    _assert_offloaded(e2e, late)
    for cam in (steady, late):
        e2e.wait(lambda cam=cam: cam.released() == set(cam.recordings), f"{cam.name} released")
        e2e.wait(lambda cam=cam: console.docked_status(cam, lambda s: s["ready"]),
                 f"{cam.name} ready for duty")
    # The hung camera was left alone meanwhile (parked until it is unplugged), not retried.
    assert [s["step"] for s in agent.steps("hello", camera=staller)] == ["hello"]
    assert console.events_named("session_crashed") == []
    assert all(s["docked"] is True for s in console.camera_statuses(staller))
    # Unplugged at last: now it has left, from the slot it was in.
    staller.stop()
    last = e2e.wait(lambda: next((s for s in console.camera_statuses(staller)
                                  if s["docked"] is False), None),
                    "the stalled camera reported undocked once unplugged")
    assert last is not None and last["slot"] == staller.slot
    assert agent.steps(camera=staller)[-1]["step"] == "unplugged"
    assert sorted(agent.verify_all()) == sorted(
        f"{rid} OK" for cam in (steady, late) for rid in cam.recordings)
    assert agent.stop() == 0


def test_usb_refused_chunk_is_quarantined_and_the_next_recording_follows_at_once(
    e2e: Harness, mosquitto: Mosquitto
) -> None:
    """USB-sized chunks (1 MiB, the ``chunk_size_usb`` default): a chunk refused at its header
    (bad signature) still has most of its megabyte in flight. The dock must not leave that on
    the line: hunted through as garbage it counts as damage to the next reply, which then
    costs a reply timeout, or all retries at once and the session."""
    big = 1024 * K
    cam = e2e.camera("badsig", usb=True, media=make_media([4 * big, 300 * K, 2 * big + 9]),
                     args=["--chunk-size", str(big)], faults=["bad-signature=0:1"])
    agent = e2e.make_agent(mosquitto, usb=True, settings={"chunk_size_usb": big})
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start()

    bad = cam.rid("clip-00.mp4")
    good = {rid: data for rid, data in cam.recordings.items() if rid != bad}
    event = e2e.wait(lambda: console.events_named("integrity_failure", cam), "the refusal")[0]
    assert (event["details"]["recording_id"], event["details"]["reason"],
            event["details"]["chunk_index"]) == (bad, "chunk_signature", 1), event
    e2e.wait(lambda: set(console.verified_for(cam)) == set(good), "the other recordings")
    manifests = console.verified_for(cam)
    for rid, data in good.items():
        assert manifests[rid]["sha256"] == sha256_hex(data)
        assert [c["size"] for c in manifests[rid]["chunks"]] == [
            min(big, len(data) - off) for off in range(0, len(data), big)]
    # In the same session, without one reply lost or damaged on the way.
    assert [s["step"] for s in agent.steps(camera=cam) if s["step"] in (
        "hello", "quarantined", "stored", "session_failed")] == [
        "hello", "quarantined", "stored", "stored"]
    assert console.events_named("protocol_error") == []
    log = agent.log_text()
    assert "reply timeout" not in log and "damaged reply" not in log, agent.diagnostics()
    assert bad in agent.quarantined() and bad not in agent.stored_ids()
    e2e.wait(lambda: cam.released() == set(good), "RELEASE of the good recordings")
    assert bad not in cam.released()
