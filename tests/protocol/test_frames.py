"""Frame layer: golden bytes, and the decoder's resynchronisation fed every way a line can cut.

Every decoder test goes through :func:`decode_all_ways`, which feeds the bytes whole, split in
two at every position, and one byte at a time, and requires the same events from all of them.
"""

from __future__ import annotations

import struct

import pytest

from firmware_protocol.errors import ErrorCode, LocalProtocolError
from firmware_protocol.frames import (
    DIRECT_MIN,
    HEADER_SIZE,
    INITIAL_MAX_PAYLOAD,
    MAGIC,
    TRAILER_SIZE,
    Frame,
    FrameDecoder,
    FrameError,
    FrameErrorKind,
    encode_frame,
)
from tests.protocol.helpers import feedings

GARBAGE = FrameErrorKind.GARBAGE
BAD_HEADER = FrameErrorKind.BAD_HEADER
TOO_LARGE = FrameErrorKind.TOO_LARGE
BAD_CRC = FrameErrorKind.BAD_CRC

Item = Frame | FrameError


def ref_crc32(data: bytes) -> int:
    """Bit-by-bit CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320): independent of zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def coalesce(items: list[Item]) -> list[Item]:
    """Merge adjacent GARBAGE reports. The decoder reports garbage as far as it has scanned, so
    read boundaries cut one run of garbage into several reports; the bytes skipped are the
    same whatever the cuts, and every other event is identical."""
    out: list[Item] = []
    for item in items:
        last = out[-1] if out else None
        if (isinstance(item, FrameError) and item.kind is GARBAGE
                and isinstance(last, FrameError) and last.kind is GARBAGE):
            out[-1] = FrameError(GARBAGE, last.skipped + item.skipped)
        else:
            out.append(item)
    return out


def decode_all_ways(data: bytes, max_payload: int = INITIAL_MAX_PAYLOAD) -> list[Item]:
    """Decode ``data`` fed (a) whole, (b) split in two at every position and (c) one byte at a
    time, each with frames assembled in place from any size on (``direct_min=1``, so every
    incomplete frame is) and as usual; assert every feeding yields the same events and leaves
    the same bytes buffered."""
    outcomes: dict[str, tuple[list[Item], int]] = {}
    for name, feeds in feedings(data):
        for direct_min in (DIRECT_MIN, 1):
            decoder = FrameDecoder(max_payload, direct_min=direct_min)
            items: list[Item] = []
            for piece in feeds:
                decoder.feed(piece)
                while (item := decoder.next()) is not None:
                    items.append(item)
            outcomes[f"{name}, direct_min={direct_min}"] = (coalesce(items), decoder.buffered)
    whole = outcomes[f"whole, direct_min={DIRECT_MIN}"]
    differing = {name: got for name, got in outcomes.items() if got != whole}
    assert not differing, f"whole feed gave {whole}, but {differing}"
    return whole[0]


def summary(items: list[Item]) -> list[object]:
    """Frames as they are, framing errors as (kind, skipped)."""
    return [(i.kind, i.skipped) if isinstance(i, FrameError) else i for i in items]


def detail(item: Item) -> str:
    assert isinstance(item, FrameError)
    return item.detail


def seq_of(item: Item) -> int | None:
    """The sequence number a framing error reports: only known when the header CRC held."""
    assert isinstance(item, FrameError)
    return item.seq


def decode_one(data: bytes) -> Frame:
    decoder = FrameDecoder()
    decoder.feed(data)
    item = decoder.next()
    assert isinstance(item, Frame)
    return item


def frame(msg_type: int, seq: int, payload: bytes) -> bytes:
    return encode_frame(msg_type, seq, payload, INITIAL_MAX_PAYLOAD)


def raw_header(version: int, msg_type: int, seq: int, length: int) -> bytes:
    """A header with a correct CRC for any field values, even ones encode_frame refuses."""
    head = MAGIC + struct.pack(">BBHI", version, msg_type, seq, length)
    return head + ref_crc32(head).to_bytes(4, "big")


# A frame with no start marker inside it after byte 0, used as the "good frame" everywhere.
A = frame(0x0D, 0x1234, b"123456789")
B = frame(0x06, 0x0002, b"status payload, 28 bytes....")
FRAME_A = Frame(0x0D, 0x1234, b"123456789")
FRAME_B = Frame(0x06, 0x0002, b"status payload, 28 bytes....")
assert MAGIC not in A[1:] and MAGIC not in B[1:]


# -- golden bytes ------------------------------------------------------------------------------

# (type, seq, payload) -> fields: magic, version, type, seq, length, header CRC, payload, CRC
# (the trailer CRC covers the 14 header bytes and the payload).
GOLDEN_FRAMES = [
    ((0x05, 1, b""),
     ("b7c3", "01", "05", "0001", "00000000", "ad18c132", "", "7675d0d2")),
    ((0x0D, 0x1234, b"123456789"),
     ("b7c3", "01", "0d", "1234", "00000009", "c0f4a397", "313233343536373839", "14debc36")),
    # seq is a u16: 0x1FFFF goes on the wire as FFFF
    ((0x7F, 0x1FFFF, b"abc"),
     ("b7c3", "01", "7f", "ffff", "00000003", "6fc95a1d", "616263", "e09cd796")),
]


def test_reference_crc_is_the_standard_crc32() -> None:
    assert ref_crc32(b"123456789") == 0xCBF43926  # the catalogued check value of CRC-32
    assert ref_crc32(b"") == 0


@pytest.mark.parametrize(("args", "fields"), GOLDEN_FRAMES)
def test_encode_frame_golden_bytes(args: tuple[int, int, bytes], fields: tuple[str, ...]) -> None:
    assert encode_frame(*args, INITIAL_MAX_PAYLOAD).hex() == "".join(fields)


@pytest.mark.parametrize(("args", "fields"), GOLDEN_FRAMES)
def test_golden_frames_follow_the_documented_layout(
    args: tuple[int, int, bytes], fields: tuple[str, ...]
) -> None:
    """Check the literal table itself, field by field, against the layout in frames.py."""
    msg_type, seq, payload = args
    data = bytes.fromhex("".join(fields))
    assert HEADER_SIZE == 14 and TRAILER_SIZE == 4
    assert len(data) == HEADER_SIZE + len(payload) + TRAILER_SIZE
    assert data[0:2] == b"\xb7\xc3"
    assert data[2] == 1  # protocol version
    assert data[3] == msg_type
    assert data[4:6] == (seq & 0xFFFF).to_bytes(2, "big")
    assert data[6:10] == len(payload).to_bytes(4, "big")
    assert data[10:14] == ref_crc32(data[0:10]).to_bytes(4, "big")
    assert data[14 : 14 + len(payload)] == payload
    assert data[-4:] == ref_crc32(data[:-4]).to_bytes(4, "big")


def test_golden_frames_decode() -> None:
    stream = b"".join(bytes.fromhex("".join(fields)) for _, fields in GOLDEN_FRAMES)
    assert decode_all_ways(stream) == [
        Frame(0x05, 1, b""), Frame(0x0D, 0x1234, b"123456789"), Frame(0x7F, 0xFFFF, b"abc"),
    ]


def test_encode_frame_refuses_a_payload_above_the_maximum() -> None:
    assert len(encode_frame(0x0F, 1, bytes(100), 100)) == HEADER_SIZE + 100 + TRAILER_SIZE
    with pytest.raises(LocalProtocolError) as info:
        encode_frame(0x0F, 1, bytes(101), 100)
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


# -- the feeding helper itself -----------------------------------------------------------------


def test_feedings_cover_whole_every_split_and_bytewise() -> None:
    ways = list(feedings(b"abc"))
    assert ways == [
        ("whole", [b"abc"]),
        ("split@0", [b"", b"abc"]), ("split@1", [b"a", b"bc"]),
        ("split@2", [b"ab", b"c"]), ("split@3", [b"abc", b""]),
        ("bytewise", [b"a", b"b", b"c"]),
    ]


# -- decoding and resynchronisation --------------------------------------------------------------


def test_nothing_in_nothing_out() -> None:
    assert decode_all_ways(b"") == []


def test_back_to_back_frames() -> None:
    frames = [frame(t, s, bytes([t]) * s) for t, s in [(1, 0), (2, 1), (0x7F, 40), (0x0F, 3)]]
    assert decode_all_ways(b"".join(frames)) == [
        Frame(1, 0, b""), Frame(2, 1, b"\x02"), Frame(0x7F, 40, b"\x7f" * 40),
        Frame(0x0F, 3, b"\x0f" * 3),
    ]


@pytest.mark.parametrize(
    "garbage",
    [b"\x00", b"hello", b"\xb7", b"\xc3", b"\xb7\xb7", b"\xc3\xb7", b"\xb7\x00\xc3", bytes(300),
     b"\xc3" + b"\xb7" * 9],
    ids=lambda g: f"{g[:6].hex()}..{len(g)}",
)
def test_resync_after_leading_garbage(garbage: bytes) -> None:
    assert summary(decode_all_ways(garbage + A + B)) == [(GARBAGE, len(garbage)), FRAME_A, FRAME_B]


@pytest.mark.parametrize(
    "garbage",
    [b"\xb7\xc3", b"\xb7\xc3" * 7, b"\xc3\xb7" * 9, b"\xb7\xc3\x01\x05\x00\x01" + bytes(20),
     A[:HEADER_SIZE] + b"\xb7\xc3"],
    ids=lambda g: f"{g[:6].hex()}..{len(g)}",
)
def test_resync_after_garbage_holding_false_start_markers(garbage: bytes) -> None:
    """False markers cost a BAD_HEADER or BAD_CRC each, and never a byte of the good frames."""
    items = decode_all_ways(garbage + A + B)
    assert items[-2:] == [FRAME_A, FRAME_B]
    errors = items[:-2]
    assert all(isinstance(e, FrameError) for e in errors)
    assert sum(e.skipped for e in errors if isinstance(e, FrameError)) == len(garbage)


@pytest.mark.parametrize("position", range(2, HEADER_SIZE))
def test_resync_after_a_corrupted_header_byte(position: int) -> None:
    """Any header byte after the marker (version, type, seq, length or the CRC itself) breaks
    the header CRC: the decoder skips one byte and hunts for the next marker."""
    bad = bytearray(A)
    bad[position] ^= 0x40
    items = decode_all_ways(bytes(bad) + B)
    assert summary(items) == [(BAD_HEADER, 1), (GARBAGE, len(A) - 1), FRAME_B]
    assert detail(items[0]) == "header CRC mismatch"
    assert seq_of(items[0]) is None and seq_of(items[1]) is None


@pytest.mark.parametrize("position", [0, 1])
def test_a_corrupted_start_marker_is_garbage(position: int) -> None:
    bad = bytearray(A)
    bad[position] ^= 0x01
    assert summary(decode_all_ways(bytes(bad) + B)) == [(GARBAGE, len(A)), FRAME_B]


@pytest.mark.parametrize("position", range(HEADER_SIZE, len(A)))
def test_resync_after_a_bad_payload_crc(position: int) -> None:
    """A flipped payload or trailer byte fails the payload CRC; the decoder resumes one byte
    past the bad frame's marker (the body might hold the next frame) and finds B."""
    bad = bytearray(A)
    bad[position] ^= 0x01
    items = decode_all_ways(bytes(bad) + B)
    assert summary(items) == [(BAD_CRC, 1), (GARBAGE, len(A) - 1), FRAME_B]
    assert detail(items[0]) == "type 13 seq 4660"
    assert seq_of(items[0]) == 0x1234


