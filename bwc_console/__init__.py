"""bwc-console: the reference central console for bwc-dock docking stations.

It watches the fleet, verifies and acknowledges what docks publish, signs console commands and
writes the fleet-wide annual review. It knows the docks only through their wire formats
(``docs/mqtt.md``, ``docs/manifest.md``, ``docs/compliance.md``) and ``firmware_protocol``'s
signed-message layouts, never through the agent's code: what it accepts, it checked itself.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bwc-dock")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
