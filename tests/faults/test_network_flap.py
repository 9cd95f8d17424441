"""Scenario 5: the network to the broker flaps. The agent reaches the broker only through a TCP
proxy of the test's own (tests/helpers/mqtt_proxy.py), which cuts every connection every 1 to 4 s
for 30 s (2 minutes in ``make soak``), while cameras keep docking with new recordings (each
docking: offload, manifests, events, ledger records, acknowledgements and releases).

Invariant: nothing is lost — every recording is stored once, verifies, its manifest reaches the
console and is acknowledged, the camera releases it — and nothing is duplicated after
de-duplication by id (every copy of an id is the same payload); releases only after the console
acknowledged.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.e2e.harness import Harness, make_media
from tests.faults.harness import FaultAgent, Invariants, Summary, make_fault_agent
from tests.helpers import Mosquitto, MqttProxy

K = 1024


def _health(agent: FaultAgent) -> dict[str, int]:
    try:
        health = json.loads((agent.state_dir / "status.json").read_text())["health"]
    except (FileNotFoundError, ValueError, KeyError):
        return {}
    return {k: v for k, v in health.items() if isinstance(v, int)}


def _flapping(e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary],
              window_s: float, name: str) -> None:
    seed = int(os.environ.get("BWC_FAULTS_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    s = summary(name)
    s.extra["seed"] = seed
    with MqttProxy(mosquitto.host, mosquitto.port) as proxy:
        cams = [e2e.camera(f"flap{i}", media=make_media(
            [rng.randrange(16 * K, 300 * K) for _ in range(3)], prefix=f"f{i}-0"), start=False)
            for i in range(3)]
        for cam in cams:
            cam.create_key()
        agent = make_fault_agent(e2e, proxy.url)
        agent.enroll(*cams)
        console = e2e.console(mosquitto)  # the console's own link is steady
        inv = Invariants(e2e, console, cams)
        agent.start()
        e2e.start_cameras(cams)

        stop = threading.Event()
        cuts: Counter[str] = Counter()

        # Its own generator: shared with the main thread, the draws would interleave by timing
        # and the seed would not replay them.
        cut_rng = random.Random(seed ^ 0x5EED)

        def flap() -> None:
            while not stop.wait(cut_rng.uniform(1.0, 4.0)):  # the fault's own rhythm
                health = _health(agent)
                busy = "offloading" if health.get("cameras_offloading") else "idle"
                backlog = "backlog" if health.get("outbox_depth") else "empty_outbox"
                proxy.drop_connections()
                cuts[f"{busy}+{backlog}"] += 1

        flapper = threading.Thread(target=flap, name="flapper", daemon=True)
        flapper.start()
        end = time.monotonic() + window_s
        dockings = 0
        try:
            while time.monotonic() < end:
                # Keep work flowing: one camera at a time is re-plugged with new recordings as
                # soon as the previous ones are stored.
                cam = cams[dockings % len(cams)]
                e2e.wait(lambda cam=cam: set(cam.recordings) <= agent.stored_ids(),
                         f"{cam.name}'s recordings stored", timeout=120)
                cam.stop()
                assert cam.media_dir is not None
                for name_, data in make_media([rng.randrange(16 * K, 300 * K) for _ in range(2)],
                                              prefix=f"f{cam.name}-{dockings + 1:03d}").items():
                    (cam.media_dir / name_).write_bytes(data)
                    cam.media[name_] = data
                cam.start()
                dockings += 1
                inv.check_release_safety(f"docking {dockings} under flapping")
        finally:
            stop.set()
            flapper.join(10)

        inv.wait_complete(f"everything delivered once the network is steady (seed {seed})",
                          timeout=180)
        assert agent.stop() == 0
    inv.check_final()
    snap = console.snapshot()
    s.runs = s.passed = sum(cuts.values())
    s.phases.update(cuts)
    s.extra.update(window_s=window_s, dockings=dockings, recordings=len(inv.expected()),
                   manifest_arrivals=len(snap["manifest_msgs"]),
                   event_arrivals=len(snap["events"]),
                   connects_through_proxy=len(proxy.protocol_levels))
    if inv.problems:
        s.passed = 0
    inv.assert_ok()
    assert s.runs >= window_s // 4, cuts
    assert dockings >= 3


def test_network_flapping_for_30_s_loses_nothing(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    _flapping(e2e, mosquitto, summary, 30.0, "network-flap")


@pytest.mark.soak
def test_network_flapping_for_2_minutes_loses_nothing(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    _flapping(e2e, mosquitto, summary, 120.0, "network-flap-soak")
