"""Console commands: parse, validate and authenticate them (docs/compliance.md, "Console commands").

This module decides whether a payload received on ``…/cmd/{name}`` is a command the dock may
act on; executing it is the dispatcher's job. Everything here is sans-IO except `NonceStore`,
which must remember nonces across restarts, and `load_console_keys`.

The checks run cheapest first (size, JSON, schema, dock, clock) so that garbage costs no
Ed25519 work, and the nonce is recorded last, so that only a command that passed every other
check can take a place in the nonce store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agent.compliance.command_errors import CommandRefused, ErrorCode
from agent.compliance.command_schema import (
    COMMANDS,
    SIGNATURE_REQUIRED,
    ArgField,
    ArgKind,
    AssignArgs,
    CommandArgs,
    CommandSpec,
    EnrollArgs,
    HoldArgs,
    HoldReason,
    PurgeArgs,
    RevokeArgs,
    UnholdArgs,
    WorkRecordArgs,
    canonical_b64,
    json_type,
    parse_args,
    short_repr,
)
from agent.compliance.nonces import NonceStore
from agent.manifest import ManifestError, format_timestamp, parse_timestamp
from agent.store.durable import canonical_json_bytes

__all__ = [
    "COMMANDS",
    "MAX_PAYLOAD_BYTES",
    "SIGNATURE_REQUIRED",
    "ArgField",
    "ArgKind",
    "AssignArgs",
    "Command",
    "CommandArgs",
    "CommandAuthenticator",
    "CommandRefused",
    "CommandSpec",
    "ConsoleKeyError",
    "EnrollArgs",
    "ErrorCode",
    "HoldArgs",
    "HoldReason",
    "NonceStore",
    "PurgeArgs",
    "RevokeArgs",
    "UnholdArgs",
    "WorkRecordArgs",
    "encode_command",
    "key_id",
    "load_console_keys",
    "sign_command",
]

SCHEMA = 1
MAX_PAYLOAD_BYTES = 64 * 1024  # a command is a few hundred bytes; this bounds parsing work

_REQUIRED_FIELDS = frozenset(
    {"type", "schema", "command", "dock_id", "request_id", "issued_at", "nonce", "args"})
_SIGNATURE_FIELDS = frozenset({"key_id", "signature"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class Command:
    """A command that passed every check in `CommandAuthenticator.check`."""

    name: str
    request_id: str
    dock_id: str
    issued_at_ms: int
    nonce: str
    args: CommandArgs
    key_id: str | None  # the console key that signed it; None when unsigned
    signed: bool

    def __post_init__(self) -> None:
        spec = COMMANDS.get(self.name)
        if spec is None or not isinstance(self.args, spec.args_type):
            raise ValueError(f"{type(self.args).__name__} are not the arguments of {self.name!r}")
        if self.signed != (self.key_id is not None):
            raise ValueError("a command has a key_id exactly when it is signed")

    @property
    def actor(self) -> str:
        """Who to name in the audit log (docs/compliance.md, "Audit log")."""
        return f"console:{self.key_id}" if self.key_id is not None else "console"


# --------------------------------------------------------------------------- authenticator

def _refuse_float(text: str) -> Any:
    raise ValueError(f"floats are not allowed (got {text[:20]})")


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


class _Refuser:
    """Remembers what is known about the command so far, for the refusal's result."""

    def __init__(self) -> None:
        self.request_id: str | None = None
        self.command: str | None = None
        self.signed = False

    def __call__(self, code: ErrorCode, reason: str) -> CommandRefused:
        return CommandRefused(code, reason, request_id=self.request_id, command=self.command,
                              signed=self.signed)


