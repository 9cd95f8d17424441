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

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.audit import verify_head
from agent.compliance.command_errors import ErrorCode
from agent.compliance.commands import (
    COMMANDS,
    SIGNATURE_REQUIRED,
    CommandAuthenticator,
    CommandRefused,
    NonceStore,
    encode_command,
    sign_command,
)
from agent.compliance.records import RECORD_TYPES
from agent.compliance.service import add_months
from agent.manifest import parse_timestamp, verify_manifest
from agent.offload import IntegrityReason
from agent.publish.outbox import Outbox
from agent.publish.publisher import Publisher
from agent.publish.topics import Topics, encode, iso_ms
from agent.readiness import Reason
from agent.store.durable import canonical_json_bytes
from firmware_protocol.signing import load_public_key

from .mqtt_doc import (
    COMPLIANCE_DOC,
    PAYLOAD_TYPES,
    RECORD_COMMON,
    ROOT,
    SCHEMAS,
    doc_text,
    errors,
    examples,
    record_fields,
    topic_rows,
    validator,
)

AGENT = ROOT / "agent"
HERE = Path(__file__).resolve().parent
PREFIX = "bwc/zhanhe-legal/zhanhe-dock-01"
#: docs/manifest.md's example camera (tests/agent/test_manifest.py uses the same seed).
CAMERA_KEY_SEED = b"docs camera"
#: The console key that signed the command_purge example (Ed25519 seed: its SHA-256).
CONSOLE_KEY_SEED = b"docs console"


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
    assert topics.commands == f"{PREFIX}/cmd/+"  # the subscription for cmd/{name}
    assert topics.is_command(f"{PREFIX}/cmd/assign")
    assert not topics.is_command(f"{PREFIX}/cmd_result")
    assert not topics.is_command(f"{PREFIX}/cmd/assign/x")
    used = {
        "state": topics.state, "identity": topics.identity, "health": topics.health,
        "cameras/{camera_uid}": camera_topic, "manifests": topics.manifests,
        "events": topics.events, "acks": topics.acks, "ledger": topics.ledger,
        "audit_head": topics.audit_head, "cmd/{name}": f"{PREFIX}/cmd/{{name}}",
        "cmd_result": topics.cmd_result,
    }
    rows = topic_rows()
    assert set(rows) == set(used)
    for suffix, topic in used.items():
        if suffix != "cameras/{camera_uid}":
            assert topic == f"{PREFIX}/{suffix}"
    for suffix, row in rows.items():
        assert row["qos"] == "1", suffix
        assert (SCHEMAS / row["schema"]).is_file(), row["schema"]
        inbound = suffix in ("acks", "cmd/{name}")
        assert row["direction"] == ("console → dock" if inbound else "dock → console"), suffix
    retained = {s for s, row in rows.items() if row["retain"] == "yes"}
    assert retained == {"state", "identity", "health", "cameras/{camera_uid}", "audit_head"}
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
    section = doc_text().split("### `events`")[1].split("\n### ")[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \| ", section, re.M))
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
    section = text.split("#### Readiness reasons")[1].split("\n### ")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ", section, re.M)
    assert rows[:len(codes)] == codes
    camera = json.loads((SCHEMAS / "camera_status.json").read_text(encoding="utf-8"))
    assert camera["properties"]["reasons"]["items"]["enum"] == codes
    event = json.loads((SCHEMAS / "event.json").read_text(encoding="utf-8"))
    assert event["$defs"]["not_ready"]["properties"]["reasons"]["items"]["enum"] == codes
    integrity = [str(r) for r in IntegrityReason]
    assert event["$defs"]["integrity_failure"]["properties"]["reason"]["enum"] == integrity
    for reason in integrity:
        assert f"`{reason}`" in text


# ------------------------------------------------------------------ compliance traffic

def test_ledger_schema_is_compliance_md_record_table() -> None:
    """ledger.json checks each record type for exactly the fields docs/compliance.md lists, and
    both know every type the agent writes."""
    documented = record_fields()
    assert set(documented) == set(RECORD_TYPES)
    schema = validator("ledger.json").schema
    ruled = {rule["if"]["properties"]["entry"]["properties"]["type"]["const"]
             for rule in schema["allOf"]}
    assert ruled == set(RECORD_TYPES)
    assert set(schema["properties"]["entry"]["properties"]["type"]["enum"]) == set(RECORD_TYPES)
    common = schema["$defs"]["record"]
    assert set(common["properties"]) == set(common["required"]) == RECORD_COMMON
    for kind, fields in documented.items():
        rule = schema["$defs"][kind]
        assert rule["allOf"] == [{"$ref": "#/$defs/record"}], kind
        assert set(rule["properties"]) == set(rule["required"]) == fields, kind
        assert rule["unevaluatedProperties"] is False, kind


def test_ledger_examples_are_linked_records_of_the_example_recording() -> None:
    ex = examples()
    hand_in, recording = ex["ledger_hand_in"], ex["ledger_recording"]
    for msg in (hand_in, recording):
        assert msg["id"] == f"{msg['dock_id']}:{msg['entry']['seq']}"
    # The chain: the second record's prev is the hash of the first record's canonical JSON.
    assert recording["entry"]["seq"] == hand_in["entry"]["seq"] + 1
    assert recording["entry"]["prev"] == hashlib.sha256(
        canonical_json_bytes(hand_in["entry"])).hexdigest()
    # The hand-in of the camera_status example, the recording of the manifest example.
    status, manifest, rec = ex["camera_status"], ex["manifest"], recording["entry"]
    assert hand_in["entry"]["handout_id"] == rec["handout_id"]
    for key, value in (("camera_uid", status["camera_uid"]), ("slot", status["slot"]),
                       ("officer_id", status["officer_id"]),
                       ("battery_pct", status["battery_pct"]),
                       ("storage_free_bytes", status["storage_free"]),
                       ("clock_offset_ms", status["clock_offset_before_ms"])):
        assert hand_in["entry"][key] == value, key
    for key in ("recording_id", "manifest_id", "camera_uid", "officer_id", "media",
                "started_at", "ended_at", "size", "sha256", "stored_at", "offload_delay_s"):
        assert rec[key] == manifest[key], key
    started, ended = parse_timestamp(rec["started_at"]), parse_timestamp(rec["ended_at"])
    assert rec["duration_s"] == (ended - started) // 1000
    assert rec["expires_at"] == iso_ms(add_months(started, 120))  # Art. 15's minimum


def test_audit_head_example_is_signed_by_the_identity_example_key() -> None:
    ex = examples()
    dock_key = load_public_key(base64.b64decode(ex["identity"]["public_key"]))
    verify_head(ex["audit_head"], dock_key)
    assert ex["audit_head"]["dock_id"] == ex["identity"]["dock_id"]


def _authenticator(tmp_path: Path, dock_id: str) -> CommandAuthenticator:
    console = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(CONSOLE_KEY_SEED).digest())
    return CommandAuthenticator(dock_id, [console.public_key()], 300,
                                NonceStore(tmp_path / "nonces.json", 600))


