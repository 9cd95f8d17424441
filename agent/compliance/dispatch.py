"""Carrying out console commands (docs/compliance.md, "Console commands").

`CommandDispatcher.handle` takes one MQTT message from ``…/cmd/{name}``, authenticates it
(`CommandAuthenticator`), carries it out through `Compliance` or the `Registry`, audits it
whatever the outcome, and returns the ``cmd_result`` payload for the caller to queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from agent.compliance.commands import (
    AssignArgs,
    Command,
    CommandAuthenticator,
    CommandRefused,
    EnrollArgs,
    HoldArgs,
    PurgeArgs,
    RevokeArgs,
    UnholdArgs,
    WorkRecordArgs,
)
from agent.compliance.service import Compliance, ComplianceError
from agent.publish.topics import iso_ms
from agent.store.errors import StoreError
from firmware_protocol.signing import load_public_key

__all__ = ["CommandDispatcher"]

log = logging.getLogger(__name__)

EventSink = Callable[[str, bytes | None, dict[str, Any]], None]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CommandDispatcher:
    def __init__(self, book: Compliance, authenticator: CommandAuthenticator, *,
                 dock_id: str, event: EventSink, clock: Callable[[], int] = _now_ms) -> None:
        self.book = book
        self.auth = authenticator
        self.dock_id = dock_id
        self.event = event
        self._clock = clock

    def handle(self, topic: str, payload: bytes) -> dict[str, Any]:
        """Authenticate, execute, audit; return the ``cmd_result`` payload. Never raises for
        anything a console can send."""
        name = topic.rsplit("/", 1)[-1]
        request_id: str | None = None
        signed = False
        actor = "console"  # until a signature says which console key sent it
        try:
            command = self.auth.check(name, payload, self._clock())
            request_id, signed, name = command.request_id, command.signed, command.name
            actor = command.actor
            self._execute(command)
        except CommandRefused as exc:
            return self._finish(exc.command or name, exc.request_id or request_id,
                                exc.signed or signed, str(exc.code), exc.reason, actor)
        except ComplianceError as exc:
            return self._finish(name, request_id, signed, exc.code, exc.reason, actor)
        except StoreError as exc:
            log.error("command %s %s failed in the store: %s", name, request_id, exc)
            return self._finish(name, request_id, signed, "storage", str(exc), actor)
        return self._finish(name, request_id, signed, None, "done", actor)

    def _finish(self, name: str, request_id: str | None, signed: bool, error: str | None,
                reason: str, actor: str) -> dict[str, Any]:
        self.book.audit.append("command", actor, command=name, request_id=request_id,
                               outcome=error or "ok", signed=signed, reason=reason)
        if error is not None:
            log.warning("command %s %s refused: %s (%s)", name, request_id, reason, error)
        return {"type": "cmd_result", "schema": 1, "dock_id": self.dock_id,
                "request_id": request_id, "command": name, "ok": error is None,
                "error": error, "reason": reason, "at": iso_ms(self._clock())}

    def _execute(self, c: Command) -> None:
        a, book, who, rid = c.args, self.book, c.actor, c.request_id
        if isinstance(a, AssignArgs):
            book.assign(a.camera_uid, a.officer_id, actor=who, request_id=rid)
        elif isinstance(a, WorkRecordArgs):
            book.work_record(a.gap_id, reason=a.reason, text=a.text, approver=a.approver,
                             actor=who, request_id=rid)
        elif isinstance(a, HoldArgs):
            book.hold([r.hex() for r in a.recording_ids], reason=str(a.reason), text=a.text,
                      actor=who, request_id=rid)
        elif isinstance(a, UnholdArgs):
            book.unhold([r.hex() for r in a.recording_ids], text=a.text, actor=who,
                        request_id=rid)
        elif isinstance(a, PurgeArgs):
            for tomb in book.purge([r.hex() for r in a.recording_ids], admin_id=a.admin_id,
                                   reason=a.reason, actor=who, request_id=rid):
                self.event("purged", bytes.fromhex(tomb["camera_uid"]), {
                    k: tomb[k] for k in ("recording_id", "manifest_id", "sha256", "admin_id",
                                         "reason", "request_id")})
        elif isinstance(a, EnrollArgs):
            record = book.registry.enroll(a.camera_uid, load_public_key(a.public_key),
                                          officer_id=a.officer_id, by="console")
            book.audit.append("enroll", who, camera_uid=a.camera_uid.hex(),
                              officer_id=record.officer_id, request_id=rid)
        elif isinstance(a, RevokeArgs):
            try:
                book.registry.revoke(a.camera_uid)
            except KeyError:
                raise ComplianceError("not_found", f"camera {a.camera_uid.hex()} is not "
                                      "enrolled") from None
            book.audit.append("revoke", who, camera_uid=a.camera_uid.hex(), reason=a.reason,
                              request_id=rid)
        else:  # pragma: no cover - Command.__post_init__ ties args to a known command
            raise AssertionError(f"no handler for {c.name}")
