"""The dock's whole main job, end to end: dock → readiness → offload → verified manifests →
export equals the original → console ack → RELEASE → camera storage freed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import (
    DEADLINE_S,
    Harness,
    assert_contiguous,
    make_media,
    sha256_hex,
)
from tests.helpers import Mosquitto, MqttCollector

K = 1024


def test_two_cameras_offload_verify_export_ack_release(
    e2e: Harness, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Sizes: a partial last chunk, an exact chunk, several chunks.
    alpha = e2e.camera("alpha", media=make_media([200 * K + 123, 64 * K, 300 * K]))
    bravo = e2e.camera("bravo", media=make_media([150 * K + 7, 257 * K]))
    cams = (alpha, bravo)
    expected = {rid: data for cam in cams for rid, data in cam.recordings.items()}
    agent = e2e.make_agent(mosquitto)
    agent.enroll(*cams)
    console = e2e.console(mosquitto, ack_manifests=False)  # acks by hand, below
    agent.start()

    # Docked: a camera status with the readiness verdict, retained. The retained topic keeps
    # only the latest status (a fast offload may already be done when the first one goes out);
    # the verdict at docking time is in the not_ready event, which the outbox never coalesces.
    first = {cam.name: e2e.wait(lambda cam=cam: console.docked_status(cam),
                                f"readiness of {cam.name}") for cam in cams}
    for cam in cams:
        status = first[cam.name]
        event = e2e.wait(lambda cam=cam: console.events_named("not_ready", cam),
                         f"not_ready of {cam.name}")[0]
        assert event["details"]["reasons"] == ["footage_pending"], event
        assert status["offload"]["recordings_total"] == len(cam.media)
        assert status["slot"] == str(cam.port)
        assert status["battery_pct"] == 100 and status["clock_set"] is True
    with MqttCollector(mosquitto.host, mosquitto.port, f"{agent.prefix}/cameras/+") as late:
        for cam in cams:
            retained = late.wait_for(
                lambda m, cam=cam: m.retain and m.topic == f"{agent.prefix}/cameras/{cam.uid_hex}"
                and "ready" in json.loads(m.payload) and "reasons" in json.loads(m.payload),
                timeout=DEADLINE_S)
            assert json.loads(retained.payload)["camera_uid"] == cam.uid_hex

    # Every recording offloaded; every manifest verifies with the published keys.
    e2e.wait(lambda: {m["recording_id"] for m in console.snapshot()["verified"].values()}
             >= set(expected), "a verified manifest for every recording")
    snap = console.snapshot()
    assert snap["rejected"] == []
    by_rid = {m["recording_id"]: m for m in snap["verified"].values()}
    assert set(by_rid) == set(expected)
    for cam in cams:
        for rid, data in cam.recordings.items():
            manifest = by_rid[rid]
            assert manifest["camera_uid"] == cam.uid_hex
            assert manifest["officer_id"] == cam.officer
            assert (manifest["dock_id"], manifest["unit"]) == (agent.dock_id, agent.unit)
            assert manifest["size"] == len(data)
            assert manifest["sha256"] == sha256_hex(data)
            assert_contiguous(manifest)
    identity = agent.cli("identity")
    assert identity.returncode == 0, identity.stderr
    assert console.identity is not None
    assert identity.stdout.split() == [agent.dock_id, console.identity["public_key"]]

    # The dock copy is the original: `dock-agent export` gives back the very bytes.
    for rid, data in expected.items():
        assert sha256_hex(agent.export(rid, tmp_path / f"{rid}.export")) == sha256_hex(data)

    # Nothing is released before the console acknowledged.
    assert agent.steps("released") == []
    for cam in cams:
        assert cam.released() == set()

    console.ack(m["manifest_id"] for m in by_rid.values())
    e2e.wait(lambda: {s["recording_id"] for s in agent.steps("released")} >= set(expected),
             "RELEASE of every acknowledged recording")
    released = agent.steps("released")
    assert sorted(s["recording_id"] for s in released) == sorted(expected)  # once each
    assert {s["recording_id"]: s["freed_bytes"] for s in released} == {
        rid: len(data) for rid, data in expected.items()}

    for cam in cams:
        final = e2e.wait(lambda cam=cam: console.docked_status(
            cam, lambda s: s["offload"]["recordings_total"] == 0), f"{cam.name} emptied")
        assert final["storage_free"] == first[cam.name]["storage_free"] + sum(
            len(d) for d in cam.media.values())
        assert cam.released() == set(cam.recordings)  # the camera's own record agrees
        ready = e2e.wait(lambda cam=cam: console.docked_status(cam, lambda s: s["ready"]),
                         f"{cam.name} ready for duty")
        assert ready["reasons"] == []

    lines = agent.verify_all()
    assert sorted(lines) == sorted(f"{rid} OK" for rid in expected)
    assert agent.stop() == 0  # graceful SIGTERM stop
