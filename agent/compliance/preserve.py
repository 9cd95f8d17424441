"""Preservation copies (Art. 16): two independent, verified copies of a case's recordings.

Each copy holds, per recording, the original footage (decrypted, bit for bit what the camera
recorded) and its signed manifest, plus a label, the dock's identity, instructions and a
stand-alone ``verify.py`` (`agent.compliance.preserve_verify`). A copy is an ISO 9660 image
(Joliet + Rock Ridge, ready to burn) or a plain directory. Layout: docs/compliance.md,
"Preservation copies".

A copy is made in a temp name in its output directory, fsynced and renamed into place, so a
crash never leaves something that looks like a finished copy. Success is only reported after
both copies were read back from disk and verified with the agent's own checks; a copy that
fails is never deleted but renamed ``….FAILED``, since it may be what someone wants to examine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pycdlib
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.compliance.preserve_check import (
    BLOCK,
    ROOT_FILES,
    CopyReport,
    Entry,
    Label,
    PreservationError,
    PreservationRefused,
    Problem,
    RecordingCheck,
    verify_copy,
)
from agent.manifest import (
    Manifest,
    ManifestError,
    ManifestErrorCode,
    canonical_bytes,
    verify_manifest,
)
from agent.store.durable import atomic_write_bytes, atomic_write_stream, fsync_dir, move_durable
from agent.store.errors import StoreError
from agent.store.footage import FootageStore, StoredRecording
from firmware_protocol.signing import verify_signature

__all__ = [
    "CopyReport",
    "Label",
    "PreservationError",
    "PreservationRefused",
    "PreservedCopy",
    "Problem",
    "RecordingCheck",
    "preserve",
    "verify_copy",
]

log = logging.getLogger(__name__)

Format = Literal["iso", "dir"]
_SCRIPT = Path(__file__).with_name("preserve_verify.py")
_RR_FILE_MODE = 0o100444  # read-only for everyone on the disc: staged files are 0600, root's
_MAX_RECORDINGS = 99_999  # "REC99999" is the longest ISO 9660 level-1 base name (8 chars)
_SLACK = 16 << 20  # label, manifests, script: generous room on top of the footage itself
# First bytes → file extension, so a court's player opens the footage. The dock never learns
# the camera's container, and a wrong guess only costs a name: the bytes are what is verified.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "mp4"), (0, b"\x1a\x45\xdf\xa3", "mkv"), (0, b"\xff\xd8\xff", "jpg"),
    (0, b"\x89PNG", "png"), (0, b"#!AMR", "amr"), (8, b"WAVE", "wav"), (8, b"AVI ", "avi"),
    (0, b"\xff\xf1", "aac"), (0, b"\xff\xf9", "aac"),
)


class _WriteFailed(Exception):
    """Which file of a copy could not be written, and why (the store, or the disk)."""

    def __init__(self, file: str, cause: Exception) -> None:
        super().__init__(f"cannot write {file}: {cause}")
        self.file = file


@dataclass(frozen=True, slots=True)
class _Planned:
    entry: Entry
    stored: StoredRecording
    manifest: Manifest  # as checked against the dock key: the same one goes into every copy


@dataclass(frozen=True, slots=True)
class PreservedCopy:
    path: Path  # the ISO image or the directory
    fmt: Format
    copy_number: int  # 1-based, as written in the copy's label
    image_sha256: str | None  # of the whole ISO image (what a burnt disc must read back as)
    report: CopyReport  # the read-back verification


# --------------------------------------------------------------------------- refusals

def _check_outs(outs: Sequence[Path]) -> list[Path]:
    if len(outs) < 2:
        raise PreservationRefused(f"two independent copies are required: got {len(outs)} "
                                  f"output director{'y' if len(outs) == 1 else 'ies'}")
    resolved = []
    for out in map(Path, outs):
        if not out.is_dir():
            raise PreservationRefused(f"output directory {out} does not exist or is not a "
                                      f"directory", copy=out)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PreservationRefused(f"output directory {out} is not writable", copy=out)
        resolved.append(out.resolve())
    for i, a in enumerate(resolved):
        for b in resolved[i + 1:]:
            if a == b or a.is_relative_to(b) or b.is_relative_to(a):
                raise PreservationRefused(f"{a} and {b} are the same or nested: the copies "
                                          f"would not be independent", copy=b)
    return resolved


def _warn_same_disk(outs: Sequence[Path]) -> None:
    for i, a in enumerate(outs):
        for b in outs[i + 1:]:
            if a.stat().st_dev == b.stat().st_dev:
                # Allowed (a single USB disk may be all there is), but one failing disk then
                # takes both copies with it; the operator should know.
                log.warning("copies in %s and %s are on the same filesystem: they are not "
                            "independent of that disk", a, b)


def _sniff(first: bytes) -> str:
    for offset, magic, ext in _MAGIC:
        if first[offset:offset + len(magic)] == magic:
            return ext
    if first[:1] == b"\x47" and (len(first) <= 188 or first[188:189] == b"\x47"):
        return "ts"  # MPEG transport stream: a sync byte every 188 bytes
    return "bin"


def _plan(store: FootageStore, recording_ids: Sequence[bytes], dock_key: Ed25519PublicKey,
          camera_keys: Mapping[bytes, bytes]) -> list[_Planned]:
    """Every recording stored, with a manifest the dock key vouches for — or a refusal."""
    if not recording_ids:
        raise PreservationRefused("no recordings given")
    if len(recording_ids) > _MAX_RECORDINGS:
        raise PreservationRefused(f"at most {_MAX_RECORDINGS} recordings per preservation")
    if len(set(recording_ids)) != len(recording_ids):
        raise PreservationRefused("a recording id is given more than once")
    planned = []
    for n, rid in enumerate(recording_ids, 1):
        try:
            stored = store.stored(rid)
            manifest = stored.manifest if stored is not None else None
        except (ValueError, StoreError) as exc:
            raise PreservationRefused(f"recording {rid.hex()}: {exc}") from exc
        if stored is None:
            raise PreservationRefused(f"recording {rid.hex()} is not stored on this dock")
        if manifest is None or manifest.get("recording_id") != rid.hex():
            raise PreservationRefused(f"recording {rid.hex()} has no manifest of its own")
        _check_manifest(rid, manifest, dock_key, camera_keys)
        # One chunk decrypted to name the file; the generator is closed right away.
        chunks = stored.read_chunks()
        try:
            first = next(chunks, b"")
        except StoreError as exc:
            raise PreservationRefused(f"recording {rid.hex()}: {exc}") from exc
        finally:
            close = getattr(chunks, "close", None)  # a generator: release its open file now
            if close is not None:
                close()
        try:
            entry = Entry.make(n, manifest, _sniff(first))
        except ValueError as exc:
            raise PreservationRefused(f"recording {rid.hex()}: {exc}") from exc
        planned.append(_Planned(entry, stored, manifest))
    return planned


def _check_manifest(rid: bytes, manifest: Manifest, dock_key: Ed25519PublicKey,
                    camera_keys: Mapping[bytes, bytes]) -> None:
    try:
        camera = camera_keys.get(bytes.fromhex(manifest["camera_uid"]))
        if camera is not None:
            verify_manifest(manifest, dock_key, Ed25519PublicKey.from_public_bytes(camera))
        elif not verify_signature(dock_key, canonical_bytes(manifest),
                                  base64.b64decode(manifest["signature"], validate=True)):
            raise ManifestError("dock signature does not verify",
                                ManifestErrorCode.DOCK_SIGNATURE)
    except (ManifestError, KeyError, TypeError, ValueError) as exc:
        raise PreservationRefused(f"recording {rid.hex()}: its stored manifest does not "
                                  f"verify: {exc}") from exc


# --------------------------------------------------------------------------- writing

def _label_text(label: Label, copy: int, copies: int, fmt: Format, dock_id: str,
                dock_key: str, entries: Sequence[Entry]) -> str:
    what = "ISO 9660 image" if fmt == "iso" else "directory"
    lines = [
        "PRESERVATION COPY (Art. 16) - body-worn camera recordings", "",
        f"Case name:       {label.case_name}",
        f"Case number:     {label.case_number}",
        f"Producing unit:  {label.producing_unit}",
        f"Producer:        {label.producer}",
        f"Produced at:     {label.produced_at} (UTC)",
        f"Copy:            {copy} of {copies} ({what})",
        f"Dock:            {dock_id}, public key {dock_key}",
        f"Recordings:      {len(entries)}", "",
    ]
    for e in entries:
        lines += [f"{e.iso_file:<12} {e.file}",
                  f"{'':12} recording {e.recording_id}  camera {e.camera_uid}  "
                  f"officer {e.officer_id or '-'}  {e.media}",
                  f"{'':12} {e.started_at} to {e.ended_at} (camera clock)",
                  f"{'':12} {e.size} bytes  SHA-256 {e.sha256}", ""]
    lines.append("How to check this copy: VERIFY.TXT")
    return "\n".join(lines) + "\n"


_VERIFY_TXT = """\
HOW TO VERIFY THIS PRESERVATION COPY

