"""agent.manifest: build, sign, verify; every tampering caught; docs/manifest.md kept honest."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.manifest import (
    ManifestError,
    ManifestErrorCode,
    build_manifest,
    canonical_bytes,
    format_timestamp,
    parse_timestamp,
    sign_manifest,
    verify_footage,
    verify_manifest,
)
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage, Media, SealMessage, public_key_raw

Code = ManifestErrorCode
DOC = Path(__file__).resolve().parents[2] / "docs" / "manifest.md"


# --------------------------------------------------------------------------- a synthetic camera

@dataclass(frozen=True)
class Recording:
    camera_uid: bytes
    data: bytes
    seal: bytes
    seal_signature: bytes
    chunks: list[tuple[bytes, bytes]]  # (120-byte chunk message, camera signature)


def record(camera_key: Ed25519PrivateKey, data: bytes, *, chunk_size: int,
           camera_uid: bytes = bytes(range(16)), recording_id: bytes = b"\x42" * 16,
           started_ms: int = 1_714_550_400_000, ended_ms: int = 1_714_550_401_234,
           media: Media = Media.VIDEO, break_chain_at: int | None = None,
           last_digest: bytes | None = None) -> Recording:
    """Sign ``data`` as a camera does: chained chunk messages, then the seal."""
    chunks, prev = [], ZERO_DIGEST
    for index, offset in enumerate(range(0, len(data), chunk_size)):
        part = data[offset:offset + chunk_size]
        if index == break_chain_at:
            prev = b"\x99" * 32  # a faulty camera: signs a prev that is not the chain
        msg = ChunkMessage(camera_uid, recording_id, index, offset, len(part),
                           hashlib.sha256(part).digest(), prev)
        chunks.append((msg.pack(), camera_key.sign(msg.pack())))
        prev = msg.digest()
    seal = SealMessage(camera_uid, recording_id, len(chunks), len(data),
                       hashlib.sha256(data).digest(), last_digest or prev, started_ms, ended_ms,
                       media).pack()
    return Recording(camera_uid, data, seal, camera_key.sign(seal), chunks)


CAMERA = Ed25519PrivateKey.generate()
DOCK = Ed25519PrivateKey.generate()
DATA = bytes(range(256)) * 40 + b"tail"  # 10244 bytes → 11 chunks of 1000, the last of 244


def build(rec: Recording, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        dock_id="dock-01", unit="zhanhe", camera_uid=rec.camera_uid, officer_id="PD-0042",
        seal=rec.seal, seal_signature=rec.seal_signature, chunks=rec.chunks,
        clock_offset_ms=-2500, stored_at_ms=1_714_560_000_000)
    kwargs.update(overrides)
    return build_manifest(**kwargs)


REC = record(CAMERA, DATA, chunk_size=1000)
SIGNED = sign_manifest(build(REC), DOCK)


def fresh() -> dict[str, Any]:
    """The signed manifest as a third party receives it: through JSON."""
    result: dict[str, Any] = json.loads(json.dumps(SIGNED))
    return result


def verify(m: dict[str, Any]) -> None:
    verify_manifest(m, DOCK.public_key(), CAMERA.public_key())


def raises(code: ManifestErrorCode, fn: Callable[[], object], match: str = "") -> ManifestError:
    with pytest.raises(ManifestError) as info:
        fn()
    assert info.value.code is code, str(info.value)
    assert re.search(match, str(info.value)), str(info.value)
    return info.value


# --------------------------------------------------------------------------- building

def test_build_and_verify() -> None:
    m = fresh()
    verify(m)
    assert m["type"] == "manifest" and m["schema"] == 1
    assert m["manifest_id"] == hashlib.sha256(REC.seal).hexdigest()
    assert m["camera_uid"] == bytes(range(16)).hex() and m["recording_id"] == "42" * 16
    assert m["media"] == "video" and m["officer_id"] == "PD-0042"
    assert m["started_at"] == "2024-05-01T08:00:00.000Z"
    assert m["ended_at"] == "2024-05-01T08:00:01.234Z"
    assert m["stored_at"] == "2024-05-01T10:40:00.000Z"
    assert m["size"] == len(DATA) and m["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert [c["size"] for c in m["chunks"]] == [1000] * 10 + [244]
    assert [c["offset"] for c in m["chunks"]] == list(range(0, 11000, 1000))
    assert base64.b64decode(m["seal"]) == REC.seal
    # camera 2.5 s behind: ended in dock time 08:00:03.734 → stored 10:40:00.000
    assert m["offload_delay_s"] == 9596
    assert m["clock_offset_ms"] == -2500


def test_only_ints_and_strings() -> None:
    def walk(v: object) -> None:
        assert v is None or type(v) in (int, str, list, dict), repr(v)
        for child in v.values() if isinstance(v, dict) else v if isinstance(v, list) else ():
            walk(child)
    walk(SIGNED)


def test_canonical_bytes_and_signature() -> None:
    m = fresh()
    raw = canonical_bytes(m)
    unsigned = {k: v for k, v in m.items() if k != "signature"}
    assert raw == json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False).encode()
    assert set(json.loads(raw)) == set(m) - {"signature"}
    DOCK.public_key().verify(base64.b64decode(m["signature"]), raw)
    assert canonical_bytes({"b": 1, "a": "张"}) == '{"a":"张","b":1}'.encode()


def test_sign_replaces_signature_and_is_a_copy() -> None:
    m = fresh()
    other = Ed25519PrivateKey.generate()
    resigned = sign_manifest(m, other)
    assert resigned is not m and m["signature"] == SIGNED["signature"]
    verify_manifest(resigned, other.public_key(), CAMERA.public_key())
    raises(Code.DOCK_SIGNATURE, lambda: verify(resigned))


def test_non_ascii_officer_and_null_officer() -> None:
    for officer in ("张三", None):
        m = sign_manifest(build(REC, officer_id=officer), DOCK)
        verify(json.loads(json.dumps(m, ensure_ascii=False)))
        assert m["officer_id"] == officer


@pytest.mark.parametrize("media", list(Media))
def test_media_names(media: Media) -> None:
    rec = record(CAMERA, b"x" * 10, chunk_size=4, media=media)
    m = sign_manifest(build(rec), DOCK)
    verify(m)
    assert m["media"] == media.name.lower()


def test_empty_recording() -> None:
    rec = record(CAMERA, b"", chunk_size=4)
    m = sign_manifest(build(rec), DOCK)
    verify(m)
    verify_footage(m, [])
    assert m["chunks"] == [] and m["size"] == 0


def test_build_refuses_seal_of_another_camera() -> None:
    raises(Code.SEAL_MISMATCH, lambda: build(REC, camera_uid=b"\x01" * 16), "another camera")


def test_build_refuses_broken_chain() -> None:
    rec = record(CAMERA, DATA, chunk_size=1000, break_chain_at=3)
    raises(Code.CHAIN, lambda: build(rec), "chunk 3")


def test_build_refuses_missing_or_reordered_chunks() -> None:
    raises(Code.CHAIN, lambda: build(REC, chunks=REC.chunks[:2] + REC.chunks[3:]), "chunk 2")
    swapped = [REC.chunks[1], REC.chunks[0], *REC.chunks[2:]]
    raises(Code.CHAIN, lambda: build(REC, chunks=swapped), "chunk 0")
    raises(Code.SEAL_MISMATCH, lambda: build(REC, chunks=REC.chunks[:-1]), "seal")


def test_build_refuses_chunk_of_another_recording() -> None:
    other = record(CAMERA, DATA, chunk_size=1000, recording_id=b"\x07" * 16)
    raises(Code.SEAL_MISMATCH, lambda: build(REC, chunks=other.chunks), "another recording")


def test_build_refuses_garbage() -> None:
    raises(Code.MALFORMED, lambda: build(REC, seal=REC.seal[:-1]), "133")
    raises(Code.MALFORMED, lambda: build(REC, chunks=[(b"x" * 120, b"s" * 64)]), "magic")
    raises(Code.MALFORMED, lambda: build(REC, seal_signature=b"short"), "seal_signature")
    raises(Code.MALFORMED, lambda: build(REC, clock_offset_ms=1.5), "clock_offset_ms")


# --------------------------------------------------------------------------- tampering

def _swap(lst: list[Any], i: int, j: int) -> None:
    lst[i], lst[j] = lst[j], lst[i]


def _replace_seal(m: dict[str, Any], **fields: Any) -> None:
    """Put in a seal that the real camera key did sign, but for other values."""
    seal = SealMessage.unpack(REC.seal)
    values = {f: getattr(seal, f) for f in SealMessage.__slots__}  # type: ignore[attr-defined]
    values.update(fields)
    raw = SealMessage(**values).pack()
    m["seal"] = base64.b64encode(raw).decode()
    m["seal_signature"] = base64.b64encode(CAMERA.sign(raw)).decode()
    m["manifest_id"] = hashlib.sha256(raw).hexdigest()


# (name, edit, error code when the dock re-signed the edit, message pattern)
TAMPERING: list[tuple[str, Callable[[dict[str, Any]], None], ManifestErrorCode, str]] = [
    ("manifest_id", lambda m: m.update(manifest_id="0" * 64), Code.SEAL_MISMATCH, "manifest_id"),
    ("camera_uid", lambda m: m.update(camera_uid="ff" * 16), Code.SEAL_MISMATCH, "camera_uid"),
    ("recording_id", lambda m: m.update(recording_id="00" * 16), Code.SEAL_MISMATCH,
     "recording_id"),
    ("media", lambda m: m.update(media="audio"), Code.SEAL_MISMATCH, "media"),
    ("started_at", lambda m: m.update(started_at="2024-05-01T07:59:59.999Z"),
     Code.SEAL_MISMATCH, "started_at"),
    ("ended_at", lambda m: m.update(ended_at="2024-05-01T08:00:01.233Z"), Code.SEAL_MISMATCH,
     "ended_at"),
    ("size", lambda m: m.update(size=len(DATA) - 1), Code.SEAL_MISMATCH, "size"),
    ("sha256", lambda m: m.update(sha256="ab" * 32), Code.SEAL_MISMATCH, "sha256"),
    ("clock_offset_ms", lambda m: m.update(clock_offset_ms=0), Code.INCONSISTENT,
     "offload_delay_s"),
    ("stored_at", lambda m: m.update(stored_at="2024-05-02T10:40:00.000Z"), Code.INCONSISTENT,
     "offload_delay_s"),
    ("offload_delay_s", lambda m: m.update(offload_delay_s=60), Code.INCONSISTENT,
     "offload_delay_s"),
    ("seal swapped for another signed seal", lambda m: _replace_seal(m, ended_ms=1),
     Code.SEAL_MISMATCH, "ended_at"),
    ("seal edited", lambda m: m.update(seal=base64.b64encode(REC.seal[:-1] + b"\x02").decode()),
     Code.SEAL_MISMATCH, "manifest_id"),
    ("seal edited with matching id", lambda m: m.update(
        seal=base64.b64encode(REC.seal[:-1] + b"\x02").decode(),
        manifest_id=hashlib.sha256(REC.seal[:-1] + b"\x02").hexdigest()),
     Code.SEAL_SIGNATURE, "seal signature"),
    ("seal_signature swapped", lambda m: m.update(seal_signature=m["chunks"][0]["signature"]),
     Code.SEAL_SIGNATURE, "seal signature"),
    ("seal with another last digest", lambda m: _replace_seal(m, last_chunk_digest=b"\1" * 32),
     Code.CHAIN, "last chunk digest"),
    ("seal with another chunk count", lambda m: _replace_seal(m, chunk_count=12),
     Code.SEAL_MISMATCH, "12"),
    ("chunk sha256", lambda m: m["chunks"][4].update(sha256="cd" * 32), Code.CHUNK_SIGNATURE,
     "chunk 4"),
    ("chunk size", lambda m: m["chunks"][4].update(size=999), Code.CONTIGUITY, "chunk 5"),
    ("last chunk size", lambda m: m["chunks"][10].update(size=243), Code.SEAL_MISMATCH,
     "10243"),
    ("chunk offset", lambda m: m["chunks"][4].update(offset=4001), Code.CONTIGUITY, "chunk 4"),
    ("chunk index", lambda m: m["chunks"][4].update(index=5), Code.CHAIN, "position 4"),
    ("chunk signatures swapped", lambda m: _swap_signatures(m, 3, 4), Code.CHUNK_SIGNATURE,
     "chunk 3"),
    ("chunk removed from the middle", lambda m: m["chunks"].pop(5), Code.CHAIN, "position 5"),
    ("last chunk removed", lambda m: m["chunks"].pop(), Code.SEAL_MISMATCH, "10 chunks"),
    ("first chunk removed", lambda m: m["chunks"].pop(0), Code.CHAIN, "position 0"),
    ("chunks reordered", lambda m: _swap(m["chunks"], 2, 3), Code.CHAIN, "position 2"),
    ("chunk duplicated", lambda m: m["chunks"].insert(3, dict(m["chunks"][2])), Code.CHAIN,
     "position 3"),
    ("chunk removed and renumbered", lambda m: _remove_and_renumber(m, 5), Code.SEAL_MISMATCH,
     "size"),
    ("chunk spliced from another recording", lambda m: _splice(m, 5), Code.CHUNK_SIGNATURE,
     "chunk 5"),
]


def _swap_signatures(m: dict[str, Any], i: int, j: int) -> None:
    a, b = m["chunks"][i], m["chunks"][j]
    a["signature"], b["signature"] = b["signature"], a["signature"]


def _splice(m: dict[str, Any], i: int) -> None:
    """Put in a chunk of the same size that the camera did sign, for another recording."""
    other = record(CAMERA, DATA[::-1], chunk_size=1000, recording_id=b"\x07" * 16)
    msg = ChunkMessage.unpack(other.chunks[i][0])
    m["chunks"][i].update(sha256=msg.sha256.hex(),
                          signature=base64.b64encode(other.chunks[i][1]).decode())


def _remove_and_renumber(m: dict[str, Any], i: int) -> None:
    """A careful forger: drops a chunk and shifts indices and offsets so the list looks whole."""
    removed = m["chunks"].pop(i)
    for c in m["chunks"][i:]:
        c["index"] -= 1
        c["offset"] -= removed["size"]
    m["size"] -= removed["size"]


@pytest.mark.parametrize(("name", "edit", "code", "pattern"), TAMPERING,
                         ids=[t[0] for t in TAMPERING])
def test_tampering_without_dock_key_breaks_dock_signature(
        name: str, edit: Callable[[dict[str, Any]], None], code: ManifestErrorCode,
        pattern: str) -> None:
    m = fresh()
    edit(m)
    assert m != SIGNED
    raises(Code.DOCK_SIGNATURE, lambda: verify(m), "dock signature")


@pytest.mark.parametrize(("name", "edit", "code", "pattern"), TAMPERING,
                         ids=[t[0] for t in TAMPERING])
def test_tampering_with_dock_key_still_caught(
        name: str, edit: Callable[[dict[str, Any]], None], code: ManifestErrorCode,
        pattern: str) -> None:
    # A dock that lies (stolen key, bug) still cannot forge what the camera signed.
    m = fresh()
    edit(m)
    raises(code, lambda: verify(sign_manifest(m, DOCK)), pattern)


@pytest.mark.parametrize("field", ["dock_id", "unit", "officer_id"])
def test_dock_attested_fields(field: str) -> None:
    m = fresh()
    m[field] = "someone-else"
    raises(Code.DOCK_SIGNATURE, lambda: verify(m))
    verify(sign_manifest(m, DOCK))  # only the dock vouches for these (docs/manifest.md)


def test_camera_that_broke_its_own_chain() -> None:
    # Offload refuses such a recording; if a manifest is made of it anyway, verify catches it.
    rec = record(CAMERA, DATA, chunk_size=1000, break_chain_at=3)
    m = fresh()
    m["chunks"][3]["signature"] = base64.b64encode(rec.chunks[3][1]).decode()
    raises(Code.CHUNK_SIGNATURE, lambda: verify(sign_manifest(m, DOCK)), "chunk 3")


def test_wrong_keys() -> None:
    other = Ed25519PrivateKey.generate().public_key()
    raises(Code.DOCK_SIGNATURE, lambda: verify_manifest(fresh(), other, CAMERA.public_key()))
    raises(Code.SEAL_SIGNATURE, lambda: verify_manifest(fresh(), DOCK.public_key(), other))


def test_dock_signature_swapped() -> None:
    m = fresh()
    m["signature"] = m["seal_signature"]
    raises(Code.DOCK_SIGNATURE, lambda: verify(m))


# (edit, message pattern): caught as MALFORMED before any signature is looked at
MALFORMED: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (lambda m: m.update(size=float(m["size"])), r"float at size"),
    (lambda m: m["chunks"][2].update(offset=2000.0), r"float at chunks\[2\]\.offset"),
    (lambda m: m.update(clock_offset_ms=-2500.5), "float at clock_offset_ms"),
    (lambda m: m.update(extra=1.5), "float at extra"),
    (lambda m: m.update(extra=1), "unknown field 'extra'"),
    (lambda m: m.pop("stored_at"), "missing field 'stored_at'"),
    (lambda m: m.pop("signature"), "missing field 'signature'"),
    (lambda m: m.update(schema=True), "schema must be an integer"),
    (lambda m: m.update(schema=2), "unsupported schema"),
    (lambda m: m.update(type="event"), "type must be 'manifest'"),
    (lambda m: m.update(size="10244"), "size must be an integer"),
    (lambda m: m["chunks"][0].update(index=False), r"chunks\[0\]\.index must be an integer"),
    (lambda m: m["chunks"][0].update(size=-1), "out of range"),
    (lambda m: m["chunks"][0].pop("signature"), r"chunks\[0\] must be an object"),
    (lambda m: m["chunks"][0].update(prev="00" * 32), r"chunks\[0\] must be an object"),
    (lambda m: m.update(chunks={}), "chunks must be a list"),
    (lambda m: m.update(sha256=m["sha256"].upper()), "lowercase hex"),
    (lambda m: m.update(camera_uid="00" * 15), "camera_uid"),
    (lambda m: m.update(officer_id=42), "officer_id must be a string"),
    (lambda m: m.update(media="film"), "media must be one of"),
    (lambda m: m.update(started_at="2024-05-01T08:00:00Z"), "YYYY-MM-DDTHH:MM:SS.mmmZ"),
    (lambda m: m.update(stored_at="2024-02-30T08:00:00.000Z"), "day is out of range"),
    (lambda m: m.update(seal=m["seal"][:-4]), "seal decodes to"),
    (lambda m: m.update(seal="!" + m["seal"][1:]), "not valid standard base64"),
    (lambda m: m.update(signature=m["signature"][:-3] + "B=="), "not canonical base64"),
    (lambda m: m.update(seal_signature="-" + m["seal_signature"][1:]), "seal_signature"),
]


@pytest.mark.parametrize(("edit", "pattern"), MALFORMED)
def test_malformed(edit: Callable[[dict[str, Any]], None], pattern: str) -> None:
    m = fresh()
    edit(m)
    raises(Code.MALFORMED, lambda: verify(m), pattern)


def test_malformed_refused_by_sign() -> None:
    m = fresh()
    m["size"] = 10244.0
    raises(Code.MALFORMED, lambda: sign_manifest(m, DOCK), "float")


def test_not_an_object() -> None:
    raises(Code.MALFORMED, lambda: verify([]), "JSON object")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- footage

def test_footage_in_chunks_ok() -> None:
    verify_footage(fresh(), (DATA[i:i + 1000] for i in range(0, len(DATA), 1000)))


@given(st.lists(st.integers(1, 3000), max_size=20))
@settings(max_examples=50, deadline=None)
def test_footage_in_any_blocks_ok(cuts: list[int]) -> None:
    blocks, pos = [], 0
    for n in cuts:
        blocks.append(DATA[pos:pos + n])
        pos += n
    blocks.append(DATA[pos:])
    verify_footage(SIGNED, blocks)


def test_footage_one_byte_at_a_time() -> None:
    verify_footage(SIGNED, (DATA[i:i + 1] for i in range(len(DATA))))


@pytest.mark.parametrize("position", [0, 999, 1000, 5555, len(DATA) - 1])
def test_footage_flipped_byte(position: int) -> None:
    bad = bytearray(DATA)
    bad[position] ^= 0x01
    chunk = position // 1000
    raises(Code.FOOTAGE, lambda: verify_footage(fresh(), [bytes(bad)]), f"chunk {chunk} ")


def test_footage_truncated_and_extended() -> None:
    raises(Code.FOOTAGE, lambda: verify_footage(fresh(), [DATA[:-1]]), "inside chunk 10")
    raises(Code.FOOTAGE, lambda: verify_footage(fresh(), [DATA[:5000]]), "inside chunk 5")
    raises(Code.FOOTAGE, lambda: verify_footage(fresh(), [DATA, b"x"]), "longer")


def test_footage_whole_digest_checked() -> None:
    # Chunks all fine but the manifest's whole-file digest is not: caught (verify_footage alone).
    m = fresh()
    m["sha256"] = "00" * 32
    raises(Code.FOOTAGE, lambda: verify_footage(m, [DATA]), "whole recording")


# --------------------------------------------------------------------------- timestamps

@pytest.mark.parametrize(("ms", "text"), [
    (0, "1970-01-01T00:00:00.000Z"),
    (1_714_550_401_234, "2024-05-01T08:00:01.234Z"),
    (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
])
def test_timestamps(ms: int, text: str) -> None:
    assert format_timestamp(ms) == text and parse_timestamp(text) == ms


def test_timestamp_out_of_range() -> None:
    raises(Code.MALFORMED, lambda: format_timestamp(2**64 - 1), "out of range")


# --------------------------------------------------------------------------- docs/manifest.md

def _doc_block(language: str) -> str:
    blocks = re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(encoding="utf-8"),
                        flags=re.S | re.M)
    assert len(blocks) == 1, f"docs/manifest.md must hold exactly one {language} block"
    return str(blocks[0])


def _doc_verifier() -> dict[str, Any]:
    code = _doc_block("python")
    imported = set(re.findall(r"^(?:from|import) (\w+)", code, flags=re.M))
    assert imported <= {"base64", "hashlib", "json", "struct", "datetime", "cryptography"}
    namespace: dict[str, Any] = {"__name__": "doc_verifier"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_doc_snippet_verifies_our_manifests(tmp_path: Path) -> None:
    ns = _doc_verifier()
    footage = tmp_path / "recording.bin"
    footage.write_bytes(DATA)
    dock_raw, cam_raw = public_key_raw(DOCK), public_key_raw(CAMERA)
    ns["verify_manifest"](fresh(), dock_raw, cam_raw)
    ns["verify_footage"](fresh(), footage)
    # and it refuses what we refuse
    for _, edit, _, _ in TAMPERING:
        m = fresh()
        edit(m)
        for candidate in (m, sign_manifest(m, DOCK)):
            with pytest.raises(ns["Invalid"]):
                ns["verify_manifest"](candidate, dock_raw, cam_raw)
    m = fresh()
    m["size"] = float(m["size"])
    with pytest.raises(ns["Invalid"], match="float"):
        ns["verify_manifest"](m, dock_raw, cam_raw)
    bad = bytearray(DATA)
    bad[4321] ^= 0x80
    footage.write_bytes(bytes(bad))
    with pytest.raises(ns["Invalid"], match="chunk 4 bytes"):
        ns["verify_footage"](fresh(), footage)
    footage.write_bytes(DATA + b"\0")
    with pytest.raises(ns["Invalid"], match="whole recording"):
        ns["verify_footage"](fresh(), footage)


DOC_EXAMPLE = {
    "data": b"camera footage", "chunk_size": 6,
    "camera_uid": bytes.fromhex("c0ffee00000000000000000000000001"),
    "recording_id": bytes.fromhex("5e1f0000000000000000000000000007"),
    "started_ms": 1_714_550_400_000, "ended_ms": 1_714_550_460_250,
    "clock_offset_ms": 1_500, "stored_at_ms": 1_714_561_262_042,
}


def test_doc_example_is_current(tmp_path: Path) -> None:
    # Keys from fixed seeds; Ed25519 signatures are deterministic, so the example is reproducible.
    camera = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"docs camera").digest())
    dock = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"docs dock").digest())
    e = DOC_EXAMPLE
    rec = record(camera, e["data"], chunk_size=e["chunk_size"], camera_uid=e["camera_uid"],
                 recording_id=e["recording_id"], started_ms=e["started_ms"],
                 ended_ms=e["ended_ms"])
    expected = sign_manifest(build_manifest(
        dock_id="zhanhe-dock-01", unit="zhanhe-legal", camera_uid=rec.camera_uid,
        officer_id="PD-0042", seal=rec.seal, seal_signature=rec.seal_signature,
        chunks=rec.chunks, clock_offset_ms=e["clock_offset_ms"], stored_at_ms=e["stored_at_ms"],
    ), dock)
    documented = json.loads(_doc_block("json"))
    assert documented == expected, "regenerate the example in docs/manifest.md"
    text = DOC.read_text(encoding="utf-8")
    cam_b64 = base64.b64encode(public_key_raw(camera)).decode()
    dock_b64 = base64.b64encode(public_key_raw(dock)).decode()
    assert f"camera public key: `{cam_b64}`" in text and f"dock public key: `{dock_b64}`" in text
    verify_manifest(documented, dock.public_key(), camera.public_key())
    footage = tmp_path / "example.bin"
    footage.write_bytes(e["data"])
    ns = _doc_verifier()
    ns["verify_manifest"](documented, base64.b64decode(dock_b64), base64.b64decode(cam_b64))
    ns["verify_footage"](documented, footage)
