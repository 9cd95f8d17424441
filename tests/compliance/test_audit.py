"""The audit log (Art. 18): every edit, removal or reordering of a line is caught."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.audit import AuditLog, signed_head, verify_head
from agent.store.errors import CorruptStoreError


def _log(tmp_path: Path, n: int = 6) -> None:
    with_log = AuditLog(tmp_path)
    try:
        for i in range(n):
            with_log.append("export", f"cli:user{i}", recording_id=f"{i:032x}")
    finally:
        with_log.close()


def _segment(tmp_path: Path) -> Path:
    (seg,) = (tmp_path / "journal" / "audit").glob("*.jsonl")
    return seg


def _edit(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2].replace(b"user2", b"userX")
    return lines


def _remove(lines: list[bytes]) -> list[bytes]:
    del lines[2]
    return lines


def _reorder(lines: list[bytes]) -> list[bytes]:
    lines[1], lines[2] = lines[2], lines[1]
    return lines


def _drop_last(lines: list[bytes]) -> list[bytes]:
    return lines[:-1]


@pytest.mark.parametrize("damage", [_edit, _remove, _reorder])
def test_verify_fails_after_any_edited_removed_or_reordered_line(
        tmp_path: Path, damage: Callable[[list[bytes]], list[bytes]]) -> None:
    _log(tmp_path)
    seg = _segment(tmp_path)
    lines = seg.read_bytes().splitlines(keepends=True)
    # Damage a middle line while the tail stays intact, as someone editing history would.
    seg.write_bytes(b"".join(damage(lines)))
    with pytest.raises(CorruptStoreError):
        log = AuditLog(tmp_path)
        try:
            log.verify()
        finally:
            log.close()


def test_untouched_log_verifies_and_head_moves(tmp_path: Path) -> None:
    _log(tmp_path, 3)
    log = AuditLog(tmp_path)
    try:
        assert log.verify() == 3
        seq, head = log.head()
        log.append("verify", "cli:bob", recording_id="00" * 16)
        assert log.head()[0] == seq + 1 and log.head()[1] != head
        with pytest.raises(ValueError):
            log.append("watch-tv", "cli:bob")
    finally:
        log.close()


def test_dropping_the_newest_lines_is_seen_only_against_a_published_head(tmp_path: Path) -> None:
    """Truncation leaves a valid shorter chain: that is what the signed head is for."""
    _log(tmp_path)
    log = AuditLog(tmp_path)
    published = log.head()
    log.close()
    seg = _segment(tmp_path)
    seg.write_bytes(b"".join(_drop_last(seg.read_bytes().splitlines(keepends=True))))
    log = AuditLog(tmp_path)
    try:
        assert log.verify() == 5
        assert log.head()[0] < published[0]  # a console comparing heads sees the rollback
    finally:
        log.close()


def test_signed_head_verifies_and_detects_tampering() -> None:
    key = Ed25519PrivateKey.generate()
    head = signed_head(dock_id="dock-01", seq=42, head="ab" * 32, at_ms=0, key=key)
    verify_head(head, key.public_key())
    with pytest.raises(InvalidSignature):
        verify_head({**head, "seq": 41}, key.public_key())
    with pytest.raises(InvalidSignature):
        verify_head(head, Ed25519PrivateKey.generate().public_key())