@pytest.mark.parametrize("cut", range(1, len(A)))
@pytest.mark.parametrize("good", [A, frame(0x0F, 7, b"another reply")], ids=["same", "other"])
def test_resync_after_a_truncated_frame_followed_by_a_good_one(cut: int, good: bytes) -> None:
    """A frame cut short at any point, then a complete frame at least as long as the missing
    part: the truncated one is reported and skipped, the good one is decoded."""
    assert len(good) >= len(A) - cut
    items = decode_all_ways(A[:cut] + good)
    expected_first = GARBAGE if cut == 1 else BAD_HEADER if cut < HEADER_SIZE else BAD_CRC
    errors, last = items[:-1], items[-1]
    assert last == decode_one(good)
    assert errors and all(isinstance(e, FrameError) for e in errors)
    first = errors[0]
    assert isinstance(first, FrameError) and first.kind is expected_first
    assert sum(e.skipped for e in errors if isinstance(e, FrameError)) == cut


def test_a_frame_cut_right_after_its_header_does_not_swallow_the_next_frame() -> None:
    """A frame with a 10-byte payload, cut just after its header, then good frames. The next
    header is 10 bytes followed by the CRC-32 of those 10 bytes: exactly what the cut frame's
    body and payload CRC must look like. The decoder must not take it for that body."""
    cut_short = frame(0x0F, 5, bytes(range(10)))[:HEADER_SIZE]
    items = decode_all_ways(cut_short + A + B)
    assert [i for i in items if isinstance(i, Frame)] == [FRAME_A, FRAME_B]


