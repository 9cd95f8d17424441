"""The camera itself: identity, power and storage, clock, recordings, event log, release.

Transport-agnostic: the session calls these methods with decoded requests and sends what they
return. A refused request raises :class:`~camsim.errors.CameraError` with the wire error code.
Every change to persistent state (clock set, release, power on/off) is saved at once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from firmware_protocol import messages as m
from firmware_protocol.errors import ErrorCode
from firmware_protocol.messages import RECORDING_INFO_SIZE, EventKind

from .clock import CameraClock
from .errors import CameraError
from .eventlog import EventLog
from .faults import ClockJump
from .recordings import Recording
from .signer import SignedRecording, Signer
from .state import CameraState, StateStore

__all__ = ["Camera", "DeviceInfo", "HostileFaults", "PowerAndStorage"]

log = logging.getLogger(__name__)

_LIST_OVERHEAD = 10  # total u32, start u32, count u16


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The identity fields of ``Identity`` (GA/T 947-style device info record)."""

    model: str = "BWC-SIM"
    firmware: str = "camsim-0.1"
    serial: str = ""
    officer_id: str = ""
    officer_name: str = ""
    unit_code: str = ""
    unit_name: str = ""


@dataclass(frozen=True)
class HostileFaults:
    """What a hostile camera serves instead of the truth, resolved against the recordings by
    :func:`camsim.boot.boot_camera` (keys are (recording id, chunk index) or recording ids)."""

    # READ_CHUNK answered with another chunk's signed header and bytes (replay, swap, duplicate)
    replays: Mapping[tuple[bytes, int], tuple[bytes, int]] = field(default_factory=dict)
    # READ_CHUNK answered with the same bytes under another camera's signed header
    foreign: Mapping[tuple[bytes, int], m.ChunkHeader] = field(default_factory=dict)
    # the size the listing shows, smaller than what the chunks and the seal make it
    listed_sizes: Mapping[bytes, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PowerAndStorage:
    battery_pct: int = 100
    charging: bool = True  # it is docked
    storage_total: int = 64 << 30
    storage_free: int | None = None  # at start-up; None = total minus the recordings
    bitrate_bps: int = 8_000_000
    self_test_faults: tuple[int, ...] = ()


class Camera:
    def __init__(
        self,
        *,
        camera_uid: bytes,
        public_key: bytes,
        device: DeviceInfo,
        power: PowerAndStorage,
        clock: CameraClock,
        signer: Signer,
        recordings: Sequence[Recording],
        signed: Mapping[bytes, SignedRecording],
        released: set[bytes],
        events: EventLog,
        recording_times: dict[bytes, tuple[int, int]],
        corrupt_chunks: set[tuple[bytes, int]],
        other_used: int,
        store: StateStore | None,
        clock_jump: ClockJump | None = None,
        hostile: HostileFaults | None = None,
    ) -> None:
        """Assembled by :func:`camsim.boot.boot_camera`.

        ``public_key`` is the enrolled key's raw public half, even when the ``wrong-key`` fault
        makes ``signer`` use another key: the camera claims an identity it cannot prove.
        ``other_used`` is storage taken by something other than recordings.
        """
        self.camera_uid = camera_uid
        self.public_key = public_key  # the enrolled key, announced in IDENTITY
        self.device = device
        self.power = power
        self.clock = clock
        self.events = events
        self._signer = signer
        self._recordings = list(recordings)
        self._by_id = {r.recording_id: r for r in recordings}
        self._signed = dict(signed)
        self._released = released
        self._times = recording_times
        self._corrupt = corrupt_chunks
        self._other_used = other_used
        self._store = store
        self._clock_jump = clock_jump
        self._hostile = hostile or HostileFaults()
        self._statuses = 0  # GET_STATUS answered in this run (for the clock-jump fault)

    # -- identity and status -------------------------------------------------------------------

    def auth_response(self, nonce: bytes) -> m.AuthResponse:
        return m.AuthResponse(self._signer.sign_auth(nonce))

    @property
    def storage_free(self) -> int:
        used = sum(r.size for r in self.recordings())
        return max(0, self.power.storage_total - self._other_used - used)

    def status(self) -> m.Status:
        p = self.power
        st = m.Status(p.battery_pct, p.charging, p.storage_total, self.storage_free,
                      p.bitrate_bps, not p.self_test_faults, p.self_test_faults,
                      self.clock.now_ms(), False)
        self._statuses += 1
        jump = self._clock_jump
        if jump is not None and self._statuses == jump.after_status:
            # A failing RTC: the clock moves without a SET_TIME, and the camera's own event log
            # knows nothing of it. The new reading survives restarts like any clock state.
            self.clock.set(self.clock.now_us() + round(jump.seconds * 1e6))
            self.save()
            log.info("clock jump fault: clock moved by %+.3f s after status #%d", jump.seconds,
                     self._statuses)
        return st

    # -- clock ---------------------------------------------------------------------------------

    def set_time(self, unix_us: int) -> m.TimeSet:
        previous, current = self.clock.set(unix_us)
        delta_ms = (current - previous) // 1000
        self.events.append(EventKind.CLOCK_SET, current // 1000, detail=f"{delta_ms:+d} ms")
        self.save()
        return m.TimeSet(previous, current)

    # -- recordings ----------------------------------------------------------------------------

    def recordings(self) -> list[Recording]:
        """What the camera lists: every recording not yet released, in name order."""
        return [r for r in self._recordings if r.recording_id not in self._released]

    def _lookup(self, recording_id: bytes) -> Recording:
        rec = self._by_id.get(recording_id)
        if rec is None or recording_id in self._released:
            raise CameraError(ErrorCode.UNKNOWN_RECORDING, f"no recording {recording_id.hex()}")
        return rec

    def list_page(self, start: int, max_entries: int, max_payload: int) -> m.RecordingList:
        listed = self.recordings()
        if start > len(listed):
            raise CameraError(ErrorCode.BAD_INDEX, f"start {start} > {len(listed)} recordings")
        fit = (max_payload - _LIST_OVERHEAD) // RECORDING_INFO_SIZE
        page = listed[start : start + min(max_entries, fit)]
        return m.RecordingList(len(listed), start, tuple(self._info(r) for r in page))

    def _info(self, rec: Recording) -> m.RecordingInfo:
        info = rec.info()
        size = self._hostile.listed_sizes.get(rec.recording_id)
        if size is None:
            return info
        return dataclasses.replace(info, size=size, chunk_count=-(-size // rec.chunk_size))

    def read_chunk(self, recording_id: bytes, index: int) -> tuple[m.ChunkHeader, bytes]:
        rec = self._lookup(recording_id)
        if index >= rec.chunk_count:
            raise CameraError(ErrorCode.BAD_INDEX,
                              f"chunk {index} of a {rec.chunk_count}-chunk recording")
        hostile = self._hostile
        source = hostile.replays.get((recording_id, index))
        if source is not None:
            log.info("replay fault: chunk %d of %s answered with chunk %d of %s", index,
                     recording_id.hex()[:8], source[1], source[0].hex()[:8])
            return self._signed_chunk(*source)
        header, data = self._signed_chunk(recording_id, index)
        foreign = hostile.foreign.get((recording_id, index))
        if foreign is not None:
            log.info("foreign-chunk fault: chunk %d of %s as camera %s signed it", index,
                     recording_id.hex()[:8], foreign.info.camera_uid.hex()[:8])
            header = foreign
        if (recording_id, index) in self._corrupt:
            middle = len(data) // 2  # the corrupt-chunk fault: one byte differs
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        return header, data

    def _signed_chunk(self, recording_id: bytes, index: int) -> tuple[m.ChunkHeader, bytes]:
        """A chunk as signed and its bytes as stored (checked against each other)."""
        rec = self._by_id[recording_id]
        header = self._signed[recording_id].headers[index]
        # A file source refuses to serve a file changed since it was signed (FileSource).
        return header, rec.item.source.read(header.info.offset, header.info.size)

    def seal(self, recording_id: bytes) -> m.Seal:
        self._lookup(recording_id)
        return self._signed[recording_id].seal

    def release(self, recording_id: bytes) -> m.Released:
        """Forget a recording: unlisted, its storage freed. A media file stays on the host.

        Releasing what the camera does not have frees 0 bytes (docs/protocol.md §3), so a dock
        that repeats a RELEASE whose reply it lost is not told off.
        """
        rec = self._by_id.get(recording_id)
        if rec is None or recording_id in self._released:
            return m.Released(recording_id, 0)
        self._released.add(recording_id)
        self.events.append(EventKind.RELEASED, self.clock.now_ms(), recording_id)
        self.save()
        return m.Released(recording_id, rec.size)

    # -- event log and power -------------------------------------------------------------------

    def event_page(self, since: int, max_entries: int, max_payload: int) -> m.EventLog:
        entries, more = self.events.page(since, max_entries, max_payload)
        return m.EventLog(entries, more)

    def power_off(self, detail: str = "") -> None:
        self.events.append(EventKind.POWER_OFF, self.clock.now_ms(), detail=detail)
        self.save()

    def save(self) -> None:
        if self._store is None:
            return
        self._store.save(CameraState(
            camera_uid=self.camera_uid,
            clock=self.clock.anchor,
            released=frozenset(self._released),
            recording_times=dict(self._times),
            events=self.events.entries,
            next_event_seq=self.events.next_seq,
        ))
