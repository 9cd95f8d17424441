"""What is on the camera's storage: media items, their bytes, ids, chunk layout and times.

A recording's bytes come from a :class:`Source`: a file in ``--media-dir`` (read chunk by chunk,
never held whole, so 1 GiB recordings stay cheap) or a deterministic generator for ``--generate``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from firmware_protocol.errors import ErrorCode
from firmware_protocol.messages import MAX_CHUNK_SIZE, RecordingInfo
from firmware_protocol.signing import Media

from .errors import CameraError, ConfigError

__all__ = [
    "AUDIO_BITRATE_BPS",
    "EXTENSIONS",
    "GENERATED_BLOCK",
    "FileSource",
    "GeneratedSource",
    "MediaItem",
    "Recording",
    "RecordingRef",
    "Source",
    "duration_ms",
    "generate_items",
    "parse_recording_ref",
    "parse_size",
    "recording_id",
    "scan_media_dir",
]

EXTENSIONS: dict[str, Media] = {
    ".mp4": Media.VIDEO, ".mkv": Media.VIDEO, ".ts": Media.VIDEO,
    ".wav": Media.AUDIO, ".aac": Media.AUDIO, ".amr": Media.AUDIO,
    ".jpg": Media.PHOTO, ".png": Media.PHOTO,
}
AUDIO_BITRATE_BPS = 128_000  # audio-only recorders run far below the video bitrate
GENERATED_BLOCK = 64 * 1024
_SIZE = re.compile(r"(\d+)([KMG]?)", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``262144``, ``256K``, ``1M``, ``1G`` (binary units) → bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"bad size {text!r}: expected digits with an optional K, M or G suffix")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def recording_id(camera_uid: bytes, name: str) -> bytes:
    """First 16 bytes of SHA-256(camera_uid + name): stable across restarts and re-scans."""
    return hashlib.sha256(camera_uid + name.encode("utf-8")).digest()[:16]


def duration_ms(media: Media, size: int, video_bitrate_bps: int) -> int:
    """Nominal length of a recording of ``size`` bytes; photos are instants."""
    if media is Media.PHOTO:
        return 0
    bitrate = AUDIO_BITRATE_BPS if media is Media.AUDIO else video_bitrate_bps
    return size * 8 * 1000 // bitrate


class Source(Protocol):
    @property
    def size(self) -> int: ...

    def read(self, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes at ``offset``; ``CameraError(STORAGE_FAULT)`` if impossible."""
        ...


@dataclass(frozen=True, slots=True)
class FileSource:
    path: Path
    size: int
    # The file as it was when listed (and so when signed, just after): a file edited under the
    # running emulator is refused rather than served as bytes that fail verification for a
    # reason no fault asked for. Checked with one fstat per chunk; hashing every chunk again
    # to find out cost as much CPU as the dock's own hashing (0.6 s/GiB).
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path, st: os.stat_result) -> FileSource:
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ino)

    def read(self, offset: int, size: int) -> bytes:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if (st.st_size, st.st_mtime_ns, st.st_ino) != (self.size, self.mtime_ns,
                                                               self.inode):
                    raise CameraError(ErrorCode.STORAGE_FAULT,
                                      f"{self.path.name} changed since signed")
                f.seek(offset)
                data = f.read(size)
        except OSError as exc:
            raise CameraError(ErrorCode.STORAGE_FAULT, f"cannot read {self.path.name}: "
                              f"{exc.strerror}") from None
        if len(data) != size:
            raise CameraError(ErrorCode.STORAGE_FAULT, f"{self.path.name} shrank while served")
        return data


@dataclass(frozen=True, slots=True)
class GeneratedSource:
    """Pseudo-random bytes, regenerated on demand in fixed blocks seeded by ``seed`` + block no.

    Blocks (not chunks) carry the seed so the content does not depend on ``--chunk-size``.
    """

    seed: str
    size: int

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or offset + size > self.size:
            raise CameraError(ErrorCode.STORAGE_FAULT, "read past the end of a recording")
        first, last = offset // GENERATED_BLOCK, (offset + size - 1) // GENERATED_BLOCK
        parts = []
        for block in range(first, last + 1):
            length = min(GENERATED_BLOCK, self.size - block * GENERATED_BLOCK)
            parts.append(random.Random(f"{self.seed}:{block}").randbytes(length))
        data = b"".join(parts)
        start = offset - first * GENERATED_BLOCK
        return data[start : start + size]


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One recording as found on storage, before the camera gives it an id and times."""

    name: str
    media: Media
    source: FileSource | GeneratedSource
    mtime_us: int | None = None  # host time the file was last written; None when generated


def scan_media_dir(directory: Path) -> list[MediaItem]:
    """Every regular file in ``directory`` in name order; an unknown extension is an error."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise ConfigError(f"cannot read --media-dir {directory}: {exc.strerror}") from None
    items = []
    for entry in entries:
        if not entry.is_file():
            continue
        ext = os.path.splitext(entry.name)[1].lower()
        media = EXTENSIONS.get(ext)
        if media is None:
            known = " ".join(EXTENSIONS)
            raise ConfigError(f"--media-dir: {entry.name}: unsupported extension "
                              f"{ext or '(none)'!r}; expected one of {known}")
        st = entry.stat()
        items.append(MediaItem(entry.name, media, FileSource.of(Path(entry.path), st),
                               st.st_mtime_ns // 1000))
    return items


def generate_items(camera_uid: bytes, count: int, size: int) -> list[MediaItem]:
    """``count`` deterministic video recordings of ``size`` bytes, seeded by uid + index."""
    return [MediaItem(f"generated-{i:04d}.mp4", Media.VIDEO,
                      GeneratedSource(f"{camera_uid.hex()}:{i}", size))
            for i in range(count)]


@dataclass(frozen=True, slots=True)
class RecordingRef:
    """How a command line names a recording: 0-based position (name order) or 32-hex id."""

    position: int | None = None
    recording_id: bytes | None = None

    def __str__(self) -> str:
        return str(self.position) if self.recording_id is None else self.recording_id.hex()


def parse_recording_ref(text: str) -> RecordingRef:
    text = text.strip()
    if text.isdigit():
        return RecordingRef(position=int(text))
    if len(text) == 32:
        try:
            return RecordingRef(recording_id=bytes.fromhex(text))
        except ValueError:
            pass
    raise ConfigError(f"bad recording {text!r}: expected a 0-based position or a 32-hex id")


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording as the camera lists it: id, times and chunk layout over a media item."""

    position: int
    item: MediaItem
    recording_id: bytes
    started_ms: int
    ended_ms: int
    chunk_size: int

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ConfigError(f"chunk size must be 1..{MAX_CHUNK_SIZE}")

    @property
    def size(self) -> int:
        return self.item.source.size

    @property
    def chunk_count(self) -> int:
        return -(-self.size // self.chunk_size)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset, size) of chunk ``index``."""
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)

    def info(self) -> RecordingInfo:
        return RecordingInfo(self.recording_id, self.item.media, self.size, self.chunk_size,
                             self.chunk_count, self.started_ms, self.ended_ms, True)

    def matches(self, ref: RecordingRef) -> bool:
        if ref.recording_id is not None:
            return ref.recording_id == self.recording_id
        return ref.position == self.position
