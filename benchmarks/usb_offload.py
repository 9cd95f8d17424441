"""Agent offload throughput and CPU over the simulated USB bus vs a plain pyusb baseline (issue 4).

One emulated camera (``camsim --usb`` with ``--media-dir``: one 1 GiB recording, 1 MiB chunks,
frames big enough for a whole chunk) plugs into the simulated bus watched by a running agent
(``usb_backend = "camsim:BUS"``, ``chunk_size_usb = 1048576``, ``erase_after = "never"``, no
broker). Timed: from the device appearing (its ``device.json``, polled every 0.5 ms) to the last
recording being stored (its directory under ``footage/recordings/``), plus the agent process's
own CPU seconds (psutil, user + system, all threads) over the same interval. This includes
hot-plug discovery (a 0.25 s poll), the handshake, the clock sync and the listing.

Baseline, in the same run: a second emulator with the same key and media on the same bus, read
by ``_usbstream.py`` through the same pyusb backend — a plain loop (``dev.read(0x81, array)`` of
1 MiB, a minimal ``firmware_protocol`` DOCK requesting every chunk) that SHA-256-hashes the
bytes, AES-256-GCM-encrypts them (``AESGCM``) and writes them to a file with one fsync at the
end. Timed from ``usb.core.find`` to that fsync, with its own CPU.

``--rounds`` (default 2) baseline/agent pairs run alternately and the best of each side is
compared (a shared machine's noise only ever slows a run down); per-round figures are printed.
Prints JSON lines: baseline, agent, the throughput ratio (target >= 0.8) and CPU seconds per GiB
(target: agent <= 1.25 x baseline), with the load average. Everything is cleaned up.
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
    camera_key,
    cpu_seconds,
    emit,
    enroll,
    journal_steps,
    loadavg,
    make_media,
    note,
    start_agent,
    stop_process,
    wait_for,
    workspace,
    write_config,
)
from _usbbus import UsbCamera, make_bus, usb_settings

CHUNK = MIB
TARGET_RATIO = 0.8
TARGET_CPU = 1.25


def camera_args(media: Path) -> list[str]:
    return ["--media-dir", str(media), "--chunk-size", str(CHUNK), "--max-payload",
            str(CHUNK + 64)]


def run_baseline(stack: ExitStack, work: Path, bus: Path, key: Path, media: Path,
                 tag: str) -> dict[str, Any]:
    cam = UsbCamera(stack, work, f"base{tag}", bus, camera_args(media), key=key)
    cam.wait_ready()
    camsim = psutil.Process(cam.proc.pid)
    cam_cpu0 = cpu_seconds(camsim)
    out = work / "baseline.out"
    try:
        done = subprocess.run([PY, str(Path(__file__).with_name("_usbstream.py")), "--bus",
                               str(bus), "--out", str(out), "--max-payload", str(CHUNK + 4)],
                              check=True, capture_output=True, timeout=900)
    finally:
        out.unlink(missing_ok=True)
    result = dict(json.loads(done.stdout))
    result["camsim_cpu_s"] = cpu_seconds(camsim) - cam_cpu0
    cam.stop()
    return result


def _at(step: dict[str, Any]) -> float:
    return datetime.fromisoformat(step["at"].replace("Z", "+00:00")).timestamp()


def run_agent(stack: ExitStack, work: Path, bus: Path, key: Path, media: Path,
              count: int) -> dict[str, Any]:
    work.mkdir()
    dev = work / "dev"
    dev.mkdir()
    config = write_config(work, dev, broker="", erase_after="never", **usb_settings(bus, CHUNK))
    enroll(config, camera_key(key), key, "OF-cam")  # before the camera first appears
    agent, proc, _log = start_agent(stack, work, config)
    cam = UsbCamera(stack, work, "cam", bus, camera_args(media), key=key)
    note("camsim: signing the footage at boot (not timed)")
    t0 = cam.wait_link(600)
    cpu0, wall0, times0 = cpu_seconds(proc), time.time(), proc.cpu_times()
    camsim = psutil.Process(cam.proc.pid)
    cam_cpu0 = cpu_seconds(camsim)
    note("camera appeared; offloading")
    recordings = work / "state" / "footage" / "recordings"

    def stored() -> bool:
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited with {agent.returncode}")
        return recordings.is_dir() and len(os.listdir(recordings)) >= count

    wait_for(stored, 900, "the last recording stored", interval=0.005)
    wall, cpu, times = time.monotonic() - t0, cpu_seconds(proc) - cpu0, proc.cpu_times()
    cam_cpu = cpu_seconds(camsim) - cam_cpu0
    rss = proc.memory_info().rss
    manifests = [json.loads((d / "manifest.json").read_text())
                 for d in sorted(recordings.iterdir())]
    steps = wait_for(lambda: (lambda s: s if sum(x["step"] == "stored" for x in s) >= count
                              else None)(journal_steps(work / "state")), 30, "journal")
    hello = next(s for s in steps if s["step"] == "hello")
    first = next(s for s in steps if s["step"] == "offload_start")
    last = [s for s in steps if s["step"] == "stored"][-1]
    fetched = sum(s.get("fetched", 0) for s in steps if s["step"] == "stored")
    cam.stop()
    stop_process(agent)
    shutil.rmtree(work / "state", ignore_errors=True)  # 1 GiB: not kept for the next round
    return {"wall_s": wall, "cpu_s": cpu, "camsim_cpu_s": cam_cpu,
            "user_s": times.user - times0.user, "sys_s": times.system - times0.system,
            "bytes": sum(m["size"] for m in manifests), "fetched": fetched,
            "sha256": sorted(m["sha256"] for m in manifests), "rss": rss,
            "appear_to_hello_s": _at(hello) - wall0,
            "appear_to_first_chunk_s": _at(first) - wall0,
            "offload_s": _at(last) - _at(first)}


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
    load_start = loadavg()
    with workspace("bwc-bench-usb-offload-") as (_stack, work):
        note(f"writing {args.size_mib} MiB of footage in {args.recordings} recording(s)")
        media = work / "media"
        make_media(media, total, args.recordings)
        bus = make_bus(work)
        key = work / "cam.pem"
        camera_key(key)
        for r in range(args.rounds):
            note(f"round {r + 1}/{args.rounds}: baseline (pyusb read + SHA-256 + AES-GCM + "
                 "write + fsync)")
            with ExitStack() as round_stack:
                bases.append(run_baseline(round_stack, work, bus, key, media, str(r)))
            note(f"round {r + 1}/{args.rounds}: agent (plug the camera in and offload)")
            with ExitStack() as round_stack:
                agents.append(run_agent(round_stack, work / f"round{r}", bus, key, media,
                                        args.recordings))
    load_end = loadavg()

    mib, gib = total / MIB, total / GIB
    base = min(bases, key=lambda b: b["wall_s"])
    agent = min(agents, key=lambda a: a["wall_s"])
    common = {"bench": "usb_offload", "mib": mib, "recordings": args.recordings, "chunk": CHUNK,
              "rounds": args.rounds, "transport": "usb (camsim bus)"}
    b_rate, a_rate = mib / base["wall_s"], mib / agent["wall_s"]
    b_cpu = min(b["cpu_s"] for b in bases) / gib
    a_cpu = min(a["cpu_s"] for a in agents) / gib
    emit({**common, "what": "baseline", "seconds": round(base["wall_s"], 3),
          "mib_per_s": round(b_rate, 1), "cpu_s_per_gib": round(b_cpu, 2),
          "rounds_mib_per_s": [round(mib / b["wall_s"], 1) for b in bases],
          "rounds_cpu_s": [round(b["cpu_s"], 2) for b in bases],
          "rounds_user_sys_s": [[round(b["user_s"], 2), round(b["sys_s"], 2)] for b in bases],
          "camsim_cpu_s_per_gib": round(min(b["camsim_cpu_s"] for b in bases) / gib, 2)})
    emit({**common, "what": "agent", "seconds": round(agent["wall_s"], 3),
          "mib_per_s": round(a_rate, 1), "cpu_s_per_gib": round(a_cpu, 2),
          "rounds_mib_per_s": [round(mib / a["wall_s"], 1) for a in agents],
          "rounds_cpu_s": [round(a["cpu_s"], 2) for a in agents],
          "rounds_user_sys_s": [[round(a["user_s"], 2), round(a["sys_s"], 2)] for a in agents],
          "camsim_cpu_s_per_gib": round(min(a["camsim_cpu_s"] for a in agents) / gib, 2),
          "appear_to_hello_s": round(agent["appear_to_hello_s"], 3),
          "appear_to_first_chunk_s": round(agent["appear_to_first_chunk_s"], 3),
          "first_chunk_to_stored_s": round(agent["offload_s"], 3),
          "same_bytes": all(a["sha256"] == b["sha256"] and a["bytes"] == b["bytes"] == total
                            for a in agents for b in bases),
          "fetched_bytes": agent["fetched"], "rss_mb": round(agent["rss"] / 1e6, 1)})
    ratio = a_rate / b_rate
    emit({**common, "what": "ratio", "ratio": round(ratio, 3), "target": TARGET_RATIO,
          "met": ratio >= TARGET_RATIO, "loadavg_start": load_start, "loadavg_end": load_end,
          "cores": os.cpu_count()})
    cpu_ratio = a_cpu / b_cpu
    emit({**common, "what": "cpu_s_per_gib", "agent": round(a_cpu, 2),
          "baseline": round(b_cpu, 2), "agent_over_baseline": round(cpu_ratio, 2),
          "target": TARGET_CPU, "met": cpu_ratio <= TARGET_CPU})
    return 0


if __name__ == "__main__":
    sys.exit(main())
