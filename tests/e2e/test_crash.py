"""``kill -9`` of the agent mid-transfer and mid-publish, then restart: nothing lost, nothing
duplicated in the store, and the durable outbox re-delivers what the console had not acked."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.harness import Harness, assert_contiguous, make_media, sha256_hex
from tests.helpers import Mosquitto

K = 1024


def test_kill9_mid_transfer_and_mid_publish_loses_and_duplicates_nothing(
    e2e: Harness, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cam = e2e.camera("steady", media=make_media(
        [384 * K + 11, 320 * K, 448 * K + 3, 256 * K, 300 * K, 200 * K + 1]))
    expected = cam.recordings
    agent = e2e.make_agent(mosquitto)
    agent.enroll(cam)
    console = e2e.console(mosquitto, ack_manifests=False)  # nothing acknowledged until the end
    agent.start()

    # 1. kill -9 in the middle of a transfer. Freezing (SIGSTOP) first makes "in the middle"
    #    a checked fact rather than a hope: the state directory cannot change while we look.
    interrupted: dict[str, int] = {}

    def frozen_mid_transfer() -> bool:
        if set(expected) <= agent.stored_ids():
            raise AssertionError("the offload finished before it could be interrupted")
        if not any(agent.partials().values()):
            return False
        agent.freeze()
        stored = agent.stored_ids()
        interrupted.update({rid: size for rid, size in agent.partials().items()
                            if size and rid not in stored})
        if interrupted:
            return True
        agent.thaw()
        return False

    e2e.wait(frozen_mid_transfer, "the agent frozen in the middle of a transfer", poll=0.002)
    agent.kill9()
    assert set(agent.partials()) >= set(interrupted)  # left as it was, to be resumed

    # 2. Restart; kill -9 again once manifests are out but unacknowledged (mid-publish).
    published = {m["recording_id"] for m in console.snapshot()["manifest_msgs"]}
    agent.start()
    e2e.wait(lambda: {m["recording_id"] for m in console.snapshot()["manifest_msgs"]} - published,
             "the manifest of a recording offloaded by the second run")
    agent.kill9()
    unacked = {m["manifest_id"] for m in console.snapshot()["manifest_msgs"]}
    before = {mid: console.manifest_arrivals(mid) for mid in unacked}

    # 3. Restart: everything is offloaded, and the outbox re-sends what was not acknowledged.
    agent.start()
    e2e.wait(lambda: {m["recording_id"] for m in console.snapshot()["verified"].values()}
             == set(expected), "a verified manifest for every recording")
    e2e.wait(lambda: all(console.manifest_arrivals(mid) > before[mid] for mid in unacked),
             "re-delivery of the unacknowledged manifests after the restart")
    snap = console.snapshot()
    assert snap["rejected"] == []
    arrivals: dict[str, list[dict[str, Any]]] = {}
    for manifest in snap["manifest_msgs"]:
        arrivals.setdefault(manifest["manifest_id"], []).append(manifest)
    assert len(arrivals) == len(expected)  # de-duplicated: one manifest per recording
    for mid, copies in arrivals.items():
        # A re-delivery is the same signed manifest, not a second offload of the recording.
        assert all(c == copies[0] for c in copies), mid
    by_rid = {copies[0]["recording_id"]: copies[0] for copies in arrivals.values()}
    assert set(by_rid) == set(expected)
    for rid, data in expected.items():
        assert_contiguous(by_rid[rid])
        assert by_rid[rid]["sha256"] == sha256_hex(data)

    # The store: each recording once, complete, nothing half-done or quarantined left over.
    assert agent.stored_ids() == set(expected)
    assert agent.partials() == {}
    assert agent.quarantined() == {}
    # Never stored twice. (A recording whose finalisation a kill interrupted is completed by
    # the restart's recovery, or was killed just before its step was journalled: no step.)
    stored_steps = Counter(s["recording_id"] for s in agent.steps("stored"))
    assert set(stored_steps) <= set(expected) and set(stored_steps.values()) <= {1}, stored_steps
    assert sorted(agent.verify_all()) == sorted(f"{rid} OK" for rid in expected)
    for rid, data in expected.items():
        assert agent.export(rid, tmp_path / f"{rid}.export") == data

    # Acknowledge: the outbox drains and the camera is released.
    console.ack(arrivals)
    e2e.wait(lambda: cam.released() == set(expected), "RELEASE after the acknowledgements")

    def outbox_depth() -> int | None:
        status = agent.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        depth: int = json.loads(status.stdout)["health"]["outbox_depth"]
        return depth

    e2e.wait(lambda: outbox_depth() == 0, "an empty outbox")
