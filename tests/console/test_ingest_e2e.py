"""bwc-console ingest end to end: a real Mosquitto, the real agent, emulated cameras.

* Its acknowledgements are what lets the dock release a camera's recordings (erase_after
  "acknowledged"), and it has stored each manifest when it acknowledges it.
* A manifest edited in transit (a proxy between the dock and the broker) is refused, kept
  apart and never acknowledged: the camera keeps its recording.
* A dock whose state directory is restored from an older copy is caught by its audit head,
  also by a console that was restarted meanwhile.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.console.console_proc import IngestProcess, camera_trust, run_console
from tests.e2e.harness import Harness, make_media
from tests.helpers import Mosquitto
from tests.helpers.mqtt import MqttCollector
from tests.helpers.mqtt_proxy import MqttProxy

K = 1024
Ingest = Callable[..., IngestProcess]


def test_ingest_acks_and_the_dock_releases(e2e: Harness, mosquitto: Mosquitto,
                                           ingest_factory: Ingest) -> None:
    cam = e2e.camera("alpha", media=make_media([150 * K, 20 * K]))
    agent = e2e.make_agent(mosquitto)  # erase_after "acknowledged", delivery "console-ack"
    agent.enroll(cam)
    observer = e2e.console(mosquitto, ack_manifests=False, ack_events=False)  # acks nothing
    ingest = ingest_factory(mosquitto.url, {"cameras": camera_trust(cam)})
    agent.start()

    e2e.wait(lambda: cam.released() == set(cam.recordings), "the camera told to erase both")
    store = ingest.store()
    ids = {m["manifest_id"]: m for m in observer.verified_for(cam).values()}
    assert len(ids) == 2  # the agent's own verifier agrees with what the console accepted
    for mid, manifest in ids.items():
        kept = json.loads(store.stored_manifest(agent.dock_id, mid) or b"null")
        assert kept == manifest
        assert any(f"manifest {mid} accepted" in line for line in ingest.lines())
    assert ingest.rejected() == [] and ingest.alerts() == []
    assert store.pinned_key(agent.dock_id) == observer.identity["public_key"]  # type: ignore
    # Events and ledger records were stored and acknowledged too.
    e2e.wait(lambda: [e for e in store.records("ledger")
                      if e["entry"]["type"] == "recording"][1:], "both recordings' records")
    e2e.wait(lambda: store.records("event"), "events stored")
    e2e.wait(lambda: store.last_head(agent.dock_id), "an audit head remembered")
    year = store.records("ledger")[0]["entry"]["at"][:4]
    store.close()

    # The fleet report over what the console ingested is the dock's own report.
    def same_report() -> bool:
        ours = run_console("report", "--store", ingest.store_dir, "--year", year)
        theirs = agent.cli("report", "--year", year)
        assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
        a, b = json.loads(ours.stdout), json.loads(theirs.stdout)
        assert a.pop("docks") == [agent.dock_id]
        a.pop("generated_at"), b.pop("generated_at")
        return bool(a == b and a["fleet"]["recordings"] == 2)

    e2e.wait(same_report, "the console's report to equal the dock's")


def _tamper(topic: str, payload: bytes) -> bytes:
    """The man in the middle: swaps the first chunk's hash in every manifest."""
    if not topic.endswith("/manifests"):
        return payload
    m: dict[str, Any] = json.loads(payload)
    m["chunks"][0]["sha256"] = "0" * 64
    return json.dumps(m, separators=(",", ":")).encode()


