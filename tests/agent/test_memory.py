"""Allocator tuning: freed chunk buffers stay in the heap until ``trim_heap`` returns them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from agent.memory import trim_heap

PROGRAM = textwrap.dedent("""
    import os
    from agent.memory import trim_heap, tune_malloc

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    assert tune_malloc()
    chunks = [bytearray(1 << 20) for _ in range(64)]  # 64 chunk buffers, as a busy dock
    sentinel = bytearray(256 << 10)  # above them: the heap's top cannot simply shrink
    del chunks
    kept = rss()
    assert trim_heap()
    print(kept - rss())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_trim_heap_returns_the_freed_chunk_buffers() -> None:
    # A fresh interpreter: the test process's own heap would blur the figure.
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          check=True)
    assert int(done.stdout) > 48 << 20  # most of the 64 MiB went back to the kernel


def test_trim_heap_is_harmless_to_call_at_any_time() -> None:
    assert trim_heap() in (True, False)
