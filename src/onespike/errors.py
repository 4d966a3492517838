"""The exceptions onespike raises on purpose: one tree under :class:`OnespikeError`.

Every error names its culprit (module path, graph node, population, tensor, file) and, where
there is one, the way out. The facts are attributes, so that a front end can word them its
own way: :meth:`OnespikeError.render` spells the parameters a message names (``{root}`` in
its text, listed in ``params``) as the caller wants — ``root=`` for the Python API (the
``str()`` of the error), ``--root DIR`` for the command line.

Each class also derives from the built-in exception a Python user would catch for the same
problem (``ValueError``, ``TypeError``, ``FileNotFoundError``), so ``except ValueError`` keeps
working.

::

    OnespikeError
    ├── ArgumentError (ValueError)          a value or combination of arguments is not accepted
    ├── ArgumentTypeError (TypeError)       an argument of the wrong type
    ├── OutOfRangeError (IndexError)        an index (sample, layer, neuron) out of range
    ├── NotFoundError (KeyError)            no item of that name (a population, …)
    ├── UnavailableAttributeError (AttributeError)  an attribute this object does not have
    ├── MissingFileError (FileNotFoundError)  a file onespike needs is not there
    ├── MissingDependencyError (ImportError)  an optional package is not installed
    │   └── NirNotInstalledError             the ``nir`` extra (``onespike[nir]``)
    ├── UnsupportedOperationError           an operation the exact mapping cannot represent
    ├── UnsupportedModelError (ValueError)  the model as a whole does not fit the mapping
    ├── CalibrationError (ValueError)       calibration data empty, malformed or rejected
    ├── InputRangeError (ValueError)        inputs outside the declared input range
    ├── FormatError (ValueError)            a saved network file is corrupted or unknown
    ├── ModelSpecError (ValueError)         a model spec (``--model``) cannot be loaded
    ├── RebuildError (ValueError)           a TorchScript / torch.export file cannot be rebuilt
    ├── NirExportError                      something NIR cannot represent faithfully
    ├── DistributedError (RuntimeError)     a rank of a torch.distributed run failed or differs
    └── DatasetError
        ├── DatasetNotFoundError (FileNotFoundError)
        ├── DatasetFormatError (ValueError)  (UnsafePickleError below it)
        └── UnknownDatasetError (ValueError)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "CalibrationError",
    "DatasetError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DistributedError",
    "FormatError",
    "InputRangeError",
    "MissingDependencyError",
    "MissingFileError",
    "ModelSpecError",
    "NirExportError",
    "NirNotInstalledError",
    "NotFoundError",
    "OnespikeError",
    "OutOfRangeError",
    "RebuildError",
    "UnavailableAttributeError",
    "UnknownDatasetError",
    "UnsupportedModelError",
    "UnsupportedOperationError",
    "api_spelling",
]


def api_spelling(param: str) -> str:
    """How the Python API names a parameter in a message: ``root=``."""
    return f"{param}="


def _rebuild(cls: type[OnespikeError], state: dict[str, Any], args: tuple[Any, ...]
             ) -> OnespikeError:
    exc = cls.__new__(cls)
    exc.__dict__.update(state)
    exc.args = args
    return exc


class OnespikeError(Exception):
    """Base class of all onespike errors.

    Attributes:
        message: what is wrong (and the way out); the parameters it names are ``{name}``
            fields, rendered by :meth:`render`.
        params: the parameter names that ``message`` refers to as ``{name}``.
        facts: the error's facts by name (also attributes of the error).
    """

    def __init__(self, message: str = "", *, params: Sequence[str] = (), **facts: Any) -> None:
        self.message = message
        self.params = tuple(params)
        self.facts = dict(facts)
        for key, value in facts.items():
            setattr(self, key, value)
        super().__init__(self.render())

    def render(self, spell: Callable[[str], str] = api_spelling) -> str:
        """The message with each parameter it names spelt by ``spell`` (``"root"`` →
        ``"root="`` for the API, ``"--root DIR"`` for the command line)."""
        if not self.params:
            return self.message
        pattern = r"\{(" + "|".join(map(re.escape, self.params)) + r")\}"
        return re.sub(pattern, lambda m: spell(m.group(1)), self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable across processes whatever the subclass's __init__ takes
        return (_rebuild, (type(self), dict(self.__dict__), self.args))


class ArgumentError(OnespikeError, ValueError):
    """An argument's value, or a combination of arguments, is not accepted. ``argument``
    names it where one does."""

    def __init__(self, message: str = "", *, argument: str | None = None,
                 params: Sequence[str] = (), **facts: Any) -> None:
        super().__init__(message, params=params, argument=argument, **facts)


class ArgumentTypeError(OnespikeError, TypeError):
    """An argument of the wrong type (``argument``: its name)."""

    def __init__(self, message: str = "", *, argument: str | None = None,
                 params: Sequence[str] = (), **facts: Any) -> None:
        super().__init__(message, params=params, argument=argument, **facts)


class OutOfRangeError(OnespikeError, IndexError):
    """An index (a sample, a layer, a neuron) outside what exists; the message gives the
    valid range."""


class NotFoundError(OnespikeError, KeyError):
    """No item of that name (e.g. a population); the message lists the names there are."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return self.render()


