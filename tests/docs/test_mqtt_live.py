"""docs/mqtt.md against the running agent: every payload kind the doc shows, published for real.

One scenario (module-scoped) drives the real agent (``python -m agent.cli run``) with real camsim
processes on ptys against a real mosquitto (tests/e2e/harness.py), and records everything under
the dock's prefix as it crosses the broker. Each documented example is provoked honestly:

* ``state`` online (birth) on both starts, offline on a clean stop (SIGTERM) and as the will
  (the broker publishes it after ``kill -9``); ``identity``; ``health``;
* ``camera_status``: a camera with nothing to offload docks ready, then is unplugged (docked
  false, the last values kept); a low-battery camera is not ready; the refused stranger has only
  the envelope, ``docked`` and ``slot``;
* ``manifest`` and ``late_offload``: a recording whose file was last written twelve years ago
  (camsim ends a file recording at its mtime on the camera clock), so it is stored > 24 h after
  it ended — and is past the 120-month retention, so the console may purge it;
* ``integrity_failure`` (camsim ``--fault corrupt-chunk``), ``not_ready``, ``unknown_device`` (not
  enrolled, ``enrollment = "strict"``), ``auth_failed`` (``--fault wrong-key``), ``protocol_error``
  (``--fault stall-after-bytes`` with a 1 s ``session_timeout_s``), ``enrolled`` (a second run
  with ``enrollment = "trust-on-first-use"``);
* ``session_crashed``: the dock's own store is damaged on disk before the camera docks: its
  recording already has a ``footage/partial/<id>/chunks.dat`` but no ``meta.json`` (the data key
  is lost), so the session's offload raises ``CorruptStoreError``, which no session handles;
* ``usb_unavailable``: run 0 names a USB camera id but a simulated bus directory that does not
  exist, so the backend cannot load (serial cameras are served regardless);
* ``camera_clock_jump``: a camera whose clock jumps back an hour right after its first status
  reading (camsim ``--fault clock-jump=-3600@1``) is caught at the next one;
* ``storage_low`` / ``storage_ok``: in run 1 the footage store is a 3 MiB tmpfs holding a ballast
  file, with a 1 MiB reserve; the newcomer's offload pauses, and deleting the ballast (space
  returns) resumes it;
* ``ack``: the harness console acknowledges each manifest it verified and each event, ledger
  record and command result;
* ``ledger``: every compliance record the run writes (hand-ins on docking, hand-outs on
  unplugging, recordings after offload, readiness and integrity failures, late offloads, the
  assignment, the purge tombstone, the gap and the overdue camera below) — each must be the
  record on the dock's disk, byte for byte in canonical JSON, and the chain must hold;
* ``gap``: a camera (``gapper``) docks, is unplugged (hand-out), two recordings are made while it
  is out (files whose mtimes lie 2 s apart, inside the hand-out) and it docks again, with
  ``compliance.gap_threshold_s = 1``;
* ``audit_head``: published at start (the audit log holds the enrolments and ``config_loaded``)
  and after the commands; each must verify with the dock key and be the hash of the line with
  its seq on the dock's disk;
* ``cmd/{name}`` and ``cmd_result``: the test publishes an unsigned ``assign`` (allowed
  unsigned; sent twice — the replayed copy must get no result), an ``assign`` of a camera that
  is not enrolled (``not_found``) and a ``purge`` of the twelve-year-old recording signed with a
  console key in ``console_public_keys`` (``purged`` event, ``purge`` record);
* ``overdue_camera``: between the runs the idle camera's hand-out is back-dated two days in
  ``compliance.json`` (through ``agent.compliance.state``, with the agent stopped), as if it had
  stayed out since; the next start finds it overdue (``overdue_after_s`` = 86 400).

Then, for every message: it validates against its schema, its key set (nested objects and the
objects in lists included) is exactly that of the doc's example of the same kind, and its QoS and
retain flag are those of the topic table (the recorder subscribes with QoS 2 and MQTT 5
retain-as-published, so both flags are the ones the publisher set). A ledger record of a type
without an example has the fields docs/compliance.md lists for it. A subscriber that connects
late must get the status topics as retained messages. Nothing of the project is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.compliance.audit import verify_head
from agent.compliance.commands import encode_command, key_id, sign_command
from agent.compliance.state import ComplianceState
from agent.manifest import parse_timestamp
from agent.store.durable import canonical_json_bytes
from firmware_protocol.signing import load_public_key
from tests.e2e.harness import DEADLINE_S, Camera, Harness, make_media, wait_until
from tests.helpers import Mosquitto, find_mosquitto, tmpfs

from .mqtt_doc import (
    errors,
    example_name,
    examples,
    record_fields,
    shape_problem,
    topic_row,
    topic_rows,
)

K = 1024
DAY_MS = 86_400_000
#: The late recording's file was last written twelve years ago: stored > 24 h after it ended
#: (Art. 13) and past the 120-month retention (Art. 15), so it may be purged.
LATE_S = 12 * 365 * 86400
GAP_THRESHOLD_S = 1  # compliance.gap_threshold_s of the scenario
RETAINED_SUFFIXES = ("state", "identity", "health", "cameras/", "audit_head")


# ------------------------------------------------------------------------------ the recorder

@dataclass(frozen=True)
class Received:
    seq: int
    topic: str
    suffix: str  # the topic after the dock's prefix
    payload: dict[str, Any]
    qos: int
    retain: bool


class Wire:
    """A plain MQTT 5 subscriber to ``prefix/#`` that keeps every message with its flags.

    ``retain_as_published``: the broker forwards the retain flag as the publisher set it (for
    messages published while subscribed); without it, retain marks a retained message delivered
    because of the subscription. Subscribing with QoS 2 makes the delivered QoS the one used by
    the publisher.
    """

    def __init__(self, broker: Mosquitto, prefix: str, name: str, *,
                 retain_as_published: bool) -> None:
        self.prefix = prefix
        self.retain_as_published = retain_as_published
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._subscriptions = 0
        self._client = paho.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"docs-{name}-{os.getpid()}",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect_async(broker.host, broker.port, keepalive=30)
        self._client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._subscriptions, DEADLINE_S):
                raise AssertionError(f"{name}: not subscribed to {prefix}/#")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, suffix: str, payload: bytes) -> None:
        """Publish as the console would (QoS 1, not retained); returns once the broker has it."""
        info = self._client.publish(f"{self.prefix}/{suffix}", payload, qos=1)
        info.wait_for_publish(DEADLINE_S)
        assert info.is_published(), f"publish on {suffix} not acknowledged by the broker"

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        with self._cond:
            if self._subscriptions:  # a reconnect would replay retained messages: refuse
                self._messages.append(Received(-1, "", "<reconnected>", {}, -1, False))
        if not code.is_failure:
            options = SubscribeOptions(qos=2, retainAsPublished=self.retain_as_published)
            client.subscribe([(f"{self.prefix}/#", options)])

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        with self._cond:
            if not any(c.is_failure for c in codes):
                self._subscriptions += 1
            self._cond.notify_all()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = {"<not json>": msg.payload[:200].decode(errors="replace")}
        with self._cond:
            self._messages.append(Received(
                len(self._messages), msg.topic, msg.topic.removeprefix(self.prefix + "/"),
                payload if isinstance(payload, dict) else {"<not an object>": payload},
                msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    @property
    def mark(self) -> int:
        with self._cond:
            return len(self._messages)

    def find(self, predicate: Callable[[Received], bool], since: int = 0) -> list[Received]:
        return [r for r in self.messages[since:] if predicate(r)]

    def summary(self, last: int = 40) -> str:
        return "\n".join(f"  #{r.seq} {r.suffix} q{r.qos} r{int(r.retain)} "
                         f"{json.dumps(r.payload)[:160]}" for r in self.messages[-last:])


# ------------------------------------------------------------------------------ predicates

def _event(name: str, camera: Camera | None) -> Callable[[Received], bool]:
    uid = camera.uid_hex if camera is not None else None
    return lambda r: (r.suffix == "events" and r.payload.get("event") == name
                      and r.payload.get("camera_uid") == uid)


def _status(camera: Camera, **fields: Any) -> Callable[[Received], bool]:
    return lambda r: (r.suffix == f"cameras/{camera.uid_hex}"
                      and all(r.payload.get(k) == v for k, v in fields.items()))


def _state(value: str) -> Callable[[Received], bool]:
    return lambda r: r.suffix == "state" and r.payload.get("state") == value


def _suffix(suffix: str) -> Callable[[Received], bool]:
    return lambda r: r.suffix == suffix


def _record(kind: str, camera: Camera | None = None, **fields: Any
            ) -> Callable[[Received], bool]:
    """A ledger message carrying a record of ``kind`` (of ``camera``, with ``fields``)."""
    def match(r: Received) -> bool:
        entry = r.payload.get("entry") if r.suffix == "ledger" else None
        return (isinstance(entry, dict) and entry.get("type") == kind
                and (camera is None or entry.get("camera_uid") == camera.uid_hex)
                and all(entry.get(k) == v for k, v in fields.items()))
    return match


def _result(request_id: str) -> Callable[[Received], bool]:
    return lambda r: r.suffix == "cmd_result" and r.payload.get("request_id") == request_id


# ------------------------------------------------------------------------------ the dock's disk

def _journal_lines(directory: Path) -> dict[int, bytes]:
    """seq -> line (without its newline) of a journal on the dock's disk; a line still being
    written (no newline yet) is left out."""
    lines: dict[int, bytes] = {}
    for segment in sorted(directory.glob("*.jsonl")):
        data = segment.read_bytes()
        for line in data[:data.rfind(b"\n") + 1].splitlines():
            lines[int(json.loads(line)["seq"])] = line
    return lines


# ------------------------------------------------------------------------------ the scenario

@dataclass
class Live:
    wire: list[Received]  # everything seen live, with the publisher's flags
    late: list[Received]  # what a subscriber connecting late got
    marks: dict[str, int]  # wire positions: "run1", "stopped", "killed"
    cameras: dict[str, Camera]
    broker_log: str
    prefix: str
    status_topics: set[str]  # every cameras/<uid> topic the dock published on
    records: dict[int, bytes]  # the compliance journal on the dock's disk at the end: seq -> line
    audit: dict[int, bytes]  # the audit log on the dock's disk at the end
    commands: dict[str, dict[str, Any]]  # what the test sent: "assign", "unknown", "purge"
    console_key_id: str
    backdated_out_ms: int  # the idle camera's hand-out, as back-dated between the runs


def _wait(e2e: Harness, wire: Wire, predicate: Callable[[Received], bool], what: str,
          since: int = 0) -> Received:
    """The first message from ``since`` on that matches, waiting for it with a deadline."""
    found = wait_until(lambda: wire.find(predicate, since), what, DEADLINE_S,
                       lambda: f"{e2e.diagnostics()}\n--- recorded (tail)\n{wire.summary()}")
    return found[0]


def _seed_lost_data_key(state_dir: Path, recording_id: str) -> None:
    """Damage on the dock's disk: chunk data of a recording whose meta.json (and with it the
    wrapped data key) is gone. The store refuses to append behind it (CorruptStoreError)."""
    partial = state_dir / "footage" / "partial" / recording_id
    partial.mkdir(parents=True, mode=0o700)
    (partial / "chunks.dat").write_bytes(b"\x00" * 100)


def _scenario(e2e: Harness, broker: Mosquitto, wires: list[Wire],
              stack: ExitStack) -> Live:
    ready = e2e.camera("ready", start=False)  # nothing to offload: ready on docking
    late = e2e.camera("late", media=make_media([192 * K, 128 * K]), args=["--battery", "50"],
                      start=False)
    assert late.media_dir is not None
    written = time.time() - LATE_S  # camsim ends a file recording at its mtime
    os.utime(late.media_dir / "clip-00.mp4", (written, written))
    stranger = e2e.camera("stranger", start=False)
    impostor = e2e.camera("impostor", start=False)
    staller = e2e.camera("staller", start=False)
    crasher = e2e.camera("crasher", media=make_media([64 * K]), start=False)
    gapper = e2e.camera("gapper", media={}, start=False)  # records while handed out, below
    jumper = e2e.camera("jumper", start=False)  # its clock jumps back an hour while docked
    for cam in (ready, late, stranger, impostor, staller, crasher, gapper, jumper):
        cam.create_key()
    console_key = Ed25519PrivateKey.generate()
    console_pub = e2e.root / "console.pub"
    console_pub.write_bytes(console_key.public_key().public_bytes_raw())
    agent = e2e.make_agent(broker, settings={
        "session_timeout_s": 1, "enrollment": "strict", "usb_ids": ["1d6b:0104"],
        "usb_backend": f"camsim:{e2e.root / 'no-such-usb-bus'}",
        "console_public_keys": [console_pub],
        "compliance": {"gap_threshold_s": GAP_THRESHOLD_S}})
    agent.enroll(ready, late, impostor, staller, crasher, gapper, jumper)
    _seed_lost_data_key(agent.state_dir, crasher.rid("clip-00.mp4"))
    for cam in (ready, stranger, crasher, gapper):
        cam.start()
    late.start("corrupt-chunk=1:0")
    impostor.start("wrong-key")
    staller.start("stall-after-bytes=400")  # in the clock sync, after AUTH
    jumper.start("clock-jump=-3600@1")  # right after its first status reading

    wire = Wire(broker, agent.prefix, "wire", retain_as_published=True)
    wires.append(wire)
    e2e.console(broker)  # verifies manifests; acknowledges them, events, ledger and results
    agent.start()

    # -- run 0: enrollment = "strict" ---------------------------------------------------------
    _wait(e2e, wire, _state("online"), "birth: state online")
    _wait(e2e, wire, _suffix("identity"), "birth: identity")
    _wait(e2e, wire, _suffix("audit_head"), "the audit head published at start")
    _wait(e2e, wire, _status(ready, docked=True, ready=True), "the idle camera docked ready")
    _wait(e2e, wire, _record("hand_in", ready), "the idle camera's hand-in on the ledger")
    _wait(e2e, wire, _event("usb_unavailable", None), "event usb_unavailable")
    for name, cam in (("not_ready", late), ("late_offload", late), ("integrity_failure", late),
                      ("unknown_device", stranger), ("auth_failed", impostor),
                      ("protocol_error", staller)):
        _wait(e2e, wire, _event(name, cam), f"event {name} from {cam.name}")
    crash = _wait(e2e, wire, lambda r: (_event("session_crashed", None)(r)
                                        and r.payload["details"]["slot"] == str(crasher.port)),
                  "event session_crashed from the crasher's slot")
    _wait(e2e, wire, _status(stranger, docked=False), "the stranger's refused status")
    _wait(e2e, wire, _event("camera_clock_jump", jumper), "event camera_clock_jump")
    manifest = _wait(e2e, wire, lambda r: (r.suffix == "manifests" and r.payload.get(
        "recording_id") == late.rid("clip-00.mp4")), "the late recording's manifest")
    _wait(e2e, wire, _record("recording", late, manifest_id=manifest.payload["manifest_id"]),
          "the late recording's record on the ledger")
    _wait(e2e, wire, lambda r: r.suffix == "acks" and manifest.payload["manifest_id"] in
          r.payload.get("ids", []), "the console's ack of the manifest")

    # The gap: the gapper is handed out, records twice (2 s apart, inside the hand-out, with a
    # 1 s threshold) and is docked again; once both recordings are stored the gap is found.
    _wait(e2e, wire, _status(gapper, docked=True, ready=True), "the gapper docked ready")
    gapper.stop()
    out = _wait(e2e, wire, _record("hand_out", gapper), "the gapper's hand-out on the ledger")
    out_ms = parse_timestamp(out.payload["entry"]["at"])
    assert gapper.media_dir is not None
    for i, (name, data) in enumerate(sorted(make_media([2 * K, 2 * K]).items())):
        (gapper.media_dir / name).write_bytes(data)
        mtime_ns = (out_ms + 500 + i * 2000) * 1_000_000  # ends 0.5 s, 2.5 s after hand-out
        os.utime(gapper.media_dir / name, ns=(mtime_ns, mtime_ns))
    wait_until(lambda: time.time_ns() // 1_000_000 > out_ms + 3000,
               "the dock clock past the recordings made during the hand-out")
    gapper.start()
    _wait(e2e, wire, _event("gap", gapper), "event gap from the gapper")

    ready.stop()
    _wait(e2e, wire, lambda r: _status(ready, docked=False)(r) and "ready" in r.payload,
          "the idle camera unplugged")
    _wait(e2e, wire, _record("hand_out", ready), "the idle camera's hand-out on the ledger")
    # Every manifest and event is queued by now; the console acknowledges each of them, so
    # the outbox must drain (the dock's acks subscription works and the acks count).
    queued = max(r.payload.get("at") or r.payload["stored_at"]
                 for r in wire.find(lambda r: r.suffix in ("events", "manifests")))
    _wait(e2e, wire, lambda r: (r.suffix == "health" and r.payload["at"] > queued
                                and r.payload["outbox_depth"] == 0),
          "health: the outbox drained by the console's acks", since=crash.seq)

    # Console commands, now that the dock's subscriptions (acks, cmd/+) demonstrably work.
    assign = sign_command(None, command="assign", dock_id=agent.dock_id,
                          args={"camera_uid": ready.uid_hex, "officer_id": "OF-reassigned"})
    wire.publish("cmd/assign", encode_command(assign))
    _wait(e2e, wire, _result(assign["request_id"]), "the result of the assign command")
    wire.publish("cmd/assign", encode_command(assign))  # QoS 1 redelivery: refused, no result
    unknown = sign_command(None, command="assign", dock_id=agent.dock_id,
                           args={"camera_uid": stranger.uid_hex, "officer_id": "OF-x"})
    wire.publish("cmd/assign", encode_command(unknown))
    _wait(e2e, wire, _result(unknown["request_id"]), "the refusal of the unknown camera")
    purge = sign_command(console_key, command="purge", dock_id=agent.dock_id,
                         args={"recording_ids": [late.rid("clip-00.mp4")],
                               "admin_id": "ADM-e2e", "reason": "retention expired"})
    wire.publish("cmd/purge", encode_command(purge))
    _wait(e2e, wire, _result(purge["request_id"]), "the result of the purge command")
    _wait(e2e, wire, _event("purged", late), "event purged")
    _wait(e2e, wire, _record("purge", late), "the purge tombstone on the ledger")
    audit_dir = agent.state_dir / "journal" / "audit"

    def head_of_disk() -> bool:
        lines = _journal_lines(audit_dir)
        last = max(lines)
        return bool(wire.find(lambda r: r.suffix == "audit_head" and r.payload["seq"] == last
                              and r.payload["head"] == hashlib.sha256(lines[last]).hexdigest()))
    wait_until(head_of_disk, "an audit head naming the audit log's last line after the commands",
               DEADLINE_S, lambda: f"{e2e.diagnostics()}\n--- recorded (tail)\n{wire.summary()}")

    stopped = wire.mark
    assert agent.stop() == 0, agent.log_text()[-2000:]
    _wait(e2e, wire, _state("offline"), "offline on a clean stop", since=stopped)

    # -- run 1: enrollment = "trust-on-first-use", then kill -9 -------------------------------
    for cam in (late, stranger, impostor, staller, crasher, gapper, jumper):
        cam.stop()
    # The idle camera left during run 0: as if it had stayed out for two days since.
    state = ComplianceState(agent.state_dir / "compliance.json")
    try:
        handout = state.camera(ready.uid_hex)["open_handout"]
        assert handout is not None, "the idle camera has no open hand-out"
        backdated = handout["out_ms"] - 2 * DAY_MS
        state.update_camera(ready.uid_hex, {"open_handout": {**handout, "out_ms": backdated}})
    finally:
        state.close()
    # The store of run 1 sits on a small tmpfs: its free space moves only with the agent's writes
    # and the ballast, so storage_low / storage_ok happen exactly when this test says.
    footage = stack.enter_context(tmpfs(agent.state_dir / "footage", 3 << 20))
    ballast = footage / "ballast.bin"
    ballast.write_bytes(bytes(1536 * K))
    config = agent.config.read_text()
    config = config.replace('enrollment = "strict"', 'enrollment = "trust-on-first-use"')
    config = config.replace("session_timeout_s = 1",
                            f"session_timeout_s = 1\nstorage_reserve_bytes = {1 << 20}")
    agent.config.write_text(config)
    newcomer = e2e.camera("newcomer", media=make_media([768 * K]))  # > the 512 KiB head-room
    run1 = wire.mark
    agent.start()
    _wait(e2e, wire, _event("overdue_camera", ready), "event overdue_camera", since=run1)
    _wait(e2e, wire, _event("storage_low", None), "event storage_low (store at its reserve)",
          since=run1)
    ballast.unlink()  # space returns
    _wait(e2e, wire, _event("storage_ok", None), "event storage_ok", since=run1)
    _wait(e2e, wire, _state("online"), "birth of the second run", since=run1)
    _wait(e2e, wire, _event("enrolled", newcomer), "event enrolled (trust-on-first-use)",
          since=run1)
    _wait(e2e, wire, _status(newcomer, docked=True, ready=True), "the newcomer ready",
          since=run1)
    _wait(e2e, wire, _suffix("health"), "health of the second run", since=run1)
    records_dir = agent.state_dir / "journal" / "records"

    def ledger_complete() -> bool:
        published = {r.payload["entry"]["seq"] for r in wire.find(_suffix("ledger"))}
        return set(_journal_lines(records_dir)) <= published
    wait_until(ledger_complete, "every compliance record on disk published on the ledger",
               DEADLINE_S, lambda: f"{e2e.diagnostics()}\n--- recorded (tail)\n{wire.summary()}")

    status_topics = {r.topic for r in wire.messages if r.suffix.startswith("cameras/")}
    expected = {f"{agent.prefix}/{s}" for s in ("state", "identity", "health", "audit_head")}
    expected |= status_topics
    late_wire = Wire(broker, agent.prefix, "late-subscriber", retain_as_published=False)
    wires.append(late_wire)
    wait_until(lambda: {r.topic for r in late_wire.messages if r.retain} >= expected,
               "a late subscriber to get every retained status", DEADLINE_S,
               lambda: f"expected {sorted(expected)}\n{late_wire.summary()}")
    late_seen = late_wire.messages

    killed = wire.mark
    agent.kill9()
    _wait(e2e, wire, _state("offline"), "the will: offline after kill -9", since=killed)
    return Live(wire=wire.messages, late=late_seen,
                marks={"run1": run1, "stopped": stopped, "killed": killed},
                cameras=dict(e2e.cameras), broker_log=broker.log_path.read_text(errors="replace"),
                prefix=agent.prefix, status_topics=status_topics,
                records=_journal_lines(records_dir), audit=_journal_lines(audit_dir),
                commands={"assign": assign, "unknown": unknown, "purge": purge},
                console_key_id=key_id(console_key.public_key().public_bytes_raw()),
                backdated_out_ms=backdated)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    executable = find_mosquitto()
    if executable is None:
        pytest.fail("mosquitto not installed: run `make deps` as root", pytrace=False)
    root = tmp_path_factory.mktemp("mqtt-live")
    broker = Mosquitto(executable, root / "mosquitto")
    broker.start()
    e2e = Harness(root / "e2e")
    wires: list[Wire] = []
    try:
        with ExitStack() as stack:
            stack.callback(e2e.close)  # stop every process before the tmpfs goes
            yield _scenario(e2e, broker, wires, stack)
    finally:
        for w in wires:
            w.close()
        e2e.close()
        broker.stop()


def _dock_messages(live: Live) -> list[Received]:
    assert not [r for r in live.wire if r.seq < 0], "the recorder reconnected"
    return live.wire


def _where(r: Received) -> str:
    return f"#{r.seq} {r.topic}: {json.dumps(r.payload)[:400]}"


# ------------------------------------------------------------------------------ the checks

def test_every_documented_example_was_published_live(live: Live) -> None:
    seen = {example_name(r.suffix, r.payload) for r in _dock_messages(live)}
    missing = set(examples()) - seen
    assert not missing, f"the live run produced no {sorted(missing)}"
    # A ledger record of a type without an example is documented by docs/compliance.md.
    documented = set(examples()) | {f"ledger_{kind}" for kind in record_fields()}
    undocumented = seen - documented
    assert not undocumented, f"published but not documented: {sorted(undocumented)}"
    # Beyond the examples: the records this run must have written and published.
    kinds = {r.payload["entry"]["type"] for r in _dock_messages(live) if r.suffix == "ledger"}
    assert kinds >= {"hand_in", "hand_out", "recording", "readiness_failure",
                     "integrity_failure", "late_offload", "assignment", "purge", "gap",
                     "overdue_camera"}, kinds


def test_every_camera_status_variant_was_published_live(live: Live) -> None:
    statuses = [r.payload for r in _dock_messages(live) if r.suffix.startswith("cameras/")]
    variants = {(s["docked"], s.get("ready")) for s in statuses}
    # docked ready, docked not ready, undocked after a docking (last values kept) and the
    # refused or failed camera that only ever gets the envelope, docked and slot.
    assert variants >= {(True, True), (True, False), (False, True), (False, None)}, variants


def test_live_payloads_validate_against_their_schemas(live: Live) -> None:
    bad = [f"{_where(r)}\n    {e}" for r in _dock_messages(live) + live.late
           for e in errors(r.payload)]
    assert not bad, "\n".join(bad[:20])


def test_live_payloads_have_exactly_the_fields_of_their_example(live: Live) -> None:
    problems = [f"{_where(r)}\n    {problem}" for r in _dock_messages(live) + live.late
                if (problem := shape_problem(r.suffix, r.payload)) is not None]
    assert not problems, "\n".join(problems[:20])


def test_payloads_are_on_their_topics(live: Live) -> None:
    rows = topic_rows()
    for r in _dock_messages(live):
        assert r.topic.startswith(live.prefix + "/"), r.topic
        row = topic_row(r.suffix)
        assert row in rows, _where(r)
        schema = rows[row]["schema"]
        assert schema == f"{r.payload.get('type')}.json", _where(r)
        if r.suffix.startswith("cameras/"):
            assert r.suffix == f"cameras/{r.payload['camera_uid']}", _where(r)
        if r.suffix.startswith("cmd/"):
            assert r.suffix == f"cmd/{r.payload['command']}", _where(r)


def test_qos_and_retain_as_published_are_as_documented(live: Live) -> None:
    rows = topic_rows()
    for r in _dock_messages(live):
        row = rows[topic_row(r.suffix)]
        assert (r.qos, r.retain) == (int(row["qos"]), row["retain"] == "yes"), _where(r)


def test_a_late_subscriber_gets_the_retained_status(live: Live) -> None:
    retained = [r for r in live.late if r.retain]
    topics = {r.topic for r in retained}
    assert topics == {f"{live.prefix}/{s}" for s in ("state", "identity", "health",
                                                    "audit_head")} | live.status_topics
    for r in retained:
        assert r.suffix.startswith(RETAINED_SUFFIXES), _where(r)
        assert r.qos == 1, _where(r)
    state = next(r for r in retained if r.suffix == "state")
    assert state.payload["state"] == "online"
    # Manifests, events, ledger records, acks, commands and results are never retained.
    assert not [r for r in retained if r.suffix in ("manifests", "events", "acks", "ledger",
                                                    "cmd_result") or r.suffix.startswith("cmd/")]


def test_birth_offline_and_will(live: Live) -> None:
    wire = _dock_messages(live)
    run0 = [r for r in wire[:live.marks["stopped"]] if r.suffix in ("state", "identity")]
    assert [(r.suffix, r.payload.get("state")) for r in run0[:2]] == [
        ("state", "online"), ("identity", None)], "birth: state, then identity"
    # A clean stop publishes offline itself; after kill -9 the broker publishes the will.
    for since, until in ((live.marks["stopped"], live.marks["run1"]),
                         (live.marks["killed"], len(wire))):
        states = [r for r in wire[since:until] if r.suffix == "state"]
        assert [r.payload["state"] for r in states] == ["offline"], states
        assert (states[0].qos, states[0].retain) == (1, True)
    log = live.broker_log
    client = "bwc-dock-dock-e2e"
    connects = re.findall(rf"New client connected from \S+ as {client} \(p(\d), c(\d), k(\d+)\)",
                          log)
    assert connects == [("5", "1", "30")] * 2, connects  # MQTT 5, clean start, keep-alive 30 s
    wills = re.findall(rf"as {client} .*\n.*Will message specified \(\d+ bytes\) "
                       r"\(r(\d), q(\d)\)\.\n\d+: \t(\S+)", log)
    assert wills == [("1", "1", f"{live.prefix}/state")] * 2, wills
    subscriptions = [re.findall(r"\t(\S+) \(QoS (\d)\)", block) for block in re.findall(
        rf"Received SUBSCRIBE from {client}\n(.*?)\d+: Sending SUBACK to {client}\n", log, re.S)]
    assert subscriptions == [[(f"{live.prefix}/acks", "1"), (f"{live.prefix}/cmd/+", "1")]] * 2, \
        subscriptions
    assert f"Client {client} disconnected." in log  # the clean stop
    assert "client id `bwc-dock-{dock_id}`" in Path(__file__).parents[2].joinpath(
        "docs", "mqtt.md").read_text(encoding="utf-8")


def test_event_details_are_what_the_doc_says(live: Live) -> None:
    cams = live.cameras
    events = {(r.payload["event"], r.payload["camera_uid"]): r.payload
              for r in _dock_messages(live) if r.suffix == "events"}

    def event(name: str, cam: str | None) -> dict[str, Any]:
        return events[(name, cams[cam].uid_hex if cam else None)]["details"]

    late = cams["late"]
    manifest = next(r.payload for r in live.wire if r.suffix == "manifests"
                    and r.payload["recording_id"] == late.rid("clip-00.mp4"))
    delayed = event("late_offload", "late")
    assert delayed["offload_delay_s"] == manifest["offload_delay_s"] > 86400
    for key in ("recording_id", "manifest_id", "ended_at", "stored_at"):
        assert delayed[key] == manifest[key], key
    assert delayed["slot"] == str(late.port)
    damaged = event("integrity_failure", "late")
    assert (damaged["recording_id"], damaged["reason"], damaged["chunk_index"]) == (
        late.rid("clip-01.mp4"), "chunk_hash", 0)
    assert damaged["slot"] == str(late.port)
    assert event("not_ready", "late")["reasons"] == ["battery_low", "footage_pending"]
    assert event("unknown_device", "stranger")["slot"] == str(cams["stranger"].port)
    assert event("auth_failed", "impostor")["slot"] == str(cams["impostor"].port)
    assert event("protocol_error", "staller")["code"] == "ReplyTimeout"
    assert event("enrolled", "newcomer")["by"] == "trust-on-first-use"
    crashed = event("session_crashed", None)
    assert crashed["error"] == "CorruptStoreError", crashed
    assert crashed["slot"] == str(cams["crasher"].port)
    # The console acknowledged every manifest and event of the first run (and the outbox
    # drained: the scenario waited for a health payload with outbox_depth 0).
    acked = {i for r in live.wire if r.suffix == "acks" for i in r.payload["ids"]}
    first_run = [r.payload for r in live.wire[:live.marks["stopped"]]
                 if r.suffix in ("events", "manifests")]
    assert {p.get("manifest_id") or p["id"] for p in first_run} <= acked
    # The compliance events, against what the dock recorded and what the console sent.
    ledger = [r.payload["entry"] for r in live.wire if r.suffix == "ledger"]
    gap = event("gap", "gapper")
    recorded_gap = next(e for e in ledger if e["type"] == "gap" and e["gap_id"] == gap["gap_id"])
    assert gap == {k: recorded_gap[k] for k in gap}
    assert (gap["kind"], gap["status"], gap["reason"]) == ("interruption", "open", None)
    assert gap["duration_s"] >= GAP_THRESHOLD_S
    out = next(e for e in ledger if e["type"] == "hand_out"
               and e["camera_uid"] == cams["gapper"].uid_hex)
    assert (gap["handout_id"], gap["officer_id"]) == (out["handout_id"], cams["gapper"].officer)
    purge = live.commands["purge"]
    purged = event("purged", "late")
    assert purged["request_id"] == purge["request_id"]
    assert (purged["admin_id"], purged["reason"]) == (purge["args"]["admin_id"],
                                                      purge["args"]["reason"])
    assert (purged["recording_id"], purged["manifest_id"], purged["sha256"]) == (
        manifest["recording_id"], manifest["manifest_id"], manifest["sha256"])
    overdue = event("overdue_camera", "ready")
    handout = next(e for e in ledger if e["type"] == "hand_out"
                   and e["camera_uid"] == cams["ready"].uid_hex)
    assert (overdue["handout_id"], overdue["officer_id"], overdue["limit_s"]) == (
        handout["handout_id"], cams["ready"].officer, 86400)
    assert parse_timestamp(overdue["out_since"]) == live.backdated_out_ms


def test_ledger_is_the_compliance_journal_on_disk(live: Live) -> None:
    """Every record, once or more, each exactly the dock's journal line, chained."""
    entries: dict[int, dict[str, Any]] = {}
    for r in _dock_messages(live):
        if r.suffix != "ledger":
            continue
        entry = r.payload["entry"]
        assert r.payload["id"] == f"{r.payload['dock_id']}:{entry['seq']}", _where(r)
        assert canonical_json_bytes(entry) == live.records[entry["seq"]], _where(r)
        entries[entry["seq"]] = entry
    assert sorted(entries) == list(range(1, max(live.records) + 1)) == sorted(live.records)
    assert entries[1]["prev"] == "0" * 64
    for seq in range(2, len(entries) + 1):
        assert entries[seq]["prev"] == hashlib.sha256(
            canonical_json_bytes(entries[seq - 1])).hexdigest(), seq


