"""Hypothesis strategies: a valid instance of every protocol message, with generated fields."""

from __future__ import annotations

from hypothesis import strategies as st

from firmware_protocol import messages as m
from firmware_protocol.frames import ABS_MAX_PAYLOAD, INITIAL_MAX_PAYLOAD
from firmware_protocol.signing import ChunkMessage, Media, SealMessage

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
U64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
MAX_PAYLOADS = st.integers(INITIAL_MAX_PAYLOAD, ABS_MAX_PAYLOAD)
MEDIA = st.sampled_from(Media)


def blob(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


# Short strings of any code point (surrogates excluded: they have no UTF-8), plus the longest
# allowed: 1024 bytes of UTF-8 made of 2-byte characters.
TEXT = st.one_of(st.text(max_size=12), st.just("é" * (m.MAX_STRING // 2)))


@st.composite
def statuses(draw: st.DrawFn) -> m.Status:
    total = draw(U64)
    faults = tuple(draw(st.lists(U16, max_size=64)))
    return m.Status(
        draw(st.integers(0, 100)), draw(st.booleans()), total, draw(st.integers(0, total)),
        draw(U32), draw(st.booleans()) if not faults else False, faults, draw(U64),
        draw(st.booleans()),
    )


@st.composite
def recording_infos(draw: st.DrawFn) -> m.RecordingInfo:
    chunk_size = draw(st.integers(1, m.MAX_CHUNK_SIZE))
    sealed = draw(st.booleans())
    if sealed:
        size = draw(st.integers(0, min(2**64 - 1, chunk_size * (2**32 - 1))))
        count = -(-size // chunk_size)
    else:
        size, count = draw(U64), draw(U32)
    return m.RecordingInfo(draw(blob(16)), draw(MEDIA), size, chunk_size, count, draw(U64),
                           draw(U64), sealed)


@st.composite
def recording_lists(draw: st.DrawFn) -> m.RecordingList:
    entries = tuple(draw(st.lists(recording_infos(), max_size=3)))
    start = draw(st.integers(0, 2**32 - 1 - len(entries)))
    total = draw(st.integers(start + len(entries), 2**32 - 1))
    return m.RecordingList(total, start, entries)


chunk_messages = st.builds(
    ChunkMessage, blob(16), blob(16), U32, U64, st.integers(1, m.MAX_CHUNK_SIZE), blob(32),
    blob(32),
)
seal_messages = st.builds(
    SealMessage, blob(16), blob(16), U32, U64, blob(32), blob(32), U64, U64, MEDIA,
)


@st.composite
def log_entries(draw: st.DrawFn, seq: int) -> m.LogEntry:
    return m.LogEntry(seq, draw(U64), draw(st.sampled_from(m.EventKind)), draw(blob(16)),
                      draw(TEXT))


@st.composite
def event_logs(draw: st.DrawFn) -> m.EventLog:
    seqs = sorted(draw(st.sets(U32, max_size=4)))
    return m.EventLog(tuple(draw(log_entries(seq)) for seq in seqs), draw(st.booleans()))


MESSAGES: dict[type[m.Message], st.SearchStrategy[m.Message]] = {
    m.Hello: st.builds(m.Hello, st.lists(U8, min_size=1, max_size=16).map(tuple), MAX_PAYLOADS),
    m.Identity: st.builds(m.Identity, U8, MAX_PAYLOADS, blob(16), blob(32), TEXT, TEXT, TEXT,
                          TEXT, TEXT, TEXT, TEXT),
    m.AuthChallenge: st.builds(m.AuthChallenge, blob(32)),
    m.AuthResponse: st.builds(m.AuthResponse, blob(64)),
    m.GetStatus: st.just(m.GetStatus()),
    m.Status: statuses(),
    m.TimeProbe: st.builds(m.TimeProbe, U64),
    m.TimeReply: st.builds(m.TimeReply, U64, U64, U64),
    m.SetTime: st.builds(m.SetTime, U64),
    m.TimeSet: st.builds(m.TimeSet, U64, U64),
    m.ListRecordings: st.builds(m.ListRecordings, U32, st.integers(1, 0xFFFF)),
    m.RecordingList: recording_lists(),
    m.ReadChunk: st.builds(m.ReadChunk, blob(16), U32),
    m.ChunkHeader: st.builds(m.ChunkHeader, chunk_messages.map(ChunkMessage.pack), blob(64)),
    m.ChunkData: st.builds(m.ChunkData, U32, st.binary(min_size=1, max_size=64)),
    m.GetSeal: st.builds(m.GetSeal, blob(16)),
    m.Seal: st.builds(m.Seal, seal_messages.map(SealMessage.pack), blob(64)),
    m.GetEventLog: st.builds(m.GetEventLog, U32, st.integers(1, 0xFFFF)),
    m.EventLog: event_logs(),
    m.Release: st.builds(m.Release, blob(16)),
    m.Released: st.builds(m.Released, blob(16), U64),
    m.Error: st.builds(m.Error, U16, U8, TEXT),
}

any_message = st.one_of(*MESSAGES.values())
