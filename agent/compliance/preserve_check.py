"""Reading a preservation copy (Art. 16) back and verifying it, ISO image or directory.

`verify_copy` is what `agent.compliance.preserve` runs on each copy it wrote, before it reports
success, and what anyone can run on a copy later. It uses the agent's own manifest checks
(`agent.manifest`), independent of the ``verify.py`` shipped in the copy: two implementations
of one specification (docs/manifest.md) check each other. Names in a copy are derived from
validated fields, never taken from its label as paths, so a tampered label cannot make the
check read outside the copy.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import pycdlib
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pycdlib.pycdlibexception import PyCdlibException

from agent.manifest import (
    Manifest,
    ManifestError,
    canonical_bytes,
    verify_footage,
    verify_manifest,
)
from firmware_protocol.signing import verify_signature

__all__ = [
    "BLOCK",
    "ROOT_FILES",
    "CopyReport",
    "Entry",
    "Label",
    "PreservationError",
    "PreservationRefused",
    "Problem",
    "RecordingCheck",
    "verify_copy",
]

BLOCK = 1 << 20  # footage is read and written in 1 MiB pieces: recordings can be many GB
_MAX_JSON = 256 << 20  # a manifest of a huge recording is a few MB; refuse absurd sizes
# The copy's own files: name (Joliet / Rock Ridge / directory) → ISO 9660 level-1 name.
ROOT_FILES: Mapping[str, str] = {
    "LABEL.TXT": "LABEL.TXT", "label.json": "LABEL.JSN", "dock_identity.json": "DOCKID.JSN",
    "camera_keys.json": "CAMKEYS.JSN", "VERIFY.TXT": "VERIFY.TXT", "verify.py": "VERIFY.PY",
    "SHA256SUMS": "SHA256.TXT",
}
_REQUIRED = ("LABEL.TXT", "VERIFY.TXT", "verify.py", "SHA256SUMS")
_LABEL_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EXT = re.compile(r"[a-z0-9]{1,3}")


class PreservationError(Exception):
    """A preservation copy could not be made or does not verify.

    ``copy`` is the copy (or output directory) concerned and ``file`` the file in it, when
    known; the message repeats both for logs.
    """

    def __init__(self, message: str, *, copy: Path | None = None, file: str | None = None
                 ) -> None:
        where = ", ".join(p for p in (f"copy {copy}" if copy else "",
                                      f"file {file}" if file else "") if p)
        super().__init__(message + (f" [{where}]" if where else ""))
        self.copy = copy
        self.file = file


class PreservationRefused(PreservationError):
    """Refused before anything was written (bad arguments, unknown recording, no room)."""


@dataclass(frozen=True, slots=True)
class Label:
    """What the copy's label states (Art. 16); every field required, one printable line."""

    producing_unit: str
    producer: str
    produced_at: str  # ISO 8601 UTC, e.g. 2026-11-28T03:00:00.000Z
    case_name: str
    case_number: str

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str) or not value.strip():
                raise PreservationRefused(f"label: {f.name} is required")
            if _CONTROL.search(value) or len(value) > _LABEL_MAX:
                # One line each: LABEL.TXT is printed on the sleeve and read by people.
                raise PreservationRefused(f"label: {f.name} must be one line of at most "
                                          f"{_LABEL_MAX} characters")
        try:
            if not _UTC.fullmatch(self.produced_at):
                raise ValueError("not of the form YYYY-MM-DDTHH:MM:SS[.fff]Z")
            datetime.fromisoformat(self.produced_at)
        except ValueError as exc:
            raise PreservationRefused(f"label: produced_at {self.produced_at!r} is not an ISO "
                                      f"8601 UTC time: {exc}") from None

    def to_json(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Label:
        try:
            return cls(**{f.name: doc[f.name] for f in fields(cls)})
        except KeyError as exc:
            raise PreservationRefused(f"label: {exc.args[0]} is missing") from None


@dataclass(frozen=True, slots=True)
class Entry:
    """One recording's place in a copy, as ``label.json`` lists it."""

    n: int
    ext: str
    recording_id: str
    manifest_id: str
    camera_uid: str
    officer_id: str | None
    media: str
    started_at: str
    ended_at: str
    size: int
    sha256: str

    @property
    def stem(self) -> str:
        return f"rec{self.n:04d}-{self.recording_id}"

    @property
    def file(self) -> str:
        return f"{self.stem}.{self.ext}"

    @property
    def manifest(self) -> str:
        return f"{self.stem}.manifest.json"

    @property
    def iso_file(self) -> str:  # ISO 9660 level 1: 8.3, upper case
        return f"REC{self.n:04d}.{self.ext.upper()}"

    @property
    def iso_manifest(self) -> str:
        return f"REC{self.n:04d}.JSN"

    @classmethod
    def make(cls, n: int, manifest: Manifest, ext: str) -> Entry:
        return cls.from_json({"n": n, "ext": ext, **{
            f.name: manifest.get(f.name) for f in fields(cls) if f.name not in ("n", "ext")}})

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "file": self.file,
                "manifest": self.manifest, "iso_file": self.iso_file,
                "iso_manifest": self.iso_manifest}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Entry:
        try:
            e = cls(**{f.name: doc[f.name] for f in fields(cls)})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"recording entry is incomplete: {exc}") from None
        if not (type(e.n) is int and 0 < e.n <= 99_999 and type(e.size) is int
                and isinstance(e.ext, str) and _EXT.fullmatch(e.ext)
                and isinstance(e.recording_id, str) and _HEX32.fullmatch(e.recording_id)
                and isinstance(e.manifest_id, str) and _HEX64.fullmatch(e.manifest_id)
                and isinstance(e.sha256, str) and _HEX64.fullmatch(e.sha256)):
            raise ValueError(f"recording entry {doc.get('n')!r} has a malformed field")
        return e