def test_ledger_records_what_happened(live: Live) -> None:
    cams = live.cameras
    ledger = [r.payload["entry"] for r in live.wire if r.suffix == "ledger"]

    def records(kind: str, cam: str) -> list[dict[str, Any]]:
        return [e for e in ledger if e["type"] == kind and e["camera_uid"] == cams[cam].uid_hex]

    # hand_in on docking, closing no hand-out the first time and the gapper's the second.
    ready_in = records("hand_in", "ready")[0]
    assert (ready_in["handout_id"], ready_in["officer_id"]) == (None, cams["ready"].officer)
    assert ready_in["slot"] == str(cams["ready"].port)
    gapper_ins, gapper_out = records("hand_in", "gapper"), records("hand_out", "gapper")
    assert [e["handout_id"] for e in gapper_ins] == [None, gapper_out[0]["handout_id"]]
    # recording after offload: the manifest's facts, linked to the hand-out it was made in.
    manifests = {r.payload["recording_id"]: r.payload for r in live.wire
                 if r.suffix == "manifests"}
    for rec in records("recording", "late") + records("recording", "gapper"):
        m = manifests[rec["recording_id"]]
        for key in ("manifest_id", "sha256", "size", "started_at", "ended_at", "stored_at",
                    "offload_delay_s", "media", "officer_id"):
            assert rec[key] == m[key], key
    assert {e["handout_id"] for e in records("recording", "gapper")} == {
        gapper_out[0]["handout_id"]}
    assert {e["recording_id"] for e in records("late_offload", "late")} == {
        cams["late"].rid("clip-00.mp4")}
    # The console's decisions.
    assign = live.commands["assign"]
    [assignment] = [e for e in ledger if e["type"] == "assignment"]
    assert (assignment["camera_uid"], assignment["officer_id"], assignment["request_id"],
            assignment["by"]) == (cams["ready"].uid_hex, "OF-reassigned",
                                  assign["request_id"], "console")
    [tomb] = records("purge", "late")
    assert (tomb["recording_id"], tomb["request_id"]) == (cams["late"].rid("clip-00.mp4"),
                                                          live.commands["purge"]["request_id"])
    [overdue] = records("overdue_camera", "ready")
    assert parse_timestamp(overdue["out_since"]) == live.backdated_out_ms


