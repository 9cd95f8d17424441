"""USB device appearing to readiness published on MQTT, and a docked camera's device
disappearing to its undock published (issue 4).

A Mosquitto on a free loopback port, the agent connected to it and watching a simulated USB bus
(``usb_backend = "camsim:BUS"``), and an observer subscribed to ``bwc/#``. Each repetition plugs
in one emulated camera with nothing to offload (``camsim --usb --generate 0:1``, fresh emulator
state each time) and measures from the device appearing on the bus (its ``device.json``, which
the emulator renames into place just before its ready line; polled every 0.2 ms) to the observer
receiving the camera's status (``…/cameras/{uid}``, ``docked: true``, with its readiness). The
agent finds USB devices by polling every 0.25 s, so the random pause between repetitions spreads
the plug-in moments over that poll phase. After the last repetition's readiness a fresh MQTT
client checks that the status is held retained by the broker.

Target: <= 1.5 s (median and max reported, N = ``-n``, default 10).

Undock: once docked, the camera is left to go idle in the dock (the session has pulled its event
log, plus a random 0.3-0.55 s, again spreading the moment over the hot-plug poll phase) and is
then unplugged: the emulator gets SIGTERM and the benchmark polls (every 0.2 ms) for its device
to vanish, ``device.json`` on the USB bus, the pty link for serial. Measured from that moment to
the observer receiving the camera's status with ``docked: false``. The same is done over N
cycles with a serial camera on a pty. An idle session does not touch the line, so hot-plug is
what notices the unplug (the journal's ``unplugged`` reason says so; counted in
``by_hotplug``). Target: <= 1 s (median and max reported).

Prints JSON lines with the load average. Everything is cleaned up.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    MIB,
    Camera,
    Observer,
    camera_key,
    emit,
    enroll,
    journal_steps,
    loadavg,
    median,
    note,
    start_agent,
    start_broker,
    wait_for,
    workspace,
    write_config,
)
from _usbbus import UsbCamera, make_bus, usb_settings

TARGET_LATENCY_MS = 1500
TARGET_UNDOCK_MS = 1000
LEFT = "device left (no longer found by hot-plug)"  # the journal's reason (agent/session.py)


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _is_status(uid: str, docked: bool) -> Any:
    def match(_at: float, topic: str, p: dict[str, Any]) -> bool:
        return (topic.endswith(f"/cameras/{uid}") and p.get("type") == "camera_status"
                and p.get("docked") is docked)
    return match


def _wait_idle(state_dir: Path, uid: str, sessions: int, pause: float) -> None:
    """Until the camera's ``sessions``-th session has pulled its event log (the last steps of
    docking are a few round trips after it), then ``pause`` more: the session is idle."""
    def pulled() -> bool:
        return sum(1 for s in journal_steps(state_dir) if s["step"] == "event_log"
                   and s.get("camera_uid") == uid) >= sessions

    wait_for(pulled, 30, "the event log pulled", interval=0.005)
    time.sleep(pause)


def _unplug(proc: subprocess.Popen[bytes], present: Callable[[], bool]) -> float:
    """SIGTERM the emulator (it unplugs as it exits) and poll every 0.2 ms for its device to
    vanish; returns ``time.monotonic()`` then."""
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not present(), 30, "the device to vanish", interval=0.0002)
    return time.monotonic()


def _undock_sample(observer: Observer, state_dir: Path, uid: str, gone: float
                   ) -> dict[str, Any]:
    at, _topic, status = observer.wait(_is_status(uid, False), 30, "undocked", since=gone)
    ends = [s for s in journal_steps(state_dir)
            if s["step"] == "unplugged" and s.get("camera_uid") == uid]
    return {"undock_ms": (at - gone) * 1000, "slot": status.get("slot"),
            "by_hotplug": bool(ends) and str(ends[-1].get("reason", "")).endswith(LEFT)}


def _undock_record(what: str, samples: list[dict[str, Any]], load: list[float]
                   ) -> dict[str, Any]:
    values = [s["undock_ms"] for s in samples]
    return {"bench": "usb_readiness", "n": len(samples), "what": what,
            "median_ms": round(median(values), 1), "max_ms": round(max(values), 1),
            "min_ms": round(min(values), 1), "target_ms": TARGET_UNDOCK_MS,
            "met": max(values) <= TARGET_UNDOCK_MS,
            "samples_ms": [round(v, 1) for v in values],
            "by_hotplug": sum(1 for s in samples if s["by_hotplug"]),
            "slots": sorted({str(s["slot"]) for s in samples}),
            "loadavg_start": load, "loadavg_end": loadavg()}


def retained(port: int, topic: str, timeout: float = 5.0) -> tuple[bool, dict[str, Any]] | None:
    """What a client subscribing now receives first on ``topic``: (retain flag, payload)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[tuple[bool, dict[str, Any]]] = []
    done = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        got.append((bool(msg.retain), dict(json.loads(msg.payload))))
        done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-retained-check")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0] if got else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", "--repetitions", type=int, default=10)
    args = p.parse_args()
    samples: list[dict[str, Any]] = []
    usb_undock: list[dict[str, Any]] = []
    pty_undock: list[dict[str, Any]] = []
    jitter = random.Random(4)
    load_start = loadavg()
    retained_check: tuple[bool, dict[str, Any]] | None = None
    with workspace("bwc-bench-usb-readiness-") as (stack, work):
        port = start_broker(stack, work)
        bus = make_bus(work)
        dev = work / "dev"
        dev.mkdir()
        config = write_config(work, dev, broker=f"mqtt://127.0.0.1:{port}",
                              health_interval_s=60, **usb_settings(bus, MIB))
        key_path = work / "cam.pem"
        uid = camera_key(key_path)
        enroll(config, uid, key_path, "OF-cam")
        observer = Observer(port)
        stack.callback(observer.close)
        _agent, _proc, _log = start_agent(stack, work, config)
        for rep in range(args.repetitions):
            cam = UsbCamera(stack, work, f"cam{rep}", bus, ["--generate", "0:1", "--battery",
                                                            "100"],
                            key=key_path, state_dir=work / f"cam-state-{rep}")
            t0 = cam.wait_link(60, interval=0.0002)
            wall0 = time.time()
            at, topic, status = observer.wait(_is_status(uid, True), 30, "readiness", since=t0)
            latency_ms = (at - t0) * 1000
            if rep == args.repetitions - 1:
                retained_check = retained(port, topic)
            hello = [s for s in journal_steps(work / "state") if s["step"] == "hello"][-1]
            samples.append({"latency_ms": latency_ms, "ready": status.get("ready"),
                            "reasons": status.get("reasons"), "slot": status.get("slot"),
                            "hello_after_ms": (_wall(hello["at"]) - wall0) * 1000})
            # Idle in the dock, then unplugged: the device leaves the bus as the emulator exits.
            _wait_idle(work / "state", uid, rep + 1, 0.3 + jitter.uniform(0, 0.25))
            assert cam.device is not None
            gone = _unplug(cam.proc, functools.partial(os.path.exists,
                                                       cam.device / "device.json"))
            usb_undock.append(_undock_sample(observer, work / "state", uid, gone))
            cam.stop()
            note(f"plug-in {rep + 1}/{args.repetitions}: readiness after {latency_ms:.1f} ms "
                 f"(hello after {samples[-1]['hello_after_ms']:.0f} ms), undock after "
                 f"{usb_undock[-1]['undock_ms']:.1f} ms")
            # A random pause over the 0.25 s poll period, so that the plug-in moments do not
            # all fall at one poll phase.
            time.sleep(0.1 + jitter.uniform(0, 0.25))
        load_usb = loadavg()

        # The same undock over a pty (serial discovery): plug in, dock, idle, unplug.
        link = dev / "cam-bwc"
        for rep in range(args.repetitions):
            pcam = Camera(stack, work, f"pty{rep}", link, ["--generate", "0:1", "--battery",
                                                           "100"],
                          key=key_path, state_dir=work / f"pty-state-{rep}")
            t0 = pcam.wait_link(60)
            observer.wait(_is_status(uid, True), 30, "docked over the pty", since=t0)
            _wait_idle(work / "state", uid, args.repetitions + rep + 1,
                       0.3 + jitter.uniform(0, 0.25))
            gone = _unplug(pcam.proc, lambda: os.path.lexists(link))
            pty_undock.append(_undock_sample(observer, work / "state", uid, gone))
            pcam.stop()
            note(f"pty {rep + 1}/{args.repetitions}: undock after "
                 f"{pty_undock[-1]['undock_ms']:.1f} ms")
    load_end = loadavg()

    latencies = [s["latency_ms"] for s in samples]
    emit({"bench": "usb_readiness", "n": len(samples), "what": "usb_appear_to_readiness",
          "median_ms": round(median(latencies), 1), "max_ms": round(max(latencies), 1),
          "min_ms": round(min(latencies), 1), "target_ms": TARGET_LATENCY_MS,
          "met": max(latencies) <= TARGET_LATENCY_MS,
          "samples_ms": [round(v, 1) for v in latencies],
          "hello_after_ms": [round(s["hello_after_ms"]) for s in samples],
          "all_ready": all(s["ready"] for s in samples),
          "reasons": sorted({r for s in samples for r in s["reasons"] or []}),
          "slots": sorted({str(s["slot"]) for s in samples}),
          "retained": bool(retained_check and retained_check[0]
                           and retained_check[1].get("docked") is True),
          "loadavg_start": load_start, "loadavg_end": load_usb})
    emit(_undock_record("usb_disappear_to_undock", usb_undock, load_start))
    emit(_undock_record("pty_disappear_to_undock", pty_undock, load_usb))
    note(f"load average at the end: {load_end}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