Every recording here is the original footage as the camera recorded it (file rec….<ext>),
with the dock's signed manifest (rec….manifest.json). The manifest carries the camera's
signatures over every chunk of the footage and over the recording as a whole (the seal), and
the dock's signature over the manifest. The whole procedure is specified in the dock's
documentation, docs/manifest.md ("Verifying, step by step").

1. Automatic: with Python 3.11 or later, run

       python3 verify.py            (from this copy, e.g. the mounted disc)

   It checks every footage file chunk by chunk and as a whole against its manifest, the seal,
   and the signatures. Signatures need the Python package "cryptography"
   (pip install cryptography); without it the hashes are still checked and the result says
   INCOMPLETE. Exit status 0 = everything verified, 1 = a check failed.

2. Compare the dock key. dock_identity.json holds the key of the dock that made this copy:
   {dock_key}
   A copy can only vouch for itself: compare it with the key the dock published (MQTT topic
   .../identity, or `dock-agent identity` on the dock) and pass it: verify.py --dock-key KEY.
   camera_keys.json holds the cameras' enrolled keys as the dock knew them; for an
   independent check take them from the fleet's enrolment records: --camera-key UID=KEY.

3. Without Python: `sha256sum -c SHA256SUMS` checks every file of the copy; the footage
   hashes there equal the "sha256" field of each manifest and the list in LABEL.TXT.
