"""Audit heads (docs/compliance.md, "Audit head"): the signature, and what follows from the last.

A dock signs the head of its hash-chained audit log. The console remembers the last head it
accepted per dock; a later head may only move forward. A lower ``seq`` means the dock's state
was rolled back (restored from an older copy); the same ``seq`` with another hash means its
history was rewritten (a fork). Both are alerts; neither is ever "fixed" by the console.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_protocol.signing import SIGNATURE_SIZE, verify_signature

from .wire import NAME, WireError, b64decode_strict, canonical_ascii, is_hex, parse_ms

__all__ = ["FIELDS", "Head", "HeadError", "Verdict", "compare", "parse_head", "verify_head"]

FIELDS = frozenset({"type", "schema", "dock_id", "seq", "head", "at", "signature"})


class HeadError(ValueError):
    """The payload is not a well-formed audit head, or its signature does not verify."""


@dataclass(frozen=True, slots=True)
class Head:
    dock_id: str
    seq: int
    head: str
    at: str


class Verdict(StrEnum):
    FIRST = "first"  # nothing remembered for this dock yet
    SAME = "same"  # the head already remembered (a re-publication)
    FORWARD = "forward"  # a higher seq: remember it
    ROLLBACK = "rollback"  # a lower seq than remembered
    FORK = "fork"  # the remembered seq with another hash


def parse_head(payload: object) -> Head:
    """Check the shape (exact fields, types, forms); the signature is :func:`verify_head`'s."""
    if not isinstance(payload, dict) or set(payload) != FIELDS:
        raise HeadError("not an audit head: fields differ from docs/schemas/audit_head.json")
    if payload["type"] != "audit_head" or payload["schema"] != 1 or \
            type(payload["schema"]) is not int:
        raise HeadError("type/schema is not audit_head/1")
    if not isinstance(payload["dock_id"], str) or not NAME.fullmatch(payload["dock_id"]):
        raise HeadError("dock_id is not a valid name")
    if type(payload["seq"]) is not int or payload["seq"] < 0:
        raise HeadError("seq is not a non-negative integer")
    if not is_hex(payload["head"], 64):
        raise HeadError("head is not 64 lower-case hex digits")
    try:
        parse_ms(payload["at"])
        b64decode_strict(payload["signature"], SIGNATURE_SIZE)
    except WireError as exc:
        raise HeadError(str(exc)) from None
    return Head(payload["dock_id"], payload["seq"], payload["head"], payload["at"])


def verify_head(payload: Mapping[str, Any], key: Ed25519PublicKey) -> Head:
    """The head, if well formed and signed by ``key`` over the canonical ASCII JSON of every
    other field; :class:`HeadError` otherwise."""
    head = parse_head(payload)
    body = {k: v for k, v in payload.items() if k != "signature"}
    if not verify_signature(key, canonical_ascii(body), b64decode_strict(payload["signature"])):
        raise HeadError("the audit head's signature does not verify with the dock key")
    return head


def compare(last: Head | None, new: Head) -> Verdict:
    """What ``new`` means after ``last`` (the last head accepted for that dock)."""
    if last is None:
        return Verdict.FIRST
    if new.seq < last.seq:
        return Verdict.ROLLBACK
    if new.seq == last.seq:
        return Verdict.SAME if new.head == last.head else Verdict.FORK
    return Verdict.FORWARD
