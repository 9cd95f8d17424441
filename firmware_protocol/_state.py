"""Session states and every legal transition, in one table.

Both roles track the same state from the messages they send and receive, so a message is legal
for one side exactly when the other side expects it. A (state, sender, message) triple that is not
in the table is a protocol error: ``LocalProtocolError`` if we tried to send it,
``RemoteProtocolError`` if the peer did.
"""

from __future__ import annotations

from enum import Enum

from . import messages as m

__all__ = ["CANCEL", "CHUNK_COMPLETE", "STABLE_STATES", "TRANSITIONS", "Role", "State"]


class Role(Enum):
    DOCK = "dock"
    CAMERA = "camera"


class State(Enum):
    HANDSHAKE = "handshake"  # nothing exchanged yet: the dock must say HELLO
    AWAIT_IDENTITY = "await_identity"
    IDENTIFIED = "identified"  # the dock must authenticate the camera next
    AWAIT_AUTH = "await_auth"
    READY = "ready"  # authenticated: any request may be sent
    AWAIT_STATUS = "await_status"
    AWAIT_TIME = "await_time"
    AWAIT_TIME_SET = "await_time_set"
    AWAIT_LIST = "await_list"
    AWAIT_CHUNK = "await_chunk"
    IN_CHUNK = "in_chunk"  # chunk header received, data frames follow
    AWAIT_SEAL = "await_seal"
    AWAIT_LOG = "await_log"
    AWAIT_RELEASE = "await_release"


# Pseudo-inputs the connection feeds the table itself.
CHUNK_COMPLETE = "chunk_complete"  # the last data byte of a chunk arrived / was sent
CANCEL = "cancel"  # the dock abandoned its outstanding request (timeout, retry)

_D, _C = Role.DOCK, Role.CAMERA
S = State

Input = type[m.Message] | str

TRANSITIONS: dict[tuple[State, Role, Input], State] = {
    (S.HANDSHAKE, _D, m.Hello): S.AWAIT_IDENTITY,
    (S.AWAIT_IDENTITY, _C, m.Identity): S.IDENTIFIED,
    (S.AWAIT_IDENTITY, _C, m.Error): S.HANDSHAKE,
    (S.IDENTIFIED, _D, m.AuthChallenge): S.AWAIT_AUTH,
    # A dock whose IDENTITY or AUTH_RESPONSE was lost on the line cancels and asks again; the
    # camera, which already answered, must accept the repeat. HELLO in READY restarts the session
    # (authentication included).
    (S.IDENTIFIED, _D, m.Hello): S.AWAIT_IDENTITY,
    (S.READY, _D, m.Hello): S.AWAIT_IDENTITY,
    (S.READY, _D, m.AuthChallenge): S.AWAIT_AUTH,
    (S.AWAIT_AUTH, _C, m.AuthResponse): S.READY,
    (S.AWAIT_AUTH, _C, m.Error): S.IDENTIFIED,
    (S.READY, _D, m.GetStatus): S.AWAIT_STATUS,
    (S.READY, _D, m.TimeProbe): S.AWAIT_TIME,
    (S.READY, _D, m.SetTime): S.AWAIT_TIME_SET,
    (S.READY, _D, m.ListRecordings): S.AWAIT_LIST,
    (S.READY, _D, m.ReadChunk): S.AWAIT_CHUNK,
    (S.READY, _D, m.GetSeal): S.AWAIT_SEAL,
    (S.READY, _D, m.GetEventLog): S.AWAIT_LOG,
    (S.READY, _D, m.Release): S.AWAIT_RELEASE,
    (S.AWAIT_STATUS, _C, m.Status): S.READY,
    (S.AWAIT_TIME, _C, m.TimeReply): S.READY,
    (S.AWAIT_TIME_SET, _C, m.TimeSet): S.READY,
    (S.AWAIT_LIST, _C, m.RecordingList): S.READY,
    (S.AWAIT_CHUNK, _C, m.ChunkHeader): S.IN_CHUNK,
    (S.IN_CHUNK, _C, m.ChunkData): S.IN_CHUNK,
    (S.IN_CHUNK, _C, CHUNK_COMPLETE): S.READY,
    (S.AWAIT_SEAL, _C, m.Seal): S.READY,
    (S.AWAIT_LOG, _C, m.EventLog): S.READY,
    (S.AWAIT_RELEASE, _C, m.Released): S.READY,
}

# An error reply ends any outstanding request; the camera may also send one unsolicited (in a
# stable state) when it rejects a request it could not accept.
_STABLE_AFTER = {
    S.AWAIT_STATUS: S.READY, S.AWAIT_TIME: S.READY, S.AWAIT_TIME_SET: S.READY,
    S.AWAIT_LIST: S.READY, S.AWAIT_CHUNK: S.READY, S.IN_CHUNK: S.READY, S.AWAIT_SEAL: S.READY,
    S.AWAIT_LOG: S.READY, S.AWAIT_RELEASE: S.READY,
}
for _waiting, _stable in _STABLE_AFTER.items():
    TRANSITIONS[(_waiting, _C, m.Error)] = _stable
    TRANSITIONS[(_waiting, _D, CANCEL)] = _stable
for _stable in (S.HANDSHAKE, S.IDENTIFIED, S.READY):
    TRANSITIONS[(_stable, _C, m.Error)] = _stable
TRANSITIONS[(S.AWAIT_IDENTITY, _D, CANCEL)] = S.HANDSHAKE
TRANSITIONS[(S.AWAIT_AUTH, _D, CANCEL)] = S.IDENTIFIED

STABLE_STATES = frozenset({S.HANDSHAKE, S.IDENTIFIED, S.READY})
