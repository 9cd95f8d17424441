"""``bwc-console ingest``: verify what the docks publish, store it durably, only then acknowledge.

One :class:`Ingest` handles every message of every dock (``bwc/{unit}/{dock_id}/…``):

* ``identity`` — the dock key: the trust file's if it lists the dock (a different published key
  is an alert), else pinned on first sight (a later different key is an alert).
* ``manifests`` — verified (:mod:`.manifest_check`) with the dock key and the camera key from
  the trust file, written to the store, and only then acknowledged on ``…/acks``. A refused
  manifest is kept apart with its reason, reported, never acknowledged. Manifests that arrive
  before their dock's key is known wait for it (in memory; the dock re-sends them anyway).
* ``events``, ``ledger``, ``cmd_result`` — stored by id and acknowledged; the same id with
  other content is kept apart as a conflict and raises an alert (a dock whose state was rolled
  back re-uses ledger ids). The ledger's hash chain is checked where consecutive records meet.
* ``audit_head`` — signature checked; compared with the last head accepted for the dock
  (stored durably, so a restart of the console still sees a rollback): rollback and fork are
  alerts.

Alerts go to the log (ERROR), to stdout (``ALERT …``) and to ``DIR/alerts/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .audit_head import HeadError, Verdict, compare, verify_head
from .manifest_check import ManifestRejected, verify_manifest
from .store import Saved, Store
from .trust import TrustFile
from .wire import (
    SCHEMA,
    Topic,
    WireError,
    b64decode_strict,
    b64encode,
    canonical_ascii,
    is_hex,
    parse_topic,
)

__all__ = ["FILTER_KINDS", "Ingest", "ack_payload", "ingest_filters"]

log = logging.getLogger(__name__)

FILTER_KINDS = ("identity", "manifests", "events", "ledger", "cmd_result", "audit_head")
_RECORD_KINDS = {"events": "event", "ledger": "ledger", "cmd_result": "cmd_result"}
_MAX_ID = 200
_MAX_WAITING = 1000  # manifests held per dock while its key is unknown

AckSender = Callable[[str, list[str]], None]  # (topic prefix, ids)
Reporter = Callable[[str], None]  # one line for stdout


def ingest_filters(unit: str | None) -> list[str]:
    return [f"bwc/{unit or '+'}/+/{kind}" for kind in FILTER_KINDS]


class Ingest:
    def __init__(self, store: Store, trust: TrustFile, *, send_ack: AckSender,
                 report: Reporter) -> None:
        self.store = store
        self.trust = trust
        self._send_ack = send_ack
        self._report = report
        self._waiting: dict[str, dict[str, tuple[Topic, bytes]]] = {}  # dock → name → message
        self._ledger_tip: dict[str, tuple[int, str]] = {}  # dock → (seq, hash of that line)

    # -- entry point ---------------------------------------------------------------------------

    def handle(self, topic_name: str, raw: bytes) -> None:
        topic = parse_topic(topic_name)
        if topic is None or topic.rest is not None or topic.kind not in FILTER_KINDS:
            return
        if topic.kind == "manifests":
            self._manifest(topic, raw)
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            log.warning("%s: payload is not JSON; ignored", topic_name)
            return
        if not isinstance(payload, dict):
            log.warning("%s: payload is not a JSON object; ignored", topic_name)
        elif topic.kind == "identity":
            self._identity(topic, payload)
        elif topic.kind == "audit_head":
            self._audit_head(topic, payload, raw)
        else:
            self._record(topic, payload)

    # -- keys ----------------------------------------------------------------------------------

    def dock_key(self, dock_id: str) -> Ed25519PublicKey | None:
        trusted = self.trust.current().docks.get(dock_id)
        if trusted is not None:
            return trusted
        pinned = self.store.pinned_key(dock_id)
        if pinned is None:
            return None
        return Ed25519PublicKey.from_public_bytes(b64decode_strict(pinned, 32))

    def _identity(self, topic: Topic, p: Mapping[str, Any]) -> None:
        try:
            if p.get("type") != "identity" or p.get("dock_id") != topic.dock_id:
                raise WireError("not an identity of this topic's dock")
            raw = b64decode_strict(p.get("public_key"), 32)
        except WireError as exc:
            log.warning("%s/identity ignored: %s", topic.prefix, exc)
            return
        published = p["public_key"]
        self.store.note_unit(topic.dock_id, topic.unit)
        trusted = self.trust.current().docks.get(topic.dock_id)
        pinned = self.store.pinned_key(topic.dock_id)
        if trusted is not None:
            expected = trusted.public_bytes_raw()
            if raw != expected:
                self._alert("identity_mismatch", topic.dock_id,
                            "the dock publishes a key other than the trust file's",
                            published=published, trusted=b64encode(expected))
        elif pinned is None:
            self.store.pin_dock(topic.dock_id, published)
            self._say(f"pinned dock {topic.dock_id} key {published} (first sight)")
        elif pinned != published:
            self._alert("identity_mismatch", topic.dock_id,
                        "the dock publishes a key other than the one pinned on first sight",
                        published=published, pinned=pinned)
        for waiting_topic, waiting_raw in self._waiting.pop(topic.dock_id, {}).values():
            self.handle(f"{waiting_topic.prefix}/{waiting_topic.kind}", waiting_raw)

    # -- manifests -----------------------------------------------------------------------------

    def _manifest(self, topic: Topic, raw: bytes) -> None:
        try:
            m = json.loads(raw)
        except ValueError:
            m = None
        mid = m.get("manifest_id") if isinstance(m, dict) else None
        name = mid if isinstance(mid, str) and is_hex(mid, 64) else "invalid"
        key = self.dock_key(topic.dock_id)
        if key is None:
            waiting = self._waiting.setdefault(topic.dock_id, {})
            if len(waiting) < _MAX_WAITING:  # beyond: the dock re-sends it later anyway
                log.info("manifest %s from %s waits for the dock's identity", name,
                         topic.dock_id)
                waiting[hashlib.sha256(raw).hexdigest()] = (topic, raw)
            return
        stored = self.store.stored_manifest(topic.dock_id, name)
        if stored is not None and stored == raw:
            self._ack(topic, [name])  # a re-send of what is stored: acknowledge again
            return
        try:
            if not isinstance(m, dict):
                raise ManifestRejected("malformed", "not a JSON object")
            if m.get("dock_id") != topic.dock_id:
                raise ManifestRejected("wrong_dock", f"manifest of dock {m.get('dock_id')!r} "
                                                     f"on {topic.dock_id}'s topic")
            camera_key = self.trust.current().cameras.get(str(m.get("camera_uid")))
            if camera_key is None:
                raise ManifestRejected("unknown_camera", f"camera {m.get('camera_uid')} is not "
                                                         "in the trust file")
            verified = verify_manifest(m, key, camera_key)
        except ManifestRejected as exc:
            self._reject(topic, name, raw, exc)
            return
        if stored is not None:
            log.warning("manifest %s from %s: a valid copy differing from the stored one; the "
                        "stored one is kept", name, topic.dock_id)
        else:
            self.store.save_manifest(verified, raw)
            self._say(f"manifest {name} accepted: dock {topic.dock_id} camera "
                      f"{verified.camera_uid} recording {verified.recording_id}")
        self._ack(topic, [name])

    def _reject(self, topic: Topic, name: str, raw: bytes, exc: ManifestRejected) -> None:
        path = self.store.save_rejected(topic.dock_id, name, code=exc.code, detail=exc.detail,
                                        topic=f"{topic.prefix}/{topic.kind}", raw=raw)
        if path is None:
            log.warning("manifest %s from %s refused again: %s", name, topic.dock_id, exc)
            return
        log.error("manifest %s from %s REJECTED: %s (kept in %s)", name, topic.dock_id, exc,
                  path)
        self._say(f"REJECTED manifest {name} from dock {topic.dock_id}: {exc.code}: "
                  f"{exc.detail} (kept in {path})")

    # -- events, ledger records, command results -------------------------------------------------

    def _record(self, topic: Topic, p: Mapping[str, Any]) -> None:
        kind = _RECORD_KINDS[topic.kind]
        item_id, at, seq = p.get("id"), p.get("at"), None
        if p.get("type") != kind or p.get("dock_id") != topic.dock_id or \
                not isinstance(item_id, str) or not 0 < len(item_id) <= _MAX_ID:
            log.warning("%s/%s: not a %s of this dock with an id; ignored", topic.prefix,
                        topic.kind, kind)
            return
        if kind == "ledger":
            entry = p.get("entry")
            if not isinstance(entry, dict) or type(entry.get("seq")) is not int or \
                    item_id != f"{topic.dock_id}:{entry['seq']}":
                log.warning("%s/ledger %s: entry without a matching seq; ignored", topic.prefix,
                            item_id)
                return
            seq, at = entry["seq"], entry.get("at")
        saved = self.store.save_record(kind, topic.dock_id, item_id, p,
                                       at=at if isinstance(at, str) else None, seq=seq)
        if saved is Saved.CONFLICT:
            self._alert("id_conflict", topic.dock_id,
                        f"{kind} {item_id} arrived again with other content (kept apart; the "
                        "dock's state may have been rolled back)", kind=kind, id=item_id)
        elif saved is Saved.NEW and kind == "ledger":
            self._check_chain(topic.dock_id, p["entry"])
        elif saved is Saved.NEW and kind == "cmd_result":
            self._say(f"cmd_result {p.get('request_id')} from dock {topic.dock_id}: "
                      f"{p.get('command')} ok={p.get('ok')} error={p.get('error')}")
        self._ack(topic, [item_id])

    def _check_chain(self, dock_id: str, entry: Mapping[str, Any]) -> None:
        """Where a record follows the previous one stored, its ``prev`` must be that line's
        SHA-256 (docs/compliance.md: the line is the record's canonical JSON)."""
        tip = self._ledger_tip.get(dock_id)
        if tip is None:
            previous = self.store.last_ledger_entry(dock_id)
            if previous is not None and previous.get("seq") == entry["seq"] - 1:
                tip = previous["seq"], hashlib.sha256(canonical_ascii(previous)).hexdigest()
        if tip is not None and tip[0] == entry["seq"] - 1 and entry.get("prev") != tip[1]:
            self._alert("ledger_chain", dock_id,
                        f"ledger record {entry['seq']} does not chain to record {tip[0]}",
                        seq=entry["seq"], prev=entry.get("prev"), expected=tip[1])
        if tip is None or entry["seq"] > tip[0]:
            self._ledger_tip[dock_id] = (entry["seq"],
                                         hashlib.sha256(canonical_ascii(dict(entry))).hexdigest())

    # -- audit heads ---------------------------------------------------------------------------

    def _audit_head(self, topic: Topic, p: Mapping[str, Any], raw: bytes) -> None:
        key = self.dock_key(topic.dock_id)
        if key is None:
            self._waiting.setdefault(topic.dock_id, {})["audit_head"] = (topic, raw)
            return
        try:
            head = verify_head(p, key)
            if head.dock_id != topic.dock_id:
                raise HeadError(f"head of dock {head.dock_id} on {topic.dock_id}'s topic")
        except HeadError as exc:
            self._alert("bad_audit_head", topic.dock_id, str(exc), payload=dict(p))
            return
        last = self.store.last_head(topic.dock_id)
        verdict = compare(last, head)
        if verdict in (Verdict.FIRST, Verdict.FORWARD):
            self.store.set_head(head, p)
            log.info("audit head of %s: seq %d %s", head.dock_id, head.seq, head.head)
        elif verdict is Verdict.ROLLBACK:
            assert last is not None
            self._alert("rollback", head.dock_id,
                        f"audit head went back from seq {last.seq} to seq {head.seq}: the "
                        "dock's state was rolled back", last_seq=last.seq, last_head=last.head,
                        seq=head.seq, head=head.head)
        elif verdict is Verdict.FORK:
            assert last is not None
            self._alert("fork", head.dock_id,
                        f"audit head seq {head.seq} with hash {head.head}, but {last.head} was "
                        "seen for that seq: the audit log was rewritten", seq=head.seq,
                        last_head=last.head, head=head.head)

    # -- output --------------------------------------------------------------------------------

    def _ack(self, topic: Topic, ids: list[str]) -> None:
        self._send_ack(topic.prefix, ids)

    def _alert(self, alert: str, dock_id: str, message: str, **details: Any) -> None:
        path = self.store.save_alert(alert, dock_id, message, details)
        if path is None:
            log.warning("alert %s for %s again: %s", alert, dock_id, message)
            return
        log.error("ALERT %s dock %s: %s", alert, dock_id, message)
        self._say(f"ALERT {alert} dock {dock_id}: {message} ({path})")

    def _say(self, line: str) -> None:
        self._report(line)


def ack_payload(ids: list[str]) -> bytes:
    return json.dumps({"type": "ack", "schema": SCHEMA, "ids": ids},
                      separators=(",", ":")).encode()
