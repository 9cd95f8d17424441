"""Each emulator ``--fault`` end to end: the right event, quarantine, no release, and the
cameras docked alongside are not affected."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import (
    DEADLINE_S,
    Camera,
    Harness,
    assert_contiguous,
    make_media,
    sha256_hex,
)
from tests.helpers import Mosquitto, MqttCollector

K = 1024


def _assert_all_verified_and_released(e2e: Harness, cam: Camera, expected: dict[str, bytes]
                                      ) -> None:
    console = e2e.consoles[0]
    e2e.wait(lambda: set(console.verified_for(cam)) == set(expected),
             f"verified manifests of {cam.name}")
    manifests = console.verified_for(cam)
    for rid, data in expected.items():
        assert manifests[rid]["sha256"] == sha256_hex(data)
        assert_contiguous(manifests[rid])
    e2e.wait(lambda: cam.released() == set(expected), f"RELEASE of {cam.name}'s recordings")


def test_corrupt_chunk_and_bad_signature_are_quarantined_never_released(
    e2e: Harness, mosquitto: Mosquitto
) -> None:
    corrupt = e2e.camera("corrupt", media=make_media([130 * K, 200 * K + 3, 100 * K]),
                         faults=["corrupt-chunk=1:2"])
    badsig = e2e.camera("badsig", media=make_media([150 * K, 90 * K]),
                        faults=["bad-signature=0:1"])
    healthy = e2e.camera("healthy", media=make_media([220 * K, 70 * K + 9]))
    cams = (corrupt, badsig, healthy)
    agent = e2e.make_agent(mosquitto)
    agent.enroll(*cams)
    console = e2e.console(mosquitto)
    agent.start()

    bad = {corrupt.name: (corrupt.rid("clip-01.mp4"), "chunk_hash", 2),
           badsig.name: (badsig.rid("clip-00.mp4"), "chunk_signature", 1)}
    for cam in (corrupt, badsig):
        rid, reason, index = bad[cam.name]
        events = e2e.wait(lambda cam=cam, rid=rid: [
            e for e in console.events_named("integrity_failure", cam)
            if e["details"]["recording_id"] == rid], f"integrity_failure from {cam.name}")
        assert len(events) == 1, events
        details = events[0]["details"]
        assert (details["reason"], details["chunk_index"]) == (reason, index), details
        where = agent.quarantined().get(rid)
        assert where is not None, f"{rid} not in footage/quarantine/"
        assert (where / "chunks.dat").exists()
        assert json.loads((where / "reason.json").read_text())["recording_id"] == rid

    # Everything else, on the faulty cameras and on their neighbour, goes through.
    bad_rids = {rid for rid, _, _ in bad.values()}
    for cam in cams:
        good = {rid: data for rid, data in cam.recordings.items() if rid not in bad_rids}
        _assert_all_verified_and_released(e2e, cam, good)
    # The quarantined ones: never published as valid, never released; the camera keeps them.
    snap = console.snapshot()
    assert snap["rejected"] == []
    assert not {m["recording_id"] for m in snap["manifest_msgs"]} & bad_rids
    assert not {s["recording_id"] for s in agent.steps("released")} & bad_rids
    assert not agent.stored_ids() & bad_rids
    for cam in (corrupt, badsig):
        assert bad[cam.name][0] not in cam.released()
        e2e.wait(lambda cam=cam: console.docked_status(
            cam, lambda s: s["offload"]["recordings_total"] == 1),
            f"{cam.name} still listing its quarantined recording")
    e2e.wait(lambda: console.docked_status(healthy, lambda s: s["ready"]), "healthy ready")

    assert sorted(agent.verify_all()) == sorted(
        f"{rid} OK" for cam in cams for rid in cam.recordings if rid not in bad_rids)
    cameras = agent.cli("cameras")
    assert cameras.returncode == 0, cameras.stderr
    listed = {line.split()[0]: line for line in cameras.stdout.splitlines()}
    assert "quarantined=1" in listed[corrupt.uid_hex]
    assert "quarantined=1" in listed[badsig.uid_hex]
    assert "quarantined=0" in listed[healthy.uid_hex]


def test_wrong_key_is_refused_no_offload_no_clock_set(e2e: Harness, mosquitto: Mosquitto
                                                      ) -> None:
    impostor = e2e.camera("impostor", media=make_media([100 * K]), args=["--clock-skew", "45"],
                          faults=["wrong-key"])
    agent = e2e.make_agent(mosquitto)
    agent.enroll(impostor)  # the genuine key: the emulator then signs with another one
    console = e2e.console(mosquitto)
    agent.start()

    event = e2e.wait(lambda: console.events_named("auth_failed", impostor), "auth_failed")[0]
    assert event["details"]["slot"] == str(impostor.port)
    e2e.wait(lambda: agent.steps("refused", camera=impostor), "the refusal in the journal")
    assert [s["step"] for s in agent.steps(camera=impostor)] == ["hello", "refused"]
    assert agent.steps("refused", camera=impostor)[0]["reason"] == "auth_failed"
    assert impostor.camera_events("CLOCK_SET") == []  # its clock was not touched
    assert impostor.released() == set()
    assert agent.stored_ids() == set() and agent.partials() == {}
    assert console.snapshot()["manifest_msgs"] == []


def test_impostor_claiming_an_enrolled_uid_cannot_touch_that_camera(
    e2e: Harness, mosquitto: Mosquitto
) -> None:
    genuine = e2e.camera("genuine", media=make_media([80 * K]))
    agent = e2e.make_agent(mosquitto)
    agent.enroll(genuine)
    console = e2e.console(mosquitto)
    agent.start()
    _assert_all_verified_and_released(e2e, genuine, genuine.recordings)
    e2e.wait(lambda: console.docked_status(genuine, lambda s: s["ready"]), "genuine ready")

    # Another device announces the genuine camera's uid but holds a key of its own.
    impostor = e2e.camera("impostor", args=["--camera-uid", genuine.uid_hex])
    e2e.wait(lambda: [e for e in console.events_named("auth_failed", genuine)
                      if e["details"]["slot"] == str(impostor.port)], "auth_failed")
    e2e.wait(lambda: [s for s in agent.steps("refused") if s["slot"] == str(impostor.port)],
             "the refusal in the journal")
    with MqttCollector(mosquitto.host, mosquitto.port,
                       f"{agent.prefix}/cameras/{genuine.uid_hex}") as late:
        retained = json.loads(late.wait_for(lambda m: m.retain, timeout=DEADLINE_S).payload)
    assert retained["docked"] is True and retained["slot"] == str(genuine.port), retained
    assert console.last_status(genuine)["slot"] == str(genuine.port)  # type: ignore[index]
    assert impostor.camera_events("CLOCK_SET") == []


def test_garbage_between_frames_does_not_stop_the_offload(e2e: Harness, mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    noisy = e2e.camera("noisy", media=make_media([300 * K + 1, 200 * K]),
                       faults=["garbage-every=4096"])
    agent = e2e.make_agent(mosquitto)
    agent.enroll(noisy)
    e2e.console(mosquitto)
    agent.start()

    _assert_all_verified_and_released(e2e, noisy, noisy.recordings)
    for rid, data in noisy.recordings.items():
        assert agent.export(rid, tmp_path / f"{rid}.export") == data
    assert sorted(agent.verify_all()) == sorted(f"{rid} OK" for rid in noisy.recordings)


def test_stall_ends_the_session_without_release(e2e: Harness, mosquitto: Mosquitto) -> None:
    staller = e2e.camera("staller", media=make_media([300 * K, 100 * K]),
                         faults=["stall-after-bytes=150K"])
    agent = e2e.make_agent(mosquitto, settings={"session_timeout_s": 2})
    agent.enroll(staller)
    console = e2e.console(mosquitto)
    agent.start()

    event = e2e.wait(lambda: console.events_named("protocol_error", staller),
                     "the session to end on the stalled camera")[0]
    assert event["details"]["code"] == "ReplyTimeout", event  # it stopped answering
    assert "stall fault" in staller.log_text()
    assert [s["step"] for s in agent.steps(camera=staller)][-1] == "session_failed"
    assert agent.steps("released") == []
    assert staller.released() == set()
    assert agent.stored_ids() == set()  # the stall hit the first recording: nothing complete
    assert console.snapshot()["manifest_msgs"] == []
    status = e2e.wait(lambda: console.docked_status(staller), "a readiness verdict")
    assert "footage_pending" in status["reasons"]
    # Hung but still in its slot: reported docked (not communicating: the protocol_error event)
    # until it is unplugged, then undocked from that slot.
    e2e.wait(lambda: f"host closed {staller.port}" in staller.log_text(),
             "the agent to let go of the stalled camera's line")
    assert all(s["docked"] is True for s in console.camera_statuses(staller))
    assert staller.stop() == 0
    last = e2e.wait(lambda: next((s for s in console.camera_statuses(staller)
                                  if s["docked"] is False), None),
                    "the stalled camera reported undocked once unplugged")
    assert last is not None and last["slot"] == str(staller.port)
    assert [s["step"] for s in agent.steps(camera=staller)][-2:] == ["session_failed",
                                                                     "unplugged"]
