"""MQTT topic names and payload builders: every payload is JSON with ``type`` and ``schema``.

Documented in docs/mqtt.md with JSON Schemas under docs/schemas/.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEMA", "Topics", "encode", "event_payload", "iso_ms", "iso_now"]

SCHEMA = 1


def iso_ms(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms % 1000:03d}Z"


def iso_now() -> str:
    return iso_ms(time.time_ns() // 1_000_000)


def encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; floats are refused so that every consumer parses the same numbers."""
    _refuse_floats(payload)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def _refuse_floats(value: object) -> None:
    if isinstance(value, float):
        raise ValueError("payloads carry ints and strings only, never floats")
    if isinstance(value, dict):
        for v in value.values():
            _refuse_floats(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _refuse_floats(v)


@dataclass(frozen=True)
class Topics:
    prefix: str  # bwc/{unit}/{dock_id}

    @property
    def state(self) -> str:
        return f"{self.prefix}/state"

    @property
    def identity(self) -> str:
        return f"{self.prefix}/identity"

    @property
    def health(self) -> str:
        return f"{self.prefix}/health"

    @property
    def manifests(self) -> str:
        return f"{self.prefix}/manifests"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    @property
    def acks(self) -> str:
        return f"{self.prefix}/acks"

    @property
    def ledger(self) -> str:
        return f"{self.prefix}/ledger"

    @property
    def audit_head(self) -> str:
        return f"{self.prefix}/audit_head"

    @property
    def commands(self) -> str:
        """Subscription filter for console commands (``…/cmd/{name}``)."""
        return f"{self.prefix}/cmd/+"

    def is_command(self, topic: str) -> bool:
        return topic.startswith(f"{self.prefix}/cmd/") and topic.count("/") == (
            self.prefix.count("/") + 2)

    @property
    def cmd_result(self) -> str:
        return f"{self.prefix}/cmd_result"

    def camera(self, camera_uid: bytes) -> str:
        return f"{self.prefix}/cameras/{camera_uid.hex()}"


def event_payload(name: str, camera_uid: bytes | None, details: dict[str, Any],
                  *, dock_id: str) -> dict[str, Any]:
    """A new event with a fresh id; the id is stable from here on because the outbox keeps it."""
    return {
        "type": "event", "schema": SCHEMA, "id": uuid.uuid4().hex, "event": name,
        "dock_id": dock_id, "camera_uid": camera_uid.hex() if camera_uid else None,
        "at": iso_now(), "details": details,
    }
