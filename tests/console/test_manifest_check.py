"""The console's manifest verifier against docs/manifest.md's example, and what tampering does."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bwc_console.manifest_check import ManifestRejected, verify_manifest
from bwc_console.wire import canonical_utf8

DOC = (Path(__file__).resolve().parents[2] / "docs" / "manifest.md").read_text(encoding="utf-8")
EXAMPLE = DOC.split("## Example", 1)[1]


def _key(label: str) -> Ed25519PublicKey:
    b64 = re.search(rf"{label} public key: `([A-Za-z0-9+/=]+)`", EXAMPLE)[1]  # type: ignore[index]
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))


DOCK, CAMERA = _key("dock"), _key("camera")


def example() -> dict[str, Any]:
    body = re.search(r"```json\n(.*?)```", EXAMPLE, re.S)[1]  # type: ignore[index]
    doc: dict[str, Any] = json.loads(body)
    return doc


def _code(m: Any, dock: Ed25519PublicKey = DOCK, camera: Ed25519PublicKey = CAMERA) -> str:
    with pytest.raises(ManifestRejected) as info:
        verify_manifest(m, dock, camera)
    return info.value.code


def test_the_documented_example_verifies() -> None:
    v = verify_manifest(example(), DOCK, CAMERA)
    assert (v.manifest_id, v.camera_uid, v.officer_id, v.size) == (
        "7f6f022964f2ad1e8706b1650ed6c0ef64f9d792ad9a4c010d0cd380062d36af",
        "c0ffee00000000000000000000000001", "PD-0042", 14)


def test_wrong_keys() -> None:
    other = Ed25519PrivateKey.generate().public_key()
    assert _code(example(), dock=other) == "dock_signature"
    assert _code(example(), camera=other) == "seal_signature"


@pytest.mark.parametrize(("edit", "code"), [
    (lambda m: m.update(officer_id="PD-0666"), "dock_signature"),
    (lambda m: m["chunks"][1].update(sha256="0" * 64), "dock_signature"),
    (lambda m: m.update(extra=1), "malformed"),
    (lambda m: m.pop("seal"), "malformed"),
    (lambda m: m.update(size=14.0), "malformed"),
    (lambda m: m.update(size=True), "malformed"),
    (lambda m: m.update(sha256=m["sha256"].upper()), "malformed"),
    (lambda m: m.update(stored_at="2024-05-01 11:01:02"), "malformed"),
    (lambda m: m.update(signature=m["signature"].rstrip("=")), "malformed"),
    (lambda m: m.update(type="event"), "malformed"),
])
def test_a_tampered_manifest_is_refused(edit: Any, code: str) -> None:
    m = example()
    edit(m)
    assert _code(m) == code


def _resign(m: dict[str, Any], dock_key: Ed25519PrivateKey) -> dict[str, Any]:
    m = {k: v for k, v in m.items() if k != "signature"}
    m["signature"] = base64.b64encode(dock_key.sign(canonical_utf8(m))).decode()
    return m


@pytest.mark.parametrize(("edit", "code"), [
    # A dock that signs whatever it likes still cannot forge the camera's statements.
    (lambda m: m["chunks"][1].update(sha256="0" * 64), "chunk_signature"),
    (lambda m: m["chunks"].pop(), "chain"),
    (lambda m: m["chunks"].reverse(), "chunk_order"),
    (lambda m: m.update(recording_id="5e1f0000000000000000000000000008"), "seal_mismatch"),
    (lambda m: m.update(ended_at="2024-05-01T08:01:00.251Z"), "seal_mismatch"),
    (lambda m: m.update(offload_delay_s=3), "offload_delay"),
    (lambda m: m.update(manifest_id=hashlib.sha256(b"x").hexdigest()), "seal_id"),
])
def test_a_lying_dock_is_caught_by_the_camera_signatures(edit: Any, code: str) -> None:
    dock = Ed25519PrivateKey.generate()
    m = copy.deepcopy(example())
    edit(m)
    assert _code(_resign(m, dock), dock=dock.public_key()) == code
