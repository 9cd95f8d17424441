"""Process-wide allocator tuning for the offload hot path.

CPython allocates every large ``bytes`` object with ``malloc``. glibc serves requests above its
mmap threshold (128 KiB by default, adapted only slowly) with a fresh ``mmap``, so each frame
payload costs a page fault per 4 KiB and a ``munmap``: measured here, copying 1 MiB as four
256 KiB objects took 0.48 ms with the default and 0.03 ms with the threshold raised. Raising the
mmap and trim thresholds keeps freed payload buffers in the heap for reuse; :func:`trim_heap`
gives them back once no offload needs them any more.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

__all__ = ["trim_heap", "tune_malloc"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def tune_malloc(mmap_threshold: int = 8 << 20, trim_threshold: int = 4 << 20,
                arena_max: int = 2) -> bool:
    """Raise glibc's mmap/trim thresholds; returns False (and logs) where that is not possible.

    Each arena keeps up to ``trim_threshold`` of freed memory, and glibc gives busy threads an
    arena each (up to 8 per core): with one session thread per camera and the store workers,
    capping the arenas and keeping the trim threshold a few chunks high bounds what is retained.
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        log.info("malloc tuning unavailable (not glibc)")
        return False
    ok = all(bool(mallopt(param, value)) for param, value in (
        (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold),
        (_M_ARENA_MAX, arena_max)))
    if not ok:
        log.warning("mallopt refused the thresholds")
    return ok


def trim_heap() -> bool:
    """Return free heap memory to the kernel (glibc ``malloc_trim(0)``); False without glibc.

    The raised trim threshold keeps up to a few MiB free at the top of each arena, and freed
    chunk buffers in the middle of an arena are never returned on their own: after a full dock
    has offloaded, that is tens of MB of resident memory no session uses until the next shift.
    ``malloc_trim`` also releases the free pages inside the arenas (``MADV_DONTNEED``).
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True
