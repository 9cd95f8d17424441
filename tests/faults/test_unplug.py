"""Scenario 6: cameras unplugged at random byte offsets — in the handshake, mid-chunk, between
chunks, during the seal or the release — and plugged in again, many times, several cameras at
once.

Invariant: each recording completes on replug, nothing durable is fetched again (after a
replug the first chunk asked for is the one in flight at the unplug or a later one), every
chunk is stored once and verifies, and no camera released anything not stored and
acknowledged — checked at every unplug and at the end.
"""

from __future__ import annotations

import os
import random
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.harness import EXIT_UNPLUGGED, Camera, Harness, make_media
from tests.faults.harness import Invariants, Summary, make_fault_agent
from tests.helpers import Mosquitto

K = 1024
_READ_CHUNK = re.compile(r"ReadChunk rec=([0-9a-f]{8}) idx=(\d+) ->")
_REQUEST = re.compile(r"^camsim (\w+)\b[^\n]* -> ", re.M)
# What the camera was answering when the line went, by its request.
_PHASE = {"Hello": "handshake", "AuthChallenge": "handshake", "TimeProbe": "clock",
          "SetTime": "clock", "GetStatus": "status", "ListRecordings": "listing",
          "ReadChunk": "chunk", "GetSeal": "seal", "GetEventLog": "event_log",
          "Release": "release"}


def _chunk_requests(cam: Camera, run: int) -> dict[str, list[int]]:
    requests: dict[str, list[int]] = defaultdict(list)
    for rid, idx in _READ_CHUNK.findall(cam.log_text(run)):
        requests[rid].append(int(idx))
    return requests


def _unplug_campaign(e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary],
                     cameras: int, unplugs_each: int, name: str) -> None:
    seed = int(os.environ.get("BWC_FAULTS_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    # Enough footage that no run finishes it before its unplug fires: each run carries at
    # most 120 KiB of replies, the cameras hold 3 x 500 KiB each.
    cams = [e2e.camera(f"wobbly{i}", media=make_media(
        [500 * K + rng.randrange(64 * K) for _ in range(3)], prefix=f"w{i}"), start=False)
        for i in range(cameras)]
    for cam in cams:
        cam.create_key()
    agent = make_fault_agent(e2e, mosquitto.url, settings={"max_concurrent_offloads": 8})
    agent.enroll(*cams)
    console = e2e.console(mosquitto)
    inv = Invariants(e2e, console, cams)
    s = summary(name)
    s.extra["seed"] = seed
    agent.start()
    lock = threading.Lock()
    offsets: dict[str, list[int]] = {cam.name: [] for cam in cams}

    def unplugged_steps(cam: Camera) -> int:
        return sum(1 for st in agent.steps("unplugged") if st.get("slot") == str(cam.port))

    def wobble(cam: Camera, cam_rng: random.Random) -> None:
        for run in range(unplugs_each):
            # A fifth of the unplugs in the first 1400 bytes: handshake, clock, status, listing.
            offset = (cam_rng.randrange(1, 1400) if cam_rng.random() < 0.2
                      else cam_rng.randrange(3 * K, 120 * K))
            offsets[cam.name].append(offset)
            why = f"{cam.name} run {run} unplug after {offset} bytes (seed {seed})"
            cam.start(f"unplug-after-bytes={offset}")
            code = cam.wait_exit()
            assert code == EXIT_UNPLUGGED, f"{why}: camsim exited {code}"
            e2e.wait(lambda run=run: unplugged_steps(cam) >= run + 1,
                     f"the agent to see the unplug; {why}")
            requests = _REQUEST.findall(cam.log_text(len(cam.procs) - 1))
            phase = _PHASE.get(requests[-1], requests[-1]) if requests else "before_hello"
            with lock:
                found = inv.check_release_safety(f"unplug {why}")
                s.run(phase, ok=not found)

    with ThreadPoolExecutor(len(cams)) as pool:
        for future in [pool.submit(wobble, cam, random.Random(rng.random())) for cam in cams]:
            future.result()
    e2e.start_cameras(cams)  # the last replug, no fault

    inv.wait_complete(f"every recording after the last replug (seed {seed})")
    s.extra["offset_range"] = [min(min(o) for o in offsets.values()),
                               max(max(o) for o in offsets.values())]
    # Never fetch again what was durable.
    resumed = 0
    for cam in cams:
        highest: dict[str, int] = {}
        for run in range(len(cam.procs)):
            for rid, indices in _chunk_requests(cam, run).items():
                if rid in highest:
                    resumed += 1
                    if indices[0] < highest[rid]:
                        inv.problems.append(f"{cam.name} run {run}: refetched {rid} from "
                                            f"{indices[0]} after {highest[rid]}")
                highest[rid] = max(highest.get(rid, 0), *indices)
    s.extra["resumed_offloads"] = resumed
    assert agent.stop() == 0
    inv.check_final()
    if inv.problems:
        s.passed = min(s.passed, s.runs - 1)
    inv.assert_ok()
    assert s.runs == cameras * unplugs_each
    assert resumed >= cameras, f"too few resumed offloads ({resumed}); seed {seed}"


def test_unplug_at_50_random_offsets_each_recording_completes_on_replug(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    _unplug_campaign(e2e, mosquitto, summary, 5, 10, "unplug")


@pytest.mark.soak
def test_unplug_at_200_random_offsets_each_recording_completes_on_replug(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    _unplug_campaign(e2e, mosquitto, summary, 5, 40, "unplug-soak")
