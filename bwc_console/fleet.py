"""The fleet as the retained topics describe it: docks (state, identity, health, audit head) and
cameras (their latest status). Pure: :meth:`Fleet.apply` takes MQTT messages, :meth:`snapshot`
gives a JSON-ready picture (docs/console.md, "watch").
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from .wire import SCHEMA, iso_now, parse_topic

__all__ = ["WATCH_KINDS", "Fleet", "watch_filters"]

WATCH_KINDS = ("state", "identity", "health", "audit_head", "cameras/+")


def watch_filters(unit: str | None) -> list[str]:
    return [f"bwc/{unit or '+'}/+/{kind}" for kind in WATCH_KINDS]


@dataclass
class _Dock:
    unit: str
    dock_id: str
    state: str | None = None
    identity: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    audit_head: dict[str, Any] | None = None
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        health = self.health or {}
        return {
            "unit": self.unit, "dock_id": self.dock_id, "state": self.state,
            "online": self.state == "online",
            "agent_version": (self.identity or {}).get("agent_version"),
            "public_key": (self.identity or {}).get("public_key"),
            "health_at": health.get("at"),
            "outbox_depth": health.get("outbox_depth"),
            "oldest_unacked_age_s": health.get("oldest_unacked_age_s"),
            "store_free_bytes": health.get("store_free_bytes"),
            "store_total_bytes": health.get("store_total_bytes"),
            "cameras_docked": health.get("cameras_docked"),
            "cameras_offloading": health.get("cameras_offloading"),
            "audit_seq": (self.audit_head or {}).get("seq"),
            "health": self.health,
        }


class Fleet:
    """Thread-safe: paho's thread applies messages while the display thread takes snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docks: dict[tuple[str, str], _Dock] = {}

    def apply(self, topic_name: str, raw: bytes) -> bool:
        """Take one message; True if it changed the picture."""
        topic = parse_topic(topic_name)
        if topic is None:
            return False
        payload: dict[str, Any] | None = None
        if raw:  # an empty retained payload clears the topic
            try:
                value = json.loads(raw)
            except ValueError:
                return False
            if not isinstance(value, dict):
                return False
            payload = value
        with self._lock:
            dock = self._docks.get((topic.unit, topic.dock_id))
            if dock is None:
                if payload is None:
                    return False
                dock = self._docks[(topic.unit, topic.dock_id)] = _Dock(topic.unit,
                                                                        topic.dock_id)
            if topic.kind == "cameras" and topic.rest is not None:
                if payload is None:
                    return dock.cameras.pop(topic.rest, None) is not None
                dock.cameras[topic.rest] = payload
            elif topic.rest is not None:
                return False
            elif topic.kind == "state":
                dock.state = None if payload is None else str(payload.get("state"))
            elif topic.kind in ("identity", "health", "audit_head"):
                setattr(dock, topic.kind, payload)
            else:
                return False
            return True

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            docks = [self._docks[k] for k in sorted(self._docks)]
            cameras = []
            for d in docks:
                for uid in sorted(d.cameras):
                    status = d.cameras[uid]
                    cameras.append({**status, "unit": d.unit, "dock_id": d.dock_id,
                                    "camera_uid": uid, "stale": d.state != "online"})
            return {"type": "console_snapshot", "schema": SCHEMA, "at": iso_now(),
                    "docks": [d.row() for d in docks], "cameras": cameras}
