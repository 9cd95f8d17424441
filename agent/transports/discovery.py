"""Hot-plug for serial cameras: which watched device paths exist right now.

Polling the configured globs every quarter second rather than watching udev: the globs name
``/dev/serial/by-id`` links that udev creates and removes, a poll of a handful of directory
entries costs microseconds, and it works the same for ptys in tests, where no udev event exists.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

__all__ = ["SerialDiscovery"]


class SerialDiscovery:
    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)

    def scan(self) -> set[str]:
        """Paths matching any pattern that point at an existing device node."""
        found: set[str] = set()
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                if os.path.exists(path):  # follows the link: a dangling one is no camera
                    found.add(path)
        return found