def test_a_manifest_edited_in_transit_is_refused_kept_apart_never_acked(
        e2e: Harness, mosquitto: Mosquitto, ingest_factory: Ingest) -> None:
    proxy = MqttProxy(mosquitto.host, mosquitto.port, rewrite=_tamper)
    try:
        cam = e2e.camera("bravo", media=make_media([40 * K]))
        agent = e2e.make_agent(mosquitto, settings={"broker": proxy.url})
        agent.enroll(cam)
        observer = e2e.console(mosquitto, ack_manifests=False, ack_events=False)
        ingest = ingest_factory(mosquitto.url, {"cameras": camera_trust(cam)})
        with MqttCollector(mosquitto.host, mosquitto.port, f"{agent.prefix}/acks") as acks:
            agent.start()
            (rid,) = cam.recordings
            rejected = e2e.wait(ingest.rejected, "the console to refuse the manifest")
            mid = json.loads(rejected[0]["payload"])["manifest_id"]
            assert rejected[0]["reason"] == "dock_signature", rejected
            assert any(line.startswith(f"REJECTED manifest {mid}") for line in ingest.lines())
            # The agent's own verifier, on the same broker, refuses the edited copy as well.
            e2e.wait(lambda: observer.snapshot()["rejected"], "the observer's verdict")

            # The recording's ledger record left the dock after the manifest; once the console
            # acknowledged it, it had dealt with the manifest: no ack ever named it.
            def ledger_acked() -> bool:
                wanted = [e["id"] for e in observer.snapshot()["ledger"]
                          if e["entry"]["type"] == "recording"
                          and e["entry"]["recording_id"] == rid]
                return bool(wanted) and any(wanted[0] in json.loads(m.payload)["ids"]
                                            for m in acks.messages)
            e2e.wait(ledger_acked, "the recording's ledger record acknowledged")
            assert not any(mid in json.loads(m.payload)["ids"] for m in acks.messages)
        store = ingest.store()
        assert store.stored_manifest(agent.dock_id, mid) is None
        store.close()
        assert rid in agent.stored_ids()  # the dock has it, verified against the camera …
        assert cam.released() == set()  # … but the camera was never told to erase it
    finally:
        proxy.close()


def test_a_dock_restored_from_an_older_copy_is_caught_by_its_audit_head(
        e2e: Harness, mosquitto: Mosquitto, ingest_factory: Ingest, tmp_path: Path) -> None:
    cam = e2e.camera("charlie", media=make_media([30 * K]))
    agent = e2e.make_agent(mosquitto, settings={"erase_after": "stored"})
    agent.enroll(cam)
    agent.start()
    (rid,) = cam.recordings
    e2e.wait(lambda: rid in agent.stored_ids(), "the recording stored")
    identity = agent.cli("identity")
    assert identity.returncode == 0, identity.stderr
    dock_id, dock_key = identity.stdout.split()
    trust = {"docks": {dock_id: dock_key}, "cameras": camera_trust(cam)}
    ingest = ingest_factory(mosquitto.url, trust)
    store = ingest.store()
    first = e2e.wait(lambda: store.last_head(dock_id), "the first audit head")

    agent.stop()
    old_copy = tmp_path / "state-copy"
    shutil.copytree(agent.state_dir, old_copy, symlinks=True)
    agent.start()
    for args in (("hold", rid, "--reason", "dispute", "--text", "complaint 7"),
                 ("unhold", rid, "--text", "withdrawn"),
                 ("hold", rid, "--reason", "major_case", "--text", "case 12")):
        done = agent.cli(*args)
        assert done.returncode == 0, done.stderr
    shown = [json.loads(x) for x in agent.cli("audit", "show").stdout.splitlines()]
    last_seq = shown[-1]["seq"]
    assert last_seq >= first.seq + 3
    e2e.wait(lambda: (h := store.last_head(dock_id)) is not None and h.seq == last_seq,
             "the console to see the newest audit head")
    assert ingest.alerts() == []

    # The console restarts; meanwhile the dock's state is rolled back to the old copy.
    ingest.stop()
    agent.stop()
    shutil.rmtree(agent.state_dir)
    shutil.copytree(old_copy, agent.state_dir, symlinks=True)
    agent.start()
    ingest = ingest_factory(mosquitto.url, trust)

    def rollback() -> list[dict[str, Any]]:
        return [a for a in ingest.alerts() if a["kind"] == "rollback"]

    (alert,) = e2e.wait(rollback, "the rollback alert")
    assert alert["dock_id"] == dock_id
    assert alert["details"]["last_seq"] == last_seq
    assert alert["details"]["seq"] < last_seq
    assert any(line.startswith(f"ALERT rollback dock {dock_id}") for line in ingest.lines())
    store.close()
