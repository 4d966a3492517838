"""Errors and the optional ``nir`` import shared by the NIR export modules."""

from __future__ import annotations

from typing import Any

from ..errors import OnespikeError

__all__ = ["NirExportError", "NirNotInstalledError", "require_nir"]

INSTALL_HINT = "pip install 'onespike[nir]'  (or: pip install nir==1.0.8)"


class NirNotInstalledError(OnespikeError, ImportError):
    """The optional ``nir`` package (extra ``onespike[nir]``) is not installed."""

    def __init__(self, what: str = "NIR export") -> None:
        super().__init__(f"{what} needs the optional package 'nir', which is not installed. "
                         f"Install it with: {INSTALL_HINT}")


class NirExportError(OnespikeError):
    """The network holds something the NIR encoding cannot represent faithfully.

    ``feature`` names it (e.g. ``"slice route"``), ``where`` the population and edge."""

    def __init__(self, feature: str, where: str, reason: str, hint: str = "") -> None:
        self.feature = feature
        self.where = where
        msg = f"cannot export {feature} at {where} to NIR: {reason}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


def require_nir(what: str = "NIR export") -> Any:
    """The ``nir`` module, or :class:`NirNotInstalledError`."""
    try:
        import nir
    except ImportError:
        raise NirNotInstalledError(what) from None
    return nir
