"""Exceptions raised by onespike.

Every error names its culprit (module path, graph node, tensor) and, where there is one,
the way out.
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "FormatError",
    "InputRangeError",
    "OnespikeError",
    "UnsupportedModelError",
    "UnsupportedOperationError",
]


class OnespikeError(Exception):
    """Base class of all onespike errors."""


class UnsupportedOperationError(OnespikeError):
    """The model contains an operation the exact mapping cannot represent.

    Raised by :func:`onespike.convert` before any calibration work. ``where`` is the module
    path or graph node of the operation, ``operation`` its type or function name.
    """

    def __init__(self, operation: str, where: str, reason: str = "", hint: str = "") -> None:
        self.operation = operation
        self.where = where
        msg = f"unsupported operation {operation} at {where!r}"
        if reason:
            msg += f": {reason}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class UnsupportedModelError(OnespikeError, ValueError):
    """The model as a whole does not fit the mapping (e.g. its readout is not a Linear/Conv)."""


class CalibrationError(OnespikeError, ValueError):
    """The calibration data is empty, malformed, or rejected by the model."""


class InputRangeError(OnespikeError, ValueError):
    """An input lies outside the declared ``input_range`` of the converted network."""


class FormatError(OnespikeError, ValueError):
    """A saved network file is truncated, tampered with, or of an unknown format version."""
