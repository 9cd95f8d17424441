"""A small tmpfs for tests that need a disk to fill up: deterministic free space that only the
code under test (and the test's own ballast) consumes, whatever else the machine is doing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["tmpfs"]


@contextmanager
def tmpfs(directory: Path, size: int) -> Iterator[Path]:
    """Mount a ``size``-byte tmpfs on ``directory`` (created, mode 0700) for the block.

    Needs root, as CI and ``make test`` on the dock's build machines run; anyone else gets a
    failure that says so rather than a test that silently measures something else.
    """
    if os.geteuid() != 0:
        raise AssertionError("this test mounts a tmpfs and must run as root (as CI does)")
    # Its parent too, if made here: it may be an agent's state directory, which holds the keys
    # and must be 0700 (agent.store.keys refuses anything else).
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.mkdir(exist_ok=True, mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(directory)], check=True, capture_output=True)
    try:
        yield directory
    finally:
        # Lazy unmount: a process of the test that still holds a file open must not make the
        # teardown fail (it is being killed anyway).
        subprocess.run(["umount", "-l", str(directory)], check=True, capture_output=True)
