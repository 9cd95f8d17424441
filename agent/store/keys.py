"""The dock's long-lived secrets: its Ed25519 signing key and the footage wrapping key.

Both live as files in the state directory, created on first use. The directory must be the
service user's alone (owner = this process's user, mode 0700) and so must every key file (mode
0600, a regular file, not a symlink): anything else is `InsecureKeyFileError`, and the agent
refuses to start. Keys are never overwritten in place: losing the wrapping key makes every
stored recording unreadable, so creation uses a no-clobber atomic write, and a key file that
exists but is unsafe or damaged is an error, not a reason to make a new one. Key bytes are
never logged, and no message or exception carries them.

Wrapped-key format (version 1), 9-byte header then AES-256-GCM output::

    version (1 byte = 0x01) | key id (8 bytes) | nonce (12) | ciphertext + tag (len + 16)

The key id is the first 8 bytes of SHA-256 of the wrapping key, so a blob names the key that
opens it. The AAD is the header followed by the caller's context (e.g. the recording id): a
wrapped key moved to another recording, or a header edited, fails to unwrap.

Rotation (`begin_rotation`, `rewrap`, `finish_rotation`; driven by `agent.rotation`):
the new key is written as ``wrap.next.key`` before anything is wrapped under it, and only
replaces ``wrap.key`` once nothing is wrapped under the old key any more. Until then `unwrap`
opens blobs under either key, so a rotation cut short leaves every recording readable and is
completed by running it again.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.store.durable import atomic_write_bytes, ensure_dir, fsync_dir, remove_stale_temps
from agent.store.errors import CorruptStoreError, InsecureKeyFileError, StoreError

__all__ = [
    "NEXT_WRAP_KEY_FILE",
    "SIGNING_KEY_FILE",
    "WRAP_FORMAT_VERSION",
    "WRAP_KEY_FILE",
    "KeyStore",
    "check_key_dir",
    "wrapped_key_id",
]

log = logging.getLogger(__name__)

SIGNING_KEY_FILE = "dock_key.pem"
WRAP_KEY_FILE = "wrap.key"
NEXT_WRAP_KEY_FILE = "wrap.next.key"
WRAP_FORMAT_VERSION = 1
_WRAP_KEY_LEN = 32
_KEY_ID_LEN = 8
_NONCE_LEN = 12
_TAG_LEN = 16
_HEADER_LEN = 1 + _KEY_ID_LEN


def _check_private(st: os.stat_result, what: str, expected: int, path: Path) -> None:
    """The owner must be this process's user and nobody else may have any access."""
    euid = os.geteuid()
    if st.st_uid != euid:
        raise InsecureKeyFileError(
            f"{what} is owned by uid {st.st_uid}, not by uid {euid} running the agent: run "
            "as the service user", path=path)
    if st.st_mode & 0o077:
        raise InsecureKeyFileError(
            f"{what} mode {stat.S_IMODE(st.st_mode):04o} gives group/other access; "
            f"expected {expected:04o}", path=path)


