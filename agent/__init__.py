"""bwc-dock agent: the software running inside a body-worn-camera docking station."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bwc-dock")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