def test_command_examples_are_accepted_by_the_dock(tmp_path: Path) -> None:
    """The dock's own authenticator, at each example's issued_at, takes each example as sent
    (its canonical JSON) on its topic."""
    ex = examples()
    auth = _authenticator(tmp_path, ex["identity"]["dock_id"])
    commands = {name: payload for name, payload in ex.items() if payload["type"] == "command"}
    assert set(commands) == {"command_assign", "command_purge"}
    for name, doc in commands.items():
        assert name == f"command_{doc['command']}"
        command = auth.check(f"{PREFIX}/cmd/{doc['command']}", encode_command(doc),
                             parse_timestamp(doc["issued_at"]))
        assert (command.name, command.request_id) == (doc["command"], doc["request_id"])
        assert command.signed == ("signature" in doc), name
    assert "signature" not in commands["command_assign"]  # assign may be unsigned
    assert commands["command_purge"]["command"] in SIGNATURE_REQUIRED


def test_compliance_md_test_vector_is_a_valid_command() -> None:
    text = COMPLIANCE_DOC.read_text(encoding="utf-8")
    vector = re.search(r"^\{\"args\":.*\"type\":\"command\"\}$", text, re.M)
    assert vector is not None, "docs/compliance.md: the test vector"
    assert errors(json.loads(vector.group(0))) == []


