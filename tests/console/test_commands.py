"""Console commands: the exact bytes docs/compliance.md prescribes, and --arg parsing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.commands import CommandAuthenticator, load_console_keys
from agent.compliance.commands import key_id as agent_key_id
from agent.compliance.nonces import NonceStore
from bwc_console.commands import ArgError, build_command, encode_command, key_id, parse_args
from bwc_console.keys import generate_key, load_signing_key
from bwc_console.wire import parse_ms

DOC = Path(__file__).resolve().parents[2] / "docs" / "compliance.md"


def _doc_vector() -> bytes:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("**Test vector.**", 1)[1]
    return re.search(r"```\n(\{.*?\})\n```", block, re.S)[1].encode()  # type: ignore[index]


def test_the_documented_test_vector_byte_for_byte() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    doc = build_command(key, command="hold", dock_id="dock-01", request_id="9f0c",
                        issued_at_ms=parse_ms("2026-11-18T11:06:40.000Z"), nonce="0" * 32,
                        args={"recording_ids": ["00112233445566778899aabbccddeeff"],
                              "reason": "dispute", "text": "Müller\n\U0001f600"})
    assert encode_command(doc) == _doc_vector()


def test_the_dock_accepts_what_the_console_signs(tmp_path: Path) -> None:
    new = generate_key(tmp_path / "console.key")
    key = load_signing_key(new.private_path)
    assert new.key_id == key_id(key.public_key().public_bytes_raw())
    assert new.key_id == agent_key_id(key.public_key().public_bytes_raw())
    doc = build_command(key, command="hold", dock_id="dock-01",
                        args={"recording_ids": ["00" * 16], "reason": "dispute", "text": "x"})
    keys = load_console_keys([new.public_path])  # the dock reads the keygen's .pub file
    auth = CommandAuthenticator("dock-01", keys, 300,
                                NonceStore(tmp_path / "nonces.json", window_s=600))
    command = auth.check("hold", encode_command(doc), parse_ms(doc["issued_at"]))
    assert command.signed and command.key_id == new.key_id


def test_keygen_never_overwrites_and_is_private(tmp_path: Path) -> None:
    new = generate_key(tmp_path / "k")
    assert new.private_path.stat().st_mode & 0o777 == 0o600
    assert new.public_path.read_text().strip() == new.public_key_b64
    with pytest.raises(FileExistsError):
        generate_key(tmp_path / "k")


def test_arg_forms() -> None:
    assert parse_args("hold", ["recording_ids=a,b", "recording_ids=c", "reason=dispute",
                               "text=a=b"]) == {
        "recording_ids": ["a", "b", "c"], "reason": "dispute", "text": "a=b"}
    assert parse_args("work_record", ["reason=2", "gap_id=g"]) == {"reason": 2, "gap_id": "g"}
    assert parse_args("assign", ["officer_id:=null", "camera_uid=ab"]) == {
        "officer_id": None, "camera_uid": "ab"}
    assert parse_args("hold", ['recording_ids:=["x"]']) == {"recording_ids": ["x"]}
    for bad in (["noequals"], ["=v"], ["reason=x", "reason=y"], ["k:={"]):
        with pytest.raises(ArgError):
            parse_args("hold", bad)
    with pytest.raises(ArgError):
        parse_args("work_record", ["reason=two"])
