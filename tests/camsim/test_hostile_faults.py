"""The hostile-camera ``--fault``s: what each serves, seen by a dock ``Connection`` in memory,
through the line shaper and the reply queue, and over a real pty."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camsim.boot import CameraConfig, boot_camera
from camsim.errors import ConfigError
from camsim.faults import MALFORMED_NAMES, parse_faults
from camsim.keys import derive_camera_uid
from camsim.line import OVERSIZE_LENGTH, LineFaults, LineShaper, LineState
from camsim.model import Camera
from camsim.pump import ReplyQueue
from camsim.recordings import MediaItem, generate_items, recording_id
from camsim.session import CameraSession
from firmware_protocol import messages as m
from firmware_protocol._state import Role
from firmware_protocol.connection import NEED_DATA, Connection, Event
from firmware_protocol.errors import ErrorCode, RemoteProtocolError
from firmware_protocol.frames import Frame, FrameDecoder, FrameError, FrameErrorKind, encode_frame
from firmware_protocol.signing import load_public_key, public_key_raw, verify_signature

from .camsim_process import running
from .host import NoReply

UID = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
CHUNK = 2048
SIZE = 4 * CHUNK + 500  # five chunks, the last one 500 bytes
NOW_US = 1_700_000_000_000_000


def media() -> list[MediaItem]:
    """Two recordings whose bytes do not depend on the camera (seeded by UID)."""
    return generate_items(UID, 2, SIZE)


def boot(*faults: str, key: Ed25519PrivateKey = KEY, uid: bytes = UID) -> Camera:
    """A camera whose host clock stands still, so that two boots list the same times."""
    return boot_camera(CameraConfig(key=key, camera_uid=uid, media=media(), chunk_size=CHUNK,
                                    faults=parse_faults(faults), host_clock=lambda: NOW_US))


def rid(n: int, uid: bytes = UID) -> bytes:
    return recording_id(uid, f"generated-{n:04d}.mp4")


def docked(camera: Camera) -> tuple[CameraSession, Connection]:
    session = CameraSession(camera, max_payload=65536)
    dock = Connection(Role.DOCK, max_payload=65536)
    assert isinstance(exchange(session, dock, m.Hello((1,), 65536))[-1], m.Identity)
    assert isinstance(exchange(session, dock, m.AuthChallenge(bytes(32)))[-1], m.AuthResponse)
    return session, dock


def exchange(session: CameraSession, dock: Connection, msg: m.Message) -> list[Event]:
    events: list[Event] = []
    for data in session.receive_data(dock.send(msg)):
        dock.receive_data(data)
        while (ev := dock.next_event()) is not NEED_DATA:
            assert not isinstance(ev, type(NEED_DATA))
            events.append(ev)
    return events


def dock_rejects(camera: Camera, recording: bytes, index: int) -> RemoteProtocolError:
    """The chunks before ``index`` come through; chunk ``index`` breaks the dock's connection."""
    session, dock = docked(camera)
    for i in range(index):
        assert isinstance(exchange(session, dock, m.ReadChunk(recording, i))[0], m.ChunkHeader)
    with pytest.raises(RemoteProtocolError) as info:
        exchange(session, dock, m.ReadChunk(recording, index))
    return info.value


# -- what the camera serves ---------------------------------------------------------------------

def test_replayed_swapped_and_duplicated_chunks_are_signed_chunks_served_in_the_wrong_place(
) -> None:
    camera = boot("replay-chunk=0:1@1:0", "swap-chunks=1:2:4", "duplicate-chunk=0:2")
    honest = boot()
    served = {(r, i): camera.read_chunk(rid(r), i) for r in (0, 1) for i in range(5)}
    truth = {(r, i): honest.read_chunk(rid(r), i) for r in (0, 1) for i in range(5)}
    assert served[(0, 1)] == truth[(1, 0)]
    assert served[(0, 3)] == truth[(0, 2)]  # chunk 2 again, in place of chunk 3
    assert (served[(1, 2)], served[(1, 4)]) == (truth[(1, 4)], truth[(1, 2)])
    replaced = {(0, 1), (0, 3), (1, 2), (1, 4)}
    assert all(served[k] == truth[k] for k in truth if k not in replaced)
    for header, data in served.values():  # every chunk served is intact and validly signed
        assert hashlib.sha256(data).digest() == header.info.sha256
        assert verify_signature(KEY.public_key(), header.chunk_message, header.signature)
    # A dock sees a chunk header for another chunk than the one it asked for.
    for fault, recording, index in [("replay-chunk=0:1@1:0", 0, 1),
                                    ("duplicate-chunk=0:2", 0, 3), ("swap-chunks=1:2:4", 1, 2)]:
        error = dock_rejects(boot(fault), rid(recording), index)
        assert error.code is ErrorCode.SEQUENCE and "another chunk" in str(error)