def test_command_schema_is_the_dock_command_table() -> None:
    schema = validator("command.json").schema
    assert schema["properties"]["command"]["enum"] == list(COMMANDS)
    rules = {rule["if"]["properties"]["command"]["const"]: rule["then"]
             for rule in schema["allOf"]}
    assert set(rules) == set(COMMANDS)
    for name, spec in COMMANDS.items():
        assert rules[name]["properties"]["args"] == {"$ref": f"#/$defs/{name}"}
        args = schema["$defs"][name]
        assert list(args["properties"]) == [f.name for f in spec.fields], name
        assert args["required"] == [f.name for f in spec.fields if f.required], name
        assert args["additionalProperties"] is False
        signed = rules[name].get("required") == ["key_id", "signature"]
        assert signed == spec.signature_required == (name in SIGNATURE_REQUIRED), name


def test_cmd_result_examples_answer_their_commands(tmp_path: Path) -> None:
    ex = examples()
    done, refused, purge = ex["cmd_result"], ex["cmd_result_refused"], ex["command_purge"]
    for result in (done, refused):
        assert result["id"] == f"cmd_result:{result['request_id']}"
        assert result["dock_id"] == ex["identity"]["dock_id"]
    assert (done["request_id"], done["command"]) == (purge["request_id"], purge["command"])
    assert (done["ok"], done["error"], done["reason"]) == (True, None, "done")
    assert parse_timestamp(done["at"]) >= parse_timestamp(purge["issued_at"])
    # The refusal is the dock's own words for an unsigned hold.
    hold = sign_command(None, command="hold", dock_id=refused["dock_id"],
                        request_id=refused["request_id"], issued_at_ms=0,
                        args={"recording_ids": [purge["args"]["recording_ids"][0]],
                              "reason": "dispute", "text": "complaint 2024-114"})
    auth = _authenticator(tmp_path, refused["dock_id"])
    with pytest.raises(CommandRefused) as refusal:
        auth.check(f"{PREFIX}/cmd/hold", encode_command(hold), 0)
    assert (refused["ok"], refused["command"]) == (False, "hold")
    assert (refused["error"], refused["reason"]) == (refusal.value.code, refusal.value.reason)
    # Every error code a published result can carry (a replayed copy gets none).
    schema = validator("cmd_result.json").schema
    assert set(schema["properties"]["error"]["enum"]) == (
        {str(c) for c in ErrorCode} - {"replayed"}) | {None}


def test_purged_event_example_is_the_purge_command_example_carried_out() -> None:
    ex = examples()
    details, purge = ex["event_purged"]["details"], ex["command_purge"]
    record = ex["ledger_recording"]["entry"]
    assert purge["args"]["recording_ids"] == [details["recording_id"]]
    assert (details["admin_id"], details["reason"], details["request_id"]) == (
        purge["args"]["admin_id"], purge["args"]["reason"], purge["request_id"])
    for key in ("recording_id", "manifest_id", "sha256"):
        assert details[key] == record[key], key
    assert ex["event_purged"]["camera_uid"] == record["camera_uid"]
    # Art. 15: only an expired recording can be purged.
    assert record["expires_at"] < purge["issued_at"] <= ex["event_purged"]["at"]


def test_compliance_event_examples_fit_their_ledger_records() -> None:
    ex = examples()
    gap = ex["event_gap"]["details"]
    assert gap["handout_id"] == ex["ledger_hand_in"]["entry"]["handout_id"]
    assert gap["duration_s"] == (parse_timestamp(gap["to"]) - parse_timestamp(gap["from"])) // 1000
    assert set(gap) < record_fields()["gap"]
    overdue = ex["event_overdue_camera"]
    assert set(overdue["details"]) < record_fields()["overdue_camera"]
    away_ms = parse_timestamp(overdue["at"]) - parse_timestamp(overdue["details"]["out_since"])
    assert away_ms > overdue["details"]["limit_s"] * 1000


def test_docs_tests_mock_nothing() -> None:
    """House rule: no mocks of the project's own code. These tests only read and run it."""
    banned = ("unittest.mock", "mock.patch", "monkeypatch", "MagicMock")
    for path in sorted(HERE.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name == Path(__file__).name:
            text = text.split("def test_docs_tests_mock_nothing", 1)[0]
        for word in banned:
            assert word not in text, f"{path.name} uses {word}"
