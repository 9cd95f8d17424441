"""Wire-format helpers shared by every console command: canonical JSON, times, base64, topics.

All of it follows the documents, not the agent: ``docs/mqtt.md`` (topics, times, base64, hex),
``docs/manifest.md`` (what the dock signs in a manifest) and ``docs/compliance.md`` (what is
signed in audit heads and console commands).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "NAME",
    "SCHEMA",
    "Topic",
    "WireError",
    "b64decode_strict",
    "b64encode",
    "canonical_ascii",
    "canonical_utf8",
    "format_ms",
    "is_hex",
    "iso_now",
    "now_ms",
    "parse_ms",
    "parse_topic",
]

SCHEMA = 1
#: A dock id or unit as the schemas allow it (``docs/schemas/*.json``, ``$defs/name``).
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WireError(ValueError):
    """A value is not in the form the documents prescribe."""


def canonical_ascii(obj: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII with ``\\u`` escapes: what audit heads and console
    commands are signed over (docs/compliance.md)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def canonical_utf8(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: what a manifest's dock signature covers
    (docs/manifest.md)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """Unix milliseconds → ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), without floats."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
            f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z")


def iso_now() -> str:
    return format_ms(now_ms())


def parse_ms(text: object) -> int:
    """The inverse of :func:`format_ms`; only that exact form is accepted."""
    m = _ISO.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise WireError(f"{text!r} is not a time of the form YYYY-MM-DDTHH:MM:SS.mmmZ")
    try:
        y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
        dt = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except ValueError as exc:
        raise WireError(f"{text!r}: {exc}") from None
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + int(m[7])


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: object, size: int | None = None) -> bytes:
    """Standard base64 with padding, in its one canonical spelling; optionally of ``size`` bytes."""
    if not isinstance(text, str):
        raise WireError("not a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"not standard base64: {text[:40]!r}") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise WireError(f"not canonical base64: {text[:40]!r}")
    if size is not None and len(data) != size:
        raise WireError(f"base64 of {len(data)} bytes, expected {size}")
    return data


def is_hex(value: object, digits: int) -> bool:
    """Lower-case hex of exactly ``digits`` digits."""
    return (isinstance(value, str) and len(value) == digits
            and all(c in "0123456789abcdef" for c in value))


@dataclass(frozen=True, slots=True)
class Topic:
    """``bwc/{unit}/{dock_id}/{kind}[/{rest}]`` (docs/mqtt.md, "Topics")."""

    unit: str
    dock_id: str
    kind: str
    rest: str | None = None

    @property
    def prefix(self) -> str:
        return f"bwc/{self.unit}/{self.dock_id}"


def parse_topic(topic: str) -> Topic | None:
    """The parts of a dock topic, or None when it is not one (or names no valid unit/dock)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != "bwc":
        return None
    unit, dock_id = parts[1], parts[2]
    if not NAME.fullmatch(unit) or not NAME.fullmatch(dock_id):
        return None
    return Topic(unit, dock_id, parts[3], parts[4] if len(parts) == 5 else None)
