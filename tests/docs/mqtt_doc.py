"""docs/mqtt.md and docs/schemas/ as data: the hand-maintained examples, their schemas, shapes.

The examples in docs/mqtt.md are written by hand. Nothing here produces a payload: the static
tests (test_mqtt_doc.py, test_schemas.py) check the examples against the schemas and the code's
names, and test_mqtt_live.py checks what the real agent publishes against both.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

__all__ = [
    "BLOCK",
    "COMPLIANCE_DOC",
    "DOC",
    "PAYLOAD_TYPES",
    "RECORD_COMMON",
    "ROOT",
    "SCHEMAS",
    "TOPIC_ROW",
    "doc_text",
    "errors",
    "example_name",
    "examples",
    "key_paths",
    "record_fields",
    "schema_of",
    "shape_problem",
    "topic_row",
    "topic_rows",
    "validator",
]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "mqtt.md"
COMPLIANCE_DOC = ROOT / "docs" / "compliance.md"
SCHEMAS = ROOT / "docs" / "schemas"
BLOCK = re.compile(r"<!-- example: (?P<name>[a-z_]+) -->\n```json\n(?P<body>.*?)```\n", re.S)
TOPIC_ROW = re.compile(r"^\| `(?P<topic>[^`]+)` \| (?P<direction>[^|]+?) \| (?P<qos>\d) \| "
                       r"(?P<retain>yes|no) \| [^|]+ \| \[(?P<schema>[a-z_]+\.json)\]",
                       re.M)
PAYLOAD_TYPES = ("state", "identity", "health", "camera_status", "manifest", "event", "ack",
                 "ledger", "audit_head", "command", "cmd_result")
#: What every compliance record carries besides its type's fields (docs/compliance.md).
RECORD_COMMON = frozenset({"type", "at", "seq", "prev"})


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


@cache
def _examples() -> tuple[tuple[str, str], ...]:
    return tuple((m["name"], m["body"]) for m in BLOCK.finditer(doc_text()))


def examples() -> dict[str, dict[str, Any]]:
    """Example name -> payload, as shown in docs/mqtt.md (a fresh copy on every call)."""
    found = _examples()
    names = [name for name, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"docs/mqtt.md: examples named twice: {duplicates}"
    out: dict[str, dict[str, Any]] = {}
    for name, body in found:
        try:
            out[name] = json.loads(body)
        except ValueError as exc:
            raise AssertionError(f"docs/mqtt.md: example {name} is not JSON: {exc}") from None
    return out


def schema_of(payload: dict[str, Any]) -> str:
    """The schema file of a payload: docs/schemas/<type>.json."""
    return f"{payload['type']}.json"


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(payload: dict[str, Any]) -> list[str]:
    """Schema violations of a payload (validated against the schema its ``type`` names)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator(schema_of(payload)).iter_errors(payload)]


def key_paths(node: Any, path: str = "") -> set[str]:
    """Every key of a payload as a dotted path, nested objects included; the objects inside a
    list share the path ``list[]`` (``chunks[].sha256``, ``details.slot``)."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else key
            out.add(sub)
            out |= key_paths(value, sub)
    elif isinstance(node, list):
        for item in node:
            out |= key_paths(item, f"{path}[]")
    return out


def example_name(suffix: str, payload: dict[str, Any]) -> str:
    """Which documented example a payload published on ``prefix/suffix`` corresponds to."""
    kind = payload.get("type")
    if suffix == "state":
        return f"state_{payload.get('state')}"
    if suffix.startswith("cameras/"):
        # A camera with a readiness verdict carries every field; one refused, or that failed
        # before its status was read, only the envelope, docked and slot.
        return "camera_status" if "ready" in payload else "camera_status_refused"
    if suffix == "events":
        return f"event_{payload.get('event')}"
    if suffix == "ledger":
        entry = payload.get("entry")
        return f"ledger_{entry.get('type') if isinstance(entry, dict) else None}"
    if suffix.startswith("cmd/"):
        return f"command_{payload.get('command')}"
    if suffix == "cmd_result":
        return "cmd_result" if payload.get("ok") else "cmd_result_refused"
    return str(kind)


@cache
def _record_fields() -> tuple[tuple[str, frozenset[str]], ...]:
    section = COMPLIANCE_DOC.read_text(encoding="utf-8").split("## Record types")[1]
    section = section.split("\n## ")[0]
    out = []
    for types, fields in re.findall(r"^\| (`[^|]+`) \| [^|]+ \| ([^\n]+) \|$", section, re.M):
        while True:  # drop the parenthesised remarks: they quote values, not fields
            shorter = re.sub(r"\([^()]*\)", "", fields)
            if shorter == fields:
                break
            fields = shorter
        names = frozenset(re.findall(r"`([a-z0-9_]+)`", fields))
        out += [(name, names) for name in re.findall(r"`([a-z_]+)`", types) if name != "type"]
    return tuple(out)


def record_fields() -> dict[str, frozenset[str]]:
    """docs/compliance.md's record table: record type -> its fields (without RECORD_COMMON)."""
    found = _record_fields()
    assert found, "no record table found in docs/compliance.md"
    return dict(found)


def shape_problem(suffix: str, payload: dict[str, Any]) -> str | None:
    """None when a payload published on ``prefix/suffix`` has exactly the documented key paths:
    its example's, or — a ledger record of a type without an example — the ledger examples'
    envelope and, in ``entry``, the fields docs/compliance.md lists for the type (what is nested
    inside those is the schema's to check). Otherwise what is wrong."""
    ex = examples()
    name = example_name(suffix, payload)
    published = key_paths(payload)
    if name in ex:
        documented = key_paths(ex[name])
        what = f"example {name}"
    elif suffix == "ledger" and name.removeprefix("ledger_") in record_fields():
        kind = name.removeprefix("ledger_")
        documented = {p for n, e in ex.items() if n.startswith("ledger_") for p in key_paths(e)
                      if not p.startswith("entry.")}
        documented |= {f"entry.{f}" for f in RECORD_COMMON | record_fields()[kind]}
        published = {p for p in published
                     if not p.startswith("entry.") or not re.search(r"[.\[]", p[6:])}
        what = f"compliance.md's {kind} record"
    else:
        return f"no example {name} and no record type {name.removeprefix('ledger_')!r}"
    if documented == published:
        return None
    return (f"vs {what}: missing from the payload {sorted(documented - published)}, not "
            f"documented {sorted(published - documented)}")


def topic_row(suffix: str) -> str:
    """The topic table's row for a topic suffix (``cameras/<uid>``, ``cmd/<name>``)."""
    if suffix.startswith("cameras/"):
        return "cameras/{camera_uid}"
    if suffix.startswith("cmd/"):
        return "cmd/{name}"
    return suffix


def topic_rows() -> dict[str, dict[str, str]]:
    """The topic table: topic suffix -> direction, qos, retain, schema."""
    rows = {m["topic"]: m.groupdict() for m in TOPIC_ROW.finditer(doc_text())}
    assert rows, "no topic table found in docs/mqtt.md"
    return rows
