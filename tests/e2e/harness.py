"""Shared machinery for the end-to-end tests: everything real, nothing of ours mocked.

* :class:`Camera` — one ``camsim`` process on a pty whose link lives in the harness's ``dev/``
  directory (the agent's ``serial_ports`` glob), or with ``usb=True`` a device on the simulated
  USB bus ``usb/`` (the agent's ``usb_backend = "camsim:…"``), with media files written by the
  test (so the test holds the original bytes), its own key and ``--state-dir`` (so a restart is
  a replug — on USB, possibly into another port);
* :class:`Agent` — an ``agent.toml``, enrolment through ``dock-agent enroll``, and
  ``python -m agent.cli run`` as a subprocess whose log goes to a file;
* :class:`Console` — the central console's side of MQTT: verifies every manifest with
  :func:`agent.manifest.verify_manifest`, using the dock key from the retained ``…/identity`` and
  the camera keys from camsim's ``KEY.pub``, and acknowledges on ``…/acks``;
* :class:`Harness` — owns all of the above for one test and kills every subprocess at teardown.

Waiting is always for a condition with a deadline (MQTT messages, files, log lines); the short
poll interval inside :func:`wait_until` only paces the polling. Deadlines are generous because CI
machines are loaded; a test that passes is never slowed down by them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.compliance.commands import encode_command
from agent.manifest import ManifestError, verify_manifest
from camsim.cli import EXIT_UNPLUGGED
from camsim.keys import derive_camera_uid, load_or_create_key
from camsim.recordings import recording_id
from firmware_protocol.signing import load_public_key
from tests.helpers import Mosquitto

__all__ = [
    "CHUNK",
    "DEADLINE_S",
    "EXIT_UNPLUGGED",
    "PY",
    "REPO",
    "USB_ID",
    "Agent",
    "Camera",
    "Console",
    "Harness",
    "assert_contiguous",
    "make_media",
    "sha256_hex",
    "wait_until",
]

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
DEADLINE_S = float(os.environ.get("BWC_E2E_DEADLINE_S", "90"))
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0
POLL_S = 0.02
CHUNK = 64 * 1024
DOCK_ID = "dock-e2e"
USB_ID = "1d6b:0104"  # camsim's default VID:PID
UNIT = "unit-e2e"

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout: float = DEADLINE_S,
               diagnostics: Callable[[], str] | None = None, *, poll: float = POLL_S) -> T:
    """Poll ``condition`` until it returns something truthy (returned); AssertionError at the
    deadline, with ``diagnostics()`` appended."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{diagnostics()}" if diagnostics is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(poll)  # the poll interval of a condition wait, not a synchronisation delay


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_media(sizes: Sequence[int], *, prefix: str = "clip", ext: str = ".mp4"
               ) -> dict[str, bytes]:
    """Media files (name → random bytes) for ``--media-dir``; names sort in the given order."""
    return {f"{prefix}-{i:02d}{ext}": os.urandom(size) for i, size in enumerate(sizes)}


def assert_contiguous(manifest: Mapping[str, Any]) -> None:
    """The manifest lists every chunk exactly once, in order, without gap or overlap."""
    chunks = manifest["chunks"]
    assert [c["index"] for c in chunks] == list(range(len(chunks))), manifest["recording_id"]
    offset = 0
    for c in chunks:
        assert c["offset"] == offset, (manifest["recording_id"], c)
        offset += c["size"]
    assert offset == manifest["size"]
    assert len(chunks) == -(-manifest["size"] // CHUNK)


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no file)"
    return "\n".join(text.splitlines()[-lines:])


