"""Start-up: turn the configuration and any saved state into a running :class:`Camera`.

This is where a recording gets its id and its times (once: saved times win, so a recording's
times never move when the clock is later set), where faults are resolved against the actual
recordings, where start-up events are logged and where everything is signed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_protocol import messages as m
from firmware_protocol.messages import EventKind
from firmware_protocol.signing import load_private_key, public_key_raw

from .clock import CameraClock, HostClock, host_now_us
from .errors import CameraError, ConfigError
from .eventlog import NO_RECORDING, EventLog, InjectedEvent
from .faults import ChunkRef, Faults
from .keys import derive_camera_uid
from .model import Camera, DeviceInfo, HostileFaults, PowerAndStorage
from .recordings import MediaItem, Recording, RecordingRef, duration_ms, recording_id
from .signer import SignedRecording, Signer
from .state import StateStore

__all__ = ["GENERATED_GAP_MS", "GENERATED_LAST_END_MS", "CameraConfig", "boot_camera"]

log = logging.getLogger(__name__)

GENERATED_LAST_END_MS = 60_000  # generated recordings end this long before the first start-up
GENERATED_GAP_MS = 5_000  # and follow each other with this gap


@dataclass(frozen=True)
class CameraConfig:
    key: Ed25519PrivateKey
    camera_uid: bytes
    device: DeviceInfo = field(default_factory=DeviceInfo)
    power: PowerAndStorage = field(default_factory=PowerAndStorage)
    media: Sequence[MediaItem] = ()
    chunk_size: int = 256 * 1024
    clock_skew_s: float = 0.0
    drift_ppm: float = 0.0
    state_dir: Path | None = None
    faults: Faults = field(default_factory=Faults)
    log_events: Sequence[InjectedEvent] = ()
    host_clock: HostClock = host_now_us


def _first_times(items: Sequence[MediaItem], clock: CameraClock, bitrate: int
                 ) -> list[tuple[int, int]]:
    """(started_ms, ended_ms) for each item as if first seen now.

    A file ends at its mtime on the camera clock; generated recordings are laid out back to back
    (latest first) ending a minute before now. Either way the start is end - nominal duration.
    """
    times: list[tuple[int, int]] = [(0, 0)] * len(items)
    cursor = clock.now_ms() - GENERATED_LAST_END_MS
    for pos in reversed(range(len(items))):
        item = items[pos]
        length = duration_ms(item.media, item.source.size, bitrate)
        if item.mtime_us is not None:
            ended = clock.at_host_us(item.mtime_us) // 1000
        else:
            ended = max(0, cursor)
            cursor = ended - length - GENERATED_GAP_MS
        times[pos] = (max(0, ended - length), ended)
    return times


def _find(recordings: Sequence[Recording], ref: RecordingRef, what: str) -> Recording:
    for rec in recordings:
        if rec.matches(ref):
            return rec
    raise ConfigError(f"{what}: no recording {ref} (the camera has {len(recordings)}, "
                      "numbered from 0 in name order)")


def _chunk_set(recordings: Sequence[Recording], refs: Sequence[ChunkRef], what: str,
               released: set[bytes], spec: str | None = None) -> set[tuple[bytes, int]]:
    """(recording id, index) of each chunk named; ``spec`` names the fault in messages
    (default ``WHAT=REF``)."""
    chunks = set()
    for ref in refs:
        label = spec or f"{what}={ref}"
        rec = _find(recordings, ref.recording, f"--fault {label}")
        if ref.index >= rec.chunk_count:
            raise ConfigError(f"--fault {label}: recording {ref.recording} has "
                              f"{rec.chunk_count} chunks")
        if rec.recording_id in released:
            log.warning("--fault %s names a released recording: no effect", label)
        chunks.add((rec.recording_id, ref.index))
    return chunks


def _foreign_key(path: Path) -> Ed25519PrivateKey:
    """Another camera's device key (``foreign-chunk``): read, never created."""
    try:
        return load_private_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"--fault foreign-chunk: cannot read key {path}: {exc.strerror}"
                          ) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--fault foreign-chunk: {path} is not an unencrypted Ed25519 "
                          f"PKCS#8 PEM key: {exc}") from None


def _hostile(faults: Faults, recordings: Sequence[Recording], released: set[bytes]
             ) -> HostileFaults:
    """The hostile-camera faults resolved against the recordings (released ones: no effect)."""
    replays: dict[tuple[bytes, int], tuple[bytes, int]] = {}
    for replay in faults.replays:
        (target,) = _chunk_set(recordings, [replay.target], "", released, replay.spec)
        (source,) = _chunk_set(recordings, [replay.source], "", released, replay.spec)
        if target[0] not in released and source[0] not in released:
            replays[target] = source
    foreign: dict[tuple[bytes, int], m.ChunkHeader] = {}
    twins: dict[tuple[Path, bytes], SignedRecording] = {}
    for fc in faults.foreign_chunks:
        ((rid, index),) = _chunk_set(recordings, [fc.target], "foreign-chunk", released,
                                     f"foreign-chunk={fc.target}@{fc.key}")
        if rid in released:
            continue
        twin = twins.get((fc.key, rid))
        if twin is None:
            rec = next(r for r in recordings if r.recording_id == rid)
            key = _foreign_key(fc.key)
            uid = derive_camera_uid(key)
            # The same file recorded by that camera: its uid, its id for the name, its chain.
            copy = Recording(rec.position, rec.item, recording_id(uid, rec.item.name),
                             rec.started_ms, rec.ended_ms, rec.chunk_size)
            twin = twins[(fc.key, rid)] = Signer(key, uid).sign_recording(copy)
        foreign[(rid, index)] = twin.headers[index]
    listed: dict[bytes, int] = {}
    for extra in faults.extra_bytes:
        rec = _find(recordings, extra.recording, "--fault extra-bytes/extra-chunk")
        less = extra.extra if extra.extra is not None else rec.chunk_span(rec.chunk_count - 1)[1]
        if less >= rec.size:
            raise ConfigError(f"--fault extra-bytes/extra-chunk: recording {extra.recording} "
                              f"has {rec.size} bytes, so it cannot be listed {less} smaller")
        listed[rec.recording_id] = rec.size - less
    return HostileFaults(replays, foreign, listed)


