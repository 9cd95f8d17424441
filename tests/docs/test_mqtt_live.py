"""docs/mqtt.md against the running agent: every payload kind the doc shows, published for real.

One scenario (module-scoped) drives the real agent (``python -m agent.cli run``) with real camsim
processes on ptys against a real mosquitto (tests/e2e/harness.py), and records everything under
the dock's prefix as it crosses the broker. Each documented example is provoked honestly:

* ``state`` online (birth) on both starts, offline on a clean stop (SIGTERM) and as the will
  (the broker publishes it after ``kill -9``); ``identity``; ``health``;
* ``camera_status``: a camera with nothing to offload docks ready, then is unplugged (docked
  false, the last values kept); a low-battery camera is not ready; the refused stranger has only
  the envelope, ``docked`` and ``slot``;
* ``manifest`` and ``late_offload``: a recording whose file was last written two days ago (camsim
  ends a file recording at its mtime on the camera clock), so it is stored > 24 h after it ended;
* ``integrity_failure`` (camsim ``--fault corrupt-chunk``), ``not_ready``, ``unknown_device`` (not
  enrolled, ``enrollment = "strict"``), ``auth_failed`` (``--fault wrong-key``), ``protocol_error``
  (``--fault stall-after-bytes`` with a 1 s ``session_timeout_s``), ``enrolled`` (a second run
  with ``enrollment = "trust-on-first-use"``);
* ``session_crashed``: the dock's own store is damaged on disk before the camera docks: its
  recording already has a ``footage/partial/<id>/chunks.dat`` but no ``meta.json`` (the data key
  is lost), so the session's offload raises ``CorruptStoreError``, which no session handles;
* ``usb_unavailable``: run 0 names a USB camera id but a simulated bus directory that does not
  exist, so the backend cannot load (serial cameras are served regardless);
* ``storage_low`` / ``storage_ok``: in run 1 the footage store is a 3 MiB tmpfs holding a ballast
  file, with a 1 MiB reserve; the newcomer's offload pauses, and deleting the ballast (space
  returns) resumes it;
* ``ack``: the harness console acknowledges each manifest it verified and each event.

Then, for every message: it validates against its schema, its key set (nested objects and the
objects in lists included) is exactly that of the doc's example of the same kind, and its QoS and
retain flag are those of the topic table (the recorder subscribes with QoS 2 and MQTT 5
retain-as-published, so both flags are the ones the publisher set). A subscriber that connects
late must get the status topics as retained messages. Nothing of the project is mocked.
"""

from __future__ import annotations

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
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.e2e.harness import DEADLINE_S, Camera, Harness, make_media, wait_until
from tests.helpers import Mosquitto, find_mosquitto, tmpfs

from .mqtt_doc import errors, example_name, examples, key_paths, topic_rows