def _terminate(proc: subprocess.Popen[bytes], timeout: float = STOP_DEADLINE_S) -> int:
    """SIGTERM (after SIGCONT, in case a test froze it), SIGKILL if it does not go."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Hung: SIGABRT first, so the agent's faulthandler logs every thread's stack.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGABRT)
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
    return proc.wait(timeout)


def _spawn(argv: Sequence[str | Path], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})


# ----------------------------------------------------------------------------------- camera

class Camera:
    """One emulated camera; ``start()`` again after it stopped is a replug of the same camera."""

    def __init__(self, root: Path, dev_dir: Path, name: str, *, media: Mapping[str, bytes] | None,
                 args: Sequence[str], officer: str | None, usb_bus: Path | None = None) -> None:
        self.name = name
        self.dir = root / "cameras" / name
        self.dir.mkdir(parents=True)
        self.port = dev_dir / f"usb-{name}-bwc"
        self.usb_bus = usb_bus  # on the simulated USB bus instead of a pty
        self.device: Path | None = None  # USB: BUS_DIR/1-1.N of the latest run
        self.key = self.dir / "device-key.pem"
        self.state_dir = self.dir / "state"
        self.media = dict(media or {})
        self.media_dir: Path | None = None
        if media is not None:
            self.media_dir = self.dir / "media"
            self.media_dir.mkdir()
            for filename, data in self.media.items():
                (self.media_dir / filename).write_bytes(data)
        self.args = list(args)
        self.officer = officer if officer is not None else f"OF-{name}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.uid = b""

    @property
    def uid_hex(self) -> str:
        return self.uid.hex()

    def _log(self, run: int) -> Path:
        return self.dir / f"camsim-{run}.log"

    @property
    def usb(self) -> bool:
        return self.usb_bus is not None

    @property
    def slot(self) -> str:
        """The agent's name for where the camera is docked now: the pty link, or on USB the
        port chain of the latest run (``usb:1-1.N``)."""
        if self.usb_bus is None:
            return str(self.port)
        if self.device is None:
            raise AssertionError(f"USB camera {self.name} was never plugged in")
        return f"usb:{self.device.name}"

    def start(self, *faults: str) -> Camera:
        return self.launch(*faults)()

    def launch(self, *faults: str) -> Callable[[], Camera]:
        """Spawn the emulator; the returned callable waits for its ready line (so that many
        cameras boot in parallel: launch them all, then wait for each)."""
        if self.procs and self.procs[-1].poll() is None:
            raise RuntimeError(f"camera {self.name} is already running")
        run = len(self.procs)
        where: list[str | Path] = (["--port", self.port] if self.usb_bus is None
                                   else ["--usb", self.usb_bus, "--usb-id", USB_ID])
        argv: list[str | Path] = [
            PY, "-m", "camsim.cli", *where, "--key", self.key,
            "--state-dir", self.state_dir, "--chunk-size", str(CHUNK),
            "--officer-id", self.officer]
        if self.media_dir is not None:
            argv += ["--media-dir", self.media_dir]
        argv += self.args
        for fault in faults:
            argv += ["--fault", fault]
        proc = _spawn(argv, self._log(run))
        self.procs.append(proc)

        marker = "camsim ready port=" if self.usb_bus is None else "camsim ready usb="
        return lambda: self._await_ready(run, proc, marker, faults)

    def _await_ready(self, run: int, proc: subprocess.Popen[bytes], marker: str,
                     faults: Sequence[str]) -> Camera:
        def ready() -> str | None:
            text = self._log(run).read_text(errors="replace")
            for line in text.splitlines():
                if marker in line:
                    return line
            if proc.poll() is not None:
                raise AssertionError(f"camsim {self.name} exited with {proc.returncode}:\n{text}")
            return None

        line = wait_until(ready, f"camsim {self.name} ready", START_DEADLINE_S)
        uid = bytes.fromhex(line.rsplit("uid=", 1)[1].strip())
        if self.uid and uid != self.uid:
            raise AssertionError(f"camera {self.name} changed uid on restart")
        self.uid = uid
        if self.usb_bus is not None:
            self.device = Path(line.split("usb=", 1)[1].split()[0])
            if self.device.parent != self.usb_bus:
                raise AssertionError(f"camsim {self.name} plugged into {self.device}, "
                                     f"not into the bus {self.usb_bus}")
            # A fault may unplug the device as soon as a host talked to it: only a camera
            # without faults must still be on the bus here.
            if not faults and not (self.device / "device.json").exists():
                raise AssertionError(f"camsim {self.name} ready but not on the bus: {line}")
        elif not self.port.is_symlink():
            raise AssertionError(f"camsim {self.name} ready without its link {self.port}")
        return self

    @property
    def plugged(self) -> bool:
        """The device node is there: the pty link, or the USB device directory."""
        if self.usb_bus is None:
            return self.port.is_symlink()
        return self.device is not None and self.device.exists()

    def create_key(self) -> bytes:
        """Create the device key now (camsim's own code) to learn the uid before first docking."""
        key, _created = load_or_create_key(self.key)
        self.uid = derive_camera_uid(key)
        return self.uid

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.procs[-1]

    @property
    def running(self) -> bool:
        return bool(self.procs) and self.procs[-1].poll() is None

    def wait_exit(self, timeout: float = DEADLINE_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"camsim {self.name} still running after {timeout:.0f} s:\n"
                                 f"{_tail(self._log(len(self.procs) - 1))}") from None

    def stop(self) -> int | None:
        return _terminate(self.proc) if self.procs else None

    @property
    def public_key_file(self) -> Path:
        return Path(f"{self.key}.pub")

    @property
    def public_key(self) -> Ed25519PublicKey:
        return load_public_key(self.public_key_file.read_bytes())

    def rid(self, filename: str) -> str:
        return recording_id(self.uid, filename).hex()

    @property
    def recordings(self) -> dict[str, bytes]:
        """Recording id (hex) → the original bytes, in name order."""
        return {self.rid(name): data for name, data in sorted(self.media.items())}

    def state(self) -> dict[str, Any]:
        """The camera's persisted state (camsim's ``state.json``): clock, releases, event log."""
        doc: dict[str, Any] = json.loads((self.state_dir / "state.json").read_text())
        return doc

    def released(self) -> set[str]:
        return set(self.state()["released"])

    def camera_events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.state()["events"] if e["kind"] == kind]

    def log_text(self, run: int | None = None) -> str:
        runs = range(len(self.procs)) if run is None else [run]
        return "\n".join(self._log(r).read_text(errors="replace") for r in runs
                         if self._log(r).exists())

    def diagnostics(self) -> str:
        if not self.procs:
            return f"--- camsim {self.name}: never started"
        run = len(self.procs) - 1
        return (f"--- camsim {self.name} run {run} (exit {self.proc.poll()})\n"
                f"{_tail(self._log(run), 25)}")