class UnavailableAttributeError(OnespikeError, AttributeError):
    """An attribute this object does not have in its present form (e.g. the single-edge view
    of a population with several edges)."""


class MissingFileError(OnespikeError, FileNotFoundError):
    """A file onespike needs is not there (``path``); the message says how to get it."""

    def __str__(self) -> str:
        return self.render()


class MissingDependencyError(OnespikeError, ImportError):
    """An optional package a feature needs is not installed (``package``); the message says
    how to install it."""


class NirNotInstalledError(MissingDependencyError):
    """The optional ``nir`` package (extra ``onespike[nir]``) is not installed; ``what``
    needed it."""

    def __init__(self, what: str = "NIR export") -> None:
        super().__init__(f"{what} needs the optional package 'nir', which is not installed. "
                         "Install it with: pip install 'onespike[nir]'  (or: pip install "
                         "nir==1.0.8)", what=what, package="nir")


class NirExportError(OnespikeError):
    """The network holds something the NIR encoding cannot represent faithfully:
    ``feature`` names it (e.g. ``"slice route"``), ``where`` the population and edge,
    ``reason`` why, ``hint`` the way out."""

    def __init__(self, feature: str, where: str, reason: str, hint: str = "") -> None:
        msg = f"cannot export {feature} at {where} to NIR: {reason}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg, feature=feature, where=where, reason=reason, hint=hint)


class UnsupportedOperationError(OnespikeError):
    """The model contains an operation the exact mapping cannot represent.

    Raised by :func:`onespike.convert` before any calibration work. ``where`` is the module
    path or graph node of the operation, ``operation`` its type or function name, ``reason``
    why it is refused and ``hint`` the way out.
    """

    def __init__(self, operation: str, where: str, reason: str = "", hint: str = "") -> None:
        msg = f"unsupported operation {operation} at {where!r}"
        if reason:
            msg += f": {reason}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg, operation=operation, where=where, reason=reason, hint=hint)


class UnsupportedModelError(OnespikeError, ValueError):
    """The model as a whole does not fit the mapping (e.g. its readout is not a Linear/Conv)."""


class CalibrationError(OnespikeError, ValueError):
    """The calibration data is empty, malformed, or rejected by the model."""


class InputRangeError(OnespikeError, ValueError):
    """An input lies outside the declared ``input_range`` of the converted network.

    Attributes (where known): ``tensor`` (its name), ``observed`` ``(min, max)`` of its values,
    ``declared`` ``(low, high)`` of the range at its widest, ``normalised`` ``(min, max)`` of
    the normalised values, ``tolerance`` and ``dtype`` of the check.
    """


class FormatError(OnespikeError, ValueError):
    """A saved network file is truncated, tampered with, or of an unknown format version.
    ``path``: the file."""


class ModelSpecError(OnespikeError, ValueError):
    """A model spec (``pkg.module:factory``, ``file.py:factory``, a TorchScript / torch.export
    file or a built-in name), its weights or a tensor file cannot be loaded."""


class RebuildError(OnespikeError, ValueError):
    """A TorchScript or torch.export program cannot be rebuilt from ``torch.nn`` layers."""


class DistributedError(OnespikeError, RuntimeError):
    """A rank of a ``torch.distributed`` run failed, stopped responding or runs another
    network / version than the others. Every rank raises it, so that all stop.

    Attributes: ``rank`` (the rank that failed, None when unknown), ``cause`` (what happened
    there, e.g. ``"DatasetFormatError: x.png: cannot read image"``), ``world_size`` and
    ``operation`` (``"evaluate"``, ``"calibrate"``, …).
    """


class DatasetError(OnespikeError):
    """Base class of the dataset errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder or file is missing. The message says how to get it."""

    def __str__(self) -> str:  # FileNotFoundError would show errno-style args otherwise
        return self.render()


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file exists but is corrupted, truncated, or not in the expected format."""


class UnknownDatasetError(DatasetError, ValueError):
    """``load_dataset`` was given a name it does not know (the message lists the known ones)."""
