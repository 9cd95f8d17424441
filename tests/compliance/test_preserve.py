"""agent.compliance.preserve: two independent preservation copies (Art. 16), read back and
verified; the shipped verify.py agrees; a flipped byte in either copy is caught.

Recordings are stored the way the agent stores them: chunks signed by a camera key, appended
to a real FootageStore, finalised with a manifest signed by the dock's KeyStore key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pycdlib
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import agent.compliance.preserve as preserve_module
from agent.compliance.preserve import (
    Label,
    PreservationError,
    PreservationRefused,
    PreservedCopy,
    preserve,
    verify_copy,
)
from agent.manifest import build_manifest, sign_manifest
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore
from firmware_protocol.signing import ZERO_DIGEST, ChunkMessage, Media, SealMessage
from tests.helpers.tmpfs import tmpfs

CAMERA = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CAMERA_UID = bytes.fromhex("c0ffee00000000000000000000000001")
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42"
LABEL = Label(producing_unit="Zhanhe Legal Office", producer="Sgt. Ana Müller",
              produced_at="2026-11-28T03:00:00.000Z", case_name="Harbour street dispute",
              case_number="2026/114")
BASE = "2026_114"  # the case number made safe for a file name


@dataclass
class Dock:
    store: FootageStore
    keys: KeyStore
    recordings: dict[bytes, bytes]  # recording id → original bytes
    outs: list[Path]

    @property
    def ids(self) -> list[bytes]:
        return list(self.recordings)

    @property
    def key(self) -> bytes:
        return self.keys.public_key_raw

    def preserve(self, fmt: Literal["iso", "dir"] = "dir", *,
                 with_camera_keys: bool = True) -> list[PreservedCopy]:
        return preserve(self.store, self.ids, LABEL, self.outs, fmt=fmt,
                        dock_public_key=self.key, dock_id="dock-01",
                        camera_public_keys={CAMERA_UID: CAMERA.public_key().public_bytes_raw()}
                        if with_camera_keys else None)


def store_recording(store: FootageStore, keys: KeyStore, rid: bytes, data: bytes,
                    chunk_size: int, officer_id: str | None = "PD-0042") -> None:
    """Sign ``data`` as the camera does, store it as offload does, finalise with a manifest."""
    sizes = [min(chunk_size, len(data) - o) for o in range(0, len(data), chunk_size)]
    partial = store.open_partial(rid, CAMERA_UID, len(sizes), {"media": int(Media.VIDEO)})
    chunks, prev, offset = [], ZERO_DIGEST, 0
    for index, size in enumerate(sizes):
        part = data[offset:offset + size]
        msg = ChunkMessage(CAMERA_UID, rid, index, offset, size, hashlib.sha256(part).digest(),
                           prev).pack()
        signature = CAMERA.sign(msg)
        partial.append_chunk(index, part, msg, signature)
        chunks.append((msg, signature))
        prev, offset = hashlib.sha256(msg).digest(), offset + size
    seal = SealMessage(CAMERA_UID, rid, len(sizes), len(data), hashlib.sha256(data).digest(),
                       prev, 1_764_298_800_000, 1_764_299_100_250, Media.VIDEO).pack()
    manifest = sign_manifest(build_manifest(
        dock_id="dock-01", unit="zhanhe", camera_uid=CAMERA_UID, officer_id=officer_id,
        seal=seal, seal_signature=CAMERA.sign(seal), chunks=chunks, clock_offset_ms=1500,
        stored_at_ms=1_764_302_000_000), keys.signing_key)
    partial.finalise(seal, CAMERA.sign(seal), manifest)


@pytest.fixture
def dock(tmp_path: Path) -> Dock:
    keys = KeyStore(tmp_path / "state")
    store = FootageStore(tmp_path / "footage", keys)
    rng = random.Random(7)
    recordings = {
        bytes.fromhex("5e1f0000000000000000000000000001"): MP4_HEAD + rng.randbytes(50_000),
        # Officer with a non-ASCII name: the dock signs UTF-8, not \\u escapes.
        bytes.fromhex("5e1f0000000000000000000000000002"): MP4_HEAD + rng.randbytes(9_000),
        # Chunks larger than the 1 MiB read blocks, and a last chunk of 1 byte.
        bytes.fromhex("5e1f0000000000000000000000000003"): rng.randbytes(3 * 1536 * 1024 + 1),
    }
    officers = ["PD-0042", "Müller-7", None]
    chunk_sizes = [4096, 1000, 1536 * 1024]
    for (rid, data), officer, size in zip(recordings.items(), officers, chunk_sizes,
                                          strict=True):
        store_recording(store, keys, rid, data, size, officer)
    outs = [tmp_path / "out1", tmp_path / "out2"]
    for out in outs:
        out.mkdir()
    return Dock(store, keys, recordings, outs)


def run_verify(copy: Path, *args: str, script: Path | None = None,
               without_cryptography: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the copy's verify.py with this interpreter but nothing of the agent importable."""
    script = script or copy / "verify.py"
    code = ("import runpy, sys; "
            + ("sys.modules['cryptography'] = None; " if without_cryptography else "")
            + f"sys.argv = {[str(script), str(copy), *args]!r}; "
            + f"runpy.run_path({str(script)!r}, run_name='__main__')")
    # -I: isolated mode, so the repository (and with it agent/) is not on sys.path.
    return subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          cwd=copy.parent, check=False, timeout=120)


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def extract_iso(image: Path, into: Path, *, level1_only: bool = False) -> None:
    """What a court sees after mounting the disc (with or without Rock Ridge/Joliet)."""
    into.mkdir()
    iso = pycdlib.PyCdlib()
    iso.open(str(image))
    try:
        for child in iso.list_children(iso_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            iso_name = child.file_identifier().decode()
            name = iso_name if level1_only else child.rock_ridge.name().decode()
            with open(into / name, "wb") as f:
                iso.get_file_from_iso_fp(f, iso_path=f"/{iso_name}")
    finally:
        iso.close()


# --------------------------------------------------------------------------- both formats

def test_dir_copies_hold_originals_manifests_label_and_verify(dock: Dock) -> None:
    copies = dock.preserve("dir")
    assert [c.path for c in copies] == [dock.outs[0].resolve() / f"{BASE}-copy1",
                                        dock.outs[1].resolve() / f"{BASE}-copy2"]
    for n, copy in enumerate(copies, 1):
        assert copy.fmt == "dir" and copy.copy_number == n and copy.image_sha256 is None
        assert copy.report.ok and copy.report.label == LABEL
        assert [r.camera_signatures for r in copy.report.recordings] == [True] * 3
        label = json.loads((copy.path / "label.json").read_text())
        assert (label["copy"], label["copies"], label["format"]) == (n, 2, "dir")
        assert label["case_number"] == "2026/114" and label["producer"] == "Sgt. Ana Müller"
        for entry, (rid, data) in zip(label["recordings"], dock.recordings.items(),
                                      strict=True):
            assert entry["recording_id"] == rid.hex()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
            assert (copy.path / entry["file"]).read_bytes() == data  # the original bytes
            manifest = json.loads((copy.path / entry["manifest"]).read_text())
            stored = dock.store.stored(rid)
            assert stored is not None and manifest == stored.manifest
        assert [e["file"].rsplit(".", 1)[1] for e in label["recordings"]] == ["mp4", "mp4",
                                                                               "bin"]
        text = (copy.path / "LABEL.TXT").read_text()
        for value in ("Harbour street dispute", "2026/114", "Zhanhe Legal Office",
                      "Sgt. Ana Müller", "2026-11-28T03:00:00.000Z", f"Copy:            {n} of 2"):
            assert value in text
        identity = json.loads((copy.path / "dock_identity.json").read_text())
        assert identity["dock_id"] == "dock-01"
        assert base64.b64decode(identity["public_key"]) == dock.key
        for line in (copy.path / "SHA256SUMS").read_text().splitlines():
            digest, name = line.split("  ")
            assert hashlib.sha256((copy.path / name).read_bytes()).hexdigest() == digest
        assert {p.name for p in copy.path.iterdir()} >= {
            "VERIFY.TXT", "verify.py", "camera_keys.json", "SHA256SUMS"}
    # Nothing left behind: no temp names, no staging.
    assert sorted(p.name for out in dock.outs for p in out.iterdir()) == [
        f"{BASE}-copy1", f"{BASE}-copy2"]


def test_iso_copies_are_iso9660_with_joliet_and_rock_ridge_and_verify(dock: Dock,
                                                                      tmp_path: Path) -> None:
    copies = dock.preserve("iso")
    assert [c.path.name for c in copies] == [f"{BASE}-copy1.iso", f"{BASE}-copy2.iso"]
    for copy in copies:
        assert copy.report.ok and copy.report.fmt == "iso"
        assert copy.image_sha256 == hashlib.sha256(copy.path.read_bytes()).hexdigest()
        iso = pycdlib.PyCdlib()
        iso.open(str(copy.path))
        try:
            assert iso.has_joliet() and iso.has_rock_ridge()
            level1 = {c.file_identifier().decode() for c in iso.list_children(iso_path="/")
                      if not (c.is_dot() or c.is_dotdot())}
            assert {"REC0001.MP4;1", "REC0002.MP4;1", "REC0003.BIN;1", "REC0001.JSN;1",
                    "LABEL.TXT;1", "LABEL.JSN;1", "VERIFY.PY;1"} <= level1
            assert all(len(n.split(";")[0].split(".")[0]) <= 8 for n in level1)
            long_names = {c.file_identifier().decode("utf-16-be")
                          for c in iso.list_children(joliet_path="/")
                          if not (c.is_dot() or c.is_dotdot())}
            first = dock.ids[0].hex()
            assert {f"rec0001-{first}.mp4", f"rec0001-{first}.manifest.json", "label.json",
                    "verify.py", "dock_identity.json"} <= long_names
        finally:
            iso.close()
    # What a court mounts: every recording is the original, and verify.py agrees.
    mounted = tmp_path / "mounted"
    extract_iso(copies[0].path, mounted)
    for rid, data in dock.recordings.items():
        assert [p.read_bytes() for p in mounted.glob(f"rec*-{rid.hex()}.*")
                if not p.name.endswith(".json")] == [data]
    result = run_verify(mounted)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: OK" in result.stdout
    # A reader without Rock Ridge or Joliet sees only REC0001.MP4 etc.: still verifiable.
    plain = tmp_path / "plain"
    extract_iso(copies[1].path, plain, level1_only=True)
    assert (plain / "REC0001.MP4;1").exists() and not list(plain.glob("rec*"))
    result = run_verify(plain, script=plain / "VERIFY.PY;1")
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- verify.py

def test_shipped_verify_py_passes_on_a_dir_copy(dock: Dock) -> None:
    copy = dock.preserve("dir")[0].path
    dock_key = base64.b64encode(dock.key).decode()
    result = run_verify(copy, "--dock-key", dock_key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK      rec000") == 3
    assert "RESULT: OK" in result.stdout and "2026/114" in result.stdout
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    result = run_verify(copy, "--dock-key", other.decode())
    assert result.returncode == 2 and "another key" in result.stdout


def test_verify_py_says_what_it_could_not_check(dock: Dock) -> None:
    copy = dock.preserve("dir", with_camera_keys=False)[0]
    assert not (copy.path / "camera_keys.json").exists()
    assert [r.camera_signatures for r in copy.report.recordings] == [False] * 3
    result = run_verify(copy.path)
    assert result.returncode == 3
    assert "camera signatures were NOT checked: no camera key" in result.stdout
    camera = base64.b64encode(CAMERA.public_key().public_bytes_raw()).decode()
    result = run_verify(copy.path, "--camera-key", f"{CAMERA_UID.hex()}={camera}")
    assert result.returncode == 0, result.stdout
    result = run_verify(copy.path, without_cryptography=True)
    assert result.returncode == 3
    assert "'cryptography' is not installed" in result.stdout
    assert "dock signature" in result.stdout


def test_verify_py_catches_a_forged_camera_signature(dock: Dock) -> None:
    copy = dock.preserve("dir")[0].path
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    result = run_verify(copy, "--camera-key", f"{CAMERA_UID.hex()}={other.decode()}")
    assert result.returncode == 1
    assert "camera signature over the seal does not verify" in result.stdout


# --------------------------------------------------------------------------- tampering

def test_flipped_byte_in_dir_footage_is_detected(dock: Dock) -> None:
    copies = dock.preserve("dir")
    rid = dock.ids[2]
    victim = copies[1].path / f"rec0003-{rid.hex()}.bin"
    flip_byte(victim, 2 * 1536 * 1024 + 17)  # inside chunk 2
    report = verify_copy(copies[1].path, dock.key)
    assert not report.ok
    assert [p.file for p in report.problems] == [victim.name]
    assert "chunk 2" in report.problems[0].reason
    assert [r.recording_id for r in report.recordings] == [r.hex() for r in dock.recordings][:2]
    assert verify_copy(copies[0].path, dock.key).ok  # the other copy is independent
    result = run_verify(copies[1].path)
    assert result.returncode == 1
    assert f"FAILED  {victim.name}: {victim.name}: chunk 2" in result.stdout
    assert run_verify(copies[0].path).returncode == 0


def test_flipped_byte_inside_the_iso_image_file_data_is_detected(dock: Dock,
                                                                 tmp_path: Path) -> None:
    copies = dock.preserve("iso")
    data = dock.recordings[dock.ids[0]]
    image = copies[0].path.read_bytes()
    at = image.find(data[1000:1064])
    assert at > 0 and image.count(data[1000:1064]) == 1
    flip_byte(copies[0].path, at + 5)
    report = verify_copy(copies[0].path, dock.key)
    assert not report.ok
    rid = dock.ids[0].hex()
    assert [p.file for p in report.problems] == [f"rec0001-{rid}.mp4"]
    assert "chunk 0" in report.problems[0].reason
    assert verify_copy(copies[1].path, dock.key).ok
    mounted = tmp_path / "mounted"
    extract_iso(copies[0].path, mounted)
    result = run_verify(mounted)
    assert result.returncode == 1 and f"FAILED  rec0001-{rid}.mp4" in result.stdout


def test_edited_manifest_or_label_is_detected(dock: Dock) -> None:
    copy = dock.preserve("dir")[0].path
    rid = dock.ids[1].hex()
    path = copy / f"rec0002-{rid}.manifest.json"
    manifest = json.loads(path.read_text())
    manifest["officer_id"] = "PD-0001"
    path.write_text(json.dumps(manifest))
    report = verify_copy(copy)
    assert [(p.file, p.reason) for p in report.problems] == [
        (path.name, "dock signature does not verify [dock_signature]")]
    assert run_verify(copy).returncode == 1
    (copy / "label.json").unlink()
    report = verify_copy(copy)
    assert not report.ok and report.label is None
    assert report.problems[0].file == "label.json"
    assert run_verify(copy).returncode == 2


def test_verify_copy_with_another_dock_key_fails(dock: Dock) -> None:
    copy = dock.preserve("dir")[0].path
    assert verify_copy(copy).ok and verify_copy(copy).dock_key_from_copy
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    report = verify_copy(copy, other)
    assert not report.ok and not report.dock_key_from_copy
    assert report.problems[0] == preserve_module.Problem(
        "dock_identity.json", "holds another key than the dock's")
    assert len(report.problems) == 4  # and every manifest fails with the expected key


def test_copy_corrupted_before_read_back_is_marked_failed(
        dock: Dock, monkeypatch: pytest.MonkeyPatch) -> None:
    # The medium corrupts copy 2 between writing and reading back; the read-back must notice.
    original = preserve_module._drop_cache

    def corrupting_disk(path: Path) -> None:
        if path.name.endswith("copy2"):
            flip_byte(next(path.glob("rec0001-*.mp4")), 123)
        original(path)

    monkeypatch.setattr(preserve_module, "_drop_cache", corrupting_disk)
    with pytest.raises(PreservationError) as info:
        dock.preserve("dir")
    marked = dock.outs[1].resolve() / f"{BASE}-copy2.FAILED"
    assert info.value.copy == marked and info.value.file is not None
    assert info.value.file.startswith("rec0001-") and "chunk 0" in str(info.value)
    assert marked.is_dir() and not (dock.outs[1] / f"{BASE}-copy2").exists()
    assert verify_copy(dock.outs[0] / f"{BASE}-copy1", dock.key).ok  # copy 1 is kept


def test_damaged_store_fails_the_write_and_leaves_it_marked(dock: Dock) -> None:
    rid = dock.ids[0]
    data_file = dock.store.store_dir / "recordings" / rid.hex() / "chunks.dat"
    flip_byte(data_file, data_file.stat().st_size - 100)  # the last chunk's ciphertext
    with pytest.raises(PreservationError) as info:
        dock.preserve("iso")
    assert not isinstance(info.value, PreservationRefused)
    assert info.value.file == f"rec0001-{rid.hex()}.mp4"
    assert info.value.copy == dock.outs[0].resolve() / f"{BASE}-copy1.iso.FAILED"
    assert info.value.copy.is_dir()  # the partly staged copy, kept for examination
    assert sorted(p.name for p in dock.outs[0].iterdir()) == [f"{BASE}-copy1.iso.FAILED"]
    assert list(dock.outs[1].iterdir()) == []  # copy 2 never started


# --------------------------------------------------------------------------- refusals

def test_refusals_write_nothing(dock: Dock, tmp_path: Path) -> None:
    def refused(match: str, **kw: object) -> None:
        args: dict[str, object] = dict(store=dock.store, recording_ids=dock.ids,
                                       label=LABEL, outs=dock.outs, fmt="dir",
                                       dock_public_key=dock.key, dock_id="dock-01")
        args.update(kw)
        with pytest.raises(PreservationRefused, match=match):
            preserve(**args)  # type: ignore[arg-type]
        assert [list(out.iterdir()) for out in dock.outs] == [[], []]

    unknown = bytes.fromhex("5e1f00000000000000000000000000ff")
    refused(f"recording {unknown.hex()} is not stored", recording_ids=[unknown])
    refused("not stored", recording_ids=[b"\x01" * 16, *dock.recordings])
    refused("more than once", recording_ids=[*dock.recordings, dock.ids[0]])
    refused("no recordings", recording_ids=[])
    refused("two independent copies are required: got 1", outs=dock.outs[:1])
    refused("same or nested", outs=[dock.outs[0], dock.outs[0]])
    (tmp_path / "a" / "b").mkdir(parents=True)
    refused("same or nested", outs=[dock.outs[0], tmp_path / "a" / "b", tmp_path / "a"])
    refused("does not exist", outs=[dock.outs[0], tmp_path / "missing"])
    (tmp_path / "a-file").write_bytes(b"")
    refused("is not a directory", outs=[dock.outs[0], tmp_path / "a-file"])
    refused("format must be", fmt="udf")
    refused("raw 32-byte key", dock_public_key=b"short")
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    refused("stored manifest does not verify: dock signature", dock_public_key=other)


def test_existing_target_is_refused(dock: Dock) -> None:
    (dock.outs[1] / f"{BASE}-copy2.iso").write_bytes(b"an earlier image")
    with pytest.raises(PreservationRefused, match="already exists"):
        dock.preserve("iso")
    assert list(dock.outs[0].iterdir()) == []
    assert (dock.outs[1] / f"{BASE}-copy2.iso").read_bytes() == b"an earlier image"


def test_unwritable_out_is_refused(dock: Dock) -> None:
    if os.geteuid() != 0:
        dock.outs[1].chmod(0o500)
        try:
            with pytest.raises(PreservationRefused, match="not writable"):
                dock.preserve("dir")
        finally:
            dock.outs[1].chmod(0o700)
        return
    # Root writes through any mode bits: a read-only filesystem (a closed disc tray, a
    # write-protected stick) is what stops it.
    with tmpfs(dock.outs[1], 1 << 20):
        subprocess.run(["mount", "-o", "remount,ro", str(dock.outs[1])], check=True)
        with pytest.raises(PreservationRefused, match="not writable"):
            dock.preserve("dir")


@pytest.mark.parametrize(("field", "value", "match"), [
    ("case_number", "  ", "case_number is required"),
    ("producer", "", "producer is required"),
    ("case_name", "two\nlines", "one line"),
    ("produced_at", "2026-11-28 03:00", "not an ISO 8601 UTC time"),
    ("produced_at", "2026-11-28T03:00:00+01:00", "not an ISO 8601 UTC time"),
    ("produced_at", "2026-13-28T03:00:00Z", "not an ISO 8601 UTC time"),
])
def test_label_is_validated(field: str, value: str, match: str) -> None:
    with pytest.raises(PreservationRefused, match=match):
        Label(**{**LABEL.to_json(), field: value})


def test_copies_on_one_filesystem_are_made_with_a_warning(
        dock: Dock, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.compliance.preserve"):
        copies = dock.preserve("dir")
    assert all(c.report.ok for c in copies)
    assert "same filesystem" in caplog.text
