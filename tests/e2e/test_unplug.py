"""Unplug at random byte offsets mid-transfer, replug: the offload resumes and completes with
every chunk exactly once (never refetching what was durable, never accepting a chunk twice)."""

from __future__ import annotations

import os
import random
import re
from collections import defaultdict
from pathlib import Path

from tests.e2e.harness import (
    CHUNK,
    EXIT_UNPLUGGED,
    Camera,
    Harness,
    assert_contiguous,
    make_media,
    sha256_hex,
)
from tests.helpers import Mosquitto

K = 1024
_READ_CHUNK = re.compile(r"ReadChunk rec=([0-9a-f]{8}) idx=(\d+) ->")


def _chunk_requests(cam: Camera, run: int) -> dict[str, list[int]]:
    """Recording id prefix → chunk indices the camera was asked for in one run, in order."""
    requests: dict[str, list[int]] = defaultdict(list)
    for rid, idx in _READ_CHUNK.findall(cam.log_text(run)):
        requests[rid].append(int(idx))
    return requests


def test_unplug_at_random_offsets_then_replug_completes_without_loss_or_duplicates(
    e2e: Harness, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    seed = int(os.environ.get("BWC_E2E_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    # 833 KiB to offload; each faulted run carries at most 250 KiB of replies, so every unplug
    # fires mid-transfer (after the <2 KiB handshake) and three of them cannot finish the job.
    # The second run always outlasts a whole chunk (64 KiB), so at least one replug resumes
    # from durable chunks; the others may cut the first chunk too.
    offsets = [rng.randrange(4 * K, 250 * K), rng.randrange(CHUNK + 8 * K, 250 * K),
               rng.randrange(4 * K, 250 * K)]
    why = f"seed={seed} unplug offsets={offsets} (BWC_E2E_SEED={seed} reproduces them)"
    cam = e2e.camera("wobbly", media=make_media([500 * K, 333 * K + 5]),
                     faults=[f"unplug-after-bytes={offsets[0]}"])
    agent = e2e.make_agent(mosquitto)
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start()

    for run, offset in enumerate(offsets):
        if run:
            cam.start(f"unplug-after-bytes={offset}")  # replug: same key, state and port
        assert cam.wait_exit() == EXIT_UNPLUGGED, why
        assert f"unplug fault: line closed after {offset} bytes" in cam.log_text(run), why
        assert not cam.port.exists()
        e2e.wait(lambda run=run: len(agent.steps("unplugged", camera=cam)) == run + 1,
                 f"the agent to see unplug {run + 1}; {why}")
        assert agent.stored_ids() != set(cam.recordings), why
    cam.start()  # the last replug, no fault

    e2e.wait(lambda: set(console.verified_for(cam)) == set(cam.recordings),
             f"both manifests after the last replug; {why}")
    assert console.snapshot()["rejected"] == [], why
    assert "resume at chunk" in agent.log_text(), why

    # Never refetch what was durable: after each replug, the first chunk asked for is the
    # one in flight at the unplug (or the next), never an earlier one.
    highest: dict[str, int] = {}
    resumed = 0
    for run in range(len(offsets) + 1):
        for rid, indices in _chunk_requests(cam, run).items():
            if rid in highest:
                resumed += 1
                assert indices[0] >= highest[rid], (rid, run, indices, highest, why)
            highest[rid] = max(indices)
    # The first recording (500 KiB) outlasts the first two runs: both replugs after them resume.
    assert resumed >= 2, (highest, why)

    # Every chunk exactly once: manifest chunk lists contiguous, the store holds each chunk
    # once (verify re-reads all of them) and the export is the original.
    manifests = console.verified_for(cam)
    for rid, data in cam.recordings.items():
        assert_contiguous(manifests[rid])
        assert manifests[rid]["sha256"] == sha256_hex(data)
        assert agent.export(rid, tmp_path / f"{rid}.export") == data, why
    assert sorted(agent.verify_all()) == sorted(f"{rid} OK" for rid in cam.recordings)
    assert sorted(s["recording_id"] for s in agent.steps("stored")) == sorted(cam.recordings)
    assert agent.partials() == {}
