"""docs/schemas/: valid draft 2020-12 schemas that accept the doc's examples, and not more."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from .mqtt_doc import PAYLOAD_TYPES, SCHEMAS, doc_text, errors, examples, schema_of, validator


def test_one_schema_per_payload_type_each_referenced_from_the_doc() -> None:
    files = sorted(p.name for p in SCHEMAS.glob("*.json"))
    assert files == sorted(f"{t}.json" for t in PAYLOAD_TYPES)
    text = doc_text()
    used = {schema_of(payload) for payload in examples().values()}
    for name in files:
        assert f"(schemas/{name})" in text, f"docs/mqtt.md does not link schemas/{name}"
        assert name in used, f"no example in docs/mqtt.md is a {name} payload"
        schema = validator(name).schema
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False
        assert schema["properties"]["type"] == {"const": name.removesuffix(".json")}
        assert schema["properties"]["schema"] == {"const": 1}


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_no_schema_allows_floats() -> None:
    for path in SCHEMAS.glob("*.json"):
        for node in _walk(json.loads(path.read_text(encoding="utf-8"))):
            if isinstance(node, dict) and "type" in node:
                kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
                assert "number" not in kinds, f"{path.name}: payloads carry no floats"


@pytest.mark.parametrize("example", sorted(examples()))
def test_doc_example_is_valid(example: str) -> None:
    assert errors(examples()[example]) == []


def _changed(example: str, path: tuple[str | int, ...], value: Any) -> Any:
    payload = copy.deepcopy(examples()[example])
    node = payload
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return payload


_DELETE = object()


@pytest.mark.parametrize(("example", "path", "value"), [
    ("state_online", ("state",), "maybe"),
    ("identity", ("public_key",), "not base64"),
    ("identity", ("extra",), 1),
    ("health", ("outbox_depth",), 1.5),
    ("health", ("load_milli",), [1, 2]),
    ("health", ("at",), "2024-05-01T11:02:17Z"),
    ("camera_status", ("reasons",), ["battery_low", "tired"]),
    ("camera_status", ("battery_pct",), _DELETE),  # readiness fields come together
    ("camera_status", ("offload", "bytes_stored"), _DELETE),
    ("camera_status_refused", ("docked",), _DELETE),
    ("manifest", ("signature",), _DELETE),
    ("manifest", ("size",), 14.5),
    ("manifest", ("chunks", 0, "prev"), "00"),
    ("event_not_ready", ("details", "slot"), _DELETE),
    ("event_not_ready", ("details", "reasons"), []),
    ("event_integrity_failure", ("details", "reason"), "bad"),
    ("event_integrity_failure", ("details", "slot"), _DELETE),
    ("event_late_offload", ("details", "offload_delay_s"), 86400),
    ("event_late_offload", ("details", "manifest_id"), _DELETE),
    ("event_unknown_device", ("details", "extra"), "x"),
    ("event_enrolled", ("details", "by"), "cli"),
    ("event_session_crashed", ("camera_uid",), "c0ffee00000000000000000000000001"),
    ("event_protocol_error", ("event",), "late_offload"),
    ("ack", ("ids",), [1]),
    ("event_gap", ("camera_uid",), None),
    ("event_gap", ("details", "status"), "closed"),
    ("event_gap", ("details", "evidence"), []),  # the ledger's gap record has it, not the event
    ("event_purged", ("details", "request_id"), _DELETE),
    ("event_overdue_camera", ("details", "limit_s"), 86400.5),
    ("ledger_hand_in", ("entry", "slot"), _DELETE),
    ("ledger_hand_in", ("entry", "ready"), True),  # a hand_out field
    ("ledger_hand_in", ("entry", "type"), "hand_over"),
    ("ledger_recording", ("entry", "prev"), "00"),
    ("ledger_recording", ("entry", "seq"), 0),
    ("ledger_recording", ("id",), "zhanhe-dock-01"),
    ("audit_head", ("signature",), _DELETE),
    ("audit_head", ("seq",), -1),
    ("command_purge", ("signature",), _DELETE),  # key_id and signature go together
    ("command_assign", ("args", "extra"), 1),
    ("command_assign", ("command",), "promote"),
    ("command_assign", ("nonce",), "6F1D0C9B8A7E4D3C2B1A09F8E7D6C5B4"),
    ("cmd_result", ("error",), "unsigned"),  # ok with an error
    ("cmd_result_refused", ("error",), None),  # refused without one
    ("cmd_result_refused", ("error",), "replayed"),  # never published
])
def test_schema_rejects(example: str, path: tuple[str | int, ...], value: Any) -> None:
    assert errors(_changed(example, path, value)), (example, path)


def test_commands_that_must_be_signed_are_refused_unsigned() -> None:
    unsigned = copy.deepcopy(examples()["command_purge"])
    del unsigned["key_id"], unsigned["signature"]
    assert errors(unsigned)
    unsigned_assign = examples()["command_assign"]
    assert "signature" not in unsigned_assign and errors(unsigned_assign) == []
