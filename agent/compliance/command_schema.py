"""The argument schema of each console command: names, wire forms and typed values.

The table in docs/compliance.md ("Console commands") is the specification; `COMMANDS` is its
machine form (tests keep the two in step). Parsing here is pure: values in, typed values or
`ValueError` out; the authenticator turns errors into ``malformed`` refusals.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "COMMANDS",
    "MAX_ID_CHARS",
    "MAX_RECORDING_IDS",
    "MAX_TEXT_CHARS",
    "SIGNATURE_REQUIRED",
    "ArgField",
    "ArgKind",
    "AssignArgs",
    "CommandArgs",
    "CommandSpec",
    "EnrollArgs",
    "HoldArgs",
    "HoldReason",
    "PurgeArgs",
    "RevokeArgs",
    "UnholdArgs",
    "WorkRecordArgs",
    "canonical_b64",
    "json_type",
    "parse_args",
    "short_repr",
]

MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 4096
MAX_RECORDING_IDS = 1000  # bounded by the payload limit anyway; this makes the bound explicit

_UID = re.compile(r"[0-9a-f]{32}")


class HoldReason(StrEnum):
    """Art. 16's grounds for long-term preservation."""

    DISPUTE = "dispute"
    OBSTRUCTION = "obstruction"
    MAJOR_CASE = "major_case"


# --------------------------------------------------------------------------- typed arguments

@dataclass(frozen=True, slots=True)
class AssignArgs:
    camera_uid: bytes
    officer_id: str | None  # None unassigns the camera


@dataclass(frozen=True, slots=True)
class WorkRecordArgs:
    gap_id: str
    reason: int  # Art. 12 (1)-(4)
    text: str
    approver: str


@dataclass(frozen=True, slots=True)
class HoldArgs:
    recording_ids: tuple[bytes, ...]
    reason: HoldReason
    text: str


@dataclass(frozen=True, slots=True)
class UnholdArgs:
    recording_ids: tuple[bytes, ...]
    text: str


@dataclass(frozen=True, slots=True)
class PurgeArgs:
    recording_ids: tuple[bytes, ...]
    admin_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class EnrollArgs:
    camera_uid: bytes
    public_key: bytes  # raw 32-byte Ed25519 key, already checked to load
    officer_id: str | None  # None keeps the camera's current officer


@dataclass(frozen=True, slots=True)
class RevokeArgs:
    camera_uid: bytes
    reason: str


CommandArgs = (AssignArgs | WorkRecordArgs | HoldArgs | UnholdArgs | PurgeArgs | EnrollArgs
               | RevokeArgs)


class ArgKind(StrEnum):
    """The wire form of an argument value (the value rules table in docs/compliance.md)."""

    UID = "uid"  # 32 lowercase hex digits -> 16 bytes
    RECORDING_IDS = "recording_ids"  # 1-1000 distinct uids -> tuple of 16-byte ids
    ID = "id"  # 1-128 characters, no control characters
    ID_OR_NULL = "id_or_null"
    TEXT = "text"  # 1-4096 characters, no control characters but tab and newline
    ART12_REASON = "art12_reason"  # integer 1-4
    HOLD_REASON = "hold_reason"  # HoldReason
    PUBLIC_KEY = "public_key"  # canonical base64 of a raw 32-byte Ed25519 key -> bytes


@dataclass(frozen=True, slots=True)
class ArgField:
    name: str
    kind: ArgKind
    required: bool = True  # an optional field may be absent; it then takes None


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    args_type: type[CommandArgs]
    fields: tuple[ArgField, ...]
    signature_required: bool


SIGNATURE_REQUIRED = frozenset({"purge", "hold", "unhold", "revoke", "enroll"})

_K = ArgKind
_SPECS = (
    ("assign", AssignArgs, (ArgField("camera_uid", _K.UID),
                            ArgField("officer_id", _K.ID_OR_NULL))),
    ("work_record", WorkRecordArgs, (ArgField("gap_id", _K.ID),
                                     ArgField("reason", _K.ART12_REASON),
                                     ArgField("text", _K.TEXT), ArgField("approver", _K.ID))),
    ("hold", HoldArgs, (ArgField("recording_ids", _K.RECORDING_IDS),
                        ArgField("reason", _K.HOLD_REASON), ArgField("text", _K.TEXT))),
    ("unhold", UnholdArgs, (ArgField("recording_ids", _K.RECORDING_IDS),
                            ArgField("text", _K.TEXT))),
    ("purge", PurgeArgs, (ArgField("recording_ids", _K.RECORDING_IDS),
                          ArgField("admin_id", _K.ID), ArgField("reason", _K.TEXT))),
    ("enroll", EnrollArgs, (ArgField("camera_uid", _K.UID),
                            ArgField("public_key", _K.PUBLIC_KEY),
                            ArgField("officer_id", _K.ID_OR_NULL, required=False))),
    ("revoke", RevokeArgs, (ArgField("camera_uid", _K.UID), ArgField("reason", _K.TEXT))),
)
COMMANDS: Mapping[str, CommandSpec] = {
    name: CommandSpec(name, args_type, fields, name in SIGNATURE_REQUIRED)
    for name, args_type, fields in _SPECS
}
_HOLD_REASONS = {r.value: r for r in HoldReason}


