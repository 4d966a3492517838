"""The package version, read from the installed distribution's metadata (``pyproject.toml`` is
its one source)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("onespike")
except PackageNotFoundError:  # a source tree on sys.path without installing
    __version__ = "0+unknown"

__all__ = ["__version__"]
