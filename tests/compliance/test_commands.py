"""Console commands: every refusal code, the nonce store's memory, key loading, signing, and the
docs table (docs/compliance.md, "Console commands") against `COMMANDS`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.compliance.commands import (
    COMMANDS,
    MAX_PAYLOAD_BYTES,
    SIGNATURE_REQUIRED,
    AssignArgs,
    Command,
    CommandAuthenticator,
    CommandRefused,
    ConsoleKeyError,
    EnrollArgs,
    ErrorCode,
    HoldArgs,
    HoldReason,
    NonceStore,
    PurgeArgs,
    RevokeArgs,
    UnholdArgs,
    WorkRecordArgs,
    encode_command,
    key_id,
    load_console_keys,
    sign_command,
)
from agent.manifest import format_timestamp
from agent.store.errors import CorruptStoreError

ROOT = Path(__file__).resolve().parents[2]
DOCK = "dock-01"
PREFIX = f"bwc/unit-7/{DOCK}/cmd"
NOW = 1_795_000_000_000  # 2026-11-18, dock clock in ms
MAX_AGE_S = 300
REC_A = "00112233445566778899aabbccddeeff"
REC_B = "ffeeddccbbaa99887766554433221100"
UID = "0123456789abcdef0123456789abcdef"
CAMERA_KEY = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw())

VALID_ARGS: dict[str, dict[str, Any]] = {
    "assign": {"camera_uid": UID, "officer_id": "PC 4711"},
    "work_record": {"gap_id": "gap-0001", "reason": 2, "text": "heavy rain\nshelter",
                    "approver": "Insp. Wang"},
    "hold": {"recording_ids": [REC_A, REC_B], "reason": "dispute", "text": "complaint 2026-114"},
    "unhold": {"recording_ids": [REC_A], "text": "case closed"},
    "purge": {"recording_ids": [REC_A], "admin_id": "admin-3", "reason": "120 months, no value"},
    "enroll": {"camera_uid": UID, "public_key": CAMERA_KEY.decode(), "officer_id": "PC 4711"},
    "revoke": {"camera_uid": UID, "reason": "lost in the field"},
}


@pytest.fixture(scope="module")
def console_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def nonces(tmp_path: Path) -> NonceStore:
    return NonceStore(tmp_path / "command_nonces.json", MAX_AGE_S)


@pytest.fixture
def auth(console_key: Ed25519PrivateKey, nonces: NonceStore) -> CommandAuthenticator:
    return CommandAuthenticator(DOCK, [console_key.public_key()], MAX_AGE_S, nonces)


Sign = Callable[..., dict[str, Any]]


@pytest.fixture
def signed(console_key: Ed25519PrivateKey) -> Sign:
    """A valid signed command for this dock, issued now; keywords override."""

    def make(command: str = "hold", **kw: Any) -> dict[str, Any]:
        kw.setdefault("dock_id", DOCK)
        kw.setdefault("args", VALID_ARGS[command])
        kw.setdefault("issued_at_ms", NOW)
        key = kw.pop("key", console_key)
        return sign_command(key, command=command, **kw)

    return make


def check(auth: CommandAuthenticator, doc: dict[str, Any] | bytes, *, topic: str | None = None,
          now: int = NOW) -> Command:
    payload = doc if isinstance(doc, bytes) else encode_command(doc)
    if topic is None:
        topic = f"{PREFIX}/{json.loads(payload)['command']}"
    return auth.check(topic, payload, now)


def refused(auth: CommandAuthenticator, doc: dict[str, Any] | bytes, *,
            topic: str = f"{PREFIX}/hold", now: int = NOW) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        payload = doc if isinstance(doc, bytes) else encode_command(doc)
        auth.check(topic, payload, now)
    return info.value


def resign(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Sign `doc` as it stands (for commands that are malformed on purpose)."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    body["key_id"] = key_id(key.public_key().public_bytes_raw())
    signature = key.sign(encode_command(body))
    return {**body, "signature": base64.b64encode(signature).decode()}


# --------------------------------------------------------------------------- accepted

@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_signed_is_accepted_with_typed_args(
        auth: CommandAuthenticator, signed: Sign, console_key: Ed25519PrivateKey,
        name: str) -> None:
    doc = signed(name, request_id=f"req-{name}")
    cmd = check(auth, doc)
    assert (cmd.name, cmd.request_id, cmd.dock_id, cmd.issued_at_ms, cmd.nonce) == (
        name, f"req-{name}", DOCK, NOW, doc["nonce"])
    assert cmd.signed and cmd.key_id == key_id(console_key.public_key().public_bytes_raw())
    assert cmd.actor == f"console:{cmd.key_id}"
    assert isinstance(cmd.args, COMMANDS[name].args_type)


def test_args_are_decoded_to_their_types(auth: CommandAuthenticator, signed: Sign) -> None:
    assert check(auth, signed("hold")).args == HoldArgs(
        (bytes.fromhex(REC_A), bytes.fromhex(REC_B)), HoldReason.DISPUTE, "complaint 2026-114")
    assert check(auth, signed("unhold")).args == UnholdArgs((bytes.fromhex(REC_A),),
                                                            "case closed")
    assert check(auth, signed("purge")).args == PurgeArgs(
        (bytes.fromhex(REC_A),), "admin-3", "120 months, no value")
    assert check(auth, signed("work_record")).args == WorkRecordArgs(
        "gap-0001", 2, "heavy rain\nshelter", "Insp. Wang")
    assert check(auth, signed("enroll")).args == EnrollArgs(
        bytes.fromhex(UID), base64.b64decode(CAMERA_KEY), "PC 4711")
    assert check(auth, signed("revoke")).args == RevokeArgs(bytes.fromhex(UID),
                                                            "lost in the field")
    unassign = signed("assign", args={"camera_uid": UID, "officer_id": None})
    assert check(auth, unassign).args == AssignArgs(bytes.fromhex(UID), None)
    no_officer = signed("enroll", args={"camera_uid": UID, "public_key": CAMERA_KEY.decode()})
    assert check(auth, no_officer).args == EnrollArgs(bytes.fromhex(UID),
                                                      base64.b64decode(CAMERA_KEY), None)


@pytest.mark.parametrize("name", ["assign", "work_record"])
def test_unsigned_assign_and_work_record_are_accepted(auth: CommandAuthenticator,
                                                      name: str) -> None:
    doc = sign_command(None, command=name, dock_id=DOCK, args=VALID_ARGS[name],
                       issued_at_ms=NOW)
    assert "signature" not in doc and "key_id" not in doc
    cmd = check(auth, doc)
    assert not cmd.signed and cmd.key_id is None and cmd.actor == "console"


def test_non_ascii_text_travels_as_escapes_and_verifies(auth: CommandAuthenticator,
                                                        signed: Sign) -> None:
    text = "投诉 2026-114 — Müller 😀"
    doc = signed("hold", args={**VALID_ARGS["hold"], "text": text})
    assert b"\\u6295" in encode_command(doc) and encode_command(doc).isascii()
    cmd = check(auth, doc)
    assert isinstance(cmd.args, HoldArgs) and cmd.args.text == text


def test_freshness_limit_is_inclusive_both_ways(auth: CommandAuthenticator,
                                                signed: Sign) -> None:
    check(auth, signed(issued_at_ms=NOW - MAX_AGE_S * 1000))
    check(auth, signed(issued_at_ms=NOW + MAX_AGE_S * 1000))


# --------------------------------------------------------------------------- refusals

def test_refusal_carries_what_could_be_read(auth: CommandAuthenticator, signed: Sign) -> None:
    exc = refused(auth, signed("hold", request_id="r-1", dock_id="dock-99"))
    assert (exc.code, exc.request_id, exc.command, exc.signed) == (
        ErrorCode.WRONG_DOCK, "r-1", "hold", True)
    assert exc.code == "wrong_dock" and "dock-99" in exc.reason
    unsigned = sign_command(None, command="hold", dock_id=DOCK, args=VALID_ARGS["hold"],
                            issued_at_ms=NOW, request_id="r-2")
    exc = refused(auth, unsigned)
    assert (exc.code, exc.request_id, exc.command, exc.signed) == (
        ErrorCode.UNSIGNED, "r-2", "hold", False)
    exc = refused(auth, b"{not json")
    assert (exc.code, exc.request_id, exc.command) == (ErrorCode.MALFORMED, None, None)


@pytest.mark.parametrize("payload", [
    b"", b"{not json", b"\xff\xfe{}", b"[]", b'"hold"', b"null", b"{}",
    b'{"schema":1.0}', b'{"schema":NaN}', b'{"schema":Infinity}', b'{"schema":1e0}',
    b"[" * 60_000, b" " * (MAX_PAYLOAD_BYTES + 1),
], ids=lambda p: repr(p[:16]))
def test_malformed_payloads(auth: CommandAuthenticator, payload: bytes) -> None:
    assert refused(auth, payload).code == ErrorCode.MALFORMED


def test_only_canonical_json_is_accepted(auth: CommandAuthenticator, signed: Sign) -> None:
    doc = signed()
    pretty = json.dumps(doc, indent=1, sort_keys=True).encode()
    unsorted = json.dumps(doc, separators=(",", ":")).encode()
    utf8 = json.dumps(signed(args={**VALID_ARGS["hold"], "text": "Müller"}), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()
    duplicate = encode_command(doc)[:-1] + b',"type":"command"}'
    for payload in (pretty, unsorted, utf8, encode_command(doc) + b"\n", duplicate):
        exc = refused(auth, payload)
        assert exc.code == ErrorCode.MALFORMED, payload
    check(auth, doc)  # none of the refusals used up the nonce


@pytest.mark.parametrize("field", ["type", "schema", "command", "dock_id", "request_id",
                                   "issued_at", "nonce", "args"])
def test_missing_field(auth: CommandAuthenticator, signed: Sign, field: str) -> None:
    doc = signed()
    del doc[field]
    exc = refused(auth, doc)
    assert exc.code == ErrorCode.MALFORMED and field in exc.reason


@pytest.mark.parametrize(("field", "value"), [
    ("type", "cmd"), ("schema", 2), ("schema", "1"), ("schema", True),
    ("request_id", ""), ("request_id", "has space"), ("request_id", "x" * 129),
    ("request_id", 7), ("dock_id", 1), ("dock_id", None),
    ("issued_at", "2026-11-18T03:00:00Z"), ("issued_at", NOW),
    ("issued_at", "2026-02-30T00:00:00.000Z"), ("issued_at", "2026-11-18 03:00:00.000Z"),
    ("nonce", "ABCDEF0123456789ABCDEF0123456789"), ("nonce", "00" * 15), ("nonce", None),
    ("args", []), ("args", None), ("key_id", "ABCDEF0123456789"), ("key_id", "00"),
    ("signature", "not base64!"), ("signature", base64.b64encode(b"x" * 63).decode()),
    ("extra", 1),
])
def test_wrong_types_and_forms_are_malformed(auth: CommandAuthenticator, signed: Sign,
                                             console_key: Ed25519PrivateKey, field: str,
                                             value: object) -> None:
    doc = {**signed(), field: value}
    if field not in ("key_id", "signature"):
        doc = resign(doc, console_key)  # the form is refused, not the signature
    assert refused(auth, doc).code == ErrorCode.MALFORMED


@pytest.mark.parametrize(("name", "arg", "value"), [
    ("hold", "recording_ids", []), ("hold", "recording_ids", REC_A),
    ("hold", "recording_ids", [REC_A.upper()]), ("hold", "recording_ids", [REC_A[:30]]),
    ("hold", "recording_ids", [REC_A, REC_A]),
    ("hold", "recording_ids", [f"{i:032x}" for i in range(1001)]),
    ("hold", "reason", "because"), ("hold", "reason", 1), ("hold", "text", ""),
    ("hold", "text", "a\x00b"), ("hold", "text", "a\rb"), ("hold", "text", "\x85"),
    ("hold", "text", "\ud800"), ("hold", "text", "x" * 4097), ("hold", "note", "x"),
    ("work_record", "reason", 0), ("work_record", "reason", 5), ("work_record", "reason", True),
    ("work_record", "reason", "2"), ("work_record", "approver", "a\tb"),
    ("work_record", "gap_id", "g" * 129), ("work_record", "gap_id", None),
    ("assign", "camera_uid", UID[:30]), ("assign", "camera_uid", None),
    ("assign", "officer_id", ""), ("assign", "officer_id", 4711),
    ("enroll", "public_key", base64.b64encode(b"k" * 31).decode()),
    ("enroll", "public_key", CAMERA_KEY.decode().rstrip("=")),
    ("enroll", "public_key", CAMERA_KEY.hex()), ("purge", "admin_id", ["admin"]),
    ("revoke", "reason", None),
])
def test_bad_args_are_malformed(auth: CommandAuthenticator, signed: Sign, name: str, arg: str,
                                value: object) -> None:
    doc = signed(name, args={**VALID_ARGS[name], arg: value})
    exc = refused(auth, doc, topic=f"{PREFIX}/{name}")
    assert exc.code == ErrorCode.MALFORMED and arg in exc.reason


@pytest.mark.parametrize(("name", "arg"), [
    (name, f.name) for name, spec in COMMANDS.items() for f in spec.fields if f.required])
def test_missing_arg_is_malformed(auth: CommandAuthenticator, signed: Sign, name: str,
                                  arg: str) -> None:
    args = {k: v for k, v in VALID_ARGS[name].items() if k != arg}
    exc = refused(auth, signed(name, args=args), topic=f"{PREFIX}/{name}")
    assert exc.code == ErrorCode.MALFORMED and arg in exc.reason


def test_unknown_command(auth: CommandAuthenticator, signed: Sign) -> None:
    doc = sign_command(None, command="format_disk", dock_id=DOCK, args={}, issued_at_ms=NOW)
    exc = refused(auth, doc, topic=f"{PREFIX}/format_disk")
    assert (exc.code, exc.command) == (ErrorCode.UNKNOWN_COMMAND, "format_disk")


@pytest.mark.parametrize("topic", [f"{PREFIX}/unhold", f"{PREFIX}/purge", "hold/x", ""])
def test_command_must_match_topic(auth: CommandAuthenticator, signed: Sign, topic: str) -> None:
    exc = refused(auth, signed("hold"), topic=topic)
    assert exc.code == ErrorCode.MALFORMED and "topic" in exc.reason


def test_wrong_dock(auth: CommandAuthenticator, signed: Sign) -> None:
    assert refused(auth, signed(dock_id="dock-02")).code == ErrorCode.WRONG_DOCK


@pytest.mark.parametrize("offset_ms", [MAX_AGE_S * 1000 + 1, -(MAX_AGE_S * 1000 + 1),
                                       86_400_000, -86_400_000])
def test_stale_either_way(auth: CommandAuthenticator, signed: Sign, offset_ms: int) -> None:
    exc = refused(auth, signed(issued_at_ms=NOW - offset_ms))
    assert exc.code == ErrorCode.STALE
    assert ("old" if offset_ms > 0 else "future") in exc.reason


@pytest.mark.parametrize("name", sorted(SIGNATURE_REQUIRED))
def test_evidence_commands_must_be_signed(auth: CommandAuthenticator, name: str) -> None:
    doc = sign_command(None, command=name, dock_id=DOCK, args=VALID_ARGS[name],
                       issued_at_ms=NOW)
    exc = refused(auth, doc, topic=f"{PREFIX}/{name}")
    assert exc.code == ErrorCode.UNSIGNED and name in exc.reason


def test_signature_required_set_matches_the_spec() -> None:
    assert {"purge", "hold", "unhold", "revoke", "enroll"} == SIGNATURE_REQUIRED
    assert {n for n, s in COMMANDS.items() if s.signature_required} == SIGNATURE_REQUIRED


def test_bad_signature(auth: CommandAuthenticator, signed: Sign) -> None:
    doc = signed()
    sig = bytearray(base64.b64decode(doc["signature"]))
    sig[0] ^= 1
    doc["signature"] = base64.b64encode(bytes(sig)).decode()
    assert refused(auth, doc).code == ErrorCode.BAD_SIGNATURE


def test_signed_assign_must_verify_too(auth: CommandAuthenticator, signed: Sign) -> None:
    doc = signed("assign")
    doc["args"] = {**doc["args"], "officer_id": "PC 0001"}
    assert refused(auth, doc, topic=f"{PREFIX}/assign").code == ErrorCode.BAD_SIGNATURE


@pytest.mark.parametrize(("field", "value"), [
    ("args", {**VALID_ARGS["hold"], "recording_ids": [REC_B]}),
    ("args", {**VALID_ARGS["hold"], "reason": "obstruction"}),
    ("request_id", "another-request"),
    ("nonce", "ab" * 16),
    ("issued_at", format_timestamp(NOW + 1)),
])
def test_tampering_after_signing_is_a_bad_signature(auth: CommandAuthenticator, signed: Sign,
                                                    field: str, value: object) -> None:
    assert refused(auth, {**signed(), field: value}).code == ErrorCode.BAD_SIGNATURE


def test_signature_by_another_key_with_a_trusted_key_id(auth: CommandAuthenticator,
                                                        signed: Sign,
                                                        console_key: Ed25519PrivateKey) -> None:
    body = {k: v for k, v in signed().items() if k != "signature"}  # the trusted key's id
    signature = Ed25519PrivateKey.generate().sign(encode_command(body))
    forged = {**body, "signature": base64.b64encode(signature).decode()}
    assert refused(auth, forged).code == ErrorCode.BAD_SIGNATURE


def test_unknown_key(auth: CommandAuthenticator, signed: Sign) -> None:
    exc = refused(auth, signed(key=Ed25519PrivateKey.generate()))
    assert exc.code == ErrorCode.UNKNOWN_KEY


def test_unknown_key_on_an_optional_signature(auth: CommandAuthenticator, signed: Sign) -> None:
    doc = signed("assign", key=Ed25519PrivateKey.generate())
    assert refused(auth, doc, topic=f"{PREFIX}/assign").code == ErrorCode.UNKNOWN_KEY


def test_key_id_without_signature_is_malformed(auth: CommandAuthenticator, signed: Sign) -> None:
    doc = signed("assign")
    del doc["signature"]
    assert refused(auth, doc, topic=f"{PREFIX}/assign").code == ErrorCode.MALFORMED


def test_any_of_several_console_keys(nonces: NonceStore, signed: Sign) -> None:
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    auth = CommandAuthenticator(DOCK, [k.public_key() for k in keys], MAX_AGE_S, nonces)
    for k in keys:
        assert check(auth, signed(key=k)).key_id == key_id(k.public_key().public_bytes_raw())


# --------------------------------------------------------------------------- replay

def test_replay_is_refused(auth: CommandAuthenticator, signed: Sign) -> None:
    doc = signed(request_id="first")
    check(auth, doc)
    exc = refused(auth, doc, now=NOW + 1000)
    assert (exc.code, exc.request_id, exc.command) == (ErrorCode.REPLAYED, "first", "hold")


def test_replay_of_an_unsigned_command_is_refused(auth: CommandAuthenticator) -> None:
    doc = sign_command(None, command="assign", dock_id=DOCK, args=VALID_ARGS["assign"],
                       issued_at_ms=NOW)
    check(auth, doc)
    assert refused(auth, doc, topic=f"{PREFIX}/assign").code == ErrorCode.REPLAYED


def test_replay_after_restart_is_refused(tmp_path: Path, console_key: Ed25519PrivateKey,
                                         signed: Sign) -> None:
    path = tmp_path / "state" / "command_nonces.json"
    keys = [console_key.public_key()]
    first = CommandAuthenticator(DOCK, keys, MAX_AGE_S, NonceStore(path, MAX_AGE_S))
    doc = signed()
    check(first, doc)
    restarted = CommandAuthenticator(DOCK, keys, MAX_AGE_S, NonceStore(path, MAX_AGE_S))
    assert refused(restarted, doc, now=NOW + 60_000).code == ErrorCode.REPLAYED


def test_refused_commands_do_not_use_up_their_nonce(auth: CommandAuthenticator, signed: Sign,
                                                    nonces: NonceStore) -> None:
    nonce = "5a" * 16
    attempts = [
        {**signed(nonce=nonce), "dock_id": "dock-02"},  # tampered: bad signature
        signed(nonce=nonce, dock_id="dock-02"),
        signed(nonce=nonce, issued_at_ms=NOW - 10 * MAX_AGE_S * 1000),
        signed(nonce=nonce, key=Ed25519PrivateKey.generate()),
        sign_command(None, command="hold", dock_id=DOCK, args=VALID_ARGS["hold"],
                     issued_at_ms=NOW, nonce=nonce),
    ]
    for doc in attempts:
        assert refused(auth, doc).code != ErrorCode.REPLAYED
    assert nonces.remembered() == {}
    check(auth, signed(nonce=nonce))
    assert nonces.remembered() == {nonce: NOW}


def test_nonces_are_pruned_after_twice_the_window(nonces: NonceStore) -> None:
    keep_ms = 2 * MAX_AGE_S * 1000
    nonces.check_and_remember("01" * 16, NOW, NOW)
    nonces.check_and_remember("02" * 16, NOW + 1000, NOW + 1000)
    # Still remembered at the end of twice the window...
    with pytest.raises(CommandRefused) as info:
        nonces.check_and_remember("01" * 16, NOW, NOW + keep_ms)
    assert info.value.code == ErrorCode.REPLAYED
    # ...and forgotten by the next write after it.
    nonces.check_and_remember("03" * 16, NOW + keep_ms + 1, NOW + keep_ms + 1)
    assert nonces.remembered() == {"02" * 16: NOW + 1000, "03" * 16: NOW + keep_ms + 1}
    reopened = NonceStore(nonces.path, MAX_AGE_S)
    assert reopened.remembered() == nonces.remembered()


def test_full_store_drops_unsigned_nonces_first_then_refuses(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "n.json", MAX_AGE_S, max_entries=3)
    store.check_and_remember("a1" * 16, NOW, NOW, signed=False)
    store.check_and_remember("b1" * 16, NOW + 1, NOW + 1, signed=True)
    store.check_and_remember("a2" * 16, NOW + 2, NOW + 2, signed=False)
    store.check_and_remember("b2" * 16, NOW + 3, NOW + 3, signed=True)  # evicts a1
    assert set(store.remembered()) == {"b1" * 16, "a2" * 16, "b2" * 16}
    store.check_and_remember("b3" * 16, NOW + 4, NOW + 4, signed=True)  # evicts a2
    with pytest.raises(CommandRefused) as info:
        store.check_and_remember("b4" * 16, NOW + 5, NOW + 5, signed=True)
    assert info.value.code == ErrorCode.STORAGE
    assert set(store.remembered()) == {"b1" * 16, "b2" * 16, "b3" * 16}


def test_corrupt_nonce_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    path.write_text('{"schema": 1, "nonces": {"aa": [1, "yes"]}}')
    with pytest.raises(CorruptStoreError):
        NonceStore(path, MAX_AGE_S)


def test_nonce_window_must_cover_the_age_limit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="window"):
        CommandAuthenticator(DOCK, [], MAX_AGE_S, NonceStore(tmp_path / "n.json", 60))


def test_threads_racing_one_nonce_let_exactly_one_through(nonces: NonceStore) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            nonces.check_and_remember("cd" * 16, NOW, NOW)
            outcomes.append("ok")
        except CommandRefused as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["replayed"] * 7


_WRITER = """
import sys
from pathlib import Path
from agent.compliance.nonces import NonceStore
store = NonceStore(Path(sys.argv[1]), 300)
for i in range(int(sys.argv[3])):
    store.check_and_remember(f"{int(sys.argv[2]):02x}{i:030x}", 1_795_000_000_000,
                             1_795_000_000_000)
