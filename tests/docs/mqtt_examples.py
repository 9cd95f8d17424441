"""Example MQTT payloads for docs/mqtt.md, produced by the agent's own code.

Nothing here builds a payload. A real :class:`agent.daemon.Agent` (state directory in a temp dir,
the dock key fixed) hosts real sessions (:func:`agent.session.run_session`); what is scripted is
only the world around them, so that the examples are reproducible:

* the camera, answering at the ``Channel`` level (``agent.session.Channel`` is replaced);
* the clocks (dock time, the measured camera offsets, NTP status), ``uuid4`` and psutil;
* the MQTT side: ``MqttLink`` is replaced by a recorder of what the daemon gives it (will,
  births, subscriptions) and the publisher by a recorder of the retained payloads.

Keys and the first recording are those of the example in docs/manifest.md, so the manifest
shown in docs/mqtt.md is that same manifest, and it verifies with the ``identity`` example's key.

``python -m tests.docs.mqtt_examples --write`` rewrites the example blocks in docs/mqtt.md;
``tests/docs/test_mqtt_doc.py`` fails when the doc and the code disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.channel import ReplyTimeout
from agent.clock import ClockSample
from agent.config import Config, Enrollment
from agent.daemon import Agent
from agent.publish.outbox import Outbox
from agent.publish.topics import iso_ms
from agent.session import run_session
from agent.store.errors import StorageFullError
from agent.transports.base import Transport, TransportClosed
from firmware_protocol import messages as m
from firmware_protocol.signing import (
    ZERO_DIGEST,
    ChunkMessage,
    Media,
    SealMessage,
    auth_message,
    public_key_raw,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "mqtt.md"
SCHEMAS = ROOT / "docs" / "schemas"
BLOCK = re.compile(r"<!-- example: (?P<name>[a-z_]+) -->\n```json\n(?P<body>.*?)```\n", re.S)

DOCK_ID = "zhanhe-dock-01"
UNIT = "zhanhe-legal"
PREFIX = f"bwc/{UNIT}/{DOCK_ID}"
BROKER = "mqtt://mqtt.zhanhe.example:1883"


def _key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())


# The seeds of docs/manifest.md's example (tests/agent/test_manifest.py).
DOCK_KEY = _key(b"docs dock")
CAMERA_KEY = _key(b"docs camera")
CAMERA_UID = bytes.fromhex("c0ffee00000000000000000000000001")
STRANGER_UID = bytes.fromhex("c0ffee00000000000000000000000002")  # never enrolled
IMPOSTOR_UID = bytes.fromhex("c0ffee00000000000000000000000003")  # answers with the wrong key
NEWCOMER_UID = bytes.fromhex("c0ffee00000000000000000000000004")  # trust-on-first-use
FLAKY_UID = bytes.fromhex("c0ffee00000000000000000000000005")  # stops answering

AGENT_START_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z
BOOT_MS = 1_714_550_000_000
DOCK_NOW_MS = 1_714_561_262_042  # the manifest's stored_at in docs/manifest.md
HEALTH_MS = DOCK_NOW_MS + 75_000
CLOCK_BEFORE = ClockSample(offset_us=1_500_417, rtt_us=2_130)  # camera 1.5 s ahead
CLOCK_AFTER = ClockSample(offset_us=3_822, rtt_us=1_980)

#: example name -> schema file (docs/schemas/<file>)
SCHEMA_OF = {
    "state_online": "state.json",
    "state_offline": "state.json",
    "identity": "identity.json",
    "health": "health.json",
    "camera_status": "camera_status.json",
    "camera_status_refused": "camera_status.json",
    "manifest": "manifest.json",
    "event_not_ready": "event.json",
    "event_integrity_failure": "event.json",
    "event_unknown_device": "event.json",
    "event_auth_failed": "event.json",
    "event_enrolled": "event.json",
    "event_protocol_error": "event.json",
    "event_session_crashed": "event.json",
    "ack": "ack.json",
}


# --------------------------------------------------------------------------- the scripted camera

@dataclass(frozen=True)
class _Recording:
    info: m.RecordingInfo
    pieces: tuple[bytes, ...]
    headers: tuple[m.ChunkHeader, ...]
    seal: m.Seal


def _recording(key: Ed25519PrivateKey, uid: bytes, rid: bytes, data: bytes, chunk_size: int,
               started_ms: int, ended_ms: int) -> _Recording:
    pieces = tuple(data[i:i + chunk_size] for i in range(0, len(data), chunk_size))
    headers, prev = [], ZERO_DIGEST
    for index, piece in enumerate(pieces):
        msg = ChunkMessage(uid, rid, index, index * chunk_size, len(piece),
                           hashlib.sha256(piece).digest(), prev)
        headers.append(m.ChunkHeader(msg.pack(), key.sign(msg.pack())))
        prev = msg.digest()
    seal = SealMessage(uid, rid, len(pieces), len(data), hashlib.sha256(data).digest(), prev,
                       started_ms, ended_ms, Media.VIDEO).pack()
    info = m.RecordingInfo(rid, Media.VIDEO, len(data), chunk_size, len(pieces), started_ms,
                           ended_ms, True)
    return _Recording(info, pieces, tuple(headers), m.Seal(seal, key.sign(seal)))


@dataclass
class _Camera:
    uid: bytes
    key: Ed25519PrivateKey
    serial: str
    battery_pct: int = 100
    recordings: tuple[_Recording, ...] = ()
    corrupt: tuple[bytes, int] | None = None  # (recording id, chunk index) damaged on the line
    signs_with: Ed25519PrivateKey | None = None  # a key other than the enrolled one
    stops_answering: type[m.Message] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    clock_set: bool = False

    @property
    def slot(self) -> str:
        return f"/dev/bwc/tty-{self.uid.hex()}"

    def reply(self, msg: m.Message) -> m.Message:
        if self.stops_answering is not None and isinstance(msg, self.stops_answering):
            # What agent.channel.Channel raises when every retry timed out.
            raise ReplyTimeout(f"no valid reply to {type(msg).__name__} after 4 tries")
        if isinstance(msg, m.Hello):
            return m.Identity(1, msg.max_payload, self.uid, public_key_raw(self.key), "BWC-9",
                              "1.2.3", self.serial, "PD-0042", "Zhang San", "410402",
                              "Zhanhe Justice")
        if isinstance(msg, m.AuthChallenge):
            signer = self.signs_with or self.key
            return m.AuthResponse(signer.sign(auth_message(self.uid, msg.nonce)))
        if isinstance(msg, m.SetTime):
            self.clock_set = True
            return m.TimeSet(msg.unix_us + CLOCK_BEFORE.offset_us, msg.unix_us)
        if isinstance(msg, m.GetStatus):
            return m.Status(self.battery_pct, True, 64_000_000_000, 61_500_000_000, 8_000_000,
                            True, (), DOCK_NOW_MS + CLOCK_AFTER.offset_us // 1000, False)
        if isinstance(msg, m.ListRecordings):
            entries = tuple(r.info for r in self.recordings)
            return m.RecordingList(len(entries), msg.start, entries[msg.start:])
        if isinstance(msg, m.GetSeal):
            return next(r.seal for r in self.recordings if r.info.recording_id == msg.recording_id)
        if isinstance(msg, m.GetEventLog):
            self.done.set()  # the docking is over: let the session leave its idle loop
            return m.EventLog((), False)
        raise AssertionError(f"the scripted camera has no answer to {msg!r}")


class _Transport(Transport):
    def __init__(self, camera: _Camera) -> None:
        self.camera = camera
        self.slot = camera.slot

    def read(self, max_bytes: int, timeout: float) -> bytes:
        raise TransportClosed("scripted camera: no bytes on this line")

    def write(self, data: bytes) -> None:
        raise TransportClosed("scripted camera: no bytes on this line")

    def close(self) -> None:
        pass


class _Channel:
    """Stands in for agent.channel.Channel: requests are answered by the scripted camera."""

    def __init__(self, transport: _Transport, connection: object, **_: object) -> None:
        self.camera = transport.camera

    def request(self, msg: m.Message, expect: type[m.Message]) -> m.Message:
        reply = self.camera.reply(msg)
        assert isinstance(reply, expect), (msg, reply)
        return reply

    def read_chunk(self, recording_id: bytes, index: int, sink: Any) -> m.ChunkHeader:
        rec = next(r for r in self.camera.recordings if r.info.recording_id == recording_id)
        data = rec.pieces[index]
        if self.camera.corrupt == (recording_id, index):
            data = bytes([data[0] ^ 0x01]) + data[1:]  # one bit flipped on the line
        sink.begin(rec.headers[index])
        sink.data(data)
        return rec.headers[index]


def _measure_offset(channel: _Channel, probes: int = 4) -> ClockSample:
    return CLOCK_AFTER if channel.camera.clock_set else CLOCK_BEFORE


# --------------------------------------------------------------------------- recorders

class _LinkRecorder:
    """Stands in for agent.publish.mqtt.MqttLink: keeps what the daemon configures."""

    def __init__(self, url: str, client_id: str, **kwargs: Any) -> None:
        self.url, self.client_id, self.kwargs = url, client_id, kwargs


class _PublisherRecorder:
    """Stands in for agent.publish.publisher.Publisher: keeps every retained payload."""

    def __init__(self) -> None:
        self.retained: list[tuple[str, dict[str, Any]]] = []

    def set_retained(self, topic: str, payload: dict[str, Any]) -> None:
        self.retained.append((topic, json.loads(json.dumps(payload))))

    def poke(self) -> None:
        pass


def _uuid4_sequence() -> Any:
    counter = iter(range(1, 1000))
    return lambda: uuid.UUID(bytes=hashlib.sha256(b"docs event %d" % next(counter)).digest()[:16],
                             version=4)


@contextmanager
def _scripted_world() -> Iterator[None]:
    dock_now = iso_ms(DOCK_NOW_MS)
    disk = SimpleNamespace(free=118_374_400_000, total=125_029_654_528)
    sensor = SimpleNamespace(current=48.312)
    patches = {
        "agent.session.Channel": _Channel,
        "agent.session.measure_offset": _measure_offset,
        "agent.session.dock_clock_synchronised": lambda: True,
        "agent.session.now_us": lambda: DOCK_NOW_MS * 1000,
        "agent.session.time": SimpleNamespace(monotonic=lambda: 1000.0,
                                              time_ns=lambda: DOCK_NOW_MS * 1_000_000),
        "agent.publish.topics.uuid": SimpleNamespace(uuid4=_uuid4_sequence()),
        "agent.publish.topics.iso_now": lambda: dock_now,
        "agent.daemon.iso_now": lambda: dock_now,
        "agent.daemon.time": SimpleNamespace(time=lambda: AGENT_START_MS / 1000,
                                             monotonic=time.monotonic),
        "agent.daemon.MqttLink": _LinkRecorder,
        "agent.health.iso_now": lambda: iso_ms(HEALTH_MS),
        "agent.health.time": SimpleNamespace(time=lambda: HEALTH_MS / 1000),
        "agent.health.os": SimpleNamespace(getloadavg=lambda: (0.31, 0.27, 0.22)),
        "agent.health.psutil": SimpleNamespace(
            disk_usage=lambda path: disk,
            sensors_temperatures=lambda: {"cpu_thermal": [sensor]}),
        "agent.health._BOOT": BOOT_MS / 1000,
    }
    with ExitStack() as stack:
        for target, new in patches.items():
            stack.enter_context(mock.patch(target, new))
        yield


# --------------------------------------------------------------------------- the scenario

def _dock(agent: Agent, camera: _Camera) -> None:
    """One docking, until the camera has been served (then the agent "stops" the session)."""
    agent.stopping.clear()
    camera.done = agent.stopping
    run_session(agent, _Transport(camera), status_interval_s=60.0)


def _write_dock_key(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    pem = DOCK_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    path = state_dir / "dock_key.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _generate(workdir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    state_dir = workdir / "state"
    _write_dock_key(state_dir)
    config = Config(dock_id=DOCK_ID, unit=UNIT, state_dir=state_dir, broker=BROKER)
    good = _recording(CAMERA_KEY, CAMERA_UID, bytes.fromhex("5e1f0000000000000000000000000007"),
                      b"camera footage", 6, 1_714_550_400_000, 1_714_550_460_250)
    damaged = _recording(CAMERA_KEY, CAMERA_UID, bytes.fromhex("5e1f0000000000000000000000000008"),
                         b"more camera footage", 6, 1_714_552_000_000, 1_714_552_095_500)
    out: dict[str, dict[str, Any]] = {}
    with _scripted_world():
        agent = Agent(config)
        link = agent._make_link()  # before the publisher is replaced: it takes its callbacks
        recorder = _PublisherRecorder()
        agent.publisher = recorder  # type: ignore[assignment]
        agent.outbox.close()  # the same outbox, with the scripted clock
        agent.outbox = Outbox(agent.paths.outbox, clock=lambda: DOCK_NOW_MS / 1000)
        try:
            assert isinstance(link, _LinkRecorder)
            births = {b.topic: json.loads(b.payload) for b in link.kwargs["birth"]}
            out["state_online"] = births[agent.topics.state]
            out["state_offline"] = json.loads(link.kwargs["will"].payload)
            out["identity"] = births[agent.topics.identity]

            for uid, key in ((CAMERA_UID, CAMERA_KEY), (IMPOSTOR_UID, _key(b"docs impostor")),
                             (FLAKY_UID, _key(b"docs flaky"))):
                agent.registry.enroll(uid, key.public_key(), officer_id="PD-0042", by="cli")
            # Low battery, two recordings: one offloads, one is damaged on the line.
            _dock(agent, _Camera(CAMERA_UID, CAMERA_KEY, "SN0001", battery_pct=64,
                                 recordings=(good, damaged),
                                 corrupt=(damaged.info.recording_id, 1)))
            docked = [p for t, p in recorder.retained if p.get("docked")]
            out["camera_status"] = docked[-1]
            _dock(agent, _Camera(STRANGER_UID, _key(b"docs stranger"), "SN0002"))
            out["camera_status_refused"] = recorder.retained[-1][1]
            _dock(agent, _Camera(IMPOSTOR_UID, _key(b"docs impostor"), "SN0003",
                                 signs_with=_key(b"docs someone else")))
            agent.config = dataclasses.replace(config, enrollment=Enrollment.TRUST_ON_FIRST_USE)
            _dock(agent, _Camera(NEWCOMER_UID, _key(b"docs newcomer"), "SN0004"))
            agent.config = config
            _dock(agent, _Camera(FLAKY_UID, _key(b"docs flaky"), "SN0005",
                                 stops_answering=m.GetStatus))
            # What the slot manager reports when a session raises (a full disk, or a bug).
            agent._on_crash(f"/dev/bwc/tty-{NEWCOMER_UID.hex()}", StorageFullError(
                "no space left for chunk 3",
                path=Path("/var/lib/bwc-dock/footage/partial/5e1f0000000000000000000000000009"
                          "/chunks.dat")))

            items = agent.outbox.pending(100)
            manifests = [i.payload for i in items if i.kind == "manifest"]
            assert len(manifests) == 1, manifests
            out["manifest"] = manifests[0]
            for item in items:
                if item.kind == "event":
                    out.setdefault(f"event_{item.payload['event']}", item.payload)

            agent.stopping.set()
            agent._health_loop()  # one round: stopping is set
            out["health"] = recorder.retained[-1][1]
            out["ack"] = {"type": "ack", "schema": 1,
                          "ids": [out["manifest"]["manifest_id"],
                                  out["event_integrity_failure"]["id"]]}
            observed = {"retained_topics": [t for t, _ in recorder.retained],
                        "items": [(i.kind, i.topic) for i in items],
                        "will": link.kwargs["will"], "birth": link.kwargs["birth"],
                        "subscriptions": link.kwargs["subscriptions"],
                        "client_id": link.client_id, "topics": agent.topics}
        finally:
            agent.outbox.close()
            agent.sessions_journal.close()
            agent.registry.close()
    missing = set(SCHEMA_OF) - set(out)
    assert not missing, f"the scenario produced no {sorted(missing)}"
    return {name: out[name] for name in SCHEMA_OF}, observed


@functools.cache
def generated() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(example name -> payload, what the daemon configured/published), computed once."""
    with tempfile.TemporaryDirectory(prefix="bwc-mqtt-doc-") as tmp:
        return _generate(Path(tmp))


def examples() -> dict[str, str]:
    """Example name -> the JSON text shown in the doc."""
    return {name: json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
            for name, payload in generated()[0].items()}


def render(doc: str) -> str:
    ex = examples()

    def sub(match: re.Match[str]) -> str:
        name = match["name"]
        return f"<!-- example: {name} -->\n```json\n{ex[name]}```\n"

    return BLOCK.sub(sub, doc)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        for name, text in examples().items():
            print(f"{name} ({SCHEMA_OF[name]})")
            print(text)
