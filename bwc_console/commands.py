"""Console commands (docs/compliance.md, "Console commands"): build, sign, encode.

The payload is the command object's canonical JSON (sorted keys, no whitespace, ASCII with
``\\u`` escapes); the signature is Ed25519 over the canonical JSON of every field but
``signature`` (so ``key_id`` is signed too). Each command carries a fresh ``request_id``, the
time it was issued and a random 128-bit nonce, so a dock runs it at most once and only while
it is fresh.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .wire import SCHEMA, b64encode, canonical_ascii, format_ms, now_ms

__all__ = [
    "COMMANDS",
    "LIST_ARGS",
    "SIGNATURE_REQUIRED",
    "ArgError",
    "build_command",
    "encode_command",
    "key_id",
    "parse_args",
]

COMMANDS = ("assign", "work_record", "hold", "unhold", "purge", "enroll", "revoke")
SIGNATURE_REQUIRED = frozenset({"hold", "unhold", "purge", "enroll", "revoke"})
#: Arguments that are arrays: ``k=a,b`` (or the option repeated) gives ``["a", "b"]``.
LIST_ARGS = frozenset({"recording_ids"})
#: Arguments that are integers, per command.
INT_ARGS = {("work_record", "reason")}


class ArgError(ValueError):
    """A ``--arg`` that cannot be read."""


def key_id(public_key_raw: bytes) -> str:
    """The first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    if len(public_key_raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def parse_args(command: str, items: Iterable[str]) -> dict[str, Any]:
    """``k=v`` sets a string (an array for :data:`LIST_ARGS`, split on commas and collected
    over repeats; an integer where the command wants one); ``k:=JSON`` sets any JSON value
    (``officer_id:=null``)."""
    args: dict[str, Any] = {}
    for item in items:
        eq = item.find("=")
        raw_json = eq > 0 and item[eq - 1] == ":"
        key, text = (item[:eq - 1] if raw_json else item[:eq]), item[eq + 1:]
        if eq < 0 or not key:
            raise ArgError(f"--arg {item!r}: expected KEY=VALUE or KEY:=JSON")
        value: Any
        if raw_json:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ArgError(f"--arg {item!r}: not JSON ({exc})") from None
        elif key in LIST_ARGS:
            value = [*args.get(key, []), *(v for v in text.split(",") if v)]
        elif (command, key) in INT_ARGS:
            try:
                value = int(text)
            except ValueError:
                raise ArgError(f"--arg {item!r}: {key} of {command} is an integer") from None
        else:
            value = text
        if key in args and key not in LIST_ARGS:
            raise ArgError(f"--arg {key} given twice")
        args[key] = value
    return args


def build_command(private_key: Ed25519PrivateKey | None, *, command: str, dock_id: str,
                  args: Mapping[str, Any], request_id: str | None = None,
                  issued_at_ms: int | None = None, nonce: str | None = None) -> dict[str, Any]:
    """The command object, signed with ``private_key`` (None: unsigned, which only ``assign``
    and ``work_record`` allow). Defaults: a random UUID, now, a random nonce."""
    doc: dict[str, Any] = {
        "type": "command", "schema": SCHEMA, "command": command, "dock_id": dock_id,
        "request_id": request_id if request_id is not None else str(uuid.uuid4()),
        "issued_at": format_ms(now_ms() if issued_at_ms is None else issued_at_ms),
        "nonce": nonce if nonce is not None else secrets.token_hex(16),
        "args": dict(args),
    }
    if private_key is not None:
        doc["key_id"] = key_id(private_key.public_key().public_bytes_raw())
        doc["signature"] = b64encode(private_key.sign(canonical_ascii(doc)))
    return doc


def encode_command(doc: Mapping[str, Any]) -> bytes:
    """The only bytes a dock accepts for ``doc``: its canonical JSON."""
    return canonical_ascii(dict(doc))
