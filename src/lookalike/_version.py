"""The installed distribution's version, for checkpoints, the service and ``lookalike --version``.

At the bottom of the package so that any layer may read it without importing the root package.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lookalike")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
