"""The frame decoder keeps its memory bound under adversarial input (fuzz findings, issue 6).

docs/protocol.md §1.2: a receiver never holds more than one maximum frame plus one read. Two
streams broke that (found by ``python -m fuzz``, measured by benchmarks/decoder_memory.py):

- a maximum-size frame with a bad CRC whose body holds the header of another maximum-size frame:
  the first body went back into the hunting buffer, which kept that capacity while the second
  frame was assembled in a buffer of its own, so two maximum frames stayed allocated for as long
  as the camera took to send the second (fed a byte at a time: 2.1x the bound);
- one large read of garbage: growing the hunting buffer allocated a zero-filled temporary the
  size of the read, so the peak was two reads.

Memory is measured with tracemalloc, never time.
"""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Iterator

from firmware_protocol.frames import HEADER_SIZE, MAGIC, TRAILER_SIZE, FrameDecoder, encode_frame

LIMIT = 100_000  # above the assembly-in-place size and the 64 KiB the hunting buffer keeps
FRAME_MAX = HEADER_SIZE + LIMIT + TRAILER_SIZE
SLACK = 8 * 1024  # the decoder's empty buffer, objects


def header(seq: int, length: int) -> bytes:
    head = MAGIC + bytes([1, 0x0F]) + seq.to_bytes(2, "big") + length.to_bytes(4, "big")
    return head + zlib.crc32(head).to_bytes(4, "big")


def measure(pieces: Iterator[bytes | memoryview]) -> tuple[int, int]:
    """(peak, most held between reads) bytes a fresh decoder allocates for ``pieces``."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        decoder = FrameDecoder(LIMIT)
        held = 0
        for piece in pieces:
            decoder.feed(piece)
            while decoder.next() is not None:
                pass
            held = max(held, tracemalloc.get_traced_memory()[0] - base)
        return tracemalloc.get_traced_memory()[1] - base, held
    finally:
        tracemalloc.stop()


def test_a_bad_crc_frame_hiding_a_max_size_header_holds_one_frame() -> None:
    inner = header(6, LIMIT)
    outer = encode_frame(0x0F, 5, inner + bytes(LIMIT - len(inner)), LIMIT)[:-4] + bytes(4)
    stream = outer + bytes(LIMIT)  # the inner frame's body arrives, a byte at a time
    view = memoryview(stream)
    _, held = measure(view[i : i + 1] for i in range(len(view)))
    assert held <= FRAME_MAX + 1 + SLACK, held


def test_a_large_read_of_garbage_costs_one_read() -> None:
    read = 1 << 20
    garbage = bytes(range(0xB7)) * (read // 0xB7)
    peak, held = measure(iter([garbage]))
    assert peak <= len(garbage) + FRAME_MAX + SLACK, peak
    assert held <= SLACK, held