"""


def test_processes_writing_at_once_lose_no_nonce(tmp_path: Path) -> None:
    path = tmp_path / "command_nonces.json"
    per_writer = 15
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(w),
                                 str(per_writer)], cwd=ROOT) for w in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0] * 4
    assert len(NonceStore(path, MAX_AGE_S).remembered()) == 4 * per_writer


# --------------------------------------------------------------------------- properties

def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    index = st.integers(0, len(data) - 1)
    flip = st.tuples(index, st.integers(1, 255)).map(
        lambda t: data[:t[0]] + bytes([data[t[0]] ^ t[1]]) + data[t[0] + 1:])
    insert = st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=4)).map(
        lambda t: data[:t[0]] + t[1] + data[t[0]:])
    delete = st.tuples(index, st.integers(1, 4)).map(
        lambda t: data[:t[0]] + data[t[0] + t[1]:])
    return st.one_of(flip, insert, delete)


_PROPERTY = settings(max_examples=400, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROPERTY
@given(data=st.data(), name=st.sampled_from(sorted(COMMANDS)))
def test_any_mutation_of_a_signed_command_is_refused(auth: CommandAuthenticator, signed: Sign,
                                                     data: st.DataObject, name: str) -> None:
    original = encode_command(signed(name, nonce="77" * 16))
    mutated = data.draw(_mutations(original))
    # Refused commands never reach the nonce store, so one store serves every example.
    with pytest.raises(CommandRefused):
        auth.check(f"{PREFIX}/{name}", mutated, NOW)


@_PROPERTY
@given(payload=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.sampled_from(["type", "schema", "command", "args",
                                                    "nonce", "signature", "x"]), inner,
                                   max_size=6)).map(
        lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")).encode())))
def test_garbage_is_refused_never_crashes(auth: CommandAuthenticator, payload: bytes) -> None:
    with pytest.raises(CommandRefused) as info:
        auth.check(f"{PREFIX}/hold", payload, NOW)
    assert info.value.code in {ErrorCode.MALFORMED, ErrorCode.UNKNOWN_COMMAND}


# --------------------------------------------------------------------------- keys

def test_key_id_is_the_sha256_prefix_of_the_raw_key() -> None:
    raw = bytes(range(32))
    assert key_id(raw) == hashlib.sha256(raw).hexdigest()[:16]
    with pytest.raises(ValueError):
        key_id(raw[:31])


def test_load_console_keys_in_every_form(tmp_path: Path) -> None:
    keys = [Ed25519PrivateKey.generate().public_key() for _ in range(3)]
    raw = [k.public_bytes_raw() for k in keys]
    (tmp_path / "raw.key").write_bytes(raw[0])
    (tmp_path / "b64.key").write_text(base64.b64encode(raw[1]).decode() + "\n")
    (tmp_path / "pem.key").write_bytes(keys[2].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    loaded = load_console_keys([tmp_path / n for n in ("raw.key", "b64.key", "pem.key")])
    assert [k.public_bytes_raw() for k in loaded] == raw


def _private_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def _ec_pem() -> bytes:
    return generate_private_key(SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    (b"", "empty"),
    (b"x" * 31, "neither"),
    (base64.b64encode(b"x" * 31), "31 bytes"),
    (b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", "not a valid PEM"),
    (_private_pem(), "private key"),
    (_ec_pem(), "not an Ed25519 key"),
])
def test_load_console_keys_errors_name_the_file(tmp_path: Path, content: bytes | None,
                                                message: str) -> None:
    path = tmp_path / "console.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConsoleKeyError, match=message) as info:
        load_console_keys([path])
    assert info.value.path == path and str(path) in str(info.value)


def test_the_same_console_key_twice_is_fine(nonces: NonceStore) -> None:
    key = Ed25519PrivateKey.generate().public_key()
    CommandAuthenticator(DOCK, [key, key], MAX_AGE_S, nonces)


# --------------------------------------------------------------------------- signing reference

def test_sign_command_defaults_and_exact_signed_bytes(console_key: Ed25519PrivateKey) -> None:
    doc = sign_command(console_key, command="hold", dock_id=DOCK, args=VALID_ARGS["hold"])
    assert re.fullmatch(r"[0-9a-f]{32}", doc["nonce"])
    assert re.fullmatch(r"[0-9a-f-]{36}", doc["request_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["issued_at"])
    body = {k: v for k, v in doc.items() if k != "signature"}
    signed_bytes = json.dumps(body, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=True).encode("ascii")
    console_key.public_key().verify(base64.b64decode(doc["signature"]), signed_bytes)
    assert encode_command(doc) == json.dumps(doc, sort_keys=True, separators=(",", ":"),
                                             ensure_ascii=True).encode("ascii")


GOLDEN_PAYLOAD = (  # the test vector in docs/compliance.md
    b'{"args":{"reason":"dispute","recording_ids":["00112233445566778899aabbccddeeff"],'
    b'"text":"M\\u00fcller\\n\\ud83d\\ude00"},"command":"hold","dock_id":"dock-01",'
    b'"issued_at":"2026-11-18T11:06:40.000Z","key_id":"56475aa75463474c",'
    b'"nonce":"00000000000000000000000000000000","request_id":"9f0c","schema":1,'
    b'"signature":"TEg+NvygSCb3cOU2S2mPfaXHLZWk1VQk5hhMdk1txn+xTQa/msuCEDJR2YWHcgWGfoY+st2gjZq3'
    b'rouPkdoBCg==","type":"command"}')


def test_golden_command_bytes(tmp_path: Path) -> None:
    """Ed25519 is deterministic: a fixed key and command give fixed bytes that another
    implementation (the console) can check itself against."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    doc = sign_command(key, command="hold", dock_id="dock-01",
                       args={"recording_ids": [REC_A], "reason": "dispute",
                             "text": "M\u00fcller\n\U0001f600"},
                       request_id="9f0c", issued_at_ms=1_795_000_000_000, nonce="00" * 16)
    assert encode_command(doc) == GOLDEN_PAYLOAD
    auth = CommandAuthenticator("dock-01", [key.public_key()], MAX_AGE_S,
                                NonceStore(tmp_path / "n.json", MAX_AGE_S))
    assert auth.check("bwc/u/dock-01/cmd/hold", GOLDEN_PAYLOAD, 1_795_000_000_000).signed


def test_docs_carry_the_golden_vector() -> None:
    text = (ROOT / "docs" / "compliance.md").read_text()
    assert GOLDEN_PAYLOAD.decode() in text
    assert bytes(range(32)).hex() in text


# --------------------------------------------------------------------------- docs

def _docs_commands_table() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "compliance.md").read_text()
    section = text.split("## Console commands", 1)[1]
    table: dict[str, list[str]] = {}
    for line in section.splitlines():
        m = re.fullmatch(r"\| `(\w+)` \| (.*) \|", line)
        if m and m[1] in COMMANDS:
            # Argument names are the backticked words outside parentheses (which hold values).
            table[m[1]] = re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", m[2]))
    return table


def test_docs_table_lists_every_command_and_argument() -> None:
    table = _docs_commands_table()
    assert table == {name: [f.name for f in spec.fields] for name, spec in COMMANDS.items()}