def test_foreign_chunk_is_the_other_cameras_own_signed_chunk(tmp_path: Path) -> None:
    key_file = tmp_path / "other-key.pem"
    key_file.write_bytes(OTHER_KEY.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    other_uid = derive_camera_uid(OTHER_KEY)
    other = boot(key=OTHER_KEY, uid=other_uid)  # the other camera, holding the same file
    camera = boot(f"foreign-chunk=1:2@{key_file}")
    header, data = camera.read_chunk(rid(1), 2)
    assert (header, data) == other.read_chunk(rid(1, other_uid), 2)  # byte for byte its own
    assert verify_signature(load_public_key(public_key_raw(OTHER_KEY)), header.chunk_message,
                            header.signature)
    assert header.info.camera_uid == other_uid
    assert camera.read_chunk(rid(1), 1) == boot().read_chunk(rid(1), 1)
    error = dock_rejects(camera, rid(1), 2)
    assert error.code is ErrorCode.SEQUENCE and "another chunk" in str(error)


def test_bad_seal_is_validly_signed_and_disagrees_with_the_chunks() -> None:
    camera, honest = boot("bad-seal=1"), boot()
    seal, true_seal = camera.seal(rid(1)), honest.seal(rid(1))
    assert verify_signature(KEY.public_key(), seal.seal_message, seal.signature)
    whole = b"".join(camera.read_chunk(rid(1), i)[1] for i in range(5))
    assert true_seal.info.sha256 == hashlib.sha256(whole).digest() != seal.info.sha256
    assert seal.info.chunk_count == 5 and seal.info.total_size == SIZE
    assert camera.seal(rid(0)) == honest.seal(rid(0))


@pytest.mark.parametrize(("fault", "listed_size"), [
    ("extra-chunk=0", 4 * CHUNK),  # without its 500-byte last chunk
    ("extra-bytes=0:100", SIZE - 100),
    ("extra-bytes=0:600", SIZE - 600),  # one chunk fewer, the new last one short
])
def test_the_listing_understates_a_recording_the_chunks_and_seal_do_not(
    fault: str, listed_size: int
) -> None:
    camera = boot(fault)
    listing = camera.list_page(0, 10, 65536).entries
    assert (listing[0].size, listing[0].chunk_count) == (listed_size, -(-listed_size // CHUNK))
    assert listing[1] == boot().list_page(0, 10, 65536).entries[1]
    seal = camera.seal(rid(0)).info
    assert (seal.chunk_count, seal.total_size) == (5, SIZE)  # the truth
    served = sum(camera.read_chunk(rid(0), i)[0].info.size for i in range(5))
    assert served == SIZE > listed_size


@pytest.mark.parametrize(("faults", "message"), [
    (["replay-chunk=0:1"], "expected replay-chunk=REC:IDX@REC2:IDX2"),
    (["replay-chunk=0:1@2:0"], "no recording 2"),
    (["replay-chunk=0:1@1:5"], "replay-chunk=0:1@1:5: recording 1 has 5 chunks"),
    (["swap-chunks=0:1:1"], "I != J"),
    (["swap-chunks=0:1"], "expected swap-chunks=REC:I:J"),
    (["duplicate-chunk=0:4"], "duplicate-chunk=0:4: recording 0 has 5 chunks"),
    (["foreign-chunk=0:1"], "expected foreign-chunk=REC:IDX@KEYFILE"),
    (["foreign-chunk=0:1@/nonexistent/key.pem"], "cannot read key /nonexistent/key.pem"),
    (["bad-seal=3"], "no recording 3"),
    (["extra-bytes=0"], "expected extra-bytes=REC:N"),
    (["extra-bytes=0:0"], "must be at least 1"),
    (["extra-bytes=1:8692"], "cannot be listed 8692 smaller"),
    (["malformed=hello"], "expected one of identity, auth_response"),
    (["slowloris=0"], "MS at least 1"),
    (["slowloris=10@x"], "bad size 'x'"),
    (["slowloris=10", "slowloris=20"], "given twice"),
    (["endless-garbage=1", "endless-garbage=2"], "given twice"),
    (["oversize-length"], "bad --fault 'oversize-length'"),
])
def test_bad_hostile_specs_are_refused(faults: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        boot(*faults)


# -- the line -----------------------------------------------------------------------------------

def _frames(*types: int) -> list[bytes]:
    return [encode_frame(t, n, bytes(range(40)), 1 << 20) for n, t in enumerate(types, 1)]


def _decode(data: bytes, max_payload: int = 1 << 20) -> list[Frame | FrameError]:
    decoder = FrameDecoder(max_payload)
    decoder.feed(data)
    items: list[Frame | FrameError] = []
    while (item := decoder.next()) is not None:
        items.append(item)
    return items


def test_malformed_replies_are_cut_short_with_valid_crcs() -> None:
    shaper = LineShaper(parse_faults(["malformed=seal", "malformed=status"]).line)
    frames = _frames(m.Seal.TYPE, m.ChunkData.TYPE, m.Status.TYPE)
    got = _decode(b"".join(shaper.shape(frames)))
    assert [(f.type, f.seq, bytes(f.payload)) for f in got if isinstance(f, Frame)] == [
        (m.Seal.TYPE, 1, bytes(range(3))), (m.ChunkData.TYPE, 2, bytes(range(40))),
        (m.Status.TYPE, 3, bytes(range(3)))]
    assert len(got) == 3  # no frame error: only the content is wrong


@pytest.mark.parametrize("name", sorted(MALFORMED_NAMES))
def test_no_camera_reply_decodes_once_malformed(name: str) -> None:
    camera = boot()
    seal = camera.seal(rid(0))
    header, data = camera.read_chunk(rid(0), 4)
    replies: dict[str, m.Message] = {
        "identity": m.Identity(1, 65536, UID, public_key_raw(KEY), "", "", "", "", "", "", ""),
        "auth_response": m.AuthResponse(bytes(64)), "status": camera.status(),
        "time_reply": m.TimeReply(1, 2, 3), "time_set": m.TimeSet(1, 2),
        "recording_list": camera.list_page(0, 10, 65536), "chunk_header": header,
        "chunk_data": m.ChunkData(0, data), "seal": seal,
        "event_log": m.EventLog((), False), "released": m.Released(rid(0), 0),
        "error": m.Error(ErrorCode.BUSY, 0, ""),
    }
    msg = replies[name]
    shaper = LineShaper(parse_faults([f"malformed={name}"]).line)
    (frame,) = _decode(b"".join(shaper.shape([encode_frame(msg.TYPE, 1, msg.encode(),
                                                                 1 << 20)])))
    assert isinstance(frame, Frame) and frame.type == msg.TYPE
    assert len(frame.payload) == min(3, len(msg.encode()) - 1)
    with pytest.raises(RemoteProtocolError) as info:
        m.decode_message(frame.type, bytes(frame.payload))
    assert info.value.code is ErrorCode.MALFORMED


def test_oversize_length_headers_from_byte_n_on() -> None:
    frames = _frames(*[m.ChunkData.TYPE] * 4)  # 58 bytes each
    shaper = LineShaper(LineFaults(oversize_after=100))
    out = b"".join(shaper.shape(frames))
    assert len(out) == sum(map(len, frames))  # nothing added, nothing lost
    got = _decode(out, 65536)
    assert [f.seq for f in got[:2] if isinstance(f, Frame)] == [1, 2]
    oversize = [e for e in got if isinstance(e, FrameError) and e.kind is FrameErrorKind.TOO_LARGE]
    assert [e.seq for e in oversize] == [3, 4]  # the header CRC held: the seq is known
    assert all(str(OVERSIZE_LENGTH) in e.detail for e in oversize)


def _queue(faults: LineFaults, now: list[float]) -> ReplyQueue:
    session = CameraSession(boot(), max_payload=65536)
    return ReplyQueue(session, LineShaper(faults), clock=lambda: now[0])


HELLO = encode_frame(m.Hello.TYPE, 1, m.Hello((1,), 65536).encode(), 4096)


def test_endless_garbage_floods_whenever_the_line_takes_it() -> None:
    queue = _queue(LineFaults(endless_garbage_after=30), [0.0])
    queue.receive(HELLO)
    assert queue.shaper.state is LineState.FLOODING
    written = bytearray()

    def line(room: int) -> None:
        def write(data: bytes | memoryview) -> int:
            if len(written) >= room:
                raise BlockingIOError
            take = min(len(data), room - len(written))
            written.extend(bytes(data)[:take])
            return take
        queue.flush(write)

    for room in (10, 1000, 300_000, 1_000_000):
        line(room)
        assert len(written) == room and queue.ready_in() == 0  # more, as soon as it fits
    assert 0xB7 not in written[30:]  # no frame start, ever
    identity = CameraSession(boot(), max_payload=65536).receive_data(HELLO)[0]
    assert written[:30] == identity[:30]  # the answer, up to byte 30
    queue.receive(encode_frame(m.GetStatus.TYPE, 2, b"", 4096))  # not answered any more
    line(1_000_100)
    assert 0xB7 not in written[30:]
    queue.host_gone()
    assert queue.pending  # a host that opens the line again gets the flood too


def test_slowloris_writes_one_byte_per_interval_from_byte_n_on() -> None:
    now = [100.0]
    queue = _queue(LineFaults(slowloris_ms=250, slowloris_after=20), now)
    queue.receive(HELLO)
    written = bytearray()

    def write(data: bytes | memoryview) -> int:
        written.extend(data)
        return len(data)

    queue.flush(write)
    assert len(written) == 21  # up to byte 20 at once, then the first paced byte
    assert queue.ready_in() == pytest.approx(0.25)
    queue.flush(write)
    assert len(written) == 21  # not due yet
    now[0] += 0.25
    assert queue.ready_in() == 0
    queue.flush(write)
    queue.flush(write)
    assert len(written) == 22
    now[0] += 10.0
    queue.flush(write)
    assert len(written) == 23  # one byte per flush, however late: never a burst
    identity = CameraSession(boot(), max_payload=65536).receive_data(HELLO)[0]
    assert bytes(written) == identity[:23]


# -- over a real pty ----------------------------------------------------------------------------

def test_endless_garbage_and_slowloris_over_a_pty(tmp_path: Path) -> None:
    with running(tmp_path / "flood", "--generate", "1:100K", "--fault", "endless-garbage=10K"
                 ) as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        rec = host.list_recordings()[0]
        with pytest.raises(NoReply):
            host.read_chunk(rec.recording_id, 0, timeout=1.0)
        # Until the deadline: 10 KiB of answers, then garbage. The data frame it cut fails its
        # CRC (and its real first bytes are hunted through again); the flood is all garbage.
        assert host.received > 10 * 1024 + 100_000
        errors = [e for e in host.events if isinstance(e, FrameError)]
        assert errors[0].kind is FrameErrorKind.BAD_CRC
        garbage = sum(e.skipped for e in errors if e.kind is FrameErrorKind.GARBAGE)
        assert garbage > host.received - 20 * 1024
    assert "endless-garbage fault: 10240 bytes written" in cam.stderr
    # IDENTITY and AUTH_RESPONSE are 196 bytes, the one-entry listing 78 more: paced from 250.
    with running(tmp_path / "loris", "--generate", "1:100K", "--fault", "slowloris=200@250"
                 ) as cam, cam.host() as host:
        host.hello()
        assert host.authenticate(cam.public_key)
        assert host.received == 196
        with pytest.raises(NoReply):
            host.request(m.ListRecordings(0, 10), timeout=1.0)
        assert 250 < host.received < 196 + 78