class CommandAuthenticator:
    """Turns a received payload into a `Command`, or raises `CommandRefused`."""

    def __init__(self, dock_id: str, console_keys: Sequence[Ed25519PublicKey],
                 max_age_s: float, nonces: NonceStore) -> None:
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        if nonces.window_s < max_age_s:
            # A nonce forgotten while its command is still fresh could be replayed.
            raise ValueError(f"the nonce store's window ({nonces.window_s} s) is shorter than "
                             f"the command age limit ({max_age_s} s)")
        self.dock_id = dock_id
        self._max_age_ms = int(max_age_s * 1000)
        self._nonces = nonces
        self._keys: dict[str, Ed25519PublicKey] = {}
        for key in console_keys:
            kid = key_id(key.public_bytes_raw())
            other = self._keys.setdefault(kid, key)
            if other.public_bytes_raw() != key.public_bytes_raw():
                raise ValueError(f"two different console keys share the key id {kid}")

    def check(self, topic_name: str, payload: bytes, now_ms: int) -> Command:
        """Validate and authenticate `payload` received on `topic_name` at dock time `now_ms`.

        Raises `CommandRefused`. On success the nonce has been recorded durably, so a command
        is handed out at most once: the caller must execute it (or report why not) now.
        """
        refuse = _Refuser()
        doc = _parse_json(payload, refuse)
        env = _parse_envelope(doc, topic_name, refuse)
        if env.dock_id != self.dock_id:
            raise refuse(ErrorCode.WRONG_DOCK,
                         f"command is for dock {short_repr(env.dock_id)}, this is {self.dock_id!r}")
        age_ms = now_ms - env.issued_at_ms
        if abs(age_ms) > self._max_age_ms:
            direction = "old" if age_ms > 0 else "in the future"
            raise refuse(ErrorCode.STALE, f"issued_at is {abs(age_ms) / 1000:.3f} s {direction} "
                         f"(limit {self._max_age_ms / 1000:g} s)")
        if env.key_id is None or env.signature is None:
            if env.spec.signature_required:
                raise refuse(ErrorCode.UNSIGNED, f"{env.spec.name} must be signed")
        else:
            key = self._keys.get(env.key_id)
            if key is None:
                raise refuse(ErrorCode.UNKNOWN_KEY, f"no trusted console key has id {env.key_id}")
            signed_part = {k: v for k, v in doc.items() if k != "signature"}
            try:
                key.verify(env.signature, canonical_json_bytes(signed_part))
            except InvalidSignature:
                raise refuse(ErrorCode.BAD_SIGNATURE,
                             f"signature does not verify with key {env.key_id}") from None
        try:
            self._nonces.check_and_remember(env.nonce, env.issued_at_ms, now_ms,
                                            signed=env.key_id is not None)
        except CommandRefused as exc:
            raise refuse(exc.code, exc.reason) from None
        return Command(name=env.spec.name, request_id=env.request_id, dock_id=env.dock_id,
                       issued_at_ms=env.issued_at_ms, nonce=env.nonce, args=env.args,
                       key_id=env.key_id, signed=env.key_id is not None)