@dataclass(frozen=True, slots=True)
class Problem:
    file: str  # path inside the copy (or the copy's own name)
    reason: str


@dataclass(frozen=True, slots=True)
class RecordingCheck:
    recording_id: str
    manifest_id: str
    file: str
    size: int
    sha256: str
    camera_signatures: bool  # False: no camera key in the copy, only the dock's was checked


@dataclass(frozen=True, slots=True)
class CopyReport:
    path: Path
    fmt: Literal["iso", "dir"]
    label: Label | None
    dock_id: str | None
    dock_key_from_copy: bool  # no expected key given: the copy's own key was trusted
    recordings: tuple[RecordingCheck, ...]  # those that verified
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and self.label is not None


class _Bad(Exception):
    def __init__(self, file: str, reason: str, *, missing: bool = False) -> None:
        super().__init__(f"{file}: {reason}")
        self.file, self.reason, self.missing = file, reason, missing


class _Reader(Protocol):
    def blocks(self, name: str, short: str) -> Iterator[bytes]: ...


class _DirReader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def blocks(self, name: str, short: str) -> Iterator[bytes]:
        path = self.root / name
        if not path.is_file():
            raise _Bad(name, "missing", missing=True)
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                yield block


class _IsoReader:
    def __init__(self, iso: pycdlib.PyCdlib) -> None:
        self.iso = iso

    def blocks(self, name: str, short: str) -> Iterator[bytes]:
        # Rock Ridge is what a Linux mount shows; the level-1 name is the fallback every
        # ISO 9660 reader has.
        try:
            handle = self.iso.open_file_from_iso(rr_path=f"/{name}")
        except PyCdlibException:
            try:
                handle = self.iso.open_file_from_iso(iso_path=f"/{short};1")
            except PyCdlibException:
                raise _Bad(name, "missing from the image", missing=True) from None
        with handle as f:
            while block := f.read(BLOCK):
                yield block


@contextmanager
def _open(path: Path) -> Iterator[_Reader]:
    if path.is_dir():
        yield _DirReader(path)
        return
    if not path.is_file():
        raise _Bad(path.name, "does not exist")
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except (PyCdlibException, OSError) as exc:
        raise _Bad(path.name, f"not a readable ISO 9660 image: {exc}") from None
    try:
        yield _IsoReader(iso)
    finally:
        iso.close()


def _read(reader: _Reader, name: str, short: str | None = None) -> bytes:
    data, size = [], 0
    for block in reader.blocks(name, ROOT_FILES.get(name, "") if short is None else short):
        size += len(block)
        if size > _MAX_JSON:
            raise _Bad(name, f"larger than {_MAX_JSON} bytes")
        data.append(block)
    return b"".join(data)


def _read_json(reader: _Reader, name: str, short: str | None = None) -> Any:
    try:
        return json.loads(_read(reader, name, short))
    except ValueError as exc:
        raise _Bad(name, f"not JSON: {exc}") from None


