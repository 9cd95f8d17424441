"""Agent resident memory with a full dock of 16 cameras offloading, and over a dock/undock soak
(issue 4).

The full main path: a Mosquitto on a free loopback port, a console stand-in that acknowledges
every manifest and event (``erase_after = "acknowledged"`` releases the footage), and the agent
(``max_concurrent_offloads = 16`` unless ``--max-concurrent``, 1 MiB chunks over USB, 256 KiB
over serial) with 16 emulated cameras: 8 on the simulated USB bus (``camsim --usb``) and 8 on
ptys, each holding one ``--size-mib`` recording (default 32 MiB, from ``--media-dir``).

Peak: the agent is suspended (SIGSTOP) while the 16 emulators boot and plug in, then resumed, so
that all 16 are docked and offloading at the same time (the journal's overlap of offload_start
.. stored intervals is reported). RSS (psutil on the agent's pid) is sampled every 10 ms in the
phases ``idle``, ``offload`` (resume → every recording stored) and ``after`` (→ all released,
plus ``--hold-s``). Target: peak <= 120 MB (1 MB = 10^6 bytes).

Soak (``--soak-minutes``, default 3; the issue asks for 30): repeated cycles of the same 16
cameras docking (emulators started; each cycle gets a media directory with a new file name, so a
new recording, ``--soak-size``, default 1 MiB), offloading, being released, and undocking
(emulators stopped, until the agent published every camera undocked and forgot the slots). The
RSS at the end of each cycle (all undocked) is recorded. Target: RSS at the end of the last
cycle < 1.10 x at the end of the first (the first cycle is the soak's start: the agent has then
been through every code path once); the least-squares slope over all cycles is reported too.
Prints JSON lines with the load average; everything is cleaned up.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    KIB,
    MIB,
    Camera,
    Observer,
    RssSampler,
    camera_key,
    emit,
    enroll,
    journal_steps,
    loadavg,
    make_media,
    note,
    start_agent,
    start_broker,
    suspended,
    wait_for,
    wait_unplugged,
    workspace,
    write_config,
)
from _usbbus import UsbCamera, make_bus, usb_settings

TARGET_MB = 120.0
TARGET_GROWTH = 0.10
MB = 1_000_000
USB_CHUNK = MIB
SERIAL_CHUNK = 256 * KIB


class Dock:
    """The 16 cameras: which key sits on which transport, and how to plug them all in."""

    def __init__(self, work: Path, bus: Path, dev: Path, usb: int, serial: int) -> None:
        self.work = work
        self.bus = bus
        self.dev = dev
        self.usb_keys = [work / f"usb{i}.pem" for i in range(usb)]
        self.serial_keys = [work / f"ser{i}.pem" for i in range(serial)]
        self.uids = {key: camera_key(key) for key in self.usb_keys + self.serial_keys}

    def plug_in(self, stack: ExitStack, media: Path, tag: str) -> list[Camera | UsbCamera]:
        cams: list[Camera | UsbCamera] = []
        for key in self.usb_keys:
            cams.append(UsbCamera(stack, self.work, f"{tag}-{key.stem}", self.bus,
                                  ["--media-dir", str(media), "--chunk-size", str(USB_CHUNK),
                                   "--max-payload", str(USB_CHUNK + 64)],
                                  key=key, state_dir=self.work / f"{key.stem}-state"))
        for key in self.serial_keys:
            cams.append(Camera(stack, self.work, f"{tag}-{key.stem}",
                               self.dev / f"usb-bench-{key.stem}-bwc",
                               ["--media-dir", str(media), "--chunk-size", str(SERIAL_CHUNK),
                                "--max-payload", str(SERIAL_CHUNK + 64)],
                               key=key, state_dir=self.work / f"{key.stem}-state"))
        return cams


def _latest_status(observer: Observer, since: float) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    with observer.cond:
        for at, _topic, msg in observer.messages:
            if at >= since and msg.get("type") == "camera_status" and "camera_uid" in msg:
                latest[msg["camera_uid"]] = msg
    return latest


def wait_released(observer: Observer, uids: list[str], since: float, timeout: float) -> None:
    """Every camera docked with nothing left on it (its footage stored, acked and released)."""
    def released() -> bool:
        latest = _latest_status(observer, since)
        return all(latest.get(u, {}).get("docked") is True
                   and (latest[u].get("offload") or {}).get("recordings_total") == 0
                   for u in uids)

    wait_for(released, timeout, "the footage released on every camera", interval=0.05)


def wait_undocked(observer: Observer, uids: list[str], since: float, timeout: float) -> None:
    def undocked() -> bool:
        latest = _latest_status(observer, since)
        return all(latest.get(u, {}).get("docked") is False for u in uids)

    wait_for(undocked, timeout, "every camera published undocked", interval=0.05)


def max_overlap(steps: list[dict[str, Any]]) -> int:
    """Most offloads in progress at once (journal: offload_start .. its end)."""
    marks: list[tuple[str, int]] = []
    for s in steps:
        if s["step"] == "offload_start":
            marks.append((s["at"], 1))
        elif s["step"] in ("stored", "quarantined", "offload_paused"):
            marks.append((s["at"], -1))
    now = best = 0
    for _at, delta in sorted(marks):  # at equal times an end (-1) sorts before a start
        now += delta
        best = max(best, now)
    return best


def slope_mb_per_100(values: list[int]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den * 100 / MB


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--usb", type=int, default=8, help="cameras on the simulated USB bus")
    p.add_argument("--serial", type=int, default=8, help="cameras on ptys")
    p.add_argument("--size-mib", type=int, default=32, help="footage per camera (peak phase)")
    p.add_argument("--max-concurrent", type=int, default=0,
                   help="the agent's max_concurrent_offloads (default: every camera at once)")
    p.add_argument("--hold-s", type=float, default=8.0,
                   help="seconds to stay docked after everything is released")
    p.add_argument("--soak-minutes", type=float, default=3.0,
                   help="dock/undock cycles for this long (0: no soak; the issue asks for 30)")
    p.add_argument("--soak-size-kib", type=int, default=1024, help="footage per camera and cycle")
    args = p.parse_args()
    cameras = args.usb + args.serial
    limit = args.max_concurrent or cameras
    load_start = loadavg()
    cycle_rss: list[int] = []
    cycle_peaks: list[int] = []
    cycle_seconds: list[float] = []
    with workspace("bwc-bench-rss16-") as (stack, work):
        port = start_broker(stack, work)
        bus = make_bus(work)
        dev = work / "dev"
        dev.mkdir()
        config = write_config(work, dev, broker=f"mqtt://127.0.0.1:{port}", health_interval_s=5,
                              max_concurrent_offloads=limit, chunk_size_serial=SERIAL_CHUNK,
                              **usb_settings(bus, USB_CHUNK))
        dock = Dock(work, bus, dev, args.usb, args.serial)
        for key, uid in dock.uids.items():
            enroll(config, uid, key, f"OF-{key.stem}")
        uids = list(dock.uids.values())
        observer = Observer(port, ack=True)
        stack.callback(observer.close)
        agent, proc, _log = start_agent(stack, work, config)
        sampler = RssSampler(proc)
        stack.callback(sampler.stop)
        media = work / "media"
        make_media(media, args.size_mib * MIB, 1)
        time.sleep(2.0)
        recordings = work / "state" / "footage" / "recordings"

        def stored(count: int) -> bool:
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited with {agent.returncode}")
            return recordings.is_dir() and len(os.listdir(recordings)) >= count

        note(f"docking {args.usb} USB + {args.serial} serial cameras with {args.size_mib} MiB "
             "each (agent suspended while they plug in)")
        with ExitStack() as peak_stack:
            with suspended(agent):
                cams = dock.plug_in(peak_stack, media, "peak")
                for cam in cams:
                    cam.wait_ready()
                sampler.phase = "offload"
                t0 = time.monotonic()
            wait_for(lambda: stored(cameras), 600, "every recording stored", interval=0.01)
            sampler.phase = "after"
            offload_s = time.monotonic() - t0
            note(f"all {cameras} recordings stored after {offload_s:.1f} s; waiting for releases")
            wait_released(observer, uids, t0, 120)
            released_s = time.monotonic() - t0
            time.sleep(args.hold_s)
            threads = proc.num_threads()
            overlap = max_overlap(journal_steps(work / "state"))
            since = time.monotonic()
        wait_undocked(observer, uids, since, 60)
        wait_unplugged(work / "state", uids)
        time.sleep(0.75)  # the hot-plug scan forgets the slots
        peak = {ph: sampler.peaks.get(ph, 0) for ph in ("idle", "offload", "after")}
        last = {ph: sampler.last.get(ph, 0) for ph in ("idle", "offload", "after")}
        counts = {ph: sampler.counts.get(ph, 0) for ph in ("idle", "offload", "after")}
        before_soak = proc.memory_info().rss

        deadline = time.monotonic() + args.soak_minutes * 60
        base = work / "soak.mp4"
        base.write_bytes(os.urandom(args.soak_size_kib * KIB))
        expected = cameras
        cycle = 0
        while time.monotonic() < deadline:
            cycle += 1
            sampler.phase = f"soak{cycle}"
            started = time.monotonic()
            cycle_media = work / f"soak-media-{cycle}"
            cycle_media.mkdir()
            os.link(base, cycle_media / f"c{cycle:05d}.mp4")  # a new name: a new recording
            with ExitStack() as cycle_stack:
                dock.plug_in(cycle_stack, cycle_media, f"c{cycle}")
                expected += cameras
                wait_for(functools.partial(stored, expected), 300, f"cycle {cycle} stored",
                         interval=0.02)
                wait_released(observer, uids, started, 120)
                since = time.monotonic()
            wait_undocked(observer, uids, since, 60)
            wait_unplugged(work / "state", uids)
            time.sleep(0.75)
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited with {agent.returncode}")
            for log in work.glob(f"camsim-c{cycle}-*.log"):
                log.unlink()
            cycle_rss.append(proc.memory_info().rss)
            cycle_peaks.append(sampler.peaks.get(f"soak{cycle}", 0))
            cycle_seconds.append(time.monotonic() - started)
            note(f"soak cycle {cycle}: {cycle_seconds[-1]:.1f} s, RSS "
                 f"{cycle_rss[-1] / MB:.1f} MB (peak {cycle_peaks[-1] / MB:.1f} MB)")
        sampler.stop()
    load_end = loadavg()

    common = {"bench": "agent_rss_16", "usb_cameras": args.usb, "serial_cameras": args.serial,
              "usb_chunk": USB_CHUNK, "serial_chunk": SERIAL_CHUNK,
              "max_concurrent_offloads": limit}
    for phase in ("idle", "offload", "after"):
        emit({**common, "what": f"rss_{phase}", "peak_mb": round(peak[phase] / MB, 1),
              "last_mb": round(last[phase] / MB, 1), "samples": counts[phase]})
    top = max(peak["offload"], peak["after"])
    emit({**common, "what": "rss_peak", "mib_per_camera": args.size_mib,
          "peak_mb": round(top / MB, 1), "target_mb": TARGET_MB, "met": top / MB <= TARGET_MB,
          "max_concurrent_offloads_seen": overlap, "offload_s": round(offload_s, 2),
          "released_s": round(released_s, 2), "agent_threads": threads,
          "loadavg_start": load_start})
    if cycle_rss:
        growth = cycle_rss[-1] / cycle_rss[0] - 1
        emit({**common, "what": "soak", "minutes": args.soak_minutes, "cycles": len(cycle_rss),
              "kib_per_camera_and_cycle": args.soak_size_kib,
              "rss_before_soak_mb": round(before_soak / MB, 1),
              "rss_start_mb": round(cycle_rss[0] / MB, 1),
              "rss_end_mb": round(cycle_rss[-1] / MB, 1),
              "growth": round(growth, 4), "target_growth": TARGET_GROWTH,
              "met": growth < TARGET_GROWTH,
              "slope_mb_per_100_cycles": round(slope_mb_per_100(cycle_rss), 2),
              "cycle_rss_mb": [round(v / MB, 1) for v in cycle_rss],
              "cycle_peak_mb": [round(v / MB, 1) for v in cycle_peaks],
              "median_cycle_s": round(sorted(cycle_seconds)[len(cycle_seconds) // 2], 1),
              "loadavg_end": load_end})
    return 0


if __name__ == "__main__":
    sys.exit(main())
