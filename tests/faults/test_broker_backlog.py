"""Scenario 4: the broker is unavailable for the whole of a 2,000-manifest backlog — four cameras
with 500 small recordings each dock and are offloaded while it is down — and the agent is
restarted three times meanwhile (``kill -9`` once, SIGTERM twice). Then the broker comes back.

Invariant: every manifest is delivered, verifies, and arrives for the first time in its camera's
recording order; no id arrives as two different payloads (de-duplicated by id, nothing twice);
every event too; the camera releases only what the console acknowledged; and the dock's own
health — ``dock-agent status --json`` and the retained ``…/health`` — shows the outbox backlog
draining to zero.

The state directory is a tmpfs (a real filesystem, just one whose fsync is cheap): the scenario
is about the outbox and the broker, and 2,000 recordings on this machine's disk would take
minutes of fsyncs.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from collections.abc import Callable

import pytest

from tests.e2e.harness import Harness
from tests.faults.harness import FaultAgent, Invariants, Summary, make_fault_agent
from tests.helpers import Mosquitto, MqttCollector, tmpfs

K = 1024
CAMERAS = 4
PER_CAMERA = 500
_SETTINGS = {"outbox_rate_per_s": 400, "max_concurrent_offloads": CAMERAS,
             "storage_reserve_bytes": 1 << 20}  # the tmpfs is small


def _depth(agent: FaultAgent) -> int | None:
    try:
        doc = json.loads((agent.state_dir / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    depth = doc.get("health", {}).get("outbox_depth")
    return depth if isinstance(depth, int) else None


def _backlog(e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary],
             per_camera: int, name: str) -> None:
    total = CAMERAS * per_camera
    s = summary(name)
    cams = []
    for i in range(CAMERAS):
        media = {f"rec-{n:04d}.mp4": os.urandom(512 + (n * 37 + i) % 1024)
                 for n in range(per_camera)}
        cams.append(e2e.camera(f"busy{i}", media=media, start=False))
    for cam in cams:
        cam.create_key()
    agent = make_fault_agent(e2e, mosquitto.url, settings=_SETTINGS)
    with tmpfs(agent.state_dir, 512 << 20):
        agent.enroll(*cams)
        console = e2e.console(mosquitto)
        inv = Invariants(e2e, console, cams)
        agent.start()
        e2e.wait(lambda: console.identity is not None, "the agent's birth on the broker")

        mosquitto.stop()  # down for the whole backlog
        e2e.start_cameras(cams)
        restarts: list[str] = []
        for fraction, how in ((0.25, "kill -9"), (0.6, "SIGTERM")):
            e2e.wait(lambda f=fraction: len(agent.stored_ids()) >= f * total,
                     f"{fraction:.0%} of the backlog stored", timeout=300)
            if how == "kill -9":
                agent.kill9()
            else:
                assert agent.stop() == 0
            restarts.append(how)
            agent.start()
        e2e.wait(lambda: len(agent.stored_ids()) == total, "the whole backlog stored",
                 timeout=300)
        e2e.wait(lambda: (_depth(agent) or 0) >= total, "the backlog in the outbox")
        assert console.snapshot()["manifest_msgs"] == []
        assert all(cam.released() == set() for cam in cams)  # nothing acknowledged
        # The third restart spans the broker's return: stopped while it is down, started once
        # it is back and the console listens again (a console that missed a publish would only
        # get it 30 s later, when the dock re-sends).
        assert agent.stop() == 0
        restarts.append("SIGTERM")
        mosquitto.start()
        console.wait_subscribed(30)
        backlog = agent.cli("status", "--json")
        assert backlog.returncode == 0, backlog.stderr
        start_depth = json.loads(backlog.stdout)["health"]["outbox_depth"]

        observed: list[int] = []
        with MqttCollector(mosquitto.host, mosquitto.port, f"{agent.prefix}/health") as health:
            agent.start()

            def drained() -> bool:
                depth = _depth(agent)
                if depth is not None and (not observed or observed[-1] != depth):
                    observed.append(depth)
                return depth == 0 and inv.expected().keys() <= {
                    m["recording_id"] for m in console.snapshot()["verified"].values()}
            e2e.wait(drained, "the backlog delivered and the outbox drained", timeout=300)
            mid = agent.cli("status", "--json")
            assert mid.returncode == 0, mid.stderr
            assert json.loads(mid.stdout)["health"]["outbox_depth"] == 0
            e2e.wait(lambda: any(json.loads(m.payload)["outbox_depth"] == 0
                                 for m in health.messages), "health showing the drained outbox")
            over_mqtt = [json.loads(m.payload)["outbox_depth"] for m in health.messages]

        inv.wait_complete("every recording released after the acknowledgements", timeout=300)
        # Per-camera order of first arrival = the cameras' recording order (name order).
        firsts: dict[str, list[str]] = defaultdict(list)
        seen: set[str] = set()
        snap = console.snapshot()
        for manifest in snap["manifest_msgs"]:
            if manifest["manifest_id"] not in seen:
                seen.add(manifest["manifest_id"])
                firsts[manifest["camera_uid"]].append(manifest["recording_id"])
        for cam in cams:
            order = [cam.rid(n) for n in sorted(cam.media)]
            if firsts[cam.uid_hex] != order:
                inv.problems.append(f"{cam.name}: manifests out of recording order")
        duplicates = len(snap["manifest_msgs"]) - len(seen)
        assert agent.stop() == 0
        inv.check_final(verify=per_camera <= PER_CAMERA)

        decreasing = [d for a, d in itertools.pairwise(observed) if d < a]
        s.extra.update(manifests=len(seen), duplicate_arrivals=duplicates, restarts=restarts,
                       outbox_depth_at_return=start_depth, depth_observations=observed[:40],
                       health_depths_over_mqtt=over_mqtt[:40])
        s.run("backlog", ok=not inv.problems)
        inv.assert_ok()
        assert len(seen) == total
        assert start_depth >= total and observed[-1] == 0
        # Draining, as the dock reports it: falling step after step to zero.
        assert len(decreasing) >= 3, observed
        # From the depth the stopped dock reported: a restart adds only its own few records.
        rises = [(a, d) for a, d in itertools.pairwise([start_depth, *observed]) if d > a + 5]
        assert not rises, f"the outbox grew while draining: {rises}"
        assert max(over_mqtt) >= total // 2 and over_mqtt[-1] == 0, over_mqtt


def test_broker_down_for_a_2000_manifest_backlog_with_three_restarts(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    _backlog(e2e, mosquitto, summary, PER_CAMERA, "broker-backlog")


@pytest.mark.soak
def test_broker_down_for_a_10000_manifest_backlog_with_three_restarts(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    _backlog(e2e, mosquitto, summary, 2500, "broker-backlog-soak")


