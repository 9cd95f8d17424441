"""The dock's long-lived secrets: its Ed25519 signing key and the footage wrapping key.

Both live as files in the state directory, mode 0600, created on first use. They are never
overwritten: losing the wrapping key makes every stored recording unreadable, so creation uses
a no-clobber atomic write and a key file that exists but is unsafe or damaged is an error, not
a reason to make a new one. Key bytes are never logged.

Wrapped-key format (version 1), 9-byte header then AES-256-GCM output::

    version (1 byte = 0x01) | key id (8 bytes) | nonce (12) | ciphertext + tag (len + 16)

The key id is the first 8 bytes of SHA-256 of the wrapping key, so after a future key rotation
the right key can be found. The AAD is the header followed by the caller's context (e.g. the
recording id): a wrapped key moved to another recording, or a header edited, fails to unwrap.
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

from agent.store.durable import atomic_write_bytes, ensure_dir, remove_stale_temps
from agent.store.errors import CorruptStoreError, InsecureKeyFileError, StoreError

__all__ = ["SIGNING_KEY_FILE", "WRAP_FORMAT_VERSION", "WRAP_KEY_FILE", "KeyStore"]

log = logging.getLogger(__name__)

SIGNING_KEY_FILE = "dock_key.pem"
WRAP_KEY_FILE = "wrap.key"
WRAP_FORMAT_VERSION = 1
_WRAP_KEY_LEN = 32
_KEY_ID_LEN = 8
_NONCE_LEN = 12
_TAG_LEN = 16
_HEADER_LEN = 1 + _KEY_ID_LEN


def _read_private_file(path: Path) -> bytes | None:
    """Contents of a key file, None if absent; refuse symlinks, non-files and loose modes."""
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
        if st.st_mode & 0o077:
            raise InsecureKeyFileError(
                f"key file mode {stat.S_IMODE(st.st_mode):04o} gives group/other access; "
                "expected 0600", path=path)
        return f.read()


class KeyStore:
    """Loads or creates the dock's keys in `state_dir`; thread-safe, keys loaded lazily.

    Promise: once `signing_key`, `public_key_raw`, `wrap` or `unwrap` has returned, the key it
    used is on disk and survives power loss (created via a no-clobber atomic write).
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

    def _load_or_create(self, name: str, make: bytes) -> bytes:
        path = self.state_dir / name
        data = _read_private_file(path)
        if data is not None:
            return data
        if not self.create:
            raise StoreError(f"no key file {path}: has the agent run with this state_dir?")
        ensure_dir(self.state_dir)
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

    def _wrapping(self) -> tuple[AESGCM, bytes]:
        with self._lock:
            if self._aead is None:
                key = self._load_or_create(WRAP_KEY_FILE, os.urandom(_WRAP_KEY_LEN))
                if len(key) != _WRAP_KEY_LEN:
                    raise CorruptStoreError(
                        f"wrapping key is {len(key)} bytes, expected {_WRAP_KEY_LEN}",
                        path=self.state_dir / WRAP_KEY_FILE)
                self._key_id = hashlib.sha256(key).digest()[:_KEY_ID_LEN]
                self._aead = AESGCM(key)
            return self._aead, self._key_id

    @property
    def wrap_key_id(self) -> bytes:
        """The 8-byte id of the current wrapping key (not secret)."""
        return self._wrapping()[1]

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """Encrypt `data_key` under the wrapping key, bound to `context` (e.g. recording id)."""
        aead, key_id = self._wrapping()
        header = bytes([WRAP_FORMAT_VERSION]) + key_id
        nonce = os.urandom(_NONCE_LEN)
        return header + nonce + aead.encrypt(nonce, data_key, header + context)

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        """Inverse of `wrap`.

        `StoreError` for an unknown format version or a blob wrapped under another key;
        `CorruptStoreError` if it fails authentication (damaged, or wrong `context`).
        """
        aead, key_id = self._wrapping()
        if len(blob) < _HEADER_LEN + _NONCE_LEN + _TAG_LEN:
            raise CorruptStoreError(f"wrapped key too short ({len(blob)} bytes)")
        if blob[0] != WRAP_FORMAT_VERSION:
            raise StoreError(f"unsupported wrapped-key format version {blob[0]}")
        blob_key_id = blob[1:_HEADER_LEN]
        if blob_key_id != key_id:
            raise StoreError(
                f"wrapped under key id {blob_key_id.hex()}, this dock has {key_id.hex()}")
        nonce = blob[_HEADER_LEN : _HEADER_LEN + _NONCE_LEN]
        try:
            return aead.decrypt(nonce, blob[_HEADER_LEN + _NONCE_LEN :],
                                blob[:_HEADER_LEN] + context)
        except InvalidTag as exc:
            raise CorruptStoreError("wrapped key fails authentication") from exc
