"""docs/mqtt.md says what the code does: examples, topics, events and reason codes (static).

What the running agent publishes is checked against the same doc in test_mqtt_live.py.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import re
from pathlib import Path

from agent.manifest import verify_manifest
from agent.offload import IntegrityReason
from agent.publish.outbox import Outbox
from agent.publish.publisher import Publisher
from agent.publish.topics import Topics, encode
from agent.readiness import Reason
from firmware_protocol.signing import load_public_key

from .mqtt_doc import PAYLOAD_TYPES, ROOT, SCHEMAS, doc_text, examples, topic_rows

AGENT = ROOT / "agent"
HERE = Path(__file__).resolve().parent
PREFIX = "bwc/zhanhe-legal/zhanhe-dock-01"
#: docs/manifest.md's example camera (tests/agent/test_manifest.py uses the same seed).
CAMERA_KEY_SEED = b"docs camera"


def test_every_payload_type_has_an_example() -> None:
    ex = examples()
    assert ex, "no examples found in docs/mqtt.md"
    assert {payload["type"] for payload in ex.values()} == set(PAYLOAD_TYPES)
    for name, payload in ex.items():
        assert name == payload["type"] or name.startswith(f"{payload['type']}_"), name
        assert payload["schema"] == 1, name


def test_topic_table_matches_the_topics_the_code_uses() -> None:
    topics = Topics(PREFIX)
    uid = bytes.fromhex("c0ffee00000000000000000000000001")
    camera_topic = topics.camera(uid)
    assert camera_topic == f"{PREFIX}/cameras/{uid.hex()}"
    used = {
        "state": topics.state, "identity": topics.identity, "health": topics.health,
        "cameras/{camera_uid}": camera_topic, "manifests": topics.manifests,
        "events": topics.events, "acks": topics.acks,
    }
    rows = topic_rows()
    assert set(rows) == set(used)
    for suffix, topic in used.items():
        if suffix != "cameras/{camera_uid}":
            assert topic == f"{PREFIX}/{suffix}"
    for suffix, row in rows.items():
        assert row["qos"] == "1", suffix
        assert (SCHEMAS / row["schema"]).is_file(), row["schema"]
    assert rows["acks"]["direction"] == "console → dock"
    assert "client id `bwc-dock-{dock_id}`" in doc_text()


def test_the_ack_example_acknowledges_what_it_names(tmp_path: Path) -> None:
    """The real outbox and publisher, fed the doc's manifest, events and ack."""
    ex = examples()
    topics = Topics(PREFIX)
    manifest, event = ex["manifest"], ex["event_integrity_failure"]
    other = ex["event_not_ready"]
    assert ex["ack"]["ids"] == [manifest["manifest_id"], event["id"]]
    with Outbox(tmp_path / "outbox") as outbox:
        for kind, topic, item, item_id in (
            ("manifest", topics.manifests, manifest, manifest["manifest_id"]),
            ("event", topics.events, event, event["id"]),
            ("event", topics.events, other, other["id"]),
        ):
            outbox.put(kind, topic, item, item_id)
        publisher = Publisher(outbox, delivery="console-ack", rate_per_s=1000)
        publisher.on_message(topics.acks, encode(ex["ack"]))
        assert [i.item_id for i in outbox.pending(10)] == [other["id"]]
        publisher.on_message(topics.acks, encode(ex["ack"]))  # twice: harmless
        assert outbox.depth == 1


def test_examples_are_encodable_by_the_agent() -> None:
    """Integers, strings, booleans and null only: agent.publish.topics.encode refuses floats."""
    for name, payload in examples().items():
        assert json.loads(encode(payload)) == payload, name


def test_manifest_example_verifies_with_the_identity_example_key() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ex = examples()
    camera_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(CAMERA_KEY_SEED).digest())
    dock_key = load_public_key(base64.b64decode(ex["identity"]["public_key"]))
    verify_manifest(ex["manifest"], dock_key, camera_key.public_key())


def test_manifest_example_is_the_one_in_manifest_md() -> None:
    text = (ROOT / "docs" / "manifest.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    documented = [b for b in blocks if isinstance(b, dict) and b.get("type") == "manifest"]
    assert examples()["manifest"] in documented, (
        "docs/mqtt.md promises the manifest example of docs/manifest.md")


def _emitted_events() -> set[str]:
    """Every literal event name passed to ``….event(...)`` anywhere under agent/."""
    names: set[str] = set()
    for path in AGENT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "event" and node.args):
                first = node.args[0]
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{path}:{node.lineno}: event name is not a literal")
                names.add(first.value)
    return names


def test_every_event_the_code_emits_is_documented() -> None:
    emitted = _emitted_events()
    # The scan works: these are emitted from agent/session.py and agent/daemon.py.
    assert {"integrity_failure", "session_crashed", "late_offload"} <= emitted
    text = doc_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \| ", text.split("### `events`")[1], re.M))
    assert documented == emitted
    schema = json.loads((SCHEMAS / "event.json").read_text(encoding="utf-8"))
    assert set(schema["properties"]["event"]["enum"]) == emitted
    with_details = {rule["if"]["properties"]["event"].get("const") for rule in schema["allOf"]}
    with_details |= {name for rule in schema["allOf"]
                     for name in rule["if"]["properties"]["event"].get("enum", [])}
    assert with_details - {None} == emitted, "event.json checks details for every event"
    ex = examples()
    event_examples = {name for name, p in ex.items() if p["type"] == "event"}
    assert event_examples == {f"event_{name}" for name in emitted}
    for name in emitted:
        assert ex[f"event_{name}"]["event"] == name


def test_reason_codes_are_documented_in_order() -> None:
    text = doc_text()
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


def test_docs_tests_mock_nothing() -> None:
    """House rule: no mocks of the project's own code. These tests only read and run it."""
    banned = ("unittest.mock", "mock.patch", "monkeypatch", "MagicMock")
    for path in sorted(HERE.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name == Path(__file__).name:
            text = text.split("def test_docs_tests_mock_nothing", 1)[0]
        for word in banned:
            assert word not in text, f"{path.name} uses {word}"
