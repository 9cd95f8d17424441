"""Message payloads: golden bytes for every type, round trips, strict decoding; signing layouts.

The golden table spells every payload out field by field, in the encoder's order, so each field
can be checked by eye against the layout (all integers big-endian, strings as u16 length + UTF-8,
booleans one byte 0/1, lists as a count then the items).
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocol import messages as m
from firmware_protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from firmware_protocol.signing import (
    CHUNK_MESSAGE_SIZE,
    SEAL_MESSAGE_SIZE,
    ZERO_DIGEST,
    ChunkMessage,
    Media,
    SealMessage,
    auth_message,
    load_public_key,
    public_key_raw,
    verify_signature,
)
from tests.protocol.helpers import CAMERA_KEY, CAMERA_UID, make_recording
from tests.protocol.protocol_strategies import MESSAGES, chunk_messages, seal_messages

UID_HEX = "00112233445566778899aabbccddeeff"
RID_HEX = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
KEY_HEX = "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
NONCE_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
SIG_HEX = ("404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
           "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f")
UID, RID, KEY = bytes.fromhex(UID_HEX), bytes.fromhex(RID_HEX), bytes.fromhex(KEY_HEX)
NONCE, SIG = bytes.fromhex(NONCE_HEX), bytes.fromhex(SIG_HEX)
STARTED_MS, ENDED_MS = 0x0199_C82C_C000, 0x0199_C82D_AA60

CHUNK_MSG = ChunkMessage(UID, RID, index=7, offset=0x70000, size=0x10000,
                         sha256=b"\x11" * 32, prev=b"\x22" * 32).pack()
CHUNK_FIELDS = (
    "42574343484e4b31",  # "BWCCHNK1"
    UID_HEX, RID_HEX,
    "00000007",  # index u32
    "0000000000070000",  # offset u64
    "00010000",  # size u32
    "11" * 32,  # SHA-256 of the chunk bytes
    "22" * 32,  # prev
)
SEAL_MSG = SealMessage(UID, RID, chunk_count=4, total_size=200_000, sha256=b"\x33" * 32,
                       last_chunk_digest=b"\x44" * 32, started_ms=STARTED_MS, ended_ms=ENDED_MS,
                       media=Media.AUDIO).pack()
SEAL_FIELDS = (
    "4257435345414c31",  # "BWCSEAL1"
    UID_HEX, RID_HEX,
    "00000004",  # chunk_count u32
    "0000000000030d40",  # total_size u64 = 200000
    "33" * 32,  # SHA-256 of the recording
    "44" * 32,  # SHA-256 of the last chunk message
    "00000199c82cc000", "00000199c82daa60",  # started_ms, ended_ms u64
    "02",  # media: audio
)
INFO = m.RecordingInfo(RID, Media.AUDIO, size=200_000, chunk_size=0x10000, chunk_count=4,
                       started_ms=STARTED_MS, ended_ms=ENDED_MS, sealed=True)
INFO_FIELDS = (
    RID_HEX, "02",  # media u8
    "0000000000030d40",  # size u64
    "00010000",  # chunk_size u32
    "00000004",  # chunk_count u32 = ceil(200000 / 65536)
    "00000199c82cc000", "00000199c82daa60",  # started_ms, ended_ms u64
    "01",  # sealed
)

GOLDEN: list[tuple[m.Message, tuple[str, ...]]] = [
    (m.Hello(versions=(1, 2), max_payload=0x10000),
     ("02", "01", "02",  # version count u8, versions u8 each
      "00010000")),  # max_payload u32
    (m.Identity(1, 0x2000, UID, KEY, "BWC-9", "1.2.3", "SN0001", "010203", "张三", "410402", ""),
     ("01", "00002000", UID_HEX, KEY_HEX,  # version u8, max_payload u32, uid, public key
      "0005", "4257432d39",  # model "BWC-9"
      "0005", "312e322e33",  # firmware "1.2.3"
      "0006", "534e30303031",  # serial "SN0001"
      "0006", "303130323033",  # officer_id "010203"
      "0006", "e5bca0e4b889",  # officer_name: 2 characters, 6 bytes of UTF-8
      "0006", "343130343032",  # unit_code "410402"
      "0000")),  # unit_name ""
    (m.AuthChallenge(NONCE), (NONCE_HEX,)),
    (m.AuthResponse(SIG), (SIG_HEX,)),
    (m.GetStatus(), ()),
    (m.Status(battery_pct=87, charging=True, storage_total=64 * 2**30,
              storage_free=18 * 2**30, bitrate_bps=8_000_000, self_test_ok=False,
              fault_codes=(0x0102, 0xBEEF), clock_ms=0x0199_C82C_C07B, recording=True),
     ("57", "01",  # battery u8 = 87, charging
      "0000001000000000", "0000000480000000",  # storage total / free u64 (64 GiB / 18 GiB)
      "007a1200",  # bitrate u32 = 8 000 000
      "00",  # self_test_ok
      "02", "0102", "beef",  # fault count u8, codes u16 each
      "00000199c82cc07b",  # clock_ms u64
      "01")),  # recording
    (m.TimeProbe(t0_us=0x0006_3F8A_1B2C_3D4E), ("00063f8a1b2c3d4e",)),
    (m.TimeReply(0x0102030405060708, 0x1112131415161718, 0x2122232425262728),
     ("0102030405060708", "1112131415161718", "2122232425262728")),
    (m.SetTime(unix_us=0x0006_3F8A_1B2C_3D4E), ("00063f8a1b2c3d4e",)),
    (m.TimeSet(previous_us=0x0006_3F8A_0000_0000, current_us=0x0006_3F8A_1B2C_3D4E),
     ("00063f8a00000000", "00063f8a1b2c3d4e")),
    (m.ListRecordings(start=2, max_entries=10), ("00000002", "000a")),
    (m.RecordingList(total=3, start=1, entries=(INFO,)),
     ("00000003", "00000001", "0001", *INFO_FIELDS)),  # total u32, start u32, count u16
    (m.ReadChunk(RID, index=7), (RID_HEX, "00000007")),
    (m.ChunkHeader(CHUNK_MSG, SIG), (*CHUNK_FIELDS, SIG_HEX)),
    (m.ChunkData(offset=0x00012345, data=b"\xde\xad\xbe\xef"), ("00012345", "deadbeef")),
    (m.GetSeal(RID), (RID_HEX,)),
    (m.Seal(SEAL_MSG, SIG), (*SEAL_FIELDS, SIG_HEX)),
    (m.GetEventLog(since=5, max_entries=100), ("00000005", "0064")),
    (m.EventLog((m.LogEntry(5, STARTED_MS, m.EventKind.RECORD_START, RID, "cam1"),
                 m.LogEntry(6, ENDED_MS, m.EventKind.CLOCK_SET)), more=True),
     ("0002",  # entry count u16
      "00000005", "00000199c82cc000", "03", RID_HEX,  # seq u32, at_ms u64, kind u8, recording
      "0004", "63616d31",  # detail "cam1"
      "00000006", "00000199c82daa60", "08", "00" * 16, "0000",  # no recording, no detail
      "01")),  # more
    (m.Release(RID), (RID_HEX,)),
    (m.Released(RID, freed_bytes=200_000), (RID_HEX, "0000000000030d40")),
    (m.Error(code=ErrorCode.UNKNOWN_RECORDING, request_type=0x0D, message="no such recording"),
     ("0004", "0d",  # code u16, request type u8
      "0011", "6e6f2073756368207265636f7264696e67")),  # "no such recording", 17 bytes
]
GOLDEN_FIELDS = {type(msg): fields for msg, fields in GOLDEN}

TYPE_CODES = {
    m.Hello: 0x01, m.Identity: 0x02, m.AuthChallenge: 0x03, m.AuthResponse: 0x04,
    m.GetStatus: 0x05, m.Status: 0x06, m.TimeProbe: 0x07, m.TimeReply: 0x08, m.SetTime: 0x09,
    m.TimeSet: 0x0A, m.ListRecordings: 0x0B, m.RecordingList: 0x0C, m.ReadChunk: 0x0D,
    m.ChunkHeader: 0x0E, m.ChunkData: 0x0F, m.GetSeal: 0x10, m.Seal: 0x11, m.GetEventLog: 0x12,
    m.EventLog: 0x13, m.Release: 0x14, m.Released: 0x15, m.Error: 0x7F,
}


def golden_id(case: tuple[m.Message, tuple[str, ...]]) -> str:
    return type(case[0]).__name__


def payload(fields: tuple[str, ...]) -> bytes:
    return bytes.fromhex("".join(fields))


def rejects(msg_type: int, data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        m.decode_message(msg_type, data)
    return info.value


# -- golden bytes ------------------------------------------------------------------------------


def test_golden_table_covers_every_message_type() -> None:
    assert {type(msg) for msg, _ in GOLDEN} == set(m.MESSAGE_TYPES.values())
    assert len(GOLDEN) == len(m.MESSAGE_TYPES)


def test_type_codes() -> None:
    assert {cls: cls.TYPE for cls in m.MESSAGE_TYPES.values()} == TYPE_CODES
    assert {code: cls for cls, code in TYPE_CODES.items()} == m.MESSAGE_TYPES


def test_error_codes_on_the_wire() -> None:
    assert {c.name: c.value for c in ErrorCode} == {
        "UNKNOWN_MESSAGE": 1, "MALFORMED": 2, "BAD_STATE": 3, "UNKNOWN_RECORDING": 4,
        "BAD_INDEX": 5, "NOT_SEALED": 6, "STORAGE_FAULT": 7, "VERSION_UNSUPPORTED": 8,
        "NOT_AUTHENTICATED": 9, "BUSY": 10, "INTERNAL": 11, "FRAME_TOO_LARGE": 12,
        "SEQUENCE": 13, "BAD_SIGNATURE": 14,
    }


def test_golden_constants_are_what_they_claim() -> None:
    assert UID == CAMERA_UID
    assert bytes(range(32)) == NONCE
    assert bytes(range(0x40, 0x80)) == SIG
    assert bytes(range(0xE0, 0x100)) == KEY
    assert "张三".encode() == bytes.fromhex("e5bca0e4b889")
    assert b"BWCCHNK1".hex() == CHUNK_FIELDS[0] and b"BWCSEAL1".hex() == SEAL_FIELDS[0]
    assert (200_000).to_bytes(8, "big").hex() == "0000000000030d40"


@pytest.mark.parametrize(("msg", "fields"), GOLDEN, ids=[golden_id(c) for c in GOLDEN])
def test_encode_golden(msg: m.Message, fields: tuple[str, ...]) -> None:
    assert msg.encode().hex() == "".join(fields)


@pytest.mark.parametrize(("msg", "fields"), GOLDEN, ids=[golden_id(c) for c in GOLDEN])
def test_decode_golden_round_trip(msg: m.Message, fields: tuple[str, ...]) -> None:
    decoded = m.decode_message(msg.TYPE, payload(fields))
    assert decoded == msg
    assert type(decoded) is type(msg)
    assert decoded.encode() == payload(fields)


def test_fixed_record_sizes() -> None:
    assert len(payload(INFO_FIELDS)) == m.RECORDING_INFO_SIZE == 50
    empty_entry = m.EventLog((m.LogEntry(1, 2, m.EventKind.FAULT),), False).encode()
    assert len(empty_entry) == 2 + m.LOG_ENTRY_FIXED_SIZE + 1
    assert len(CHUNK_MSG) == CHUNK_MESSAGE_SIZE and len(SEAL_MSG) == SEAL_MESSAGE_SIZE


def test_decoded_headers_expose_the_signed_fields() -> None:
    header = m.decode_message(m.ChunkHeader.TYPE, payload(GOLDEN_FIELDS[m.ChunkHeader]))
    assert isinstance(header, m.ChunkHeader)
    assert (header.info.index, header.info.offset, header.info.size) == (7, 0x70000, 0x10000)
    seal = m.decode_message(m.Seal.TYPE, payload(GOLDEN_FIELDS[m.Seal]))
    assert isinstance(seal, m.Seal)
    assert (seal.info.chunk_count, seal.info.total_size, seal.info.media) == (4, 200_000,
                                                                              Media.AUDIO)


# -- round trips with generated values ---------------------------------------------------------


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_generated(cls: type[m.Message], data: st.DataObject) -> None:
    msg = data.draw(MESSAGES[cls])
    encoded = msg.encode()
    decoded = m.decode_message(cls.TYPE, encoded)
    assert decoded == msg
    assert decoded.encode() == encoded


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_decoding_arbitrary_payloads_is_strict_and_canonical(
    cls: type[m.Message], data: st.DataObject
) -> None:
    """Any payload either decodes to a message that re-encodes to the very same bytes, or is
    refused with RemoteProtocolError. Payloads are a valid encoding with a few bytes changed,
    or arbitrary bytes."""
    valid = bytearray(data.draw(MESSAGES[cls]).encode())
    for _ in range(data.draw(st.integers(0, 3))):
        if valid:
            valid[data.draw(st.integers(0, len(valid) - 1))] = data.draw(st.integers(0, 255))
    blob = data.draw(st.one_of(st.just(bytes(valid)), st.binary(max_size=300)))
    try:
        msg = m.decode_message(cls.TYPE, blob)
    except RemoteProtocolError:
        return
    assert type(msg) is cls
    assert msg.encode() == blob


# -- strict decoding ------------------------------------------------------------------------------

TRUNCATABLE = [(msg, f) for msg, f in GOLDEN if f]


@pytest.mark.parametrize(("msg", "fields"), TRUNCATABLE, ids=[golden_id(c) for c in TRUNCATABLE])
def test_decode_rejects_every_truncation(msg: m.Message, fields: tuple[str, ...]) -> None:
    full = payload(fields)
    # ChunkData's data runs to the end of the payload: any prefix keeping a data byte is valid.
    shortest_valid = 5 if isinstance(msg, m.ChunkData) else len(full)
    for n in range(shortest_valid):
        assert rejects(msg.TYPE, full[:n]).code is ErrorCode.MALFORMED, n


@pytest.mark.parametrize(("msg", "fields"), GOLDEN, ids=[golden_id(c) for c in GOLDEN])
def test_decode_rejects_trailing_bytes(msg: m.Message, fields: tuple[str, ...]) -> None:
    if isinstance(msg, m.ChunkData):
        longer = m.decode_message(msg.TYPE, payload(fields) + b"\x00")
        assert longer == m.ChunkData(msg.offset, bytes(msg.data) + b"\x00")
        return
    for extra in (b"\x00", b"\x01\x02\x03"):
        assert rejects(msg.TYPE, payload(fields) + extra).code is ErrorCode.MALFORMED


@pytest.mark.parametrize("code", [0x00, 0x16, 0x20, 0x7E, 0x80, 0xFF])
def test_decode_rejects_unknown_types(code: int) -> None:
    assert rejects(code, b"").code is ErrorCode.UNKNOWN_MESSAGE


def replace(cls: type[m.Message], index: int, *new: str, width: int = 1) -> bytes:
    """The golden payload of ``cls`` with ``width`` fields from ``index`` replaced by ``new``."""
    fields = list(GOLDEN_FIELDS[cls])
    fields[index : index + width] = new
    return bytes.fromhex("".join(fields))


STATUS, INFO_AT = m.Status, 3  # RecordingList fields: the entry starts at index 3
EV = m.EventLog  # EventLog fields: 0 count, 1-6 first entry, 7-11 second entry, 12 more

INVALID: list[tuple[str, int, bytes]] = [
    ("hello: no versions", m.Hello.TYPE, bytes.fromhex("00" "00010000")),
    ("hello: 17 versions", m.Hello.TYPE, bytes.fromhex("11" + "01" * 17 + "00010000")),
    ("hello: max_payload 4095", m.Hello.TYPE, replace(m.Hello, 3, "00000fff")),
    ("hello: max_payload 16 MiB + 1", m.Hello.TYPE, replace(m.Hello, 3, "01000001")),
    ("identity: max_payload 4095", m.Identity.TYPE, replace(m.Identity, 1, "00000fff")),
    ("identity: model not UTF-8", m.Identity.TYPE, replace(m.Identity, 5, "ff0041ff41")),
    ("identity: overlong UTF-8", m.Identity.TYPE, replace(m.Identity, 5, "c0af2d3939")),
    ("identity: encoded surrogate", m.Identity.TYPE, replace(m.Identity, 5, "eda0803939")),
    ("identity: string of 1025 bytes", m.Identity.TYPE,
     replace(m.Identity, 4, "0401", "61" * 1025, width=2)),
    ("status: battery 101", STATUS.TYPE, replace(STATUS, 0, "65")),
    ("status: charging 2", STATUS.TYPE, replace(STATUS, 1, "02")),
    ("status: free > total", STATUS.TYPE, replace(STATUS, 3, "0000001000000001")),
    ("status: self_test_ok 2", STATUS.TYPE, replace(STATUS, 5, "02")),
    ("status: self test ok with faults", STATUS.TYPE, replace(STATUS, 5, "01")),
    ("status: 65 fault codes", STATUS.TYPE, replace(STATUS, 6, "41", *["0001"] * 63)),
    ("status: recording 0xff", STATUS.TYPE, replace(STATUS, 10, "ff")),
    ("list: max_entries 0", m.ListRecordings.TYPE, replace(m.ListRecordings, 1, "0000")),
    ("listing: media 0", m.RecordingList.TYPE, replace(m.RecordingList, INFO_AT + 1, "00")),
    ("listing: media 4", m.RecordingList.TYPE, replace(m.RecordingList, INFO_AT + 1, "04")),
    ("listing: chunk_size 0", m.RecordingList.TYPE,
     replace(m.RecordingList, INFO_AT + 3, "00000000")),
    ("listing: chunk_size 16 MiB + 1", m.RecordingList.TYPE,
     replace(m.RecordingList, INFO_AT + 3, "01000001")),
    ("listing: sealed with a wrong chunk count", m.RecordingList.TYPE,
     replace(m.RecordingList, INFO_AT + 4, "00000003")),
    ("listing: sealed 2", m.RecordingList.TYPE, replace(m.RecordingList, INFO_AT + 7, "02")),
    ("listing: entries past total", m.RecordingList.TYPE,
     replace(m.RecordingList, 0, "00000001")),
    ("listing: count larger than entries", m.RecordingList.TYPE,
     replace(m.RecordingList, 2, "0002")),
    ("chunk header: wrong magic", m.ChunkHeader.TYPE,
     replace(m.ChunkHeader, 0, "42574343484e4b32")),
    ("chunk header: size 0", m.ChunkHeader.TYPE, replace(m.ChunkHeader, 5, "00000000")),
    ("chunk header: size 16 MiB + 1", m.ChunkHeader.TYPE, replace(m.ChunkHeader, 5, "01000001")),
    ("chunk data: no data", m.ChunkData.TYPE, bytes.fromhex("00012345")),
    ("seal: wrong magic", m.Seal.TYPE, replace(m.Seal, 0, "4257435345414c30")),
    ("seal: media 0", m.Seal.TYPE, replace(m.Seal, 9, "00")),
    ("seal: media 4", m.Seal.TYPE, replace(m.Seal, 9, "04")),
    ("event log request: max_entries 0", m.GetEventLog.TYPE, replace(m.GetEventLog, 1, "0000")),
    ("event log: kind 0", EV.TYPE, replace(EV, 3, "00")),
    ("event log: kind 10", EV.TYPE, replace(EV, 9, "0a")),
    ("event log: detail not UTF-8", EV.TYPE, replace(EV, 6, "63616dff")),
    ("event log: seq not increasing", EV.TYPE, replace(EV, 7, "00000004")),
    ("event log: seq repeated", EV.TYPE, replace(EV, 7, "00000005")),
    ("event log: more 2", EV.TYPE, replace(EV, 12, "02")),
    ("error: message not UTF-8", m.Error.TYPE, bytes.fromhex("0004" "0d" "0002" "fffe")),
]


@pytest.mark.parametrize(
    ("msg_type", "data"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_decode_rejects_invalid_fields(msg_type: int, data: bytes) -> None:
    assert rejects(msg_type, data).code is ErrorCode.MALFORMED


def test_invalid_cases_differ_from_golden_only_where_intended() -> None:
    """Guard the table above: a replaced field of the wrong width would make the case test a
    truncation instead of the value it names."""
    for name, msg_type, data in INVALID:
        golden = payload(GOLDEN_FIELDS[m.MESSAGE_TYPES[msg_type]])
        if name.startswith(("identity: string", "status: 65", "hello: 17", "hello: no",
                            "chunk data", "error", "listing: count")):
            continue
        assert len(data) == len(golden), name


# -- construction validates -----------------------------------------------------------------------

INVALID_CONSTRUCTIONS = {
    "hello: no versions": lambda: m.Hello((), 4096),
    "hello: version 256": lambda: m.Hello((256,), 4096),
    "hello: max_payload too small": lambda: m.Hello((1,), 4095),
    "identity: short uid": lambda: m.Identity(1, 4096, bytes(15), KEY, "", "", ""),
    "identity: short key": lambda: m.Identity(1, 4096, UID, bytes(31), "", "", ""),
    "identity: model too long": lambda: m.Identity(1, 4096, UID, KEY, "x" * 1025, "", ""),
    "identity: model not text": lambda: m.Identity(1, 4096, UID, KEY, b"m", "", ""),
    "identity: model with a lone surrogate": lambda: m.Identity(1, 4096, UID, KEY, "\udcff", "",
                                                                ""),
    "error: message with a lone surrogate": lambda: m.Error(1, 0, "bad \ud800"),
    "status: free > total": lambda: m.Status(1, False, 1, 2, 0, True, (), 0, False),
    "status: battery 101": lambda: m.Status(101, False, 1, 1, 0, True, (), 0, False),
    "status: ok with faults": lambda: m.Status(1, False, 1, 1, 0, True, (7,), 0, False),
    "time probe: bool": lambda: m.TimeProbe(True),
    "time probe: negative": lambda: m.TimeProbe(-1),
    "set time: 2**64": lambda: m.SetTime(2**64),
    "list: max_entries 0": lambda: m.ListRecordings(0, 0),
    "info: media 4": lambda: m.RecordingInfo(RID, 4, 1, 1, 1, 0, 0, True),
    "info: wrong chunk count": lambda: m.RecordingInfo(RID, Media.VIDEO, 10, 4, 2, 0, 0, True),
    "listing: past total": lambda: m.RecordingList(1, 1, (INFO,)),
    "chunk data: empty": lambda: m.ChunkData(0, b""),
    "chunk header: short message": lambda: m.ChunkHeader(CHUNK_MSG[:-1], SIG),
    "seal: short signature": lambda: m.Seal(SEAL_MSG, SIG[:-1]),
    "log entry: kind 99": lambda: m.LogEntry(1, 0, 99),
    "event log: unordered": lambda: m.EventLog(
        (m.LogEntry(2, 0, m.EventKind.FAULT), m.LogEntry(1, 0, m.EventKind.FAULT)), False),
    "error: code 65536": lambda: m.Error(65536, 0),
}


@pytest.mark.parametrize("build", INVALID_CONSTRUCTIONS.values(), ids=INVALID_CONSTRUCTIONS.keys())
def test_invalid_construction_raises_local_protocol_error(build: object) -> None:
    assert callable(build)
    with pytest.raises(LocalProtocolError) as info:
        build()
    assert info.value.code is ErrorCode.MALFORMED


# -- signing layouts ------------------------------------------------------------------------------


def test_chunk_message_layout() -> None:
    cm = ChunkMessage(UID, RID, index=0x01020304, offset=0x1112131415161718, size=0x21222324,
                      sha256=bytes(range(32)), prev=bytes(range(100, 132)))
    data = cm.pack()
    assert len(data) == CHUNK_MESSAGE_SIZE == 120
    assert data[0:8] == b"BWCCHNK1"
    assert data[8:24] == UID
    assert data[24:40] == RID
    assert data[40:44] == bytes.fromhex("01020304")
    assert data[44:52] == bytes.fromhex("1112131415161718")
    assert data[52:56] == bytes.fromhex("21222324")
    assert data[56:88] == bytes(range(32))
    assert data[88:120] == bytes(range(100, 132))
    assert cm.digest() == hashlib.sha256(data).digest()
    assert ChunkMessage.unpack(data) == cm


def test_seal_message_layout() -> None:
    sm = SealMessage(UID, RID, chunk_count=0x01020304, total_size=0x1112131415161718,
                     sha256=bytes(range(32)), last_chunk_digest=bytes(range(100, 132)),
                     started_ms=0x2122232425262728, ended_ms=0x3132333435363738,
                     media=Media.PHOTO)
    data = sm.pack()
    assert len(data) == SEAL_MESSAGE_SIZE == 133
    assert data[0:8] == b"BWCSEAL1"
    assert data[8:24] == UID
    assert data[24:40] == RID
    assert data[40:44] == bytes.fromhex("01020304")
    assert data[44:52] == bytes.fromhex("1112131415161718")
    assert data[52:84] == bytes(range(32))
    assert data[84:116] == bytes(range(100, 132))
    assert data[116:124] == bytes.fromhex("2122232425262728")
    assert data[124:132] == bytes.fromhex("3132333435363738")
    assert data[132] == 3
    assert sm.digest() == hashlib.sha256(data).digest()
    assert SealMessage.unpack(data) == sm


def test_auth_message_layout() -> None:
    assert auth_message(UID, NONCE) == b"BWCAUTH1" + UID + NONCE
    with pytest.raises(ValueError, match="nonce"):
        auth_message(UID, NONCE[:-1])


@settings(max_examples=200, deadline=None)
@given(chunk_messages)
def test_chunk_message_unpack_pack(cm: ChunkMessage) -> None:
    assert len(cm.pack()) == 120
    assert ChunkMessage.unpack(cm.pack()) == cm


@settings(max_examples=200, deadline=None)
@given(seal_messages)
def test_seal_message_unpack_pack(sm: SealMessage) -> None:
    assert len(sm.pack()) == 133
    assert SealMessage.unpack(sm.pack()) == sm


def test_unpack_rejects_wrong_length_magic_and_media() -> None:
    chunk, seal = bytes(CHUNK_MSG), bytes(SEAL_MSG)
    for bad in (chunk[:-1], chunk + b"\x00", b"BWCCHNK2" + chunk[8:], SEAL_MSG[:120]):
        with pytest.raises(RemoteProtocolError):
            ChunkMessage.unpack(bad)
    for bad in (seal[:-1], seal + b"\x00", b"BWCSEAL2" + seal[8:], seal[:-1] + b"\x00",
                seal[:-1] + b"\x04"):
        with pytest.raises(RemoteProtocolError):
            SealMessage.unpack(bad)


def test_signed_layouts_validate_on_construction() -> None:
    with pytest.raises(ValueError, match="camera_uid"):
        ChunkMessage(UID[:-1], RID, 0, 0, 1, bytes(32), bytes(32))
    with pytest.raises(ValueError, match="index"):
        ChunkMessage(UID, RID, 2**32, 0, 1, bytes(32), bytes(32))
    with pytest.raises(ValueError, match="media"):
        SealMessage(UID, RID, 0, 0, bytes(32), bytes(32), 0, 0, 0)


def test_verify_signature_accepts_the_real_signature_only() -> None:
    public = CAMERA_KEY.public_key()
    rec = make_recording(bytes(range(256)) * 3, 300)
    header, seal = rec.headers[1], rec.seal
    assert verify_signature(public, header.chunk_message, header.signature)
    assert verify_signature(public, seal.seal_message, seal.signature)
    for message, signature in ((header.chunk_message, header.signature),
                               (seal.seal_message, seal.signature)):
        for i in range(len(message)):  # every byte of the signed message matters
            tampered = bytearray(message)
            tampered[i] ^= 0x01
            assert not verify_signature(public, bytes(tampered), signature), i
        for i in range(0, 64, 7):
            tampered = bytearray(signature)
            tampered[i] ^= 0x80
            assert not verify_signature(public, message, bytes(tampered)), i
        assert not verify_signature(public, message, signature[:-1])
        assert not verify_signature(public, message, signature + b"\x00")
        assert not verify_signature(public, message, bytes(64))
        other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))).public_key()
        assert not verify_signature(other, message, signature)


def test_recording_chain_from_the_test_helper_is_consistent() -> None:
    """make_recording (used by every pair test) chains chunks as the issue specifies."""
    data = bytes(range(256)) * 3
    rec = make_recording(data, 300)
    prev = ZERO_DIGEST
    for index, header in enumerate(rec.headers):
        info = header.info
        assert (info.index, info.offset, info.prev) == (index, 300 * index, prev)
        assert info.sha256 == hashlib.sha256(data[info.offset : info.offset + info.size]).digest()
        prev = info.digest()
    assert rec.seal.info.last_chunk_digest == prev
    assert rec.seal.info.sha256 == hashlib.sha256(data).digest()
    assert (rec.seal.info.chunk_count, rec.seal.info.total_size) == (3, len(data))


def test_public_key_helpers_round_trip() -> None:
    raw = public_key_raw(CAMERA_KEY)
    assert len(raw) == 32 and public_key_raw(CAMERA_KEY.public_key()) == raw
    pem = CAMERA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    for form in (raw, pem):
        assert public_key_raw(load_public_key(form)) == raw