K = 1024
LATE_S = 2 * 86400  # the late recording's file was last written two days ago
RETAINED_SUFFIXES = ("state", "identity", "health", "cameras/")


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
    for cam in (ready, late, stranger, impostor, staller, crasher):
        cam.create_key()
    agent = e2e.make_agent(broker, settings={
        "session_timeout_s": 1, "enrollment": "strict", "usb_ids": ["1d6b:0104"],
        "usb_backend": f"camsim:{e2e.root / 'no-such-usb-bus'}"})
    agent.enroll(ready, late, impostor, staller, crasher)
    _seed_lost_data_key(agent.state_dir, crasher.rid("clip-00.mp4"))
    for cam in (ready, stranger, crasher):
        cam.start()
    late.start("corrupt-chunk=1:0")
    impostor.start("wrong-key")
    staller.start("stall-after-bytes=400")  # in the clock sync, after AUTH

    wire = Wire(broker, agent.prefix, "wire", retain_as_published=True)
    wires.append(wire)
    e2e.console(broker)  # verifies manifests and acknowledges them and every event
    agent.start()

    # -- run 0: enrollment = "strict" ---------------------------------------------------------
    _wait(e2e, wire, _state("online"), "birth: state online")
    _wait(e2e, wire, _suffix("identity"), "birth: identity")
    _wait(e2e, wire, _status(ready, docked=True, ready=True), "the idle camera docked ready")
    _wait(e2e, wire, _event("usb_unavailable", None), "event usb_unavailable")
    for name, cam in (("not_ready", late), ("late_offload", late), ("integrity_failure", late),
                      ("unknown_device", stranger), ("auth_failed", impostor),
                      ("protocol_error", staller)):
        _wait(e2e, wire, _event(name, cam), f"event {name} from {cam.name}")
    crash = _wait(e2e, wire, lambda r: (_event("session_crashed", None)(r)
                                        and r.payload["details"]["slot"] == str(crasher.port)),
                  "event session_crashed from the crasher's slot")
    _wait(e2e, wire, _status(stranger, docked=False), "the stranger's refused status")
    manifest = _wait(e2e, wire, lambda r: (r.suffix == "manifests" and r.payload.get(
        "recording_id") == late.rid("clip-00.mp4")), "the late recording's manifest")
    _wait(e2e, wire, lambda r: r.suffix == "acks" and manifest.payload["manifest_id"] in
          r.payload.get("ids", []), "the console's ack of the manifest")
    ready.stop()
    _wait(e2e, wire, lambda r: _status(ready, docked=False)(r) and "ready" in r.payload,
          "the idle camera unplugged")
    # Every manifest and event is queued by now; the console acknowledges each of them, so
    # the outbox must drain (the dock's acks subscription works and the acks count).
    queued = max(r.payload.get("at") or r.payload["stored_at"]
                 for r in wire.find(lambda r: r.suffix in ("events", "manifests")))
    _wait(e2e, wire, lambda r: (r.suffix == "health" and r.payload["at"] > queued
                                and r.payload["outbox_depth"] == 0),
          "health: the outbox drained by the console's acks", since=crash.seq)

    stopped = wire.mark
    assert agent.stop() == 0, agent.log_text()[-2000:]
    _wait(e2e, wire, _state("offline"), "offline on a clean stop", since=stopped)

    # -- run 1: enrollment = "trust-on-first-use", then kill -9 -------------------------------
    for cam in (late, stranger, impostor, staller, crasher):
        cam.stop()
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

    status_topics = {r.topic for r in wire.messages if r.suffix.startswith("cameras/")}
    expected = {f"{agent.prefix}/{s}" for s in ("state", "identity", "health")} | status_topics
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
                prefix=agent.prefix, status_topics=status_topics)


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
    undocumented = seen - set(examples())
    assert not undocumented, f"published but not documented: {sorted(undocumented)}"


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
    ex = examples()
    problems = []
    for r in _dock_messages(live) + live.late:
        name = example_name(r.suffix, r.payload)
        documented, published = key_paths(ex[name]), key_paths(r.payload)
        if documented != published:
            problems.append(f"{_where(r)}\n    vs example {name}: missing from the payload "
                            f"{sorted(documented - published)}, not in the example "
                            f"{sorted(published - documented)}")
    assert not problems, "\n".join(problems[:20])


def test_payloads_are_on_their_topics(live: Live) -> None:
    rows = topic_rows()
    for r in _dock_messages(live):
        assert r.topic.startswith(live.prefix + "/"), r.topic
        row = "cameras/{camera_uid}" if r.suffix.startswith("cameras/") else r.suffix
        assert row in rows, _where(r)
        schema = rows[row]["schema"]
        assert schema == f"{r.payload.get('type')}.json", _where(r)
        if r.suffix.startswith("cameras/"):
            assert r.suffix == f"cameras/{r.payload['camera_uid']}", _where(r)


def test_qos_and_retain_as_published_are_as_documented(live: Live) -> None:
    rows = topic_rows()
    for r in _dock_messages(live):
        row = rows["cameras/{camera_uid}" if r.suffix.startswith("cameras/") else r.suffix]
        assert (r.qos, r.retain) == (int(row["qos"]), row["retain"] == "yes"), _where(r)


def test_a_late_subscriber_gets_the_retained_status(live: Live) -> None:
    retained = [r for r in live.late if r.retain]
    topics = {r.topic for r in retained}
    assert topics == {f"{live.prefix}/{s}" for s in ("state", "identity", "health")} | \
        live.status_topics
    for r in retained:
        assert r.suffix.startswith(RETAINED_SUFFIXES), _where(r)
        assert r.qos == 1, _where(r)
    state = next(r for r in retained if r.suffix == "state")
    assert state.payload["state"] == "online"
    # Manifests, events and acks are never retained.
    assert not [r for r in retained if r.suffix in ("manifests", "events", "acks")]


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
    subscriptions = re.findall(rf"Received SUBSCRIBE from {client}\n\d+: \t(\S+) \(QoS (\d)\)",
                               log)
    assert subscriptions == [(f"{live.prefix}/acks", "1")] * 2, subscriptions
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