def test_a_lost_run_splicing_two_frames_yields_no_frame() -> None:
    """Lost bytes join the header of one frame to the body of the next one with the same payload
    length (here a TimeProbe's header and a SetTime's body). The payload CRC covers only the
    payload, so the splice must not pass as a TimeProbe that was never sent."""
    probe = frame(0x07, 4, (1000).to_bytes(8, "big"))
    set_time = frame(0x09, 5, (2000).to_bytes(8, "big"))
    spliced = probe[:HEADER_SIZE] + set_time[HEADER_SIZE:]
    items = decode_all_ways(spliced + B)
    assert [i for i in items if isinstance(i, Frame)] == [FRAME_B]


def test_truncated_frame_followed_by_a_shorter_one_resolves_once_its_length_arrived() -> None:
    """The decoder cannot tell a truncated frame from a slow one: a valid header's length is
    waited for. The good frame after it comes out as soon as that many bytes arrived."""
    long_frame = frame(0x0F, 3, bytes(1000))
    short = frame(0x06, 4, b"abc")
    head = long_frame[:100]
    assert decode_all_ways(head + short) == []  # still waiting for the long body
    missing = len(long_frame) - len(head) - len(short)
    items = decode_all_ways(head + short + bytes(missing))
    assert summary(items) == [(BAD_CRC, 1), (GARBAGE, 99), Frame(0x06, 4, b"abc"),
                              (GARBAGE, missing)]


