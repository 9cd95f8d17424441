"""One dock session on one line: bytes in, reply bytes out (sans-IO, like the protocol below).

The session owns a ``Connection(Role.CAMERA)`` and answers every request from the
:class:`~camsim.model.Camera`. A request the connection rejects (malformed, unknown, not legal in
this state, e.g. anything before AUTH) gets an ``Error`` reply and the session carries on.

Incoming bytes are split into frames here first, and each frame is re-framed and fed to the
connection on its own. The connection does not say which frame a ``RemoteProtocolError`` came
from, and its table has no way back to an earlier handshake state; splitting gives us the frame
type for the ``Error`` reply, and lets the session accept what a real camera must accept:

* a HELLO mid-session (a dock that restarted, or retries after losing our IDENTITY) starts a
  new session;
* an AUTH_CHALLENGE after authentication (the dock lost our AUTH_RESPONSE, cancelled and
  retried, as docs/protocol.md §2.3 allows) is answered again, by replaying the session's HELLO
  into a fresh connection. This is skipped if the table learns to accept it by itself.

Requests are small, so the double parse is cheap.
"""

from __future__ import annotations

import logging

from firmware_protocol import messages as m
from firmware_protocol._state import TRANSITIONS, Role, State
from firmware_protocol.connection import (
    DEFAULT_MAX_PAYLOAD,
    NEED_DATA,
    SUPPORTED_VERSIONS,
    Connection,
)
from firmware_protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from firmware_protocol.frames import (
    INITIAL_MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameError,
    encode_frame,
)

from .errors import CameraError
from .model import Camera

__all__ = ["CameraSession", "describe"]

log = logging.getLogger(__name__)

_ERROR_TEXT_MAX = 200  # characters of explanation in an Error reply


def describe(req: m.Message) -> str:
    """A terse, secret-free description of a request for the log."""
    name = type(req).__name__
    match req:
        case m.Hello(versions=versions, max_payload=size):
            return f"{name} versions={','.join(map(str, versions))} max_payload={size}"
        case m.ReadChunk(recording_id=rid, index=index):
            return f"{name} rec={rid.hex()[:8]} idx={index}"
        case m.GetSeal(recording_id=rid) | m.Release(recording_id=rid):
            return f"{name} rec={rid.hex()[:8]}"
        case m.ListRecordings(start=start, max_entries=n):
            return f"{name} start={start} max={n}"
        case m.GetEventLog(since=since, max_entries=n):
            return f"{name} since={since} max={n}"
        case m.SetTime(unix_us=us):
            return f"{name} unix_us={us}"
    return name


