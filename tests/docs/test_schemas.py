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
])
def test_schema_rejects(example: str, path: tuple[str | int, ...], value: Any) -> None:
    assert errors(_changed(example, path, value)), (example, path)
