"""The durable memory of console command nonces, so that a command runs at most once.

A command is accepted only while its `issued_at` is within the age window of the dock clock,
so a nonce needs remembering only that long; it is kept for twice the window to leave margin
for clock adjustments. The file is small (bounded by `max_entries`) and rewritten whole on every
accepted command, with the atomic temp → fsync → rename → fsync-dir write, under an ``flock`` on
a side file so that a CLI tool and the daemon cannot lose each other's nonces.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.compliance.command_errors import CommandRefused, ErrorCode
from agent.store.durable import atomic_write_json, ensure_dir, remove_stale_temps
from agent.store.errors import CorruptStoreError, StoreError
from agent.store.state import StateLock

__all__ = ["DEFAULT_MAX_ENTRIES", "NonceStore"]

SCHEMA = 1
# Commands are issued by people: a few hundred a day. 10,000 inside twice the window (10 min by
# default) is far beyond any real console and keeps the file under 1 MB.
DEFAULT_MAX_ENTRIES = 10_000

_Entries = dict[str, tuple[int, bool]]  # nonce -> (issued_at_ms, signed)


class NonceStore:
    """Nonces of accepted commands with their `issued_at`, kept for 2 x `window_s`."""

    def __init__(self, path: Path, window_s: float, *,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        """Open (or start) the store at `path`.

        Raises `CorruptStoreError` if the file exists but is not a nonce store: atomic writes
        cannot produce that, and starting over would forget nonces that are still live.
        """
        if window_s <= 0 or max_entries < 1:
            raise ValueError("window_s and max_entries must be positive")
        self.path = Path(path)
        self.window_s = window_s
        self.max_entries = max_entries
        self._keep_ms = int(2 * window_s * 1000)
        ensure_dir(self.path.parent)
        self._lock = StateLock(self.path.with_name(self.path.name + ".lock"))
        with self._lock:
            remove_stale_temps(self.path.parent, self.path.name)
            self._read()

    def check_and_remember(self, nonce: str, issued_at_ms: int, now_ms: int, *,
                           signed: bool = True) -> None:
        """Record `nonce`, or raise `CommandRefused` (``replayed``) if it is still remembered.

        Durable on return. Entries older than 2 x window (by `issued_at`, against `now_ms`)
        are pruned on the way. When the store is full, unsigned commands' nonces go first:
        anyone who can publish may mint unsigned commands, and must not be able to crowd out
        the nonces that protect signed (evidence) commands. If it is still full, or the file
        cannot be read or written, the command is refused with ``storage``: without a durable
        nonce a command could run twice.
        """
        with self._lock:
            try:
                entries = self._read()
            except StoreError as exc:
                raise CommandRefused(ErrorCode.STORAGE, f"nonce store unreadable: {exc}") from exc
            horizon = now_ms - self._keep_ms
            kept = {n: e for n, e in entries.items() if e[0] >= horizon}
            if nonce in kept:
                raise CommandRefused(ErrorCode.REPLAYED, f"nonce {nonce} was already used")
            if len(kept) >= self.max_entries:
                unsigned = sorted((e[0], n) for n, e in kept.items() if not e[1])
                for _, n in unsigned[:len(kept) - self.max_entries + 1]:
                    del kept[n]
            if len(kept) >= self.max_entries:
                raise CommandRefused(ErrorCode.STORAGE,
                                     f"nonce store is full ({self.max_entries} live nonces)")
            kept[nonce] = (issued_at_ms, signed)
            doc = {"schema": SCHEMA,
                   "nonces": {n: [at, s] for n, (at, s) in sorted(kept.items())}}
            try:
                atomic_write_json(self.path, doc)
            except (OSError, StoreError) as exc:
                raise CommandRefused(ErrorCode.STORAGE,
                                     f"cannot record the nonce: {exc}") from exc

    def remembered(self) -> dict[str, int]:
        """Nonce → issued_at_ms of every nonce in the file (for diagnostics and tests)."""
        with self._lock:
            return {n: at for n, (at, _) in self._read().items()}

    def _read(self) -> _Entries:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
                raise ValueError(f"not a schema-{SCHEMA} nonce store")
            nonces = doc["nonces"]
            if not isinstance(nonces, dict):
                raise ValueError("nonces is not an object")
            entries: _Entries = {}
            for nonce, entry in nonces.items():
                if (not isinstance(entry, list) or len(entry) != 2
                        or type(entry[0]) is not int or type(entry[1]) is not bool):
                    raise ValueError(f"bad entry for nonce {nonce!r}")
                entries[nonce] = (entry[0], entry[1])
        except (UnicodeDecodeError, ValueError, KeyError) as exc:
            raise CorruptStoreError(f"nonce store does not parse: {exc}", path=self.path) from exc
        return entries