def test_length_above_maximum_is_rejected_from_the_header_alone() -> None:
    """Only the 14 header bytes are fed: the error comes at once, nothing is kept buffered."""
    header = raw_header(1, 0x0F, 5, INITIAL_MAX_PAYLOAD + 1)
    items = decode_all_ways(header)
    assert summary(items) == [(TOO_LARGE, HEADER_SIZE)]
    assert detail(items[0]) == f"length {INITIAL_MAX_PAYLOAD + 1} > {INITIAL_MAX_PAYLOAD}"
    assert seq_of(items[0]) == 5
    decoder = FrameDecoder()
    decoder.feed(header)
    assert decoder.next() == items[0]
    assert decoder.buffered == 0


@pytest.mark.parametrize("length", [INITIAL_MAX_PAYLOAD + 1, 0x7FFFFFFF, 0xFFFFFFFF])
def test_oversized_frame_body_is_skipped_as_garbage(length: int) -> None:
    body = bytes(range(256)) * 2  # never forms a start marker: 0xB7 is followed by 0xB8
    items = decode_all_ways(raw_header(1, 0x0F, 5, length) + body + A)
    assert summary(items) == [(TOO_LARGE, HEADER_SIZE), (GARBAGE, len(body)), FRAME_A]


def test_length_limit_follows_the_decoders_max_payload() -> None:
    at_limit = frame(0x0F, 9, bytes(range(100)))
    assert decode_all_ways(at_limit, max_payload=100) == [Frame(0x0F, 9, bytes(range(100)))]
    assert summary(decode_all_ways(raw_header(1, 0x0F, 9, 101), max_payload=100)) == [
        (TOO_LARGE, HEADER_SIZE)]
    full = frame(0x0F, 1, bytes(INITIAL_MAX_PAYLOAD))
    assert decode_all_ways(full) == [Frame(0x0F, 1, bytes(INITIAL_MAX_PAYLOAD))]


