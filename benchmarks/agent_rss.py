"""Agent resident memory with four cameras docked, during and after their offload (issue 3).

The full main path, as in ``make demo``: a Mosquitto on a free loopback port, a console stand-in
that acknowledges every manifest and event (so ``erase_after = "acknowledged"`` releases the
footage), the agent with its default settings (256 KiB chunks, up to 4 offloads at once) and four
emulated cameras (default: 3 recordings of 8 MiB each) that appear at the same time.

The agent's RSS (psutil on its pid) is sampled every 10 ms in three phases: ``idle`` (started, no
camera), ``offload`` (cameras appear → every recording stored) and ``after`` (stored → released
and ``--hold-s`` more seconds docked, so idle status polls and a health publication are
included). Prints one JSON line per phase and a verdict on the peak (target <= 80 MB, 1 MB =
10^6 bytes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    Camera,
    Observer,
    RssSampler,
    camera_key,
    emit,
    enroll,
    note,
    start_agent,
    start_broker,
    wait_for,
    workspace,
    write_config,
)

TARGET_MB = 80.0
MB = 1_000_000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--recordings", type=int, default=3, help="per camera")
    p.add_argument("--size", default="8M", help="of each recording (camsim K/M/G syntax)")
    p.add_argument("--chunk-size", type=int, default=256 * 1024,
                   help="camera chunk size and the agent's chunk_size_serial")
    p.add_argument("--hold-s", type=float, default=12.0,
                   help="seconds to stay docked after everything is released")
    args = p.parse_args()
    expected = args.cameras * args.recordings
    with workspace("bwc-bench-rss-") as (stack, work):
        port = start_broker(stack, work)
        dev = work / "dev"
        dev.mkdir()
        config = write_config(work, dev, broker=f"mqtt://127.0.0.1:{port}", health_interval_s=5,
                              chunk_size_serial=args.chunk_size)
        keys = {}
        for i in range(args.cameras):
            key = work / f"cam{i}.pem"
            uid = camera_key(key)
            enroll(config, uid, key, f"OF-cam{i}")
            keys[uid] = key
        observer = Observer(port, ack=True)
        stack.callback(observer.close)
        agent, proc, _log = start_agent(stack, work, config)
        sampler = RssSampler(proc)
        stack.callback(sampler.stop)
        time.sleep(2.0)
        note(f"docking {args.cameras} cameras with {args.recordings} x {args.size} each")
        sampler.phase = "offload"
        t0 = time.monotonic()
        cams = [Camera(stack, work, f"cam{i}", dev / f"usb-bench-cam{i}-bwc",
                       ["--generate", f"{args.recordings}:{args.size}", "--battery", "100",
                        "--chunk-size", str(args.chunk_size),
                        "--max-payload", str(max(args.chunk_size + 64, 256 * 1024))],
                       key=key) for i, key in enumerate(keys.values())]
        recordings = work / "state" / "footage" / "recordings"

        def all_stored() -> bool:
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited with {agent.returncode}")
            return recordings.is_dir() and len(os.listdir(recordings)) >= expected

        wait_for(all_stored, 240, "every recording stored", interval=0.01)
        sampler.phase = "after"
        offload_s = time.monotonic() - t0
        note(f"all {expected} recordings stored after {offload_s:.1f} s; waiting for releases")

        def released() -> bool:
            left: dict[str, Any] = {}
            with observer.cond:
                for _at, _topic, msg in observer.messages:
                    if msg.get("type") == "camera_status" and msg.get("docked"):
                        left[msg["camera_uid"]] = (msg.get("offload") or {}).get(
                            "recordings_total")
            return len(left) == len(cams) and all(v == 0 for v in left.values())

        wait_for(released, 60, "the footage released on every camera", interval=0.05)
        released_s = time.monotonic() - t0
        time.sleep(args.hold_s)
        sampler.stop()
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited with {agent.returncode}")
        threads = proc.num_threads()

    common = {"bench": "agent_rss", "cameras": args.cameras, "recordings_per_camera":
              args.recordings, "recording_size": args.size, "chunk": args.chunk_size}
    for phase in ("idle", "offload", "after"):
        emit({**common, "what": f"rss_{phase}", "peak_mb": round(sampler.peaks[phase] / MB, 1),
              "last_mb": round(sampler.last[phase] / MB, 1), "samples": sampler.counts[phase]})
    peak = max(sampler.peaks["offload"], sampler.peaks["after"])
    emit({**common, "what": "rss_peak", "peak_mb": round(peak / MB, 1), "target_mb": TARGET_MB,
          "met": peak / MB <= TARGET_MB, "offload_s": round(offload_s, 2),
          "released_s": round(released_s, 2), "agent_threads": threads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