# --------------------------------------------------------------------------- value parsers
# Each raises ValueError with a message naming the problem; the caller adds the field name.

def _check_chars(value: str, *, allow: str) -> None:
    # Control characters and lone surrogates have no place in ids and audit text: they garble
    # logs, CSV and printed reports, and lone surrogates are not valid Unicode at all.
    for c in value:
        o = ord(c)
        if (o < 0x20 and c not in allow) or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF:
            raise ValueError(f"contains the forbidden character U+{o:04X}")


def _bounded_str(value: object, limit: int, allow: str = "") -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {json_type(value)}")
    if not 1 <= len(value) <= limit:
        raise ValueError(f"must have 1-{limit} characters, got {len(value)}")
    _check_chars(value, allow=allow)
    return value


def _uid(value: object) -> bytes:
    if not isinstance(value, str) or not _UID.fullmatch(value):
        raise ValueError(f"must be 32 lowercase hex digits, got {short_repr(value)}")
    return bytes.fromhex(value)


def _recording_ids(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RECORDING_IDS:
        raise ValueError(f"must be a list of 1-{MAX_RECORDING_IDS} recording ids")
    ids = tuple(_uid(v) for v in value)
    if len(set(ids)) != len(ids):
        raise ValueError("lists a recording id twice")
    return ids


def _id_or_null(value: object) -> str | None:
    return None if value is None else _bounded_str(value, MAX_ID_CHARS)


def _art12_reason(value: object) -> int:
    if type(value) is not int or not 1 <= value <= 4:  # bool is an int subclass: refuse it
        raise ValueError(f"must be an integer 1-4 (Art. 12), got {short_repr(value)}")
    return value


def _hold_reason(value: object) -> HoldReason:
    reason = _HOLD_REASONS.get(value) if isinstance(value, str) else None
    if reason is None:
        raise ValueError(f"must be one of {', '.join(HoldReason)}, got {short_repr(value)}")
    return reason


def _public_key(value: object) -> bytes:
    raw = canonical_b64(value, 32)
    Ed25519PublicKey.from_public_bytes(raw)  # raises ValueError if it is not a usable key
    return raw


_PARSERS: Mapping[ArgKind, Callable[[object], object]] = {
    ArgKind.UID: _uid,
    ArgKind.RECORDING_IDS: _recording_ids,
    ArgKind.ID: lambda v: _bounded_str(v, MAX_ID_CHARS),
    ArgKind.ID_OR_NULL: _id_or_null,
    ArgKind.TEXT: lambda v: _bounded_str(v, MAX_TEXT_CHARS, allow="\t\n"),
    ArgKind.ART12_REASON: _art12_reason,
    ArgKind.HOLD_REASON: _hold_reason,
    ArgKind.PUBLIC_KEY: _public_key,
}


def canonical_b64(value: object, size: int) -> bytes:
    """Decode standard base64 (with padding) of exactly `size` bytes; only one spelling."""
    if not isinstance(value, str):
        raise ValueError(f"must be a base64 string, got {json_type(value)}")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("is not valid standard base64") from None
    # Non-canonical padding bits would give one value two spellings.
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("is not canonical base64")
    if len(raw) != size:
        raise ValueError(f"decodes to {len(raw)} bytes, expected {size}")
    return raw


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    names = {bool: "boolean", int: "integer", str: "string", list: "array", dict: "object",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)


def short_repr(value: object) -> str:
    """`repr` cut to 60 characters: refusal reasons echo peer data, but not much of it."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_args(spec: CommandSpec, value: object) -> CommandArgs:
    """Check `value` (the command's ``args``) against `spec` and return its typed arguments.

    Unknown arguments are refused rather than ignored: a console newer than the dock must learn
    that its argument had no effect, not find out in court.
    """
    if not isinstance(value, dict):
        raise ValueError(f"args must be an object, got {json_type(value)}")
    unknown = sorted(value.keys() - {f.name for f in spec.fields})
    if unknown:
        raise ValueError(f"unknown {spec.name} argument(s): {', '.join(unknown)}")
    parsed: dict[str, object] = {}
    for f in spec.fields:
        if f.name not in value:
            if f.required:
                raise ValueError(f"{spec.name} needs argument {f.name}")
            parsed[f.name] = None
            continue
        try:
            parsed[f.name] = _PARSERS[f.kind](value[f.name])
        except ValueError as exc:
            raise ValueError(f"args.{f.name} {exc}") from None
    return spec.args_type(**parsed)  # type: ignore[arg-type]
