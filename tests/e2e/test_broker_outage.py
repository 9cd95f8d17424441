"""The broker is down while recordings are offloaded; once it is back, every manifest arrives."""

from __future__ import annotations

import json

from agent.publish.outbox import Outbox
from tests.e2e.harness import (
    Agent,
    Camera,
    Console,
    Harness,
    assert_contiguous,
    make_media,
    sha256_hex,
)
from tests.helpers import Mosquitto

K = 1024


def _offload_with_the_broker_down(e2e: Harness, mosquitto: Mosquitto, name: str,
                                  media: dict[str, bytes]) -> tuple[Camera, Agent, Console]:
    """The agent meets the broker, the broker stops, then the camera docks and is offloaded."""
    cam = e2e.camera(name, media=media, start=False)
    cam.create_key()
    agent = e2e.make_agent(mosquitto)
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start()
    e2e.wait(lambda: console.identity is not None, "the agent's birth on the broker")
    mosquitto.stop()
    cam.start()  # docks while the broker is down
    e2e.wait(lambda: agent.stored_ids() >= set(cam.recordings), "the offload, broker down")
    return cam, agent, console


def test_manifests_made_while_the_broker_is_down_arrive_after_it_returns(
    e2e: Harness, mosquitto: Mosquitto
) -> None:
    cam, _, console = _offload_with_the_broker_down(
        e2e, mosquitto, "patient", make_media([200 * K, 130 * K + 1, 64 * K]))
    assert console.snapshot()["manifest_msgs"] == []
    assert cam.released() == set()  # nothing acknowledged, nothing released

    mosquitto.start()
    e2e.wait(lambda: set(console.verified_for(cam)) == set(cam.recordings),
             "every manifest after the broker restart")
    assert console.snapshot()["rejected"] == []
    manifests = console.verified_for(cam)
    for rid, data in cam.recordings.items():
        assert manifests[rid]["sha256"] == sha256_hex(data)
        assert_contiguous(manifests[rid])
    # The retained camera status made while the broker was away is published too, and the
    # console's acknowledgements release the footage.
    e2e.wait(lambda: console.docked_status(cam), "the camera status after the restart")
    e2e.wait(lambda: cam.released() == set(cam.recordings), "RELEASE after the acknowledgements")


def test_a_graceful_stop_leaves_every_compliance_record_in_the_outbox(
    e2e: Harness, mosquitto: Mosquitto
) -> None:
    """SIGTERM right after an offload: the ledger records the sessions wrote in the compliance
    loop's last second are queued before the outbox closes, not left for the next start (whose
    outbox would then grow while it drains)."""
    media = {f"rec-{n:03d}.mp4": bytes([n]) * (700 + n) for n in range(40)}
    cam, agent, _ = _offload_with_the_broker_down(e2e, mosquitto, "quitter", media)
    assert agent.stop() == 0

    outbox = Outbox(agent.state_dir / "outbox")
    try:
        pending = outbox.pending(1 << 20)
    finally:
        outbox.close()
    queued = {item.payload["entry"]["recording_id"] for item in pending
              if item.kind == "ledger" and item.payload["entry"]["type"] == "recording"}
    assert queued == set(cam.recordings)
    # …and `dock-agent status` on the stopped dock reports that backlog, not an older count.
    status = agent.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["health"]["outbox_depth"] == len(pending)
