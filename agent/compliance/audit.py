"""The tamper-evident audit log (Art. 18) and its signed head.

Every access to footage and every change to evidence or trust is one line of a shared,
month-partitioned, hash-chained `Journal` under ``state_dir/journal/audit``. The dock publishes
the signed chain head (`signed_head`) so a console that remembers it can tell when the history
was rewritten or rolled back (docs/compliance.md).
"""

from __future__ import annotations

import base64
import os
import pwd
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agent.compliance.records import month_label
from agent.publish.topics import iso_ms
from agent.store.durable import canonical_json_bytes
from agent.store.journal import Journal

__all__ = ["AUDIT_ACTIONS", "AuditLog", "cli_actor", "signed_head", "verify_head"]

AUDIT_ACTIONS = frozenset({
    "export", "preserve", "verify", "purge", "hold", "unhold", "assign", "enroll", "revoke",
    "work_record", "config_loaded", "command", "keys_rotate",
})


def cli_actor() -> str:
    """Who runs a CLI command: the login behind sudo if any, else the process's user."""
    user = os.environ.get("SUDO_USER")
    if not user:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
    return f"cli:{user}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AuditLog:
    """Append-only audit log; thread-safe, shared by the daemon and CLI commands."""

    def __init__(self, state_dir: Path, *, clock: Any = _now_ms) -> None:
        self._clock = clock
        self.journal = Journal(state_dir / "journal" / "audit", shared=True,
                               partition=lambda: month_label(self._clock()))

    def append(self, action: str, actor: str, **fields: Any) -> int:
        """Append one entry; durable on return; returns its seq. Never pass footage or keys."""
        if action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        return self.journal.append({"at": iso_ms(self._clock()), "action": action,
                                    "actor": actor, **fields})

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest entry, including other processes' appends."""
        self.journal.refresh()
        return self.journal.last_seq, self.journal.head_hash

    def verify(self) -> int:
        """Walk the whole chain; return the number of entries. `CorruptStoreError` names the
        first line that was edited, removed or reordered."""
        self.journal.refresh()
        return self.journal.verify()

    def close(self) -> None:
        self.journal.close()


def signed_head(*, dock_id: str, seq: int, head: str, at_ms: int,
                key: Ed25519PrivateKey) -> dict[str, Any]:
    body = {"type": "audit_head", "schema": 1, "dock_id": dock_id, "seq": seq, "head": head,
            "at": iso_ms(at_ms)}
    return {**body, "signature": base64.b64encode(key.sign(canonical_json_bytes(body))).decode()}


def verify_head(payload: dict[str, Any], key: Ed25519PublicKey) -> None:
    """Raise `cryptography.exceptions.InvalidSignature` unless the head's signature holds."""
    body = {k: v for k, v in payload.items() if k != "signature"}
    key.verify(base64.b64decode(payload["signature"]), canonical_json_bytes(body))