class CameraSession:
    def __init__(self, camera: Camera, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.camera = camera
        self._max_payload = max_payload
        self._conn = Connection(Role.CAMERA, max_payload=max_payload)
        self._frames = FrameDecoder(INITIAL_MAX_PAYLOAD)
        self._hello: Frame | None = None  # the HELLO that opened this session

    @property
    def connection(self) -> Connection:
        return self._conn

    def reset(self) -> None:
        """The line went down: forget the session and any partial frame."""
        self._new_connection()
        self._frames = FrameDecoder(INITIAL_MAX_PAYLOAD)

    def _new_connection(self) -> None:
        # The frame splitter is kept: bytes after the current frame belong to the new session.
        self._conn = Connection(Role.CAMERA, max_payload=self._max_payload)
        self._hello = None

    def receive_data(self, data: bytes) -> list[bytes]:
        """Feed bytes from the dock; returns the frames to write, in order."""
        received_us = self.camera.clock.now_us()  # t1 of any TimeProbe in this batch
        self._frames.feed(data)
        out: list[bytes] = []
        while (item := self._frames.next()) is not None:
            if isinstance(item, FrameError):
                log.info("line: %s, %d bytes skipped %s", item.kind.value, item.skipped,
                         item.detail)
                continue
            out.extend(self._frame(item, received_us))
            self._frames.max_payload = self._conn.max_payload  # IDENTITY may have raised it
        return out

    def _frame(self, frame: Frame, received_us: int) -> list[bytes]:
        state = self._conn.state
        if frame.type == m.Hello.TYPE and state is not State.HANDSHAKE:
            log.info("HELLO in state %s: new session", state.value)
            self._new_connection()
        elif (frame.type == m.AuthChallenge.TYPE and state is State.READY
              and (State.READY, Role.DOCK, m.AuthChallenge) not in TRANSITIONS):
            self._back_to_identified()
        if frame.type == m.Hello.TYPE:
            self._hello = frame
        conn = self._conn
        conn.receive_data(encode_frame(frame.type, frame.seq, frame.payload, conn.max_payload))
        out: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                log.info("frame type 0x%02x seq %d -> Error %s: %s", frame.type, frame.seq,
                         exc.code.name, exc.args[0])
                out += self._error(exc.code, frame.type, exc.args[0])
                continue
            if event is NEED_DATA:
                return out
            if isinstance(event, m.Message):
                out += self._request(event, received_us)

    def _back_to_identified(self) -> None:
        """A fresh connection that has seen this session's HELLO and sent its IDENTITY."""
        hello = self._hello
        if hello is None:
            return
        log.info("AUTH_CHALLENGE again: the dock lost our response, answering it again")
        self._new_connection()
        self._hello = hello
        self._conn.receive_data(encode_frame(hello.type, hello.seq, hello.payload,
                                             INITIAL_MAX_PAYLOAD))
        request = self._conn.next_event()
        assert isinstance(request, m.Hello)
        self._answer(request, 0)  # the IDENTITY the dock already has: not sent again

    def _request(self, req: m.Message, received_us: int) -> list[bytes]:
        what = describe(req)
        try:
            frames, summary = self._answer(req, received_us)
        except CameraError as exc:
            log.info("%s -> Error %s: %s", what, exc.code.name, exc.args[0])
            return self._error(exc.code, req.TYPE, exc.args[0])
        except LocalProtocolError as exc:  # our own bug: say so, keep the line alive
            log.exception("%s -> internal error", what)
            return self._error(ErrorCode.INTERNAL, req.TYPE, exc.args[0])
        log.info("%s -> %s", what, summary)
        return frames

    def _error(self, code: ErrorCode, request_type: int, text: str) -> list[bytes]:
        try:
            return [self._conn.send(m.Error(code, request_type, text[:_ERROR_TEXT_MAX]))]
        except LocalProtocolError:
            log.exception("cannot send an Error reply in state %s", self._conn.state.value)
            return []

    def _answer(self, req: m.Message, received_us: int) -> tuple[list[bytes], str]:
        cam, send = self.camera, self._conn.send
        match req:
            case m.Hello():
                common = set(req.versions) & set(SUPPORTED_VERSIONS)
                if not common:
                    raise CameraError(ErrorCode.VERSION_UNSUPPORTED,
                                      f"camera speaks versions {SUPPORTED_VERSIONS}")
                size = min(self._max_payload, req.max_payload)
                d = cam.device
                identity = m.Identity(max(common), size, cam.camera_uid, cam.public_key,
                                      d.model, d.firmware, d.serial, d.officer_id,
                                      d.officer_name, d.unit_code, d.unit_name)
                return [send(identity)], f"Identity v{identity.version} max_payload={size}"
            case m.AuthChallenge():
                return [send(cam.auth_response(req.nonce))], "AuthResponse"
            case m.GetStatus():
                st = cam.status()
                return [send(st)], (f"Status battery={st.battery_pct}% "
                                    f"free={st.storage_free} self_test_ok={st.self_test_ok}")
            case m.TimeProbe():
                reply = m.TimeReply(req.t0_us, received_us, cam.clock.now_us())
                return [send(reply)], f"TimeReply t1={reply.t1_us}"
            case m.SetTime():
                ts = cam.set_time(req.unix_us)
                return [send(ts)], f"TimeSet {(ts.current_us - ts.previous_us) / 1e6:+.3f} s"
            case m.ListRecordings():
                page = cam.list_page(req.start, req.max_entries, self._conn.max_payload)
                return [send(page)], f"RecordingList {len(page.entries)} of {page.total}"
            case m.ReadChunk():
                header, data = cam.read_chunk(req.recording_id, req.index)
                frames = self._conn.send_chunk(header, data)
                return frames, f"ChunkHeader + {len(data)} B in {len(frames) - 1} frames"
            case m.GetSeal():
                return [send(cam.seal(req.recording_id))], "Seal"
            case m.GetEventLog():
                log_page = cam.event_page(req.since, req.max_entries, self._conn.max_payload)
                return [send(log_page)], (f"EventLog {len(log_page.entries)} entries "
                                          f"more={log_page.more}")
            case m.Release():
                released = cam.release(req.recording_id)
                return [send(released)], f"Released {released.freed_bytes} B"
        raise CameraError(ErrorCode.UNKNOWN_MESSAGE, f"{type(req).__name__} is not a request")
