"""docs/mqtt.md says what the code does: examples, topics, QoS/retain, events and reason codes."""

from __future__ import annotations

import base64
import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.manifest import verify_manifest
from agent.offload import IntegrityReason
from agent.publish import mqtt
from agent.publish.outbox import Outbox
from agent.publish.publisher import Publisher
from agent.publish.topics import Topics, encode
from agent.readiness import Reason
from firmware_protocol.signing import load_public_key

from .mqtt_examples import (
    BLOCK,
    CAMERA_KEY,
    CAMERA_UID,
    DOC,
    PREFIX,
    ROOT,
    SCHEMAS,
    examples,
    generated,
    render,
)

AGENT = ROOT / "agent"
TOPIC_ROW = re.compile(r"^\| `(?P<topic>[^`]+)` \| (?P<direction>[^|]+?) \| (?P<qos>\d) \| "
                       r"(?P<retain>yes|no) \| [^|]+ \| \[(?P<schema>[a-z_]+\.json)\]",
                       re.M)


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def topic_rows() -> dict[str, dict[str, str]]:
    rows = {m["topic"]: m.groupdict() for m in TOPIC_ROW.finditer(doc())}
    assert rows, "no topic table found in docs/mqtt.md"
    return rows


def test_every_example_in_the_doc_matches_the_code() -> None:
    text = doc()
    found = [match["name"] for match in BLOCK.finditer(text)]
    assert sorted(found) == sorted(examples()), "doc and generator list different examples"
    assert len(found) == len(set(found)), "an example appears twice"
    assert render(text) == text, "run: python -m tests.docs.mqtt_examples --write"


def test_topic_table_matches_the_topics_the_code_uses() -> None:
    topics = Topics(PREFIX)
    _, observed = generated()
    camera_topic = topics.camera(CAMERA_UID)
    assert camera_topic == f"{PREFIX}/cameras/{CAMERA_UID.hex()}"
    used = {
        "state": topics.state, "identity": topics.identity, "health": topics.health,
        "cameras/{camera_uid}": camera_topic, "manifests": topics.manifests,
        "events": topics.events, "acks": topics.acks,
    }
    assert set(topic_rows()) == set(used)
    for suffix, topic in used.items():
        if suffix != "cameras/{camera_uid}":
            assert topic == f"{PREFIX}/{suffix}"
    # What the scripted docking actually published where.
    assert set(observed["retained_topics"]) >= {topics.health, camera_topic}
    kinds = {kind: topic for kind, topic in observed["items"]}
    assert kinds == {"manifest": topics.manifests, "event": topics.events}


def test_birth_will_and_subscription_are_as_documented() -> None:
    _, observed = generated()
    topics: Topics = observed["topics"]
    rows = topic_rows()
    will = observed["will"]
    assert (will.topic, will.qos, will.retain) == (topics.state, 1, True)
    assert [b.topic for b in observed["birth"]] == [topics.state, topics.identity]
    for birth in observed["birth"]:
        suffix = birth.topic.removeprefix(PREFIX + "/")
        assert (str(birth.qos), "yes") == (rows[suffix]["qos"], rows[suffix]["retain"])
    assert observed["subscriptions"] == [topics.acks]
    assert rows["acks"]["direction"] == "console → dock"
    assert str(mqtt._SUBSCRIPTION_QOS) == rows["acks"]["qos"]
    assert observed["client_id"] == "bwc-dock-zhanhe-dock-01"
    assert "client id `bwc-dock-{dock_id}`" in doc()


class _Link:
    """Enough of MqttLink for the publisher: always connected, every publish acknowledged."""

    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []
        self.event = threading.Event()

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> Any:
        self.sent.append((topic, payload, qos, retain))
        self.event.set()
        return SimpleNamespace(ok=True, reason="Success")


def _drive(publisher: Publisher, link: _Link, count: int) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=publisher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if len(link.sent) >= count:
                break
            link.event.wait(0.05)
            link.event.clear()
    finally:
        stop.set()
        thread.join(2)


