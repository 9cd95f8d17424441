"""Console commands carried out end to end inside the dock (no MQTT): authenticate → act →
audit → result; and the compliance loop that queues the ledger and signs the audit head."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.audit import verify_head
from agent.compliance.commands import (
    CommandAuthenticator,
    NonceStore,
    encode_command,
    sign_command,
)
from agent.compliance.dispatch import CommandDispatcher
from agent.compliance.loop import HEAD_COALESCE_S, HEAD_EVERY_S, ComplianceLoop
from agent.compliance.service import Compliance, ComplianceSettings, add_months
from agent.registry import Registry
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore
from tests.helpers.recordings import store_recording

T0 = 1_767_225_600_000
UID = bytes(range(16))
CAM = Ed25519PrivateKey.generate()
CONSOLE = Ed25519PrivateKey.generate()
DOCK = "dock-01"


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


class Env:
    def __init__(self, root: Path) -> None:
        self.clock = Clock()
        keys = KeyStore(root)
        self.registry = Registry(root / "state.json")
        self.registry.enroll(UID, CAM.public_key(), officer_id="PD-1", by="cli")
        self.book = Compliance(root, ComplianceSettings(dock_id=DOCK),
                               store=FootageStore(root / "footage", keys),
                               registry=self.registry, clock=self.clock)
        self.events: list[tuple[str, dict[str, Any]]] = []
        auth = CommandAuthenticator(DOCK, [CONSOLE.public_key()], 300,
                                    NonceStore(root / "command_nonces.json", 600))
        self.dispatch = CommandDispatcher(self.book, auth, dock_id=DOCK, clock=self.clock,
                                          event=lambda n, _u, d: self.events.append((n, d)))
        self.dock_key = keys.signing_key

    def send(self, name: str, args: dict[str, Any], *, key: Ed25519PrivateKey | None = CONSOLE,
             **kw: Any) -> dict[str, Any]:
        kw.setdefault("issued_at_ms", self.clock.ms)
        doc = sign_command(key, command=name, dock_id=DOCK, args=args, **kw)
        return self.dispatch.handle(f"bwc/zhanhe/{DOCK}/cmd/{name}", encode_command(doc))

    def recording(self) -> str:
        fx = store_recording(self.book.store, camera_key=CAM, dock_key=self.dock_key,
                             camera_uid=UID, started_ms=T0, ended_ms=T0 + 60_000)
        self.book.recording_stored(fx.manifest)
        return fx.recording_id.hex()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.book.close()
    e.registry.close()


def _audit(env: Env) -> list[dict[str, Any]]:
    return list(env.book.audit.journal.read())


def test_signed_hold_then_purge_refused_until_unheld_and_expired(env: Env) -> None:
    rid = env.recording()
    result = env.send("hold", {"recording_ids": [rid], "reason": "dispute", "text": "c-114"})
    assert (result["ok"], result["error"], result["command"]) == (True, None, "hold")
    purge = {"recording_ids": [rid], "admin_id": "adm-7", "reason": "no value"}
    assert env.send("purge", purge)["error"] == "held"
    env.send("unhold", {"recording_ids": [rid], "text": "settled"})
    assert env.send("purge", purge)["error"] == "not_expired"
    env.clock.ms = add_months(T0, 120) + 1
    assert env.send("purge", purge)["ok"] is True
    assert [n for n, _ in env.events] == ["purged"]
    assert env.events[0][1]["admin_id"] == "adm-7"
    outcomes = [(a["action"], a.get("command"), a.get("outcome")) for a in _audit(env)]
    assert ("command", "purge", "held") in outcomes and ("purge", None, None) in outcomes
    assert outcomes[-1] == ("command", "purge", "ok")


def test_unsigned_badly_signed_and_replayed_commands_are_refused_and_audited(env: Env) -> None:
    rid = env.recording()
    hold = {"recording_ids": [rid], "reason": "dispute", "text": "t"}
    assert env.send("hold", hold, key=None)["error"] == "unsigned"
    assert env.send("hold", hold, key=Ed25519PrivateKey.generate())["error"] in (
        "unknown_key", "bad_signature")
    doc = sign_command(CONSOLE, command="hold", dock_id=DOCK, args=hold,
                       issued_at_ms=env.clock.ms)
    topic = f"bwc/zhanhe/{DOCK}/cmd/hold"
    assert env.dispatch.handle(topic, encode_command(doc))["ok"] is True
    again = env.dispatch.handle(topic, encode_command(doc))
    assert (again["ok"], again["error"]) == (False, "replayed")
    env.clock.ms += 3600_000
    assert env.send("hold", hold, issued_at_ms=T0)["error"] == "stale"
    refusals = [a["outcome"] for a in _audit(env) if a["action"] == "command"]
    assert refusals == ["unsigned", refusals[1], "ok", "replayed", "stale"]
    assert env.book.state.hold(rid) is not None


def test_assign_unsigned_and_enroll_revoke_signed(env: Env) -> None:
    assert env.send("assign", {"camera_uid": UID.hex(), "officer_id": "PD-9"}, key=None)["ok"]
    assert env.registry.get(UID).officer_id == "PD-9"  # type: ignore[union-attr]
    new_uid = b"\x07" * 16
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    enroll = {"camera_uid": new_uid.hex(), "public_key": base64.b64encode(key).decode(),
              "officer_id": "PD-3"}
    assert env.send("enroll", enroll, key=None)["error"] == "unsigned"
    assert env.send("enroll", enroll)["ok"] is True
    assert env.registry.get(new_uid) is not None
    assert env.send("revoke", {"camera_uid": new_uid.hex(), "reason": "lost"})["ok"] is True
    assert env.registry.get(new_uid) is None
    assert env.send("revoke", {"camera_uid": new_uid.hex(), "reason": "x"})["error"] == (
        "not_found")


def test_work_record_closes_an_open_gap(env: Env) -> None:
    env.book.state.add_open_gap({"gap_id": "g" * 32, "from": "a", "camera_uid": UID.hex()})
    r = env.send("work_record", {"gap_id": "g" * 32, "reason": 3, "text": "obstructed",
                                 "approver": "chief Li"}, key=None)
    assert r["ok"] is True and env.book.state.open_gaps() == []
    assert env.send("work_record", {"gap_id": "g" * 32, "reason": 3, "text": "again",
                                    "approver": "x"}, key=None)["error"] == "not_found"


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_loop_queues_every_record_once_in_order_and_signs_the_head(env: Env) -> None:
    queued: list[tuple[dict[str, Any], str]] = []
    heads: list[dict[str, Any]] = []
    mono = Mono()
    loop = ComplianceLoop(env.book, dock_id=DOCK, signing_key=env.dock_key,
                          queue_ledger=queued.extend, set_audit_head=heads.append,
                          event=lambda *a: None, monotonic=mono, clock_ms=env.clock)
    env.book.hand_out(UID, slot="s", status={}, ready=True, reasons=[])
    env.book.assign(UID, "PD-2", actor="cli:alice")
    loop.tick()
    assert [p["entry"]["type"] for p, _ in queued] == ["hand_out", "assignment"]
    assert [i for _, i in queued] == [f"{DOCK}:1", f"{DOCK}:2"]
    loop.tick()
    assert len(queued) == 2  # nothing new, nothing re-queued
    assert len(heads) == 1 and heads[0]["seq"] == 1
    verify_head(heads[0], env.dock_key.public_key())
    env.book.assign(UID, "PD-3", actor="cli:alice")
    loop.tick()
    assert len(heads) == 1  # coalesced: the last head went out less than 5 s ago
    mono.t += HEAD_COALESCE_S
    loop.tick()
    assert [h["seq"] for h in heads] == [1, 2]
    mono.t += HEAD_EVERY_S
    loop.tick()
    assert [h["seq"] for h in heads] == [1, 2, 2]  # the periodic head, unchanged
    # A restarted loop (a new daemon) resumes where the durable counter says.
    again: list[tuple[dict[str, Any], str]] = []
    ComplianceLoop(env.book, dock_id=DOCK, signing_key=env.dock_key, queue_ledger=again.extend,
                   set_audit_head=heads.append, event=lambda *a: None).pump_ledger()
    assert again == []


def test_overdue_cameras_raise_one_event(env: Env) -> None:
    events: list[str] = []
    mono = Mono()
    loop = ComplianceLoop(env.book, dock_id=DOCK, signing_key=env.dock_key,
                          queue_ledger=lambda b: None, set_audit_head=lambda h: None,
                          event=lambda n, u, d: events.append(n), monotonic=mono,
                          clock_ms=env.clock)
    env.book.hand_out(UID, slot="s", status={}, ready=True, reasons=[])
    env.clock.ms += 25 * 3600_000
    loop.tick()
    mono.t += 120
    loop.tick()
    assert events == ["overdue_camera"]
