"""Tests for agent.store.keys: key files, permissions, wrapping format."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.store.errors import CorruptStoreError, InsecureKeyFileError, StoreError
from agent.store.keys import SIGNING_KEY_FILE, WRAP_KEY_FILE, KeyStore


def test_keys_created_on_first_use_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    keys = KeyStore(state)
    assert not state.exists()  # nothing happens until a key is needed
    signature = keys.signing_key.sign(b"manifest")
    Ed25519PublicKey.from_public_bytes(keys.public_key_raw).verify(signature, b"manifest")
    assert len(keys.public_key_raw) == 32
    keys.wrap(b"k" * 32, b"rid")
    for name in (SIGNING_KEY_FILE, WRAP_KEY_FILE):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    assert (state / SIGNING_KEY_FILE).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len((state / WRAP_KEY_FILE).read_bytes()) == 32
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_keys_persist_across_instances(tmp_path: Path) -> None:
    first = KeyStore(tmp_path)
    blob = first.wrap(b"d" * 32, b"rec-1")
    public = first.public_key_raw
    second = KeyStore(tmp_path)
    assert second.public_key_raw == public
    assert second.unwrap(blob, b"rec-1") == b"d" * 32
    wrap_key = (tmp_path / WRAP_KEY_FILE).read_bytes()
    assert second.wrap_key_id == hashlib.sha256(wrap_key).digest()[:8]


def test_wrap_format_and_random_nonce(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    a, b = keys.wrap(b"x" * 32, b"ctx"), keys.wrap(b"x" * 32, b"ctx")
    assert a != b
    assert a[0] == 1
    assert a[1:9] == keys.wrap_key_id
    assert len(a) == 1 + 8 + 12 + 32 + 16


def test_unwrap_rejects_wrong_context_tampering_version_and_foreign_key(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "a")
    blob = keys.wrap(b"s" * 32, b"recording-A")
    with pytest.raises(CorruptStoreError):
        keys.unwrap(blob, b"recording-B")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(CorruptStoreError):
        keys.unwrap(bytes(tampered), b"recording-A")
    with pytest.raises(StoreError, match="version"):
        keys.unwrap(b"\x02" + blob[1:], b"recording-A")
    with pytest.raises(CorruptStoreError, match="short"):
        keys.unwrap(blob[:20], b"recording-A")
    other = KeyStore(tmp_path / "b")
    with pytest.raises(StoreError, match="key id") as info:
        other.unwrap(blob, b"recording-A")
    assert not isinstance(info.value, CorruptStoreError)


@pytest.mark.parametrize("name", [SIGNING_KEY_FILE, WRAP_KEY_FILE])
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_refuses_group_or_other_readable_key(tmp_path: Path, name: str, mode: int) -> None:
    keys = KeyStore(tmp_path)
    assert keys.public_key_raw
    keys.wrap(b"x", b"")
    original = (tmp_path / name).read_bytes()
    os.chmod(tmp_path / name, mode)
    fresh = KeyStore(tmp_path)
    with pytest.raises(InsecureKeyFileError) as info:
        if name == SIGNING_KEY_FILE:
            fresh.signing_key.sign(b"x")
        else:
            fresh.wrap(b"x", b"")
    assert name in str(info.value)
    assert (tmp_path / name).read_bytes() == original  # never replaced


def test_refuses_symlinked_key(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.write_bytes(os.urandom(32))
    os.chmod(real, 0o600)
    (tmp_path / WRAP_KEY_FILE).symlink_to(real)
    with pytest.raises(InsecureKeyFileError, match="symlink"):
        KeyStore(tmp_path).wrap(b"x", b"")


def test_damaged_keys_raise_instead_of_being_regenerated(tmp_path: Path) -> None:
    (tmp_path / WRAP_KEY_FILE).write_bytes(b"short")
    (tmp_path / SIGNING_KEY_FILE).write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    for name in (WRAP_KEY_FILE, SIGNING_KEY_FILE):
        os.chmod(tmp_path / name, 0o600)
    keys = KeyStore(tmp_path)
    with pytest.raises(CorruptStoreError, match="32"):
        keys.wrap(b"x", b"")
    with pytest.raises(CorruptStoreError, match="PEM"):
        keys.signing_key.sign(b"x")
    assert (tmp_path / WRAP_KEY_FILE).read_bytes() == b"short"


def test_stale_temp_key_files_are_removed_on_creation(tmp_path: Path) -> None:
    (tmp_path / f".{WRAP_KEY_FILE}.abcd.tmp").write_bytes(os.urandom(32))
    KeyStore(tmp_path).wrap(b"x", b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == [WRAP_KEY_FILE]