def test_commands_are_answered_once_and_audited(live: Live) -> None:
    results: dict[str, list[dict[str, Any]]] = {}
    for r in _dock_messages(live):
        if r.suffix == "cmd_result":
            assert r.payload["id"] == f"cmd_result:{r.payload['request_id']}", _where(r)
            results.setdefault(r.payload["request_id"], []).append(r.payload)
    sent = live.commands
    assert set(results) == {c["request_id"] for c in sent.values()}
    for request_id, copies in results.items():  # re-sends are the same result
        assert all(c == copies[0] for c in copies), request_id
    outcome = {name: results[c["request_id"]][0] for name, c in sent.items()}
    assert {name: (r["command"], r["ok"], r["error"]) for name, r in outcome.items()} == {
        "assign": ("assign", True, None), "unknown": ("assign", False, "not_found"),
        "purge": ("purge", True, None)}
    assert outcome["assign"]["reason"] == outcome["purge"]["reason"] == "done"
    # The audit log on disk has every command received, the replayed copy included.
    audit = [json.loads(line) for _, line in sorted(live.audit.items())]
    commands = [(a["request_id"], a["outcome"], a["signed"]) for a in audit
                if a["action"] == "command"]
    assert commands == [(sent["assign"]["request_id"], "ok", False),
                        (sent["assign"]["request_id"], "replayed", False),
                        (sent["unknown"]["request_id"], "not_found", False),
                        (sent["purge"]["request_id"], "ok", True)], commands
    [purged] = [a for a in audit if a["action"] == "purge"]
    assert purged["actor"] == f"console:{live.console_key_id}"


def test_audit_heads_are_signed_heads_of_the_audit_log_on_disk(live: Live) -> None:
    identity = next(r.payload for r in _dock_messages(live) if r.suffix == "identity")
    dock_key = load_public_key(base64.b64decode(identity["public_key"]))
    heads = [r for r in _dock_messages(live) + live.late if r.suffix == "audit_head"]
    assert heads
    for r in heads:
        verify_head(r.payload, dock_key)
        assert r.payload["head"] == hashlib.sha256(live.audit[r.payload["seq"]]).hexdigest(), \
            _where(r)
    # The first head (at start) already covers the daemon's config_loaded entry.
    audit = {seq: json.loads(line) for seq, line in live.audit.items()}
    loaded = [seq for seq, a in sorted(audit.items()) if a["action"] == "config_loaded"]
    assert len(loaded) == 2, loaded  # run 1 starts with another configuration
    assert audit[loaded[0]]["actor"] == "daemon"
    assert heads[0].payload["seq"] >= loaded[0]
    run1 = [r for r in _dock_messages(live)[live.marks["run1"]:] if r.suffix == "audit_head"]
    assert run1 and all(r.payload["seq"] >= loaded[1] for r in run1)