def check_key_dir(directory: Path) -> bool:
    """Whether `directory` exists; `InsecureKeyFileError` unless it is ours alone (0700)."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise InsecureKeyFileError("key directory is not a directory", path=directory)
    _check_private(st, "key directory", 0o700, directory)
    return True


def _read_private_file(path: Path) -> bytes | None:
    """Contents of a key file, None if absent; refuse symlinks, non-files, loose modes, other
    owners, and a directory that is not private."""
    if not check_key_dir(path.parent):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InsecureKeyFileError("key file is a symlink", path=path) from exc
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InsecureKeyFileError("key file is not a regular file", path=path)
        _check_private(st, "key file", 0o600, path)
        return f.read()


def wrapped_key_id(blob: bytes) -> bytes:
    """The id of the wrapping key a blob was made with (its header; not secret)."""
    if len(blob) < _HEADER_LEN + _NONCE_LEN + _TAG_LEN:
        raise CorruptStoreError(f"wrapped key too short ({len(blob)} bytes)")
    if blob[0] != WRAP_FORMAT_VERSION:
        raise StoreError(f"unsupported wrapped-key format version {blob[0]}")
    return blob[1:_HEADER_LEN]


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KEY_ID_LEN]


class KeyStore:
    """Loads or creates the dock's keys in `state_dir`; thread-safe, keys loaded lazily.

    Promise: once `signing_key`, `public_key_raw`, `wrap` or `unwrap` has returned, the key it
    used is on disk and survives power loss (created via a no-clobber atomic write).

    `wrap` always uses the key loaded first; a process that wraps (the daemon) must therefore
    not run during a rotation, which `agent.rotation` enforces. `unwrap` finds the key a
    blob names, re-reading the key files when a rotation elsewhere added or promoted one.
    """

    def __init__(self, state_dir: Path, *, create: bool = True) -> None:
        """``create=False`` for tools that only read (``dock-agent identity``, ``verify``,
        ``export``): a missing key is then an error, never a new identity made by the wrong
        user."""
        self.state_dir = Path(state_dir)
        self.create = create
        self._lock = threading.Lock()
        self._signing_key: Ed25519PrivateKey | None = None
        self._aead: AESGCM | None = None
        self._key_id = b""
        self._ring: dict[bytes, AESGCM] = {}  # every wrapping key seen, by id
        self._next: tuple[AESGCM, bytes] | None = None

    def _load_or_create(self, name: str, make: bytes, *, create: bool | None = None) -> bytes:
        path = self.state_dir / name
        data = _read_private_file(path)
        if data is not None:
            return data
        if not (self.create if create is None else create):
            raise StoreError(f"no key file {path}: has the agent run with this state_dir?")
        ensure_dir(self.state_dir)
        check_key_dir(self.state_dir)
        remove_stale_temps(self.state_dir, name)
        try:
            atomic_write_bytes(path, make, 0o600, overwrite=False)
        except FileExistsError:
            # Another process created it first: theirs wins, ours was never used.
            data = _read_private_file(path)
            if data is None:
                raise StoreError(f"key file {path} vanished during creation") from None
            return data
        log.info("created new key file %s", path)
        return make

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """The dock's Ed25519 identity (``dock_key.pem``, unencrypted PKCS#8 PEM)."""
        with self._lock:
            if self._signing_key is None:
                fresh = Ed25519PrivateKey.generate().private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                pem = self._load_or_create(SIGNING_KEY_FILE, fresh)
                path = self.state_dir / SIGNING_KEY_FILE
                try:
                    key = serialization.load_pem_private_key(pem, password=None)
                except (ValueError, TypeError) as exc:
                    raise CorruptStoreError("signing key does not parse as PKCS#8 PEM",
                                            path=path) from exc
                if not isinstance(key, Ed25519PrivateKey):
                    raise CorruptStoreError("signing key is not Ed25519", path=path)
                self._signing_key = key
            return self._signing_key

    @property
    def public_key_raw(self) -> bytes:
        """The 32-byte raw Ed25519 public key."""
        return self.signing_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def _remember(self, key: bytes, name: str) -> tuple[AESGCM, bytes]:
        """Add a wrapping key read from file `name` to the ring (lock held)."""
        if len(key) != _WRAP_KEY_LEN:
            raise CorruptStoreError(f"wrapping key is {len(key)} bytes, expected {_WRAP_KEY_LEN}",
                                    path=self.state_dir / name)
        key_id = _key_id(key)
        aead = self._ring.setdefault(key_id, AESGCM(key))
        return aead, key_id

    def _wrapping(self, *, rotating: bool = False) -> tuple[AESGCM, bytes]:
        with self._lock:
            if self._aead is None:
                key = self._load_or_create(WRAP_KEY_FILE, os.urandom(_WRAP_KEY_LEN))
                self._aead, self._key_id = self._remember(key, WRAP_KEY_FILE)
                if not rotating and os.path.lexists(self.state_dir / NEXT_WRAP_KEY_FILE):
                    log.warning("a key rotation was interrupted (%s exists): run `dock-agent "
                                "keys rotate` to complete it", NEXT_WRAP_KEY_FILE)
            return self._aead, self._key_id

    def _find(self, key_id: bytes) -> AESGCM | None:
        with self._lock:
            aead = self._ring.get(key_id)
            if aead is None:
                # A rotation in another process may have added or promoted a key since.
                for name in (NEXT_WRAP_KEY_FILE, WRAP_KEY_FILE):
                    key = _read_private_file(self.state_dir / name)
                    if key is not None:
                        self._remember(key, name)
                aead = self._ring.get(key_id)
            return aead

    @property
    def wrap_key_id(self) -> bytes:
        """The 8-byte id of the current wrapping key (not secret)."""
        return self._wrapping()[1]

    @staticmethod
    def _seal(aead: AESGCM, key_id: bytes, data_key: bytes, context: bytes) -> bytes:
        header = bytes([WRAP_FORMAT_VERSION]) + key_id
        nonce = os.urandom(_NONCE_LEN)
        return header + nonce + aead.encrypt(nonce, data_key, header + context)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """Encrypt `data_key` under the wrapping key, bound to `context` (e.g. recording id)."""
        aead, key_id = self._wrapping()
        return self._seal(aead, key_id, data_key, context)

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        """Inverse of `wrap` (also for blobs under a key being rotated in).

        `StoreError` for an unknown format version or a blob wrapped under another key;
        `CorruptStoreError` if it fails authentication (damaged, or wrong `context`).
        """
        _, current = self._wrapping()
        blob_key_id = wrapped_key_id(blob)
        aead = self._find(blob_key_id)
        if aead is None:
            raise StoreError(
                f"wrapped under key id {blob_key_id.hex()}, this dock has {current.hex()}")
        nonce = blob[_HEADER_LEN : _HEADER_LEN + _NONCE_LEN]
        try:
            return aead.decrypt(nonce, blob[_HEADER_LEN + _NONCE_LEN :],
                                blob[:_HEADER_LEN] + context)
        except InvalidTag as exc:
            raise CorruptStoreError("wrapped key fails authentication") from exc

    # -- rotation ------------------------------------------------------------------------------

    def begin_rotation(self) -> tuple[bytes, bytes]:
        """Create the next wrapping key, or load the one an interrupted rotation left; return
        (current key id, next key id). Promise on return: the next key is durable."""
        _, current = self._wrapping(rotating=True)
        with self._lock:
            key = self._load_or_create(NEXT_WRAP_KEY_FILE, os.urandom(_WRAP_KEY_LEN),
                                       create=True)
            aead, key_id = self._remember(key, NEXT_WRAP_KEY_FILE)
            if key_id == current:
                raise CorruptStoreError("the next wrapping key equals the current one",
                                        path=self.state_dir / NEXT_WRAP_KEY_FILE)
            self._next = (aead, key_id)
        return current, key_id

    def rewrap(self, blob: bytes, context: bytes) -> bytes:
        """`blob` wrapped under the next key (after `begin_rotation`): the same data key, bound
        to the same `context`; a blob already under the next key is returned as it is."""
        if self._next is None:
            raise StoreError("rewrap before begin_rotation")
        aead, key_id = self._next
        if wrapped_key_id(blob) == key_id:
            return blob
        data_key = self.unwrap(blob, context)
        fresh = self._seal(aead, key_id, data_key, context)
        if self.unwrap(fresh, context) != data_key:
            raise CorruptStoreError("rewrapped key does not unwrap to the original")
        return fresh

    def finish_rotation(self) -> bool:
        """Make the next key current and destroy the old one; call only once nothing is wrapped
        under the old key any more. Return whether the old key's bytes were overwritten too.

        Promise on return: ``wrap.key`` is the new key and ``wrap.next.key`` is gone, durably.
        The old key's file is overwritten with zeros through a descriptor opened before the
        rename (skipped if it has other hard links); on flash storage that is best effort.
        """
        if self._next is None:
            raise StoreError("finish_rotation before begin_rotation")
        current, nxt = self.state_dir / WRAP_KEY_FILE, self.state_dir / NEXT_WRAP_KEY_FILE
        with self._lock:
            old_fd = os.open(current, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.rename(nxt, current)  # atomic: wrap.key is the old key or the new one
                fsync_dir(self.state_dir)
                st = os.fstat(old_fd)
                scrubbed = st.st_nlink == 0
                if scrubbed:
                    os.pwrite(old_fd, bytes(st.st_size), 0)
                    os.fsync(old_fd)
                else:
                    log.warning("the retired wrapping key has %d other links: not overwritten",
                                st.st_nlink)
            finally:
                os.close(old_fd)
            old_id = self._key_id
            self._aead, self._key_id = self._next
            self._ring.pop(old_id, None)
            self._next = None
        return scrubbed
