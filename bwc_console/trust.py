"""The trust file: which dock and camera keys the console believes (docs/console.md).

JSON, both members optional::

    {"docks":   {"<dock_id>": "<base64 of the raw 32-byte Ed25519 key>"},
     "cameras": {"<camera_uid, 32 hex>": "<base64 of the raw 32-byte Ed25519 key>"}}

A dock listed here is verified with this key only (its published identity must agree); a dock
not listed is pinned on first sight of its ``…/identity``. Cameras must be listed: the console
checks the camera signatures against the fleet's enrolment records, not against the dock's word.
The file is re-read when it changes, so enrolling a camera needs no restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .wire import NAME, WireError, b64decode_strict, is_hex

__all__ = ["Trust", "TrustError", "TrustFile", "load_trust", "parse_trust"]

log = logging.getLogger(__name__)


class TrustError(ValueError):
    """The trust file is unreadable or not in the documented form."""


@dataclass(frozen=True)
class Trust:
    docks: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    cameras: dict[str, Ed25519PublicKey] = field(default_factory=dict)


def _key(text: object, what: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(b64decode_strict(text, 32))
    except (WireError, ValueError) as exc:
        raise TrustError(f"{what}: not base64 of a raw 32-byte Ed25519 key ({exc})") from None


def parse_trust(text: str | bytes) -> Trust:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TrustError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"docks", "cameras"}:
        raise TrustError('expected an object with "docks" and/or "cameras" only')
    docks, cameras = doc.get("docks", {}), doc.get("cameras", {})
    if not isinstance(docks, dict) or not isinstance(cameras, dict):
        raise TrustError('"docks" and "cameras" must be objects')
    for dock_id in docks:
        if not NAME.fullmatch(dock_id):
            raise TrustError(f"dock id {dock_id!r} is not a valid name")
    for uid in cameras:
        if not is_hex(uid, 32):
            raise TrustError(f"camera uid {uid!r} is not 32 lower-case hex digits")
    return Trust({d: _key(k, f"dock {d}") for d, k in docks.items()},
                 {u: _key(k, f"camera {u}") for u, k in cameras.items()})


def load_trust(path: Path) -> Trust:
    try:
        return parse_trust(path.read_bytes())
    except OSError as exc:
        raise TrustError(f"trust file {path}: cannot read: {exc.strerror}") from None
    except TrustError as exc:
        raise TrustError(f"trust file {path}: {exc}") from None


class TrustFile:
    """A trust file kept current: re-read when its size or modification time changes; a file
    that became invalid keeps the last good contents (and says so in the log)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._trust = Trust()
        if path is not None:
            self._trust = load_trust(path)  # invalid at start-up: fail loudly
            self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> Trust:
        if self.path is None:
            return self._trust
        with self._lock:
            stamp = self._stat()
            if stamp is not None and stamp != self._stamp:
                try:
                    self._trust = load_trust(self.path)
                    log.info("trust file %s re-read: %d docks, %d cameras", self.path,
                             len(self._trust.docks), len(self._trust.cameras))
                except TrustError as exc:
                    log.error("trust file %s not re-read, keeping the last good one: %s",
                              self.path, exc)
                self._stamp = stamp
            return self._trust
