"""Hot-plug for serial cameras: which watched device paths exist right now, and which device
each one is.

Polling the configured globs every quarter second rather than watching udev: the globs name
``/dev/serial/by-id`` links that udev creates and removes, a poll of a handful of directory
entries costs microseconds, and it works the same for ptys in tests, where no udev event exists.
A camera that leaves is therefore noticed within one poll (docs/operations.md, *Hot-plug*).

Each path comes with an identity: the path's own inode and change time (a link or node created
anew on every plug-in) and the device number it leads to. A different identity at the same path
means another device was plugged in between two polls; the slot manager then serves it at once
instead of waiting out the back-off or parking earned by the previous one.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

__all__ = ["SerialDiscovery", "SerialIdentity"]

#: (inode of the path itself, its change time in ns, device number of what it leads to)
SerialIdentity = tuple[int, int, int]


class SerialDiscovery:
    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)

    def scan(self) -> dict[str, SerialIdentity]:
        """Paths matching any pattern that point at an existing device node, with identities."""
        found: dict[str, SerialIdentity] = {}
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                if path in found:
                    continue
                try:
                    own = os.lstat(path)
                    target = os.stat(path)  # follows the link: a dangling one is no camera
                except OSError:
                    continue
                found[path] = (own.st_ino, own.st_ctime_ns, target.st_rdev)
        return found