def _parse_json(payload: bytes, refuse: _Refuser) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise refuse(ErrorCode.MALFORMED,
                     f"payload is {len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        doc = json.loads(payload.decode("utf-8"), parse_float=_refuse_float,
                         parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise refuse(ErrorCode.MALFORMED, f"payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise refuse(ErrorCode.MALFORMED, f"payload must be a JSON object, got {json_type(doc)}")
    # One command, one byte string: what was signed, carried and audited are the same bytes,
    # and no re-encoding (whitespace, key order, escapes, duplicate keys) is accepted.
    if canonical_json_bytes(doc) != payload:
        raise refuse(ErrorCode.MALFORMED, "payload is not canonical JSON (sorted keys, no "
                     "whitespace, ASCII with \\u escapes)")
    # From here on a refusal can name the request and command, if they look sane.
    refuse.signed = "signature" in doc
    for field in ("request_id", "command"):
        value = doc.get(field)
        if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            setattr(refuse, field, value)
    return doc


@dataclass(frozen=True, slots=True)
class _Envelope:
    spec: CommandSpec
    request_id: str
    dock_id: str
    issued_at_ms: int
    nonce: str
    key_id: str | None
    signature: bytes | None
    args: CommandArgs


def _parse_envelope(doc: dict[str, Any], topic_name: str, refuse: _Refuser) -> _Envelope:
    """Check every field's presence, type and form; no judgement about dock, clock or keys."""
    missing = sorted(_REQUIRED_FIELDS - doc.keys())
    if missing:
        raise refuse(ErrorCode.MALFORMED, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(doc.keys() - _REQUIRED_FIELDS - _SIGNATURE_FIELDS)
    if unknown:
        raise refuse(ErrorCode.MALFORMED, f"unknown field(s): {', '.join(unknown)}")
    if doc["type"] != "command":
        raise refuse(ErrorCode.MALFORMED,
                     f"type must be 'command', got {short_repr(doc['type'])}")
    if type(doc["schema"]) is not int or doc["schema"] != SCHEMA:
        raise refuse(ErrorCode.MALFORMED, f"schema must be {SCHEMA}, got {doc['schema']!r}")
    name = doc["command"]
    spec = COMMANDS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise refuse(ErrorCode.UNKNOWN_COMMAND, f"unknown command {short_repr(name)}")
    if topic_name.rpartition("/")[2] != name:
        # Otherwise a command signed as one action could be published as another.
        raise refuse(ErrorCode.MALFORMED, f"command {name!r} published on topic {topic_name!r}")
    request_id = doc["request_id"]
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise refuse(ErrorCode.MALFORMED, "request_id must be 1-128 of A-Z a-z 0-9 . _ : -, "
                     f"got {short_repr(request_id)}")
    dock_id = doc["dock_id"]
    if not isinstance(dock_id, str):
        raise refuse(ErrorCode.MALFORMED,
                     f"dock_id must be a string, got {short_repr(dock_id)}")
    try:
        issued_at_ms = parse_timestamp(doc["issued_at"])
    except ManifestError:
        raise refuse(ErrorCode.MALFORMED, "issued_at must be YYYY-MM-DDTHH:MM:SS.mmmZ, got "
                     f"{short_repr(doc['issued_at'])}") from None
    nonce = doc["nonce"]
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise refuse(ErrorCode.MALFORMED,
                     f"nonce must be 32 lowercase hex digits, got {short_repr(nonce)}")
    kid, signature = _parse_signature_fields(doc, refuse)
    try:
        args = parse_args(spec, doc["args"])
    except ValueError as exc:
        raise refuse(ErrorCode.MALFORMED, str(exc)) from None
    return _Envelope(spec, request_id, dock_id, issued_at_ms, nonce, kid, signature, args)


def _parse_signature_fields(doc: Mapping[str, Any],
                            refuse: _Refuser) -> tuple[str | None, bytes | None]:
    present = _SIGNATURE_FIELDS & doc.keys()
    if not present:
        return None, None
    if present != _SIGNATURE_FIELDS:
        raise refuse(ErrorCode.MALFORMED, "key_id and signature go together")
    kid = doc["key_id"]
    if not isinstance(kid, str) or not _KEY_ID.fullmatch(kid):
        raise refuse(ErrorCode.MALFORMED,
                     f"key_id must be 16 lowercase hex digits, got {short_repr(kid)}")
    try:
        signature = canonical_b64(doc["signature"], 64)
    except ValueError as exc:
        raise refuse(ErrorCode.MALFORMED, f"signature {exc}") from None
    return kid, signature


# --------------------------------------------------------------------------- keys and signing

class ConsoleKeyError(ValueError):
    """A console public key file is missing or holds no usable Ed25519 public key."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"console public key {str(path)!r}: {why}")
        self.path = path


def key_id(public_key_raw: bytes) -> str:
    """The first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    if len(public_key_raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, got {len(public_key_raw)}")
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def _load_key_file(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConsoleKeyError(path, f"cannot read: {exc.strerror}") from None
    if not data.strip():
        raise ConsoleKeyError(path, "is empty")
    if data.lstrip().startswith(b"-----BEGIN"):
        if b"PRIVATE KEY" in data:
            # Refuse rather than derive the public half: a console's private key has no
            # business on a dock, and accepting it would hide the mistake.
            raise ConsoleKeyError(path, "is a private key; give the console's public key")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ConsoleKeyError(path, f"is not a valid PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConsoleKeyError(path, f"is a {type(key).__name__}, not an Ed25519 key")
        return key
    if len(data) == 32:
        raw = data
    else:
        try:
            raw = base64.b64decode(b"".join(data.split()), validate=True)
        except binascii.Error:
            raise ConsoleKeyError(path, f"is neither a raw 32-byte key ({len(data)} bytes), "
                                  "base64 nor PEM") from None
        if len(raw) != 32:
            raise ConsoleKeyError(path, f"base64 decodes to {len(raw)} bytes, expected 32")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ConsoleKeyError(path, f"is not a valid Ed25519 public key ({exc})") from None


def load_console_keys(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    """Load every file of `console_public_keys`: raw 32 bytes, their base64, or PEM.

    Raises `ConsoleKeyError` naming the first file that does not hold a usable key; a dock
    that silently trusted fewer consoles than configured would refuse their commands later
    with a far less helpful message.
    """
    return [_load_key_file(Path(p)) for p in paths]


def sign_command(private_key: Ed25519PrivateKey | None, *, command: str, dock_id: str,
                 args: Mapping[str, Any], request_id: str | None = None,
                 issued_at_ms: int | None = None, nonce: str | None = None) -> dict[str, Any]:
    """Build a command as the console must (the reference for docs/compliance.md).

    `args` is the JSON form and is not validated, so tests can sign malformed commands.
    With `private_key=None` the command is unsigned (enough for `assign` and `work_record`).
    Defaults: a random UUID request id, the current time, a random 128-bit nonce. Publish
    the result as `encode_command(result)`.
    """
    if issued_at_ms is None:
        issued_at_ms = time.time_ns() // 1_000_000
    doc: dict[str, Any] = {
        "type": "command", "schema": SCHEMA, "command": command, "dock_id": dock_id,
        "request_id": request_id if request_id is not None else str(uuid.uuid4()),
        "issued_at": format_timestamp(issued_at_ms),
        "nonce": nonce if nonce is not None else secrets.token_hex(16),
        "args": dict(args),
    }
    if private_key is not None:
        doc["key_id"] = key_id(private_key.public_key().public_bytes_raw())
        signature = private_key.sign(canonical_json_bytes(doc))
        doc["signature"] = base64.b64encode(signature).decode("ascii")
    return doc


def encode_command(doc: Mapping[str, Any]) -> bytes:
    """The only payload bytes a dock accepts for `doc`: its canonical JSON."""
    return canonical_json_bytes(dict(doc))
