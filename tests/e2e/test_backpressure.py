"""Back-pressure: when the footage store reaches its reserve mid-offload, offloads pause with a
``storage_low`` event, nothing is deleted to make room, and they resume by themselves when
space returns (``storage_ok``), with every chunk stored exactly once.

The footage store sits on a 3 MiB tmpfs, so its free space moves only with what the agent
writes and the test's ballast file, whatever else the machine does meanwhile."""

from __future__ import annotations

import shutil

from tests.e2e.harness import Harness, assert_contiguous, make_media, sha256_hex
from tests.helpers import Mosquitto, tmpfs

K = 1024
M = 1024 * K


def test_store_reserve_pauses_and_resumes_the_offload(e2e: Harness, mosquitto: Mosquitto) -> None:
    cam = e2e.camera("bulky", media=make_media([900 * K, 700 * K]), start=False)
    cam.create_key()
    agent = e2e.make_agent(mosquitto, settings={"storage_reserve_bytes": 1 * M})
    with tmpfs(agent.state_dir / "footage", 3 * M) as footage:
        ballast = footage / "ballast.bin"  # deleting it is "space returns"
        ballast.write_bytes(bytes(1536 * K))
        headroom = shutil.disk_usage(footage).free - 1 * M
        assert 0 < headroom < 600 * K
        agent.enroll(cam)
        console = e2e.console(mosquitto)
        agent.start()
        cam.start()

        low = e2e.wait(lambda: console.events_named("storage_low"), "storage_low")[0]
        assert low["details"]["reserve_bytes"] == 1 * M
        partials = e2e.wait(lambda: agent.partials() or None, "a paused partial recording")
        assert agent.stored_ids() == set()  # nothing finished while the store was low
        assert cam.released() == set()
        # Each chunk is admitted only if it fits above the reserve: what was written before
        # the pause is at most the head-room, never past it.
        assert sum(partials.values()) <= headroom, (partials, headroom)

        ballast.unlink()  # space returns; nothing of the dock's own was deleted
        e2e.wait(lambda: console.events_named("storage_ok"), "storage_ok")
        e2e.wait(lambda: set(console.verified_for(cam)) == set(cam.recordings),
                 "every manifest after the pause")
        manifests = console.verified_for(cam)
        for rid, data in cam.recordings.items():
            assert manifests[rid]["sha256"] == sha256_hex(data)
            assert_contiguous(manifests[rid])  # every chunk exactly once, none missing
        assert sorted(agent.verify_all()) == sorted(f"{rid} OK" for rid in cam.recordings)
        assert agent.quarantined() == {}
        agent.stop()
