"""Ingest without a broker: the real Store in a temp dir, messages handed in directly, acks and
stdout lines collected. Audit heads are signed by the agent's own code (a second implementation
of the same document)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.audit import signed_head
from bwc_console.ingest import Ingest
from bwc_console.store import Store
from bwc_console.trust import TrustFile
from bwc_console.wire import canonical_ascii
from tests.console.test_manifest_check import EXAMPLE, example

PREFIX = "bwc/zhanhe-legal/zhanhe-dock-01"
DOCK_ID = "zhanhe-dock-01"
DOCK_B64 = "zJWpyMC46O8cAanP+rj5HCexhNReGcgt8aJu1abGhDE="
CAMERA_B64 = "sVyLgInUrEuBIJ3HRxbtAEy0SuNN42EG6M1YqbdvDUo="
assert DOCK_B64 in EXAMPLE and CAMERA_B64 in EXAMPLE


class Rig:
    def __init__(self, root: Path, trust: dict[str, Any]) -> None:
        self.root = root
        (root / "trust.json").write_text(json.dumps(trust))
        self.acks: list[tuple[str, list[str]]] = []
        self.lines: list[str] = []
        self.open()

    def open(self) -> None:
        self.store = Store(self.root / "store", exclusive=True)
        self.ingest = Ingest(self.store, TrustFile(self.root / "trust.json"),
                             send_ack=lambda p, ids: self.acks.append((p, ids)),
                             report=self.lines.append)

    def restart(self) -> None:
        self.store.close()
        self.open()

    def send(self, kind: str, payload: Any) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.ingest.handle(f"{PREFIX}/{kind}", raw)

    @property
    def acked(self) -> list[str]:
        return [i for _, ids in self.acks for i in ids]


def identity(key_b64: str = DOCK_B64) -> dict[str, Any]:
    return {"type": "identity", "schema": 1, "dock_id": DOCK_ID, "unit": "zhanhe-legal",
            "public_key": key_b64, "agent_version": "0.1.0"}


def test_manifest_waits_for_the_identity_then_is_stored_and_acked(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"cameras": {"c0ffee00000000000000000000000001": CAMERA_B64}})
    raw = json.dumps(example()).encode()
    rig.send("manifests", raw)
    assert rig.acks == []  # the dock key is not known yet
    rig.send("identity", identity())
    mid = example()["manifest_id"]
    assert rig.acks == [(PREFIX, [mid])]
    assert rig.store.stored_manifest(DOCK_ID, mid) == raw
    rig.send("manifests", raw)  # a re-send: acknowledged again, stored once
    assert rig.acked == [mid, mid]
    assert rig.store.manifest_ids() == [(DOCK_ID, mid)]


def test_tampered_or_unknown_camera_is_kept_apart_never_acked(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"docks": {DOCK_ID: DOCK_B64}})
    rig.send("manifests", example())
    tampered = example()
    tampered["officer_id"] = "PD-0666"
    rig.ingest.trust.path.write_text(json.dumps(  # type: ignore[union-attr]
        {"docks": {DOCK_ID: DOCK_B64},
         "cameras": {"c0ffee00000000000000000000000001": CAMERA_B64}, }) + " ")
    rig.send("manifests", tampered)
    rig.send("manifests", tampered)  # reported once
    assert rig.acks == []
    rejected = sorted((tmp_path / "store" / "rejected" / DOCK_ID).glob("*.json"))
    reasons = sorted(json.loads(p.read_text())["reason"] for p in rejected)
    assert reasons == ["dock_signature", "unknown_camera"]
    assert sum("REJECTED" in line for line in rig.lines) == 2


def _head(key: Ed25519PrivateKey, seq: int, head: str) -> dict[str, Any]:
    return signed_head(dock_id=DOCK_ID, seq=seq, head=head, at_ms=1_700_000_000_000 + seq,
                       key=key)


def test_audit_heads_rollback_survives_a_restart_and_fork(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pub = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    rig = Rig(tmp_path, {"docks": {DOCK_ID: pub}})
    h = [hashlib.sha256(bytes([i])).hexdigest() for i in range(10)]
    rig.send("audit_head", _head(key, 3, h[3]))
    rig.send("audit_head", _head(key, 3, h[3]))
    rig.send("audit_head", _head(key, 5, h[5]))
    assert rig.store.alerts() == []
    rig.restart()  # the console restarts: it still remembers seq 5
    rig.send("audit_head", _head(key, 4, h[4]))
    rig.send("audit_head", _head(key, 4, h[4]))  # the same evidence: one alert
    rig.send("audit_head", _head(key, 5, h[6]))
    forged = _head(Ed25519PrivateKey.generate(), 9, h[9])
    rig.send("audit_head", forged)
    kinds = [a["kind"] for a in rig.store.alerts()]
    assert sorted(kinds) == ["bad_audit_head", "fork", "rollback"]
    rollback = next(a for a in rig.store.alerts() if a["kind"] == "rollback")
    assert (rollback["details"]["last_seq"], rollback["details"]["seq"]) == (5, 4)
    assert [line.split()[1] for line in rig.lines if line.startswith("ALERT")] == [
        "rollback", "fork", "bad_audit_head"]
    assert rig.store.last_head(DOCK_ID).seq == 5  # type: ignore[union-attr]


def test_identity_pinned_on_first_sight(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {})
    rig.send("identity", identity())
    rig.restart()
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    rig.send("identity", identity(other.decode()))
    assert [a["kind"] for a in rig.store.alerts()] == ["identity_mismatch"]
    assert rig.store.pinned_key(DOCK_ID) == DOCK_B64


def _ledger(seq: int, prev: str, **fields: Any) -> dict[str, Any]:
    entry = {"type": "assignment", "at": "2026-03-01T00:00:00.000Z", "camera_uid": "ab" * 16,
             "officer_id": "o1", "by": "console", "request_id": None, "seq": seq, "prev": prev,
             **fields}
    return {"type": "ledger", "schema": 1, "dock_id": DOCK_ID, "id": f"{DOCK_ID}:{seq}",
            "entry": entry}


def test_records_stored_by_id_conflicts_and_chain_breaks_alert(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {})
    first = _ledger(1, "0" * 64)
    second = _ledger(2, hashlib.sha256(canonical_ascii(first["entry"])).hexdigest())
    event = {"type": "event", "schema": 1, "id": "e1", "event": "storage_ok",
             "dock_id": DOCK_ID, "camera_uid": None, "at": "2026-03-01T00:00:00.000Z",
             "details": {"free_bytes": 1, "reserve_bytes": 1}}
    for kind, payload in (("ledger", first), ("ledger", second), ("events", event),
                          ("events", event)):
        rig.send(kind, payload)
    assert rig.acked == [f"{DOCK_ID}:1", f"{DOCK_ID}:2", "e1", "e1"]
    assert rig.store.alerts() == []
    rig.send("ledger", _ledger(3, "f" * 64))  # does not chain to record 2
    rig.send("ledger", _ledger(2, "e" * 64, officer_id="o2"))  # id 2 again, other content
    assert sorted(a["kind"] for a in rig.store.alerts()) == ["id_conflict", "ledger_chain"]
    assert [e["entry"]["officer_id"] for e in rig.store.records("ledger")] == ["o1", "o1", "o1"]
    assert rig.acked[-2:] == [f"{DOCK_ID}:3", f"{DOCK_ID}:2"]
    rig.send("events", {"type": "event", "dock_id": "someone-else", "id": "x"})
    assert rig.acked[-1] != "x"
