"""Tests for agent.store.keys: key files, permissions, wrapping format."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.store.errors import CorruptStoreError, InsecureKeyFileError, StoreError
from agent.store.keys import (
    NEXT_WRAP_KEY_FILE,
    SIGNING_KEY_FILE,
    WRAP_KEY_FILE,
    KeyStore,
    wrapped_key_id,
)


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


# -- who may read the keys -------------------------------------------------------------------

def _both_keys(keys: KeyStore) -> None:
    keys.signing_key.sign(b"x")
    keys.wrap(b"x", b"")


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o770, 0o711])
def test_refuses_a_state_dir_others_can_enter(tmp_path: Path, mode: int) -> None:
    state = tmp_path / "state"
    _both_keys(KeyStore(state))
    os.chmod(state, mode)
    for use in (lambda k: k.signing_key, lambda k: k.wrap(b"x", b"")):
        with pytest.raises(InsecureKeyFileError, match=f"key directory mode {mode:04o}"):
            use(KeyStore(state))


def test_creates_nothing_in_a_state_dir_others_can_enter(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    with pytest.raises(InsecureKeyFileError, match="expected 0700"):
        KeyStore(state).wrap(b"x", b"")
    assert list(state.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
@pytest.mark.parametrize("name", [SIGNING_KEY_FILE, WRAP_KEY_FILE, "."])
def test_refuses_keys_or_state_dir_owned_by_another_user(tmp_path: Path, name: str) -> None:
    state = tmp_path / "state"
    _both_keys(KeyStore(state))
    os.chown(state / name, 1, 1)
    with pytest.raises(InsecureKeyFileError, match="owned by uid 1, not by uid 0") as info:
        _both_keys(KeyStore(state))
    assert str(state / name if name != "." else state) in str(info.value)


def test_error_messages_carry_no_key_material(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    blob = keys.wrap(b"D" * 32, b"rid")
    secrets = [(tmp_path / WRAP_KEY_FILE).read_bytes(), b"D" * 32]
    messages = []
    for bad in (blob[:-1] + bytes([blob[-1] ^ 1]), blob[:12], b"\x02" + blob[1:]):
        with pytest.raises(StoreError) as info:
            keys.unwrap(bad, b"rid")
        messages.append(str(info.value))
    with pytest.raises(CorruptStoreError) as wrong:
        keys.unwrap(blob, b"other")
    messages.append(str(wrong.value))
    for text in messages:
        for secret in secrets:
            assert secret.hex() not in text and secret.hex().upper() not in text


# -- rotation primitives ---------------------------------------------------------------------

def test_rotation_rewraps_the_same_data_key_under_the_next_key(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    blob = keys.wrap(b"d" * 32, b"rec")
    old_id, new_id = keys.begin_rotation()
    assert (old_id, len(new_id)) == (keys.wrap_key_id, 8) and new_id != old_id
    assert stat.S_IMODE((tmp_path / NEXT_WRAP_KEY_FILE).stat().st_mode) == 0o600
    fresh = keys.rewrap(blob, b"rec")
    assert wrapped_key_id(fresh) == new_id and keys.rewrap(fresh, b"rec") == fresh
    # Both keys open blobs until the rotation finishes, in this process and in any other.
    other = KeyStore(tmp_path, create=False)
    assert other.unwrap(blob, b"rec") == other.unwrap(fresh, b"rec") == b"d" * 32
    with pytest.raises(CorruptStoreError):
        keys.rewrap(blob, b"another recording")


def test_an_interrupted_rotation_resumes_with_the_same_next_key(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    keys.wrap(b"x" * 32, b"")
    _, new_id = keys.begin_rotation()
    assert KeyStore(tmp_path).begin_rotation()[1] == new_id


def test_finish_rotation_promotes_the_next_key_and_overwrites_the_old(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    blob = keys.wrap(b"k" * 32, b"r")
    old_key = (tmp_path / WRAP_KEY_FILE).read_bytes()
    reader = KeyStore(tmp_path, create=False)
    assert reader.unwrap(blob, b"r") == b"k" * 32  # loaded the old key
    _, new_id = keys.begin_rotation()
    fresh = keys.rewrap(blob, b"r")
    old_fd = os.open(tmp_path / WRAP_KEY_FILE, os.O_RDONLY)  # sees the old inode afterwards
    try:
        assert keys.finish_rotation() is True
        assert os.pread(old_fd, 64, 0) == bytes(len(old_key))
    finally:
        os.close(old_fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [WRAP_KEY_FILE]
    assert hashlib.sha256((tmp_path / WRAP_KEY_FILE).read_bytes()).digest()[:8] == new_id
    assert keys.wrap_key_id == new_id and wrapped_key_id(keys.wrap(b"n", b"")) == new_id
    # A reader that loaded the old key finds the new one on disk; the old blob is dead.
    assert reader.unwrap(fresh, b"r") == b"k" * 32
    with pytest.raises(StoreError, match="key id"):
        KeyStore(tmp_path).unwrap(blob, b"r")


def test_finish_rotation_leaves_a_hard_linked_old_key_alone(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    keys.wrap(b"k" * 32, b"")
    old_key = (tmp_path / WRAP_KEY_FILE).read_bytes()
    os.link(tmp_path / WRAP_KEY_FILE, tmp_path / "operator-copy")
    keys.begin_rotation()
    assert keys.finish_rotation() is False
    assert (tmp_path / "operator-copy").read_bytes() == old_key
