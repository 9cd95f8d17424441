"""The console's Ed25519 signing key: make one, load one.

``keygen`` writes the private key as an unencrypted PKCS#8 PEM, mode 0600, never over an
existing file, and the public half beside it (``FILE.pub``: base64 of the raw 32 bytes, one of
the forms a dock's ``console_public_keys`` accepts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .commands import key_id
from .durable import write_exclusive
from .wire import b64encode

__all__ = ["NewKey", "SigningKeyError", "generate_key", "load_signing_key"]


class SigningKeyError(ValueError):
    """The key file is missing, unreadable or not an Ed25519 private key."""


@dataclass(frozen=True, slots=True)
class NewKey:
    private_path: Path
    public_path: Path
    public_key_b64: str
    key_id: str


def generate_key(out: Path) -> NewKey:
    """A new key in ``out`` (0600) and ``out.pub``; ``FileExistsError`` if either exists."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw = key.public_key().public_bytes_raw()
    pub_path = out.with_name(out.name + ".pub")
    if pub_path.exists():
        raise FileExistsError(f"{pub_path} exists")
    write_exclusive(out, pem, 0o600)
    write_exclusive(pub_path, (b64encode(raw) + "\n").encode(), 0o644)
    return NewKey(out, pub_path, b64encode(raw), key_id(raw))


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key")
    return key
