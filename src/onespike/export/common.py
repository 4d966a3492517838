"""The optional ``nir`` import shared by the NIR export modules (the errors are
:class:`onespike.errors.NirExportError` and :class:`onespike.errors.NirNotInstalledError`)."""

from __future__ import annotations

from typing import Any

from onespike.errors import NirExportError, NirNotInstalledError

__all__ = ["NirExportError", "NirNotInstalledError", "require_nir"]

def require_nir(what: str = "NIR export") -> Any:
    """The ``nir`` module, or :class:`NirNotInstalledError`."""
    try:
        import nir
    except ImportError:
        raise NirNotInstalledError(what) from None
    return nir