"""


def _json_bytes(doc: object) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _write_tree(work: Path, planned: Sequence[_Planned], label: Label,
                copy: int, copies: int, fmt: Format, dock_id: str, dock_key: bytes,
                camera_keys: Mapping[bytes, bytes]) -> list[tuple[str, str]]:
    """Write every file of a copy into ``work``; return (name, ISO 9660 name) of each."""
    entries = [p.entry for p in planned]
    key_b64 = base64.b64encode(dock_key).decode()
    uids = {e.camera_uid for e in entries}
    small: dict[str, bytes] = {
        "label.json": _json_bytes({**label.to_json(), "type": "preservation_label", "schema": 1,
                                   "copy": copy, "copies": copies, "format": fmt,
                                   "dock_id": dock_id,
                                   "recordings": [e.to_json() for e in entries]}),
        "LABEL.TXT": _label_text(label, copy, copies, fmt, dock_id, key_b64, entries).encode(),
        "dock_identity.json": _json_bytes({"type": "dock_identity", "dock_id": dock_id,
                                           "public_key": key_b64}),
        "VERIFY.TXT": _VERIFY_TXT.format(dock_key=key_b64).encode(),
        "verify.py": _SCRIPT.read_bytes(),
    }
    keys = {uid.hex(): base64.b64encode(k).decode() for uid, k in camera_keys.items()
            if uid.hex() in uids}
    if keys:
        small["camera_keys.json"] = _json_bytes(keys)
    sums = []
    current = ""
    try:
        for p in planned:
            current = p.entry.file
            # Streams chunk by chunk: footage can be many GB and is never held in memory.
            atomic_write_stream(work / p.entry.file, p.stored.read_chunks())
            sums.append((p.entry.sha256, p.entry.file))
            small[p.entry.manifest] = _json_bytes(p.manifest)
        for name, data in small.items():
            sums.append((hashlib.sha256(data).hexdigest(), name))
        small["SHA256SUMS"] = "".join(f"{h}  {n}\n" for h, n in sorted(sums, key=lambda s: s[1])
                                      ).encode()
        for name, data in small.items():
            current = name
            atomic_write_bytes(work / name, data)
    except (OSError, StoreError) as exc:
        raise _WriteFailed(current, exc) from exc
    return [(name, ROOT_FILES[name]) for name in small if name in ROOT_FILES] + [
        pair for e in entries for pair in ((e.file, e.iso_file), (e.manifest, e.iso_manifest))]


def _pack_iso(work: Path, files: Sequence[tuple[str, str]], image: Path, volume: str) -> None:
    """Master the ISO image from the staged files; pycdlib streams each file while writing."""
    iso = pycdlib.PyCdlib()
    # Level 3 only to allow files over 4 GiB (multi-extent); every name is also level-1 (8.3).
    iso.new(interchange_level=3, vol_ident=volume, joliet=3, rock_ridge="1.09")
    try:
        for name, short in files:
            iso.add_file(str(work / name), iso_path=f"/{short};1", rr_name=name,
                         joliet_path=f"/{name}", file_mode=_RR_FILE_MODE)
        with open(image, "r+b") as f:
            iso.write_fp(f)
            f.flush()
            os.fsync(f.fileno())
    finally:
        iso.close()


def _mark_failed(path: Path, target: Path) -> Path:
    n, marked = 1, target.with_name(target.name + ".FAILED")
    while marked.exists():
        n += 1
        marked = target.with_name(f"{target.name}.FAILED.{n}")
    move_durable(path, marked)
    log.error("preservation copy %s FAILED; left at %s for examination", target, marked)
    return marked


def _write_copy(planned: Sequence[_Planned], label: Label, target: Path,
                copy: int, copies: int, fmt: Format, dock_id: str, dock_key: bytes,
                camera_keys: Mapping[bytes, bytes]) -> None:
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    image: Path | None = None
    try:
        files = _write_tree(work, planned, label, copy, copies, fmt, dock_id, dock_key,
                            camera_keys)
        fsync_dir(work)
        if fmt == "dir":
            move_durable(work, target)
            return
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".tmp")
        os.close(fd)
        image = Path(name)
        volume = re.sub(r"[^A-Z0-9_]", "_", label.case_number.upper())[:26] + f"_C{copy}"
        _pack_iso(work, files, image, volume)
        move_durable(image, target)
    except Exception as exc:
        # What was written stays for examination; the ISO staging tree is only scratch.
        leftover = image if image is not None and image.exists() else work
        marked = _mark_failed(leftover, target)
        file = exc.file if isinstance(exc, _WriteFailed) else None
        raise PreservationError(f"writing copy {copy} failed: {exc}; what was written is left "
                                f"at {marked}", copy=marked, file=file) from exc
    finally:
        if fmt == "iso" and work.exists():
            # Decrypted staging files, not a copy: the image holds them (or is marked FAILED).
            shutil.rmtree(work)
            log.info("removed ISO staging directory %s", work)


def _drop_cache(path: Path) -> None:
    """Best effort: evict the copy's pages so the read-back reads the disk, not the cache of
    what was just written. Needs the data to be fsynced (clean pages), which it is."""
    for file in ([path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]):
        try:
            fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except (AttributeError, OSError):
            pass
        finally:
            os.close(fd)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- the operation

def preserve(store: FootageStore, recording_ids: Sequence[bytes], label: Label,
             outs: Sequence[Path], *, fmt: Format, dock_public_key: bytes, dock_id: str,
             camera_public_keys: Mapping[bytes, bytes] | None = None) -> list[PreservedCopy]:
    """Write one copy of ``recording_ids`` per output directory, read each back and verify it.

    ``dock_public_key`` is the raw 32-byte key every manifest must verify with;
    ``camera_public_keys`` (camera uid → raw 32-byte key, optional) lets the read-back check
    the camera signatures too and is included in the copies for their verifier.

    Promise on return: every copy is complete, durable and verified. `PreservationRefused`
    means nothing was written; any other `PreservationError` names the copy (renamed
    ``….FAILED``, never removed) and the file that failed.
    """
    if fmt not in ("iso", "dir"):
        raise PreservationRefused(f"format must be 'iso' or 'dir', got {fmt!r}")
    if not isinstance(dock_id, str) or not dock_id.strip():
        raise PreservationRefused("dock_id must be a non-empty string")
    try:
        dock_key = Ed25519PublicKey.from_public_bytes(bytes(dock_public_key))
    except ValueError as exc:
        raise PreservationRefused(f"dock_public_key must be a raw 32-byte key: {exc}") from exc
    camera_keys = dict(camera_public_keys or {})
    out_dirs = _check_outs(outs)
    planned = _plan(store, recording_ids, dock_key, camera_keys)
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", label.case_number).strip("._")[:64] or "case"
    suffix = ".iso" if fmt == "iso" else ""
    targets = [out / f"{base}-copy{n}{suffix}" for n, out in enumerate(out_dirs, 1)]
    footage = sum(p.entry.size for p in planned)
    need = footage * (2 if fmt == "iso" else 1) + _SLACK  # ISO: staged files + the image
    for target in targets:
        if target.exists() or target.is_symlink():
            raise PreservationRefused(f"{target} already exists", copy=target)
        free = shutil.disk_usage(target.parent).free
        if free < need:
            raise PreservationRefused(f"{target.parent}: {free} bytes free, a {fmt} copy "
                                      f"needs {need}", copy=target)
    _warn_same_disk(out_dirs)
    for n, target in enumerate(targets, 1):
        _write_copy(planned, label, target, n, len(targets), fmt, dock_id,
                    bytes(dock_public_key), camera_keys)
        log.info("preservation copy %d of %d written: %s", n, len(targets), target)
    results, failed = [], []
    for n, target in enumerate(targets, 1):
        _drop_cache(target)
        report = verify_copy(target, bytes(dock_public_key))
        if not report.ok:
            failed.append((n, target, report))
            continue
        digest = _file_sha256(target) if fmt == "iso" else None
        results.append(PreservedCopy(target, fmt, n, digest, report))
    if failed:
        marked = [(n, _mark_failed(t, t), r) for n, t, r in failed]
        n, where, report = marked[0]
        problem = report.problems[0]
        others = "".join(f"; copy {m} also failed, left at {p}" for m, p, _ in marked[1:])
        raise PreservationError(f"copy {n} failed verification after writing: {problem.reason};"
                                f" left at {where}{others}", copy=where, file=problem.file)
    return results