# Start-up entries about the past are logged in time order; at equal times a cause (battery
# empty, storage full, fault) comes before the stop it caused, and a stop before the next start.
_RANK = {EventKind.RECORD_STOP: 1, EventKind.RECORD_START: 2}


def boot_camera(cfg: CameraConfig) -> Camera:
    store = StateStore(cfg.state_dir) if cfg.state_dir is not None else None
    state = store.load() if store is not None else None
    if state is not None and state.camera_uid != cfg.camera_uid:
        raise ConfigError(f"--state-dir belongs to camera {state.camera_uid.hex()}, "
                          f"not {cfg.camera_uid.hex()}")
    clock = CameraClock(drift_ppm=cfg.drift_ppm, skew_s=cfg.clock_skew_s,
                        anchor=state.clock if state else None, host_clock=cfg.host_clock)
    if state is not None and cfg.clock_skew_s:
        log.info("clock restored from --state-dir; --clock-skew applies to a fresh state only")
    events = EventLog(state.events, state.next_event_seq) if state else EventLog()
    times = dict(state.recording_times) if state else {}
    released = set(state.released) if state else set()

    fresh = _first_times(cfg.media, clock, cfg.power.bitrate_bps)
    recordings = []
    pending: list[tuple[tuple[int, int, int, int], EventKind, int, bytes]] = []
    for pos, item in enumerate(cfg.media):
        rid = recording_id(cfg.camera_uid, item.name)
        if rid not in times:
            times[rid] = fresh[pos]
            started, ended = fresh[pos]
            stop_rank = _RANK[EventKind.RECORD_STOP] if ended > started else 2
            pending.append(((started, 2, pos, 0), EventKind.RECORD_START, started, rid))
            pending.append(((ended, stop_rank, pos, 1), EventKind.RECORD_STOP, ended, rid))
        started, ended = times[rid]
        recordings.append(Recording(pos, item, rid, started, ended, cfg.chunk_size))

    now_ms = clock.now_ms()
    for n, inj in enumerate(cfg.log_events):
        rid, at_ms = NO_RECORDING, now_ms + inj.offset_ms
        if inj.recording is not None:
            rec = _find(recordings, inj.recording, f"--log-event {inj.kind.name.lower()}")
            rid, at_ms = rec.recording_id, rec.ended_ms + inj.offset_ms
        if not events.contains(inj.kind, max(0, at_ms), rid):  # a restart must not repeat it
            pending.append(((at_ms, 0, n, 0), inj.kind, at_ms, rid))
    for _, kind, at_ms, rid in sorted(pending, key=lambda p: p[0]):
        events.append(kind, at_ms, rid)
    events.append(EventKind.POWER_ON, now_ms)

    faults = cfg.faults
    corrupt = _chunk_set(recordings, faults.corrupt_chunks, "corrupt-chunk", released)
    bad_sigs = _chunk_set(recordings, faults.bad_signatures, "bad-signature", released)
    bad_seals = {_find(recordings, ref, f"--fault bad-seal={ref}").recording_id
                 for ref in faults.bad_seals}
    hostile = _hostile(faults, recordings, released)
    kept = [r for r in recordings if r.recording_id not in released]
    used = sum(r.size for r in kept)
    total = cfg.power.storage_total
    free = cfg.power.storage_free
    other_used = 0 if free is None else total - free - used
    if used > total or other_used < 0:
        raise ConfigError(f"storage: {used} bytes of recordings plus {free} free exceed "
                          f"--storage-total {total}" if free is not None else
                          f"storage: {used} bytes of recordings exceed --storage-total {total}")

    key = Ed25519PrivateKey.generate() if faults.wrong_key else cfg.key
    signer = Signer(key, cfg.camera_uid)
    began = time.monotonic()
    signed = {}
    for rec in kept:
        try:
            signed[rec.recording_id] = signer.sign_recording(
                rec, {i for rid, i in bad_sigs if rid == rec.recording_id},
                bad_seal=rec.recording_id in bad_seals)
        except CameraError as exc:
            raise ConfigError(f"cannot sign {rec.item.name}: {exc.args[0]}") from None
    log.info("signed %d recordings, %d bytes, in %.1f s%s", len(kept), used,
             time.monotonic() - began, " with a WRONG key (fault)" if faults.wrong_key else "")
    camera = Camera(
        camera_uid=cfg.camera_uid, public_key=public_key_raw(cfg.key), device=cfg.device,
        power=cfg.power, clock=clock, signer=signer, recordings=recordings, signed=signed,
        released=released, events=events, recording_times=times, corrupt_chunks=corrupt,
        other_used=other_used, store=store, clock_jump=faults.clock_jump, hostile=hostile,
    )
    camera.save()
    return camera