def _key(raw: object, name: str) -> Ed25519PublicKey:
    try:
        key = base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
        return Ed25519PublicKey.from_public_bytes(key)
    except (binascii.Error, ValueError):
        raise _Bad(name, "holds no valid base64 Ed25519 public key") from None


def _check_recording(reader: _Reader, e: Entry, dock_key: Ed25519PublicKey,
                     camera_keys: Mapping[str, Ed25519PublicKey]) -> RecordingCheck:
    m = _read_json(reader, e.manifest, e.iso_manifest)
    if not isinstance(m, dict) or any(m.get(k) != getattr(e, k) for k in (
            "recording_id", "manifest_id", "camera_uid", "size", "sha256")):
        raise _Bad(e.manifest, "does not match the recording's entry in label.json")
    camera = camera_keys.get(m["camera_uid"])
    try:
        if camera is not None:
            verify_manifest(m, dock_key, camera)
        elif not verify_signature(dock_key, canonical_bytes(m),
                                  base64.b64decode(m.get("signature", ""), validate=True)):
            raise _Bad(e.manifest, "dock signature does not verify")
    except (ManifestError, TypeError, ValueError) as exc:
        raise _Bad(e.manifest, str(exc)) from None
    try:
        verify_footage(m, reader.blocks(e.file, e.iso_file))  # also checks the manifest shape
    except ManifestError as exc:
        raise _Bad(e.file, str(exc)) from None
    return RecordingCheck(e.recording_id, e.manifest_id, e.file, e.size, e.sha256,
                          camera is not None)


def _check(reader: _Reader, expected_key: bytes | None, problems: list[Problem]
           ) -> tuple[Label, str, list[RecordingCheck]]:
    doc = _read_json(reader, "label.json")
    try:
        label = Label.from_json(doc)
        entries = [Entry.from_json(r) for r in doc["recordings"]]
    except (PreservationError, ValueError, KeyError, TypeError) as exc:
        raise _Bad("label.json", str(exc)) from None
    for name in _REQUIRED:
        try:
            data = _read(reader, name)
        except _Bad as bad:
            problems.append(Problem(bad.file, bad.reason))
            continue
        if name == "LABEL.TXT" and label.case_number.encode() not in data:
            problems.append(Problem(name, "does not name the case number of label.json"))
    identity = _read_json(reader, "dock_identity.json")
    if not isinstance(identity, dict) or not isinstance(identity.get("dock_id"), str):
        raise _Bad("dock_identity.json", "malformed")
    dock_key = _key(identity.get("public_key"), "dock_identity.json")
    if expected_key is not None:
        if dock_key.public_bytes_raw() != expected_key:
            problems.append(Problem("dock_identity.json", "holds another key than the dock's"))
        dock_key = Ed25519PublicKey.from_public_bytes(expected_key)
    try:
        raw_keys = _read_json(reader, "camera_keys.json")
    except _Bad as bad:
        if not bad.missing:
            raise
        raw_keys = {}
    if not isinstance(raw_keys, dict):
        raise _Bad("camera_keys.json", "malformed")
    camera_keys = {uid: _key(k, "camera_keys.json") for uid, k in raw_keys.items()}
    checks = []
    for e in entries:
        try:
            checks.append(_check_recording(reader, e, dock_key, camera_keys))
        except _Bad as bad:
            problems.append(Problem(bad.file, bad.reason))
    return label, identity["dock_id"], checks


def verify_copy(path: Path, dock_public_key: bytes | None = None) -> CopyReport:
    """Read a copy (ISO image file or directory) and check everything in it.

    Per recording: its manifest against the label, the dock signature (with
    ``dock_public_key`` if given, which must then be the copy's; else with the copy's own key),
    the camera signatures when the copy holds the camera's key, and the footage chunk by chunk
    and whole. Never raises for a bad copy: every failure is a `Problem` in the report.
    """
    path = Path(path)
    problems: list[Problem] = []
    label: Label | None = None
    dock_id: str | None = None
    checks: list[RecordingCheck] = []
    try:
        with _open(path) as reader:
            label, dock_id, checks = _check(reader, dock_public_key, problems)
    except _Bad as bad:
        problems.append(Problem(bad.file, bad.reason))
    return CopyReport(path, "dir" if path.is_dir() else "iso", label, dock_id,
                      dock_public_key is None, tuple(checks), tuple(problems))