def test_raising_max_payload_mid_stream_applies_to_the_next_frame() -> None:
    big = encode_frame(0x0F, 2, bytes(6000), 8192)
    decoder = FrameDecoder()
    decoder.feed(big[:HEADER_SIZE])
    assert decoder.next() == FrameError(TOO_LARGE, HEADER_SIZE, "length 6000 > 4096", seq=2)
    decoder = FrameDecoder()
    decoder.feed(A)
    assert decoder.next() == FRAME_A
    decoder.max_payload = 8192  # what the connection does once IDENTITY negotiated it
    decoder.feed(big)
    assert decoder.next() == Frame(0x0F, 2, bytes(6000))


@pytest.mark.parametrize("version", [0, 2, 0xFF])
def test_resync_after_a_wrong_version(version: int) -> None:
    payload = b"123456789"
    wrong = raw_header(version, 0x0D, 0x1234, len(payload)) + payload
    wrong += ref_crc32(payload).to_bytes(4, "big")
    items = decode_all_ways(wrong + B)
    assert summary(items) == [(BAD_HEADER, 1), (GARBAGE, len(wrong) - 1), FRAME_B]
    assert detail(items[0]) == f"unknown version {version}"
    assert seq_of(items[0]) is None  # a header from an unknown version is not trusted


def test_trailing_marker_byte_is_kept_across_feeds() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00\xb7")
    assert decoder.next() == FrameError(GARBAGE, 2)
    assert decoder.next() is None
    assert decoder.buffered == 1  # the 0xB7 may be the first half of a start marker
    decoder.feed(A[1:])
    assert decoder.next() == FRAME_A
    assert decoder.next() is None
    assert decoder.buffered == 0
    assert summary(decode_all_ways(b"\x00\x00" + A)) == [(GARBAGE, 2), FRAME_A]
    assert decode_all_ways(b"\xb7") == []  # kept, not reported, whatever the feeding


def test_garbage_is_reported_alike_whatever_the_read_sizes() -> None:
    """Garbage not ending in 0xB7 is reported in full, whether read in one go or bytewise."""
    assert summary(decode_all_ways(b"xyz")) == [(GARBAGE, 3)]
    assert summary(decode_all_ways(A + b"\x00")) == [FRAME_A, (GARBAGE, 1)]
    assert summary(decode_all_ways(b"xy\xb7z")) == [(GARBAGE, 4)]


def test_a_lone_non_marker_byte_is_reported_at_once() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"x")
    assert decoder.next() == FrameError(GARBAGE, 1)
    assert decoder.buffered == 0