def test_publisher_qos_and_retain_are_as_documented(tmp_path: Path) -> None:
    payloads, _ = generated()
    topics = Topics(PREFIX)
    camera_topic = topics.camera(CAMERA_UID)
    with Outbox(tmp_path / "outbox") as outbox:
        publisher = Publisher(outbox, delivery="console-ack", rate_per_s=1000)
        link = _Link()
        publisher.attach(link)  # type: ignore[arg-type]
        publisher.set_retained(topics.health, payloads["health"])
        publisher.set_retained(camera_topic, payloads["camera_status"])
        manifest, event = payloads["manifest"], payloads["event_integrity_failure"]
        outbox.put("manifest", topics.manifests, manifest, manifest["manifest_id"])
        outbox.put("event", topics.events, event, event["id"])
        _drive(publisher, link, 4)
        sent = {topic: (qos, retain) for topic, _, qos, retain in link.sent}
        assert outbox.depth == 2, "console-ack: PUBACK alone does not deliver"
    rows = topic_rows()
    for suffix, topic in (("health", topics.health), ("cameras/{camera_uid}", camera_topic),
                          ("manifests", topics.manifests), ("events", topics.events)):
        qos, retain = sent[topic]
        assert (str(qos), "yes" if retain else "no") == (rows[suffix]["qos"],
                                                         rows[suffix]["retain"]), suffix


def test_the_ack_example_acknowledges_what_it_names(tmp_path: Path) -> None:
    payloads, _ = generated()
    topics = Topics(PREFIX)
    manifest, event = payloads["manifest"], payloads["event_integrity_failure"]
    other = payloads["event_not_ready"]
    with Outbox(tmp_path / "outbox") as outbox:
        for kind, topic, item, item_id in (
            ("manifest", topics.manifests, manifest, manifest["manifest_id"]),
            ("event", topics.events, event, event["id"]),
            ("event", topics.events, other, other["id"]),
        ):
            outbox.put(kind, topic, item, item_id)
        publisher = Publisher(outbox, delivery="console-ack", rate_per_s=1000)
        publisher.on_message(topics.acks, encode(payloads["ack"]))
        assert [i.item_id for i in outbox.pending(10)] == [other["id"]]
        publisher.on_message(topics.acks, encode(payloads["ack"]))  # twice: harmless
        assert outbox.depth == 1


def test_manifest_example_verifies_with_the_identity_example_key() -> None:
    payloads, _ = generated()
    dock_key = load_public_key(base64.b64decode(payloads["identity"]["public_key"]))
    verify_manifest(payloads["manifest"], dock_key, CAMERA_KEY.public_key())


def test_manifest_example_is_the_one_in_manifest_md() -> None:
    payloads, _ = generated()
    text = (ROOT / "docs" / "manifest.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    documented = [b for b in blocks if isinstance(b, dict) and b.get("type") == "manifest"]
    assert payloads["manifest"] in documented, (
        "docs/mqtt.md promises the manifest example of docs/manifest.md: keep the inputs of "
        "tests/docs/mqtt_examples.py and tests/agent/test_manifest.py DOC_EXAMPLE in step")


def _emitted_events() -> set[str]:
    names: set[str] = set()
    for path in AGENT.rglob("*.py"):
        names.update(re.findall(r"\.event\(\s*\"([a-z_]+)\"", path.read_text(encoding="utf-8")))
    return names


def test_every_event_the_code_emits_is_documented() -> None:
    emitted = _emitted_events()
    assert "integrity_failure" in emitted and "session_crashed" in emitted  # the grep works
    text = doc()
    documented = set(re.findall(r"^\| `([a-z_]+)` \| ", text.split("### `events`")[1], re.M))
    assert documented == emitted
    schema = json.loads((SCHEMAS / "event.json").read_text(encoding="utf-8"))
    assert set(schema["properties"]["event"]["enum"]) == emitted
    assert {f"event_{name}" for name in emitted} <= set(examples())


def test_reason_codes_are_documented_in_order() -> None:
    text = doc()
    codes = [str(r) for r in Reason]
    rows = re.findall(r"^\| `([a-z_]+)` \| ", text.split("#### Readiness reasons")[1], re.M)
    assert rows[:len(codes)] == codes
    camera = json.loads((SCHEMAS / "camera_status.json").read_text(encoding="utf-8"))
    assert camera["properties"]["reasons"]["items"]["enum"] == codes
    event = json.loads((SCHEMAS / "event.json").read_text(encoding="utf-8"))
    assert event["$defs"]["not_ready"]["properties"]["reasons"]["items"]["enum"] == codes
    integrity = [str(r) for r in IntegrityReason]
    assert event["$defs"]["integrity_failure"]["properties"]["reason"]["enum"] == integrity
    for reason in integrity:
        assert f"`{reason}`" in text
