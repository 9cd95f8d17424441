"""Encrypted, durable store of offloaded recordings.

Layout under `store_dir` (directories 0700, files 0600)::

    partial/<rid_hex>/        being offloaded: meta.json, chunks.dat[, seal.json, manifest.json]
    recordings/<rid_hex>/     stored: same files, seal.json present
    quarantine/<rid_hex>.<n>/ failed verification: the partial as it was, plus reason.json
    purging/<rid_hex>/        a purge in progress (Art. 15): moved out of recordings/ first
    purged/<rid_hex>          empty marker left by a finished purge: never offload it again

A recording's lifecycle is directory moves, each durable: it is *stored* exactly when its
directory is under ``recordings/`` — the rename is the commit point, and ``recordings/`` is
authoritative. Progress of a partial is never kept elsewhere: it is the number of complete,
in-order records in its ``chunks.dat`` (format in `agent.store.chunkfile`). Each recording has
its own random data key, stored wrapped by the dock's `KeyStore` in ``meta.json``.
Nothing here deletes evidence on its own; failed recordings are moved aside, never removed.
The only deletion is `finish_purge`, which the compliance layer calls for an administrator's
signed purge of an expired recording, after the tombstone is durable.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from agent.store.chunkfile import (
    DATA_KEY_LEN,
    ChunkCipher,
    TornTailError,
    iter_records,
    read_ciphertext,
)
from agent.store.durable import (
    AppendOnlyFile,
    atomic_write_json,
    atomic_write_stream,
    ensure_dir,
    fsync_dir,
    move_durable,
    remove_stale_temps,
)
from agent.store.errors import CorruptStoreError, StoreError
from agent.store.keys import KeyStore

__all__ = ["FootageStore", "PartialRecording", "RecordingInfo", "StoredRecording"]

log = logging.getLogger(__name__)

_FORMAT = 1
_META, _DATA, _SEAL, _MANIFEST, _REASON = (
    "meta.json", "chunks.dat", "seal.json", "manifest.json", "reason.json")
_MAX_RID_LEN = 64


# One record buffer per appending thread (the shared offload store workers), reused for every
# chunk instead of a new zero-filled MiB per chunk; the record is encrypted straight into it.
_local = threading.local()


def _record_buffer(size: int) -> bytearray:
    buf: bytearray | None = getattr(_local, "record", None)
    if buf is None or len(buf) < size:
        buf = _local.record = bytearray(size)
    return buf


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except ValueError as exc:
        raise CorruptStoreError(f"does not parse as JSON: {exc}", path=path) from exc


def _check_rid(recording_id: bytes) -> str:
    if not isinstance(recording_id, bytes) or not 0 < len(recording_id) <= _MAX_RID_LEN:
        raise ValueError("recording_id must be 1..64 bytes")
    return recording_id.hex()


def _hex_names(directory: Path) -> Iterator[bytes]:
    for entry in sorted(directory.iterdir()):
        try:
            yield bytes.fromhex(entry.name)
        except ValueError:
            continue  # not ours (e.g. an operator's note); never touch it


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """Contents of ``meta.json``: fixed when the partial is created; only a key rotation
    rewrites it, to replace `wrapped_key` (`FootageStore.replace_wrapped_key`)."""

    recording_id: bytes
    camera_uid: bytes
    chunk_count: int
    wrapped_key: bytes
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"format": _FORMAT, "recording_id": self.recording_id.hex(),
                "camera_uid": self.camera_uid.hex(), "chunk_count": self.chunk_count,
                "wrapped_key": self.wrapped_key.hex(), "meta": self.meta}

    @classmethod
    def load(cls, directory: Path) -> RecordingInfo:
        path = directory / _META
        doc = _read_json(path)
        try:
            if doc["format"] != _FORMAT:
                raise StoreError(f"unsupported recording format {doc['format']} [{path}]")
            info = cls(bytes.fromhex(doc["recording_id"]), bytes.fromhex(doc["camera_uid"]),
                       int(doc["chunk_count"]), bytes.fromhex(doc["wrapped_key"]),
                       dict(doc["meta"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStoreError(f"malformed recording metadata: {exc!r}", path=path) from exc
        if info.recording_id.hex() != directory.name.split(".")[0]:
            raise CorruptStoreError("recording id does not match its directory", path=path)
        return info

    def cipher(self, keys: KeyStore) -> ChunkCipher:
        data_key = keys.unwrap(self.wrapped_key, self.recording_id)
        if len(data_key) != DATA_KEY_LEN:
            raise CorruptStoreError("unwrapped data key has the wrong length")
        return ChunkCipher(data_key, self.recording_id, self.chunk_count)


class _Recording:
    """What partial and stored recordings share: metadata, chunk index, authenticated read."""

    def __init__(self, directory: Path, keys: KeyStore) -> None:
        self.directory = directory
        self.info = RecordingInfo.load(directory)
        self._cipher = self.info.cipher(keys)

    @property
    def recording_id(self) -> bytes:
        return self.info.recording_id

    @property
    def chunk_count(self) -> int:
        return self.info.chunk_count

    def _decrypted(self, size: int, count: int) -> Iterator[bytes]:
        """Decrypt and authenticate records 0..count-1, which must fill exactly `size` bytes."""
        path = self.directory / _DATA
        seen = 0
        with open(path, "rb") as f:
            for record in iter_records(f, path, size):
                if record.index >= count:
                    raise CorruptStoreError(f"extra record {record.index}", path=path,
                                            line=record.index)
                yield self._cipher.decrypt(record, read_ciphertext(f, record), path)
                seen += 1
        if seen != count:
            raise CorruptStoreError(f"{seen} of {count} chunks present", path=path, line=seen)


class PartialRecording(_Recording):
    """A recording being offloaded. Not thread-safe: one offload session drives it.

    Holds an exclusive lock on its data file while open, so a second writer (another session
    or process) for the same recording is refused.
    """

    def __init__(self, store: FootageStore, directory: Path, data: AppendOnlyFile) -> None:
        super().__init__(directory, store.keys)
        self._store = store
        self._data: AppendOnlyFile | None = data
        self._chunks: list[tuple[bytes, bytes]] = []
        self._recover_tail(data)

    def _recover_tail(self, data: AppendOnlyFile) -> None:
        path, size = data.path, data.size
        torn_at: int | None = None
        with open(path, "rb") as f:
            last = None
            try:
                for last in iter_records(f, path, size):
                    self._chunks.append((last.chunk_message, last.signature))
            except TornTailError as exc:
                torn_at = exc.offset
            if last is not None:
                try:
                    self._cipher.decrypt(last, read_ciphertext(f, last), path)
                except CorruptStoreError:
                    if torn_at is not None:
                        raise  # a later append started, so this one had been acknowledged
                    # Complete-looking but unauthentic last record: its append never returned.
                    torn_at = last.offset
                    self._chunks.pop()
        if torn_at is not None:
            log.warning("recording %s: dropping torn tail of %d bytes after chunk %d",
                        self.recording_id.hex(), size - torn_at, len(self._chunks))
            data.truncate(torn_at)
        if len(self._chunks) > self.chunk_count:
            raise CorruptStoreError("more records than chunk_count", path=path)

    @property
    def next_index(self) -> int:
        """Number of chunks durably stored, i.e. the index the next append must carry."""
        return len(self._chunks)

    def _file(self) -> AppendOnlyFile:
        if self._data is None:
            raise StoreError(f"recording {self.recording_id.hex()} is closed")
        return self._data

    def append_chunk(self, index: int, data: bytes | bytearray | memoryview,
                     chunk_message: bytes, signature: bytes) -> None:
        """Encrypt and append chunk `index`, which must equal `next_index`.

        Promise on return: the chunk survives power loss. `StoreError` (nothing written) for
        a chunk offered twice, out of order or beyond `chunk_count`.
        """
        datafile = self._file()
        if index != self.next_index:
            raise StoreError(f"recording {self.recording_id.hex()}: chunk {index} offered, "
                             f"next expected is {self.next_index}")
        if index >= self.chunk_count:
            raise StoreError(f"recording {self.recording_id.hex()}: chunk {index} beyond "
                             f"chunk_count {self.chunk_count}")
        size = self._cipher.record_size(len(data), chunk_message, signature)
        out = _record_buffer(size)
        with self._cipher.encode_into(out, index, data, chunk_message, signature) as record:
            # append() only hands the buffer to os.write (its _write_all takes a memoryview);
            # the cast spares a MiB copy per chunk into a bytes object.
            datafile.append(cast(bytes, record))
        self._chunks.append((bytes(chunk_message), bytes(signature)))

    def chunks(self) -> list[tuple[bytes, bytes]]:
        """(chunk_message, signature) of each stored chunk, in order."""
        return list(self._chunks)

    def read_chunks(self) -> Iterator[bytes]:
        """Decrypt and authenticate the chunks stored so far (re-verification)."""
        return self._decrypted(self._file().size, self.next_index)

    def finalise(self, seal_message: bytes, seal_signature: bytes,
                 manifest: dict[str, Any] | None = None) -> StoredRecording:
        """Commit the complete recording: write the manifest (if any) and the seal, then move it.

        Promise on return: the recording is stored and survives power loss. A crash part-way
        leaves a complete partial that `finalise` (after `open_partial`) or
        `FootageStore.recover` completes. Closes this object.
        """
        self._file()
        if self.next_index != self.chunk_count:
            raise StoreError(f"recording {self.recording_id.hex()}: {self.next_index} of "
                             f"{self.chunk_count} chunks stored, cannot finalise")
        # The manifest first: the seal file is what `recover` takes as "finalise was entered",
        # and a recording it promotes without its manifest would never be published.
        if manifest is not None:
            atomic_write_json(self.directory / _MANIFEST, manifest)
        atomic_write_json(self.directory / _SEAL, {"seal_message": seal_message.hex(),
                                                   "seal_signature": seal_signature.hex()})
        self.close()
        return self._store._promote(self.recording_id)

    def close(self) -> None:
        """Release the data file and its lock. Idempotent."""
        if self._data is not None:
            self._data.close()
            self._data = None
            self._store._forget(self.recording_id, self)

    def __enter__(self) -> PartialRecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoredRecording(_Recording):
    """A finalised recording: read-only evidence plus a replaceable manifest."""

    def __init__(self, directory: Path, keys: KeyStore) -> None:
        super().__init__(directory, keys)
        seal = _read_json(directory / _SEAL)
        try:
            self.seal_message = bytes.fromhex(seal["seal_message"])
            self.seal_signature = bytes.fromhex(seal["seal_signature"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStoreError(f"malformed seal: {exc!r}", path=directory / _SEAL) from exc

    def _size(self) -> int:
        return (self.directory / _DATA).stat().st_size

    def chunks(self) -> list[tuple[bytes, bytes]]:
        """(chunk_message, signature) per chunk, structurally checked (not decrypted)."""
        path = self.directory / _DATA
        with open(path, "rb") as f:
            found = [(r.chunk_message, r.signature) for r in iter_records(f, path, self._size())]
        if len(found) != self.chunk_count:
            raise CorruptStoreError(f"{len(found)} of {self.chunk_count} chunks present",
                                    path=path)
        return found

    def read_chunks(self) -> Iterator[bytes]:
        """Yield each chunk's plaintext, authenticated; `CorruptStoreError` on any damage
        (altered byte, missing, extra or reordered record)."""
        return self._decrypted(self._size(), self.chunk_count)

    def export(self, out_path: Path) -> None:
        """Write the original recording bytes to `out_path` (mode 0600).

        Promise on return: the complete, verified export survives power loss. If verification
        fails part-way nothing is left at `out_path`.
        """
        atomic_write_stream(out_path, self.read_chunks(), 0o600)

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The signed manifest stored with the recording, if any."""
        path = self.directory / _MANIFEST
        if not path.exists():
            return None
        doc = _read_json(path)
        if not isinstance(doc, dict):
            raise CorruptStoreError("manifest is not a JSON object", path=path)
        return doc

    def set_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace the manifest. Promise on return: the new manifest survives power loss."""
        atomic_write_json(self.directory / _MANIFEST, manifest)


class FootageStore:
    """The three-directory store; see the module docstring for layout and guarantees."""

    def __init__(self, store_dir: Path, keys: KeyStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store_dir = Path(store_dir)
        self.keys = keys
        self._clock = clock
        self._partial = self.store_dir / "partial"
        self._recordings = self.store_dir / "recordings"
        self._quarantine = self.store_dir / "quarantine"
        self._purging = self.store_dir / "purging"
        self._purged = self.store_dir / "purged"
        for directory in (self._partial, self._recordings, self._quarantine, self._purging,
                          self._purged):
            ensure_dir(directory)
        self._open: dict[bytes, PartialRecording] = {}

    def open_partial(self, recording_id: bytes, camera_uid: bytes, chunk_count: int,
                     meta: dict[str, Any]) -> PartialRecording:
        """Create the partial recording, or resume it if it exists.

        On create a fresh data key is wrapped and written with `meta` in ``meta.json``.
        Promise on return: that file is durable. On resume, `camera_uid` and `chunk_count`
        must match what was recorded (else `StoreError`); the original `meta` is kept.
        """
        rid_hex = _check_rid(recording_id)
        if self.is_stored(recording_id):
            raise StoreError(f"recording {rid_hex} is already stored")
        if recording_id in self._open:
            raise StoreError(f"recording {rid_hex} is already open for writing")
        directory = self._partial / rid_hex
        ensure_dir(directory)
        data = AppendOnlyFile(directory / _DATA, lock=True)
        try:
            if not (directory / _META).exists():
                if data.size:
                    raise CorruptStoreError("chunk data without meta.json: data key lost",
                                            path=directory)
                data_key = os.urandom(DATA_KEY_LEN)
                info = RecordingInfo(recording_id, camera_uid, chunk_count,
                                     self.keys.wrap(data_key, recording_id), dict(meta))
                atomic_write_json(directory / _META, info.to_json())
            partial = PartialRecording(self, directory, data)
        except BaseException:
            data.close()
            raise
        if (partial.info.camera_uid, partial.chunk_count) != (camera_uid, chunk_count):
            partial.close()
            raise StoreError(f"recording {rid_hex}: resume with different camera_uid or "
                             "chunk_count than it was created with")
        self._open[recording_id] = partial
        return partial

    def _forget(self, recording_id: bytes, partial: PartialRecording) -> None:
        if self._open.get(recording_id) is partial:
            del self._open[recording_id]

    def _promote(self, recording_id: bytes) -> StoredRecording:
        rid_hex = recording_id.hex()
        try:
            move_durable(self._partial / rid_hex, self._recordings / rid_hex)
        except FileExistsError as exc:
            raise StoreError(f"recording {rid_hex} is already stored") from exc
        log.info("recording %s stored", rid_hex)
        return StoredRecording(self._recordings / rid_hex, self.keys)

    def recover(self) -> list[bytes]:
        """Finish finalisations interrupted by a crash; return the recordings completed.

        A partial holding a seal file had passed verification and entered `finalise`, so it
        is completed if all its chunks are present. Call once at start-up.
        """
        done = []
        for recording_id in self.partials():
            directory = self._partial / recording_id.hex()
            if self.is_stored(recording_id):
                # move_durable makes recordings/ durable before partial/: on a filesystem that
                # keeps renames atomic (ext4, xfs, btrfs) this cannot be. Which copy is whole is
                # for an operator to tell; deleting either here could lose evidence.
                raise CorruptStoreError(
                    f"recording {recording_id.hex()} is both stored and partial: a move was "
                    f"torn; compare it with {self._recordings / recording_id.hex()} and remove "
                    "the partial copy if the stored one verifies", path=directory)
            if recording_id in self._open or not (directory / _SEAL).exists():
                continue
            info = RecordingInfo.load(directory)
            partial = self.open_partial(recording_id, info.camera_uid, info.chunk_count, {})
            if partial.next_index != partial.chunk_count:
                partial.close()
                continue
            partial.close()
            self._promote(recording_id)
            done.append(recording_id)
        return done

    def stored(self, recording_id: bytes) -> StoredRecording | None:
        """The stored recording, or None if it is not (yet) stored."""
        directory = self._recordings / _check_rid(recording_id)
        return StoredRecording(directory, self.keys) if directory.is_dir() else None

    def is_stored(self, recording_id: bytes) -> bool:
        return (self._recordings / _check_rid(recording_id)).is_dir()

    def list_stored(self) -> Iterator[bytes]:
        """Ids of stored recordings, in hex order."""
        return _hex_names(self._recordings)

    def partials(self) -> list[bytes]:
        """Ids of recordings with an unfinished offload, in hex order."""
        return list(_hex_names(self._partial))

    def quarantine(self, recording_id: bytes, reason: str) -> Path:
        """Move a partial recording aside with a ``reason.json``; return its new directory.

        Promise on return: the move and the reason are durable. Nothing is deleted; an open
        `PartialRecording` for it is closed first.
        """
        rid_hex = _check_rid(recording_id)
        source = self._partial / rid_hex
        if not source.is_dir():
            raise StoreError(f"no partial recording {rid_hex} to quarantine")
        if (partial := self._open.get(recording_id)) is not None:
            partial.close()
        atomic_write_json(source / _REASON, {"recording_id": rid_hex, "reason": reason,
                                             "quarantined_at": self._clock()})
        n = 0
        while (self._quarantine / f"{rid_hex}.{n}").exists():
            n += 1
        target = self._quarantine / f"{rid_hex}.{n}"
        move_durable(source, target)
        log.warning("recording %s quarantined to %s: %s", rid_hex, target, reason)
        return target

    def free_bytes(self) -> int:
        """Bytes available to this process on the store's filesystem."""
        return shutil.disk_usage(self.store_dir).free

    # -- key rotation ------------------------------------------------------------------------

    def key_holders(self) -> list[Path]:
        """Every directory holding a wrapped data key: partial, stored, quarantined, and being
        purged (a purge may still be aborted), in that order."""
        found = []
        for top in (self._partial, self._recordings, self._quarantine, self._purging):
            for entry in sorted(top.iterdir()):
                try:
                    bytes.fromhex(entry.name.split(".")[0])
                except ValueError:
                    continue  # not ours
                if (entry / _META).is_file():
                    found.append(entry)
        return found

    def replace_wrapped_key(self, directory: Path, wrapped_key: bytes) -> None:
        """Rewrite `directory`'s ``meta.json`` (one of `key_holders`) with only its wrapped
        data key replaced; the footage is not touched.

        Promise on return: the new file is durable; a crash before leaves the old one whole.
        """
        path = directory / _META
        RecordingInfo.load(directory)  # refuse to rewrite metadata that does not parse
        doc = _read_json(path)
        doc["wrapped_key"] = wrapped_key.hex()
        remove_stale_temps(directory, _META)
        atomic_write_json(path, doc)

    # -- purge (Art. 15) ---------------------------------------------------------------------

    def begin_purge(self, recording_id: bytes) -> None:
        """Take a stored recording out of ``recordings/`` (durable on return), so that from
        here on it is no longer stored; `finish_purge` or `abort_purge` follows."""
        rid_hex = _check_rid(recording_id)
        if not (self._recordings / rid_hex).is_dir():
            raise StoreError(f"recording {rid_hex} is not stored")
        move_durable(self._recordings / rid_hex, self._purging / rid_hex)

    def abort_purge(self, recording_id: bytes) -> None:
        """Put a recording whose purge was not recorded back where it was (durable)."""
        rid_hex = _check_rid(recording_id)
        move_durable(self._purging / rid_hex, self._recordings / rid_hex)

    def finish_purge(self, recording_id: bytes) -> None:
        """Delete the footage and its wrapped data key, leave the ``purged/`` marker.

        Promise on return: the marker and the deletion are durable. Idempotent, so recovery
        can repeat it after a crash part-way."""
        rid_hex = _check_rid(recording_id)
        marker = self._purged / rid_hex
        if not marker.exists():
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self._purged)
        target = self._purging / rid_hex
        if target.exists():
            shutil.rmtree(target)
            fsync_dir(self._purging)
        log.warning("recording %s purged", rid_hex)

    def purges_in_progress(self) -> list[bytes]:
        return list(_hex_names(self._purging))

    def is_purged(self, recording_id: bytes) -> bool:
        return (self._purged / _check_rid(recording_id)).exists()
