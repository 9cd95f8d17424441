"""``dock-agent demo`` / ``make demo``: the whole main job on one machine, narrated.

Starts a Mosquitto on a free loopback port, three emulated cameras on ptys (one healthy, one with
a low battery and a skewed clock, one serving a corrupted chunk), the agent as a subprocess, and
plays the central console: it prints what arrives over MQTT, verifies every manifest with the
published dock key and the camera key, and acknowledges it so that the dock releases the footage.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from firmware_protocol.signing import load_public_key

from .manifest import ManifestError, verify_manifest

__all__ = ["run_demo", "start_broker"]

_CAMERAS = (
    ("healthy", ["--generate", "3:3M", "--battery", "100"]),
    ("tired", ["--generate", "2:2M", "--battery", "35", "--clock-skew", "93.5",
               "--drift-ppm", "40"]),
    ("corrupt", ["--generate", "3:2M", "--battery", "95", "--fault", "corrupt-chunk=1:3"]),
)
_TIMEOUT_S = 120.0


def say(text: str) -> None:
    """The demo's output is its user interface: one line per thing that happened."""
    print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_broker(work: Path, stack: ExitStack) -> int:
    """A throw-away Mosquitto on a free loopback port (stopped by ``stack``); its port."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                        if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        raise RuntimeError("mosquitto is not installed: `apt-get install mosquitto` (or make test)")
    port = _free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"log_dest file {work / 'mosquitto.log'}\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    stack.callback(_stop, proc)

    def accepting() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    _wait_for(accepting, 10, "mosquitto")
    return port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_camera(name: str, extra: list[str], work: Path, stack: ExitStack) -> tuple[str, Path]:
    port = work / "dev" / f"usb-demo-{name}-bwc"
    key = work / f"{name}.pem"
    log = open(work / f"camsim-{name}.log", "wb")  # noqa: SIM115 - closed by the ExitStack
    stack.callback(log.close)
    proc = subprocess.Popen([sys.executable, "-m", "camsim.cli", "--port", str(port), "--key",
                             str(key), "--state-dir", str(work / f"{name}-state"),
                             "--officer-id", f"OF-{name}", *extra],
                            stdout=subprocess.DEVNULL, stderr=log)
    stack.callback(_stop, proc)
    _wait_for(lambda: "ready port=" in (work / f"camsim-{name}.log").read_text(), 20,
              f"camera {name}")
    text = (work / f"camsim-{name}.log").read_text()
    uid = text.split(" uid=")[1].split()[0]
    return uid, key


class _Console:
    """Plays the central console: narrates, verifies manifests, acknowledges them."""

    def __init__(self, port: int, keys: dict[str, Any], names: dict[str, str]) -> None:
        self.camera_keys = keys
        self.names = names
        self.dock_key: Any = None
        self.manifests: dict[str, dict[str, Any]] = {}
        self.integrity_alerts = 0
        self.released: set[str] = set()
        self.lock = threading.Lock()
        self._last: dict[str, str] = {}
        self.left_on_camera: dict[str, int] = {}  # camera name -> sealed recordings it still has
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="demo-console")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("bwc/#", qos=1)
        self.client.loop_start()

    def _name(self, uid: str | None) -> str:
        return self.names.get(uid or "", (uid or "?")[:8])

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
            self._handle(msg.topic, payload)
        except Exception as exc:  # a demo narrates problems, it does not die
            say(f"!! could not handle {msg.topic}: {exc}")

    def _handle(self, topic: str, p: dict[str, Any]) -> None:
        kind = p.get("type")
        if kind == "state":
            say(f"dock {p['dock_id']} is {p['state']}")
        elif kind == "identity":
            self.dock_key = load_public_key(base64.b64decode(p["public_key"]))
            say(f"dock identity: {p['dock_id']} key {p['public_key'][:16]}… "
                f"agent {p['agent_version']}")
        elif kind == "camera_status":
            self._camera(p)
        elif kind == "event":
            self._event(p)
        elif kind == "manifest":
            self._manifest(p, topic)

    def _camera(self, p: dict[str, Any]) -> None:
        name = self._name(p["camera_uid"])
        if p.get("docked") and p.get("offload"):
            with self.lock:
                self.left_on_camera[name] = int(p["offload"].get("recordings_total", 0))
        if not p.get("docked"):
            line = f"camera {name}: undocked"
        else:
            ready = "READY for duty" if p.get("ready") else "NOT READY (" + ", ".join(
                p.get("reasons", [])) + ")"
            off = p.get("offload") or {}
            line = (f"camera {name} in slot {Path(p.get('slot', '?')).name}: battery "
                    f"{p.get('battery_pct')}%, clock was off by {p.get('clock_offset_before_ms')}"
                    f" ms, now {p.get('clock_residual_ms')} ms, storage free "
                    f"{p.get('storage_free', 0) // (1 << 20)} MiB; offload "
                    f"{off.get('bytes_stored', 0) // 1024} / {off.get('bytes_total', 0) // 1024}"
                    f" KiB; {ready}")
        if self._last.get(name) != line:
            self._last[name] = line
            say(line)

    def _event(self, p: dict[str, Any]) -> None:
        d = p.get("details", {})
        name = self._name(p.get("camera_uid"))
        if p["event"] == "integrity_failure":
            with self.lock:
                self.integrity_alerts += 1
            say(f"!! INTEGRITY ALERT from camera {name}: recording {d.get('recording_id')} "
                f"{d.get('reason')} at chunk {d.get('chunk_index')} — quarantined, not released")
        elif p["event"] == "not_ready":
            say(f"event: camera {name} not ready: {', '.join(d.get('reasons', []))}")
        else:
            say(f"event: {p['event']} camera {name} {d}")
        self.client.publish(self._acks(p["dock_id"]), json.dumps(
            {"type": "ack", "schema": 1, "ids": [p["id"]]}), qos=1)

    def _acks(self, dock_id: str) -> str:
        return f"bwc/demo-unit/{dock_id}/acks"

    def _manifest(self, p: dict[str, Any], topic: str) -> None:
        name = self._name(p["camera_uid"])
        if self.dock_key is None:
            say(f"manifest from {name} before the dock identity: not acknowledged yet")
            return
        try:
            verify_manifest(p, self.dock_key, self.camera_keys[p["camera_uid"]])
            verdict = "signatures, chain and seal verify"
        except (ManifestError, KeyError) as exc:
            say(f"!! manifest {p.get('manifest_id', '?')[:12]} from {name} REJECTED: {exc}")
            return
        with self.lock:
            self.manifests[p["manifest_id"]] = p
        say(f"manifest from camera {name}: recording {p['recording_id'][:12]}… "
            f"{p['size'] // 1024} KiB in {len(p['chunks'])} chunks, offload delay "
            f"{p['offload_delay_s']} s — {verdict}; acknowledging")
        self.client.publish(self._acks(p["dock_id"]), json.dumps(
            {"type": "ack", "schema": 1, "ids": [p["manifest_id"]]}), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_demo(*, forever: bool = False, workdir: Path | None = None) -> int:
    try:
        return _run_demo(forever, workdir)
    except RuntimeError as exc:  # a missing broker, an emulator that would not start
        say(f"demo FAILED: {exc}")
        return 1


def _run_demo(forever: bool, workdir: Path | None) -> int:
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bwc-demo-")))
        work = workdir.resolve()
        (work / "dev").mkdir(parents=True, exist_ok=True)
        say(f"demo: working in {work}")
        port = start_broker(work, stack)
        say(f"broker: mosquitto on 127.0.0.1:{port}")
        cams = {name: _start_camera(name, extra, work, stack) for name, extra in _CAMERAS}
        for name, (uid, _key) in cams.items():
            say(f"camera {name}: uid {uid} plugged in at {work / 'dev'}")
        config = work / "agent.toml"
        config.write_text(
            f'dock_id = "demo-dock"\nunit = "demo-unit"\nstate_dir = "{work / "state"}"\n'
            f'serial_ports = ["{work / "dev"}/*bwc*"]\nbroker = "mqtt://127.0.0.1:{port}"\n'
            f'health_interval_s = 5\nusb_ids = []\n'
            "[clock]\n# A demo machine's clock may not be NTP-synchronised; trust it here.\n"
            "require_ntp_sync = false\n")
        from .cli import main as agent_cli

        for name, (uid, key) in cams.items():
            if agent_cli(["enroll", "--config", str(config), "--camera-uid", uid,
                          "--public-key", f"{key}.pub", "--officer", f"OF-{name}"]) != 0:
                return 1
        keys = {uid: load_public_key(Path(f"{key}.pub").read_bytes())
                for uid, key in cams.values()}
        console = _Console(port, keys, {uid: name for name, (uid, _k) in cams.items()})
        stack.callback(console.close)
        agent_log = open(work / "agent.log", "wb")  # noqa: SIM115 - closed by the ExitStack
        stack.callback(agent_log.close)
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config",
                                  str(config)], stdout=agent_log, stderr=agent_log,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        stack.callback(_stop, agent)
        say("agent: started (log in agent.log); watching MQTT as the console would")
        expected = 3 + 2 + 2  # the corrupt camera's recording 1 is quarantined, not stored
        try:
            _wait_for(lambda: len(console.manifests) >= expected
                      and console.integrity_alerts >= 1, _TIMEOUT_S, "all manifests")
            # Released once acknowledged: only the quarantined recording stays on its camera.
            _wait_for(lambda: console.left_on_camera == {"healthy": 0, "tired": 0, "corrupt": 1},
                      30, "releases")
        except RuntimeError as exc:
            say(f"demo FAILED: {exc} (see {work}/agent.log)")
            return 1
        say(f"done: {len(console.manifests)} recordings stored, verified and acknowledged; "
            f"{console.integrity_alerts} integrity alert; acknowledged footage released")
        if forever:
            say("--forever: still running; Ctrl-C to stop")
            try:
                while agent.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0
    return 0
