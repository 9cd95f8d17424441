"""Rotating the footage wrapping key (``dock-agent keys rotate``).

A new wrapping key is made, every recording's data key — stored, partial, quarantined, being
purged — is rewrapped under it in its ``meta.json``, and only then does the new key replace the
old one, which is destroyed. The footage (``chunks.dat``) is never read or rewritten: the data
keys stay the same, only their wrapping changes.

Crash safety. The new key is durable (``wrap.next.key``) before anything is wrapped under it;
each ``meta.json`` is replaced atomically and its blob names the key that opens it; `KeyStore`
opens blobs under either key while both exist. A crash at any point therefore leaves every
recording readable, and running the rotation again resumes with the same new key and finishes
it. The old key is retired by an atomic rename of the new key over it, after a pass found
nothing wrapped under the old key any more.

Why the agent must be stopped. The daemon loads the wrapping key once at start and wraps every
new recording's data key under it. A recording created during a rotation, after the pass over
its directory, would stay wrapped under the key about to be destroyed: lost evidence. Reloading
keys in the daemon and locking every wrap across processes would buy little for a rare
administrative task, so a rotation takes the lock the running agent holds for its lifetime (the
session journal's) and is refused while the agent runs; an agent started meanwhile is refused
too, and systemd starts it again once the rotation is done. Read-only commands (``verify``,
``export``) may run alongside: they find either key.

Audited as ``keys_rotate`` (``phase``: ``started`` or ``resumed``, ``completed``, or
``incomplete`` when a recording could not be rewrapped and the old key was kept).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .compliance.audit import AuditLog
from .store.errors import CorruptStoreError, StoreError
from .store.footage import FootageStore, RecordingInfo
from .store.journal import Journal
from .store.keys import NEXT_WRAP_KEY_FILE, KeyStore, check_key_dir, wrapped_key_id

__all__ = ["Rotation", "RotationError", "agent_stopped", "rotate_wrap_key"]

log = logging.getLogger(__name__)

# (phase, count): "started" (0), "rewrapped" (how many so far, each durable), "completed"
# (how many in all; the old key is about to be retired), "finished". For progress reports.
Hook = Callable[[str, int], None]
_PASSES = 3


class RotationError(StoreError):
    """The rotation was refused or could not complete; every recording is still readable."""


@dataclass(frozen=True, slots=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    resumed: bool
    rewrapped: int
    recordings: int
    old_key_overwritten: bool


def _nothing(_phase: str, _count: int) -> None:
    pass


@contextlib.contextmanager
def agent_stopped(state_dir: Path) -> Iterator[None]:
    """Hold the lock the running agent holds for its lifetime (it owns the session journal):
    `RotationError` if the agent runs; an agent started meanwhile refuses to start."""
    try:
        journal = Journal(state_dir / "journal" / "sessions")
    except CorruptStoreError:
        raise
    except StoreError:
        raise RotationError("the agent is running, or another rotation is: stop it first "
                            "(sudo systemctl stop bwc-dock-agent)") from None
    try:
        yield
    finally:
        journal.close()


def _rewrap_pass(store: FootageStore, keys: KeyStore, new_id: bytes, hook: Hook,
                 done: list[int], failed: dict[str, str]) -> int:
    """Rewrap what is not under `new_id` yet; return how many recordings were looked at."""
    holders = store.key_holders()
    for directory in holders:
        try:
            info = RecordingInfo.load(directory)
            if wrapped_key_id(info.wrapped_key) == new_id:
                continue
            store.replace_wrapped_key(directory, keys.rewrap(info.wrapped_key,
                                                             info.recording_id))
        except FileNotFoundError:
            continue  # moved (a purge) while we looked: the next pass finds it where it went
        except StoreError as exc:
            failed[directory.name] = str(exc)
            log.error("recording %s: not rewrapped: %s", directory.name, exc)
            continue
        failed.pop(directory.name, None)
        done[0] += 1
        hook("rewrapped", done[0])
    return len(holders)


def _left_under_other_keys(store: FootageStore, new_id: bytes) -> list[str]:
    left = []
    for directory in store.key_holders():
        try:
            if wrapped_key_id(RecordingInfo.load(directory).wrapped_key) != new_id:
                left.append(directory.name)
        except FileNotFoundError:
            continue
        except StoreError:
            left.append(directory.name)
    return left


def rotate_wrap_key(state_dir: Path, *, actor: str, hook: Hook = _nothing) -> Rotation:
    """Rotate the wrapping key of the dock whose state is in `state_dir` (agent stopped).

    Promise on return: every recording's data key is wrapped under the new key, which is
    ``wrap.key``; the old key is gone; the rotation is in the audit log. On `RotationError`
    for recordings that could not be rewrapped, both keys are kept and every recording that
    was readable still is; run again once they are dealt with.
    """
    state_dir = Path(state_dir)
    if not check_key_dir(state_dir):
        raise RotationError(f"no state directory {state_dir}: has the agent run?")
    with agent_stopped(state_dir):
        keys = KeyStore(state_dir, create=False)
        store = FootageStore(state_dir / "footage", keys)
        resumed = (state_dir / NEXT_WRAP_KEY_FILE).exists()
        old_id, new_id = keys.begin_rotation()
        ids = {"old_key_id": old_id.hex(), "new_key_id": new_id.hex()}
        audit = AuditLog(state_dir)
        try:
            audit.append("keys_rotate", actor, phase="resumed" if resumed else "started", **ids)
            hook("started", 0)
            done = [0]
            failed: dict[str, str] = {}
            total = 0
            for _ in range(_PASSES):
                total = _rewrap_pass(store, keys, new_id, hook, done, failed)
                left = _left_under_other_keys(store, new_id)
                if not left or set(left) <= set(failed):
                    break
            else:
                failed.update({name: "still wrapped under the old key" for name in left
                               if name not in failed})
            if failed:
                audit.append("keys_rotate", actor, phase="incomplete", rewrapped=done[0],
                             recordings=total, failed=sorted(failed), **ids)
                first = sorted(failed)[0]
                raise RotationError(
                    f"{len(failed)} recording(s) could not be rewrapped, the old key is kept "
                    f"(first: {first}: {failed[first]}); deal with them and run again")
            audit.append("keys_rotate", actor, phase="completed", rewrapped=done[0],
                         recordings=total, **ids)
            hook("completed", done[0])
            overwritten = keys.finish_rotation()
        finally:
            audit.close()
    log.info("wrapping key %s retired, %s current", old_id.hex(), new_id.hex())
    hook("finished", done[0])
    return Rotation(old_id.hex(), new_id.hex(), resumed, done[0], total, overwritten)
