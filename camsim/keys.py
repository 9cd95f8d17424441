"""The camera's Ed25519 device key: load or create it, publish its public half, derive a uid."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_protocol.signing import load_private_key, public_key_raw

from .durable import write_atomic
from .errors import ConfigError

__all__ = ["derive_camera_uid", "load_or_create_key", "public_key_path", "public_pem"]

_UID_DOMAIN = b"BWC-CAMERA-UID-1"


def public_key_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def public_pem(key: Ed25519PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM the dock enrols."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def derive_camera_uid(key: Ed25519PrivateKey) -> bytes:
    """A stable 16-byte uid for a key, so a camera keeps its identity across restarts.

    Domain-separated so the uid is never mistaken for (or collides with) a key fingerprint.
    """
    return hashlib.sha256(_UID_DOMAIN + public_key_raw(key)).digest()[:16]


def load_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The device key at ``path`` (created, mode 0600, if missing) and whether it was created.

    ``path.pub`` is (re)written whenever it is missing or does not match the private key, so
    the file the dock enrols always belongs to the key the camera signs with.
    """
    created = False
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            write_atomic(path, pem, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create key {path}: {exc.strerror}") from None
        created = True
    except OSError as exc:
        raise ConfigError(f"cannot read key {path}: {exc.strerror}") from None
    else:
        try:
            key = load_private_key(pem)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not an unencrypted Ed25519 PKCS#8 PEM key: {exc}"
                              ) from None
    pub_path = public_key_path(path)
    pub = public_pem(key)
    try:
        current = pub_path.read_bytes()
    except FileNotFoundError:
        current = b""
    except OSError as exc:
        raise ConfigError(f"cannot read {pub_path}: {exc.strerror}") from None
    if current != pub:
        try:
            write_atomic(pub_path, pub, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot write {pub_path}: {exc.strerror}") from None
    return key, created
