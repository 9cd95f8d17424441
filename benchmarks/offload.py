"""Agent offload throughput and CPU over a real pty vs a plain read-hash-write baseline (issue 3).

One emulated camera (``camsim`` with ``--media-dir``: one 1 GiB recording, 1 MiB chunks, frames
big enough for a whole chunk) is docked into a running agent (``chunk_size_serial = 1048576``,
``erase_after = "never"``, no broker). Timed: from the camera's device link appearing to the
last recording being stored (its directory under ``footage/recordings/``), plus the agent
process's own CPU seconds (psutil, user + system, all threads) over the same interval.

Baseline, in the same run: ``_ptystream.py`` reads the very same bytes from the same kind of pty
(raw mode, slave side, a writer process streaming into the master as fast as the line takes
it), SHA-256-hashes them, writes them to a file on the same filesystem and fsyncs once.

``--rounds`` (default 2) baseline/agent pairs run alternately and the best of each side is
compared, as in ``protocol_throughput.py``: a shared machine's noise only ever slows a run down.
Per-round figures are printed too.

Prints JSON lines: the baseline, the agent, the throughput ratio (target >= 0.7) and CPU seconds
per GiB for both (the lowest over the rounds). Progress goes to stderr. Everything (processes,
temp dir) is cleaned up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    GIB,
    MIB,
    PY,
    Camera,
    camera_key,
    cpu_seconds,
    emit,
    enroll,
    journal_steps,
    make_media,
    note,
    start_agent,
    stop_process,
    wait_for,
    workspace,
    write_config,
)

CHUNK = MIB
TARGET_RATIO = 0.7


def run_baseline(work: Path, source: Path) -> dict[str, Any]:
    out = work / "baseline.out"
    done = subprocess.run([PY, str(Path(__file__).with_name("_ptystream.py")), "--source",
                           str(source), "--out", str(out)], check=True, capture_output=True,
                          timeout=600)
    out.unlink(missing_ok=True)
    return dict(json.loads(done.stdout))


def _at(step: dict[str, Any]) -> float:
    return datetime.fromisoformat(step["at"].replace("Z", "+00:00")).timestamp()


def run_agent(stack: Any, work: Path, media: Path, count: int) -> dict[str, Any]:
    work.mkdir()
    dev = work / "dev"
    dev.mkdir()
    config = write_config(work, dev, broker="", erase_after="never",
                          chunk_size_serial=CHUNK)
    # Enrol before the camera exists, so that it appears into a dock that already knows it.
    key_path = work / "cam.pem"
    enroll(config, camera_key(key_path), key_path, "OF-cam")
    agent, proc, _log = start_agent(stack, work, config)
    link = dev / "usb-bench-cam-bwc"
    cam = Camera(stack, work, "cam", link, ["--media-dir", str(media), "--chunk-size",
                                            str(CHUNK), "--max-payload", str(CHUNK + 64)],
                 key=key_path)
    note("camsim: signing the footage at boot (not timed)")
    t0 = cam.wait_link(300, interval=0.0005)
    cpu0, wall0 = cpu_seconds(proc), time.time()
    camsim = psutil.Process(cam.proc.pid)
    cam_cpu0 = cpu_seconds(camsim)
    note("camera appeared; offloading")
    recordings = work / "state" / "footage" / "recordings"

    def stored() -> bool:
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited with {agent.returncode}")
        return recordings.is_dir() and len(os.listdir(recordings)) >= count

    wait_for(stored, 600, "the last recording stored", interval=0.005)
    wall, cpu = time.monotonic() - t0, cpu_seconds(proc) - cpu0
    cam_cpu = cpu_seconds(camsim) - cam_cpu0
    rss = proc.memory_info().rss
    manifests = [json.loads((d / "manifest.json").read_text())
                 for d in sorted(recordings.iterdir())]
    # The journal's "stored" step is written just after the commit point that stopped the clock.
    steps = wait_for(lambda: (lambda s: s if sum(x["step"] == "stored" for x in s) >= count
                              else None)(journal_steps(work / "state")), 30, "journal")
    hello = next(s for s in steps if s["step"] == "hello")
    first = next(s for s in steps if s["step"] == "offload_start")
    last = [s for s in steps if s["step"] == "stored"][-1]
    fetched = sum(s.get("fetched", 0) for s in steps if s["step"] == "stored")
    cam.stop()
    stop_process(agent)
    shutil.rmtree(work / "state", ignore_errors=True)  # 1 GiB: do not keep it for the next round
    return {"wall_s": wall, "cpu_s": cpu, "camsim_cpu_s": cam_cpu,
            "bytes": sum(m["size"] for m in manifests), "fetched": fetched,
            "sha256": sorted(m["sha256"] for m in manifests), "rss": rss,
            "appear_to_hello_s": _at(hello) - wall0,
            "appear_to_first_chunk_s": _at(first) - wall0,
            "offload_s": _at(last) - _at(first)}


def run_baselines(work: Path, files: list[Path]) -> dict[str, Any]:
    base: dict[str, Any] = {"wall_s": 0.0, "cpu_s": 0.0, "bytes": 0, "sha256": []}
    for f in files:
        one = run_baseline(work, f)
        base["wall_s"] += one["wall_s"]
        base["cpu_s"] += one["cpu_s"]
        base["bytes"] += one["bytes"]
        base["sha256"].append(one["sha256"])
    base["sha256"].sort()
    return base


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size-mib", type=int, default=1024, help="total footage (default 1 GiB)")
    p.add_argument("--recordings", type=int, default=1, help="split into this many recordings")
    p.add_argument("--rounds", type=int, default=2,
                   help="baseline + agent pairs; the best of each side is compared")
    args = p.parse_args()
    total = args.size_mib * MIB
    bases: list[dict[str, Any]] = []
    agents: list[dict[str, Any]] = []
    load = os.getloadavg()[0]
    with workspace("bwc-bench-offload-") as (_stack, work):
        note(f"writing {args.size_mib} MiB of footage in {args.recordings} recording(s)")
        media = work / "media"
        files = make_media(media, total, args.recordings)
        for r in range(args.rounds):
            note(f"round {r + 1}/{args.rounds}: baseline (pty read + SHA-256 + write + fsync)")
            bases.append(run_baselines(work, files))
            note(f"round {r + 1}/{args.rounds}: agent (dock the camera and offload)")
            with ExitStack() as round_stack:
                agents.append(run_agent(round_stack, work / f"round{r}", media, args.recordings))

    mib, gib = total / MIB, total / GIB
    base = min(bases, key=lambda b: b["wall_s"])
    agent = min(agents, key=lambda a: a["wall_s"])
    common = {"bench": "offload", "mib": mib, "recordings": args.recordings, "chunk": CHUNK,
              "rounds": args.rounds}
    b_rate, a_rate = mib / base["wall_s"], mib / agent["wall_s"]
    b_cpu = min(b["cpu_s"] for b in bases) / gib
    a_cpu = min(a["cpu_s"] for a in agents) / gib
    emit({**common, "what": "baseline", "seconds": round(base["wall_s"], 3),
          "mib_per_s": round(b_rate, 1), "cpu_s_per_gib": round(b_cpu, 2),
          "rounds_mib_per_s": [round(mib / b["wall_s"], 1) for b in bases],
          "rounds_cpu_s": [round(b["cpu_s"], 2) for b in bases]})
    emit({**common, "what": "agent", "seconds": round(agent["wall_s"], 3),
          "mib_per_s": round(a_rate, 1), "cpu_s_per_gib": round(a_cpu, 2),
          "rounds_mib_per_s": [round(mib / a["wall_s"], 1) for a in agents],
          "rounds_cpu_s": [round(a["cpu_s"], 2) for a in agents],
          "camsim_cpu_s_per_gib": round(min(a["camsim_cpu_s"] for a in agents) / gib, 2),
          "appear_to_hello_s": round(agent["appear_to_hello_s"], 3),
          "appear_to_first_chunk_s": round(agent["appear_to_first_chunk_s"], 3),
          "first_chunk_to_stored_s": round(agent["offload_s"], 3),
          "same_bytes": all(a["sha256"] == base["sha256"] and a["bytes"] == total
                            for a in agents),
          "fetched_bytes": agent["fetched"], "rss_mb": round(agent["rss"] / 1e6, 1)})
    ratio = a_rate / b_rate
    emit({**common, "what": "ratio", "ratio": round(ratio, 3), "target": TARGET_RATIO,
          "met": ratio >= TARGET_RATIO, "loadavg_at_start": round(load, 2)})
    emit({**common, "what": "cpu_s_per_gib", "agent": round(a_cpu, 2),
          "baseline": round(b_cpu, 2), "agent_over_baseline": round(a_cpu / b_cpu, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