def test_start_marker_inside_a_payload_does_not_split_a_good_frame() -> None:
    tricky_payload = A + b"\xb7\xc3" + A  # a whole frame nested in the payload
    outer = frame(0x0F, 8, tricky_payload)
    assert decode_all_ways(outer + B) == [Frame(0x0F, 8, tricky_payload), FRAME_B]


def test_after_a_bad_crc_a_frame_nested_in_the_body_is_found() -> None:
    """The decoder resumes one byte past a bad frame's marker, so a real frame that started
    inside what the bad header claimed as its body is not lost."""
    outer = bytearray(frame(0x0F, 8, A))
    outer[-1] ^= 0xFF  # break the outer payload CRC
    items = decode_all_ways(bytes(outer) + B)
    assert summary(items) == [(BAD_CRC, 1), (GARBAGE, HEADER_SIZE - 1), FRAME_A,
                              (GARBAGE, TRAILER_SIZE), FRAME_B]


def test_discard_drops_everything_buffered() -> None:
    decoder = FrameDecoder()
    decoder.feed(A + B[:20])
    assert decoder.next() == FRAME_A
    assert decoder.buffered == 20
    decoder.discard()
    assert decoder.buffered == 0
    decoder.feed(B)
    assert decoder.next() == FRAME_B


def test_buffer_stays_within_one_frame_plus_the_last_feed() -> None:
    stream = b"".join(frame(0x0F, i, bytes([i]) * (i * 37 % 500)) + b"noise" * (i % 3)
                      for i in range(60))
    decoder = FrameDecoder()
    limit = HEADER_SIZE + INITIAL_MAX_PAYLOAD + TRAILER_SIZE
    frames = 0
    for start in range(0, len(stream), 333):
        piece = stream[start : start + 333]
        decoder.feed(piece)
        assert decoder.buffered <= limit + len(piece)
        while (item := decoder.next()) is not None:
            frames += isinstance(item, Frame)
        assert decoder.buffered < limit
    assert frames == 60


def test_a_large_frame_is_assembled_in_a_buffer_of_its_own() -> None:
    """A chunk-sized frame read in pieces into one reused buffer: its payload comes out as a
    read-only view that later reads do not touch, and the decoder never holds a second copy."""
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = encode_frame(0x0F, 7, payload, len(payload)) + A
    decoder = FrameDecoder(len(payload))
    read_buffer = bytearray(300_000)
    got: list[Item] = []
    for start in range(0, len(data), len(read_buffer)):
        piece = data[start : start + len(read_buffer)]
        read_buffer[: len(piece)] = piece
        decoder.feed(memoryview(read_buffer)[: len(piece)])
        while (item := decoder.next()) is not None:
            got.append(item)
        assert decoder.buffered <= HEADER_SIZE + len(payload)
        assert len(decoder._buf) <= HEADER_SIZE + INITIAL_MAX_PAYLOAD + TRAILER_SIZE
        read_buffer[:] = bytes(len(read_buffer))
    assert got == [Frame(0x0F, 7, payload), FRAME_A]
    big = got[0]
    assert isinstance(big, Frame) and isinstance(big.payload, memoryview)
    assert big.payload.readonly
    assert decoder.buffered == 0


def test_a_bad_crc_on_a_frame_assembled_in_place_resumes_past_its_marker() -> None:
    outer = bytearray(encode_frame(0x0F, 8, bytes(DIRECT_MIN) + A, 2 * DIRECT_MIN))
    outer[-1] ^= 0xFF
    items = []
    decoder = FrameDecoder(2 * DIRECT_MIN)
    for piece in (bytes(outer[:100]), bytes(outer[100:]) + B):
        decoder.feed(piece)
        while (item := decoder.next()) is not None:
            items.append(item)
    assert summary(coalesce(items)) == [(BAD_CRC, 1), (GARBAGE, HEADER_SIZE - 1 + DIRECT_MIN),
                                        FRAME_A, (GARBAGE, TRAILER_SIZE), FRAME_B]
