"""Turning fuzz input into what a camera could put on the line.

A target reads its input through :class:`Input`, which never fails: past the end it yields
zeros. Structured streams are built from ops (garbage, random frames, oversized headers, frames
from a pool of real replies, max-size frames), each maybe truncated, bit-flipped or duplicated,
so that the fuzzer reaches frames with valid CRCs without having to guess a CRC-32.
"""

from __future__ import annotations

import zlib

from firmware_protocol.frames import HEADER_SIZE, MAGIC, PROTOCOL_VERSION, TRAILER_SIZE

__all__ = ["Input", "build_stream", "cut", "frame", "oversized_header"]

# What one transport read delivers at most (agent.channel reads 1 MiB at a time). A stream is
# at most one maximum frame and this much more: the time limit is per input, so an input must
# not stand for many megabytes of line traffic.
READ_MAX = 1 << 20


class Input:
    """Sequential reader over fuzz bytes: integers, byte runs and choices."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        return max(0, len(self.data) - self.pos)

    def take(self, n: int) -> bytes:
        piece = self.data[self.pos : self.pos + n]
        self.pos += n
        return piece

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size).ljust(size, b"\0"), "big")

    def choice(self, n: int) -> int:
        return self.uint(1) % n

    def rest(self) -> bytes:
        return self.take(self.left)


def frame(msg_type: int, seq: int, payload: bytes | bytearray | memoryview) -> bytes:
    """An encoded frame with valid CRCs, whatever its size (encode_frame without the limit)."""
    head = MAGIC + bytes([PROTOCOL_VERSION, msg_type & 0xFF]) + (seq & 0xFFFF).to_bytes(2, "big")
    head += len(payload).to_bytes(4, "big")
    head += zlib.crc32(head).to_bytes(4, "big")
    trailer = zlib.crc32(payload, zlib.crc32(head)).to_bytes(4, "big")
    return b"".join((head, payload, trailer))


def oversized_header(seq: int, length: int) -> bytes:
    """A header whose CRC holds and whose length exceeds the limit: no body follows."""
    head = MAGIC + bytes([PROTOCOL_VERSION, 0x0F]) + (seq & 0xFFFF).to_bytes(2, "big")
    head += (length & 0xFFFF_FFFF).to_bytes(4, "big")
    return head + zlib.crc32(head).to_bytes(4, "big")


def _seq(inp: Input, awaited: int) -> int:
    pick = inp.uint(1)
    if pick < 128:
        return awaited
    if pick < 160:
        return (awaited - 1) & 0xFFFF
    if pick < 176:
        return 0
    return inp.uint(2)


def _damage(inp: Input, piece: bytes) -> bytes:
    """Maybe truncate, flip a bit in or duplicate ``piece`` (a line losing or repeating bytes)."""
    how = inp.choice(8)
    if not piece or how < 4:
        return piece
    where = inp.uint(4) % len(piece)
    if how == 4:
        return piece[:where]
    if how == 5:
        flipped = bytearray(piece)
        flipped[where] ^= 1 << inp.choice(8)
        return bytes(flipped)
    if how == 6:
        return piece + piece
    return piece[where:]  # the start lost


def build_stream(inp: Input, max_payload: int, awaited: int, pool: list[tuple[int, bytes]],
                 reply: bytes = b"") -> bytes:
    """Up to 16 ops read from ``inp``. ``pool`` holds (type, payload) of real messages to frame
    with a chosen sequence number; ``reply`` is the correct reply to the awaited request."""
    parts: list[bytes] = []
    size, cap = 0, HEADER_SIZE + max_payload + TRAILER_SIZE + (1 << 16)
    for _ in range(1 + inp.choice(16)):
        if not inp.left or size >= cap:
            break
        op = inp.choice(8)
        piece: bytes
        if op == 0:
            piece = inp.take(inp.uint(1))
        elif op == 1:
            msg_type, seq = inp.uint(1), _seq(inp, awaited)
            piece = frame(msg_type, seq, inp.take(inp.uint(2) % (max_payload + 1)))
        elif op == 2:
            seq = _seq(inp, awaited)
            piece = oversized_header(seq, max_payload + 1 + inp.uint(4) % (1 << 31))
        elif op == 3 and reply:
            piece = reply
        elif op == 4 and pool:
            msg_type, payload = pool[inp.uint(2) % len(pool)]
            piece = frame(msg_type, _seq(inp, awaited), payload)
        elif op == 5:
            # a frame exactly at the limit: the largest body the decoder must accept
            fill = inp.take(1) or b"\0"
            piece = frame(inp.uint(1), _seq(inp, awaited), fill * max_payload)
        elif op == 6:
            piece = (MAGIC * (1 + inp.choice(8)))[: 1 + inp.choice(16)]
        else:
            piece = inp.take(HEADER_SIZE + TRAILER_SIZE + inp.choice(64))
        parts.append(_damage(inp, piece))
        size += len(parts[-1])
    return b"".join(parts)[:cap]


def cut(inp: Input, stream: bytes) -> list[bytes]:
    """``stream`` as the reads that deliver it: a few sizes from ``inp``, maybe bytewise for a
    stretch, the rest in one read."""
    pieces: list[bytes] = []
    pos = 0
    for _ in range(inp.choice(12)):
        size = inp.uint(2)
        if size & 0x8000:  # a run of one-byte reads
            for _ in range(size & 0x7F):
                pieces.append(stream[pos : pos + 1])
                pos += 1
        else:
            pieces.append(stream[pos : pos + size])  # below 32 KiB
            pos += size
    pieces += [stream[i : i + READ_MAX] for i in range(pos, len(stream), READ_MAX)]
    return [p for p in pieces if p]