# ------------------------------------------------------------------------------------ agent

def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a TOML basic string for anything we write
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_text(settings: Mapping[str, Any]) -> str:
    top = [f"{k} = {_toml_value(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "\n".join(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
              for k, v in settings.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


class Agent:
    """The dock agent daemon as a subprocess, plus its CLI and a view of its state directory."""

    def __init__(self, root: Path, dev_dir: Path, *, broker: str,
                 settings: Mapping[str, Any] | None = None, require_ntp_sync: bool = False,
                 usb_bus: Path | None = None) -> None:
        self.dir = root / "agent"
        self.dir.mkdir(parents=True)
        self.state_dir = self.dir / "state"
        self.config = self.dir / "agent.toml"
        self.dock_id, self.unit = DOCK_ID, UNIT
        config: dict[str, Any] = {
            "dock_id": DOCK_ID, "unit": UNIT, "state_dir": self.state_dir,
            "serial_ports": [f"{dev_dir}/*bwc*"], "broker": broker,
            "chunk_size_serial": CHUNK, "health_interval_s": 1, "session_timeout_s": 5,
            "usb_ids": [],  # serial cameras only, unless a test configures the simulated bus
        }
        if usb_bus is not None:  # the simulated USB bus, through the agent's pyusb code path
            config.update({"usb_backend": f"camsim:{usb_bus}", "usb_ids": [USB_ID],
                           "chunk_size_usb": CHUNK})
        overrides = dict(settings or {})
        clock = {"require_ntp_sync": require_ntp_sync, **overrides.pop("clock", {})}
        config.update(overrides)
        config["clock"] = clock
        self.config.write_text(toml_text(config))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def prefix(self) -> str:
        return f"bwc/{self.unit}/{self.dock_id}"

    @property
    def log_path(self) -> Path:
        return self.dir / "agent.log"

    def cli(self, *args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``dock-agent ARGS --config …`` (one process, like an operator's shell)."""
        return subprocess.run(
            [PY, "-m", "agent.cli", *map(str, args), "--config", str(self.config)],
            capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False,
            stdin=subprocess.DEVNULL)

    def enroll(self, *cameras: Camera) -> None:
        """Enrol the cameras' KEY.pub files (in parallel: the registry is flock-protected)."""
        runs = [(cam, subprocess.Popen(
            [PY, "-m", "agent.cli", "enroll", "--config", str(self.config), "--camera-uid",
             cam.uid_hex, "--public-key", str(cam.public_key_file), "--officer", cam.officer],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
            text=True)) for cam in cameras]
        for cam, proc in runs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"enroll {cam.name}: {out}{err}"
            assert f"enrolled {cam.uid_hex}" in out, out

    def start(self) -> Agent:
        if self.running:
            raise RuntimeError("agent already running")
        with self.log_path.open("ab") as log:
            log.write(f"==== harness: agent run {len(self.procs)}\n".encode())
        offset = self.log_path.stat().st_size
        proc = _spawn([PY, "-m", "agent.cli", "run", "--config", self.config], self.log_path)
        self.procs.append(proc)

        def started() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"agent exited with {proc.returncode}:\n"
                                     f"{_tail(self.log_path)}")
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return b" started (state " in f.read()
        wait_until(started, "agent start-up", START_DEADLINE_S)
        return self

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.procs[-1]

    @property
    def running(self) -> bool:
        return bool(self.procs) and self.procs[-1].poll() is None

    def kill9(self) -> None:
        self.proc.kill()  # SIGKILL: no clean-up of any kind
        self.proc.wait(STOP_DEADLINE_S)

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> int | None:
        return _terminate(self.proc) if self.procs else None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the state directory, as evidence ------------------------------------------------------

    def steps(self, step: str | None = None, *, camera: Camera | None = None
              ) -> list[dict[str, Any]]:
        """Session journal records (``journal/sessions``), optionally of one step / camera."""
        directory = self.state_dir / "journal" / "sessions"
        records: list[dict[str, Any]] = []
        if not directory.is_dir():
            return records
        for segment in sorted(directory.glob("*.jsonl")):
            for line in segment.read_bytes().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # the line being appended right now
                if step is not None and rec.get("step") != step:
                    continue
                if camera is not None and rec.get("camera_uid") != camera.uid_hex:
                    continue
                records.append(rec)
        return records

    def _footage(self, sub: str) -> Path:
        return self.state_dir / "footage" / sub

    def stored_ids(self) -> set[str]:
        d = self._footage("recordings")
        return {p.name for p in d.iterdir()} if d.is_dir() else set()

    def partials(self) -> dict[str, int]:
        """Recording id → bytes in its ``chunks.dat``, for offloads not finalised yet."""
        d = self._footage("partial")
        out: dict[str, int] = {}
        if d.is_dir():
            for p in d.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    out[p.name] = (p / "chunks.dat").stat().st_size
        return out

    def quarantined(self) -> dict[str, Path]:
        """Recording id → its quarantine directory."""
        d = self._footage("quarantine")
        return {p.name.split(".")[0]: p for p in d.iterdir()} if d.is_dir() else {}

    def export(self, rid: str, out: Path) -> bytes:
        done = self.cli("export", rid, "--out", out)
        assert done.returncode == 0, done.stderr
        return out.read_bytes()

    def verify_all(self) -> list[str]:
        done = self.cli("verify", "--all")
        assert done.returncode == 0, f"verify --all exited {done.returncode}:\n{done.stdout}" \
                                     f"{done.stderr}"
        return done.stdout.splitlines()

    def diagnostics(self) -> str:
        return f"--- agent log (tail)\n{_tail(self.log_path)}"


# ---------------------------------------------------------------------------------- console

_console_ids = itertools.count(1)


class Console:
    """The console's end of MQTT: records everything under the dock's prefix, verifies each
    manifest as it arrives and acknowledges what it accepts (if told to)."""

    def __init__(self, broker: Mosquitto, prefix: str, *, ack_manifests: bool = True,
                 ack_events: bool = True, tls: ssl.SSLContext | None = None) -> None:
        self.prefix = prefix
        self.ack_manifests = ack_manifests
        self.ack_events = ack_events
        self._cond = threading.Condition()
        self._subscribed = False
        self.camera_keys: dict[str, Ed25519PublicKey] = {}
        self.identity: dict[str, Any] | None = None
        self.dock_key: Ed25519PublicKey | None = None
        self.manifest_msgs: list[dict[str, Any]] = []  # every arrival, duplicates included
        self.verified: dict[str, dict[str, Any]] = {}  # manifest_id → manifest
        self.rejected: list[tuple[str, str]] = []  # (manifest_id, why)
        self._awaiting_identity: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []  # compliance records (docs/compliance.md)
        self.cmd_results: list[dict[str, Any]] = []
        self.audit_heads: list[dict[str, Any]] = []
        # (camera_status, retain flag as the agent published it), in order of arrival
        self.statuses: list[tuple[dict[str, Any], bool]] = []
        self.acked: set[str] = set()
        self._client = paho.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"e2e-console-{os.getpid()}-{next(_console_ids)}",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.reconnect_delay_set(0.1, 1)  # back quickly after a broker restart
        if tls is not None:  # a TLS listener; the context may carry the console's certificate
            self._client.tls_set_context(tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect_async(broker.host, broker.port, keepalive=30)
        self._client.loop_start()
        self.wait_subscribed(START_DEADLINE_S)

    def trust(self, *cameras: Camera) -> None:
        with self._cond:
            for cam in cameras:
                self.camera_keys[cam.uid_hex] = cam.public_key

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_subscribed(self, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._subscribed, timeout):
                raise AssertionError(f"console not subscribed to {self.prefix}/# in {timeout} s")

    @property
    def subscribed(self) -> bool:
        with self._cond:
            return self._subscribed

    # -- paho callbacks (paho's thread) --------------------------------------------------------

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        if not code.is_failure:
            # Retain-as-published: the recorded retain flag is the agent's own, also for
            # messages that arrive live (a broker clears it on those otherwise).
            client.subscribe(f"{self.prefix}/#",
                             options=SubscribeOptions(qos=1, retainAsPublished=True))

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, _code: Any, _p: Any) -> None:
        with self._cond:
            self._subscribed = False

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        with self._cond:
            self._subscribed = not any(c.is_failure for c in codes)
            self._cond.notify_all()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == f"{self.prefix}/acks":
            return
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = {"type": "<not json>", "raw": msg.payload[:200].decode(errors="replace")}
        to_ack: list[str] = []
        with self._cond:
            kind = payload.get("type")
            if kind == "identity":
                self.identity = payload
                self.dock_key = load_public_key(base64.b64decode(payload["public_key"]))
                waiting, self._awaiting_identity = self._awaiting_identity, []
                for manifest in waiting:
                    to_ack += self._check_manifest(manifest)
            elif kind == "manifest":
                self.manifest_msgs.append(payload)
                if self.dock_key is None:
                    self._awaiting_identity.append(payload)
                else:
                    to_ack += self._check_manifest(payload)
            elif kind == "event":
                self.events.append(payload)
                if self.ack_events:
                    to_ack.append(payload["id"])
            elif kind == "camera_status":
                self.statuses.append((payload, bool(msg.retain)))
            elif kind in ("ledger", "cmd_result"):
                (self.ledger if kind == "ledger" else self.cmd_results).append(payload)
                if self.ack_events:
                    to_ack.append(payload["id"])
            elif kind == "audit_head":
                self.audit_heads.append(payload)
            self._cond.notify_all()
        if to_ack:
            self._publish_ack(to_ack)

    def _check_manifest(self, manifest: dict[str, Any]) -> list[str]:
        mid = str(manifest.get("manifest_id"))
        assert self.dock_key is not None
        key = self.camera_keys.get(str(manifest.get("camera_uid")))
        if key is None:
            self.rejected.append((mid, "camera key unknown to the console"))
            return []
        try:
            verify_manifest(manifest, self.dock_key, key)
        except ManifestError as exc:
            self.rejected.append((mid, str(exc)))
            return []
        self.verified[mid] = manifest
        return [mid] if self.ack_manifests else []

    def _publish_ack(self, ids: list[str]) -> None:
        with self._cond:
            self.acked.update(ids)
        self._client.publish(f"{self.prefix}/acks", json.dumps(
            {"type": "ack", "schema": 1, "ids": ids}), qos=1)

    # -- for tests -----------------------------------------------------------------------------

    def ack(self, ids: Iterable[str]) -> None:
        self._publish_ack(list(ids))

    def send_command(self, doc: Mapping[str, Any]) -> None:
        """Publish a console command (built with ``agent.compliance.commands.sign_command``)
        on ``…/cmd/{name}`` as its canonical bytes."""
        self._client.publish(f"{self.prefix}/cmd/{doc['command']}",
                             encode_command(doc), qos=1).wait_for_publish(START_DEADLINE_S)

    def cmd_result(self, request_id: str) -> dict[str, Any] | None:
        with self._cond:
            return next((r for r in self.cmd_results if r["request_id"] == request_id), None)

    def ledger_entries(self, camera: Camera | None = None, kind: str | None = None
                       ) -> list[dict[str, Any]]:
        """Compliance records received on ``…/ledger`` (de-duplicated by id), in order."""
        with self._cond:
            seen: dict[str, dict[str, Any]] = {}
            for msg in self.ledger:
                seen.setdefault(msg["id"], msg["entry"])
        entries = sorted(seen.values(), key=lambda e: int(e["seq"]))
        return [e for e in entries if (camera is None or e.get("camera_uid") == camera.uid_hex)
                and (kind is None or e["type"] == kind)]

    def snapshot(self) -> dict[str, Any]:
        """Consistent copies of what arrived so far."""
        with self._cond:
            return {
                "manifest_msgs": list(self.manifest_msgs), "verified": dict(self.verified),
                "rejected": list(self.rejected), "events": list(self.events),
                "statuses": list(self.statuses), "ledger": list(self.ledger),
                "cmd_results": list(self.cmd_results), "audit_heads": list(self.audit_heads),
            }

    def verified_for(self, camera: Camera) -> dict[str, dict[str, Any]]:
        """recording_id → verified manifest, for one camera."""
        with self._cond:
            return {m["recording_id"]: m for m in self.verified.values()
                    if m["camera_uid"] == camera.uid_hex}

    def manifest_arrivals(self, manifest_id: str) -> int:
        with self._cond:
            return sum(1 for m in self.manifest_msgs if m.get("manifest_id") == manifest_id)

    def events_named(self, name: str, camera: Camera | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e["event"] == name
                    and (camera is None or e["camera_uid"] == camera.uid_hex)]

    def camera_statuses(self, camera: Camera) -> list[dict[str, Any]]:
        with self._cond:
            return [s for s, _ in self.statuses if s["camera_uid"] == camera.uid_hex]

    def last_status(self, camera: Camera) -> dict[str, Any] | None:
        statuses = self.camera_statuses(camera)
        return statuses[-1] if statuses else None

    def docked_status(self, camera: Camera,
                      predicate: Callable[[dict[str, Any]], bool] = lambda s: True
                      ) -> dict[str, Any] | None:
        """The first status of the docked camera carrying a readiness verdict and matching."""
        for s in self.camera_statuses(camera):
            if s.get("docked") and "ready" in s and "reasons" in s and predicate(s):
                return s
        return None

    def diagnostics(self) -> str:
        snap = self.snapshot()
        lines = [f"--- console: {len(snap['manifest_msgs'])} manifest arrivals, "
                 f"{len(snap['verified'])} verified, rejected {snap['rejected']}"]
        lines += [f"event {e['event']} camera={e['camera_uid']} {e['details']}"
                  for e in snap["events"][-20:]]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- harness

class Harness:
    """Everything one test starts; :meth:`close` (the fixture's teardown) stops all of it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dev = root / "dev"
        self.dev.mkdir(parents=True)
        self.usb_bus = root / "usb"  # the simulated USB bus (camsim --usb)
        self.usb_bus.mkdir()
        self.cameras: dict[str, Camera] = {}
        self.agent: Agent | None = None
        self.consoles: list[Console] = []

    def camera(self, name: str, *, media: Mapping[str, bytes] | None = None,
               args: Sequence[str] = (), faults: Sequence[str] = (), officer: str | None = None,
               start: bool = True, usb: bool = False) -> Camera:
        """A serial camera (pty), or with ``usb=True`` one on the simulated USB bus."""
        cam = Camera(self.root, self.dev, name, media=media, args=args, officer=officer,
                     usb_bus=self.usb_bus if usb else None)
        self.cameras[name] = cam
        if start:
            cam.start(*faults)
        return cam

    def make_agent(self, broker: Mosquitto | None, *, usb: bool = False, **kwargs: Any) -> Agent:
        """The agent; ``usb=True`` also serves the simulated USB bus (``usb_backend``)."""
        assert self.agent is None
        self.agent = Agent(self.root, self.dev, broker=broker.url if broker else "",
                           usb_bus=self.usb_bus if usb else None, **kwargs)
        return self.agent

    def console(self, broker: Mosquitto, **kwargs: Any) -> Console:
        assert self.agent is not None, "make the agent first: the console needs its prefix"
        console = Console(broker, self.agent.prefix, **kwargs)
        console.trust(*[c for c in self.cameras.values() if c.uid])
        self.consoles.append(console)
        return console

    def start_cameras(self, cameras: Iterable[Camera]) -> None:
        """Boot cameras in parallel (each is one Python process signing its recordings)."""
        for waiter in [cam.launch() for cam in cameras]:
            waiter()

    def diagnostics(self) -> str:
        parts = [c.diagnostics() for c in self.consoles]
        if self.agent is not None:
            parts.append(self.agent.diagnostics())
        parts += [cam.diagnostics() for cam in self.cameras.values()]
        return "\n".join(parts)

    def wait(self, condition: Callable[[], T], what: str, timeout: float = DEADLINE_S, *,
             poll: float = POLL_S) -> T:
        return wait_until(condition, what, timeout, self.diagnostics, poll=poll)

    def close(self) -> None:
        for console in self.consoles:
            with contextlib.suppress(Exception):
                console.close()
        if self.agent is not None:
            for proc in self.agent.procs:
                _terminate(proc)
        for cam in self.cameras.values():
            for proc in cam.procs:
                _terminate(proc)
