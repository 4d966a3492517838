"""One line per failure: how the command line words an exception.

onespike's own errors (:class:`onespike.errors.OnespikeError`) are rendered from their
attributes, with the parameters they name spelt as options (``root`` → ``--root DIR``); an
:class:`~onespike.errors.InputRangeError` gets the command line's way out (``--clip``,
``--input-range``, ``--normalize``). Other exceptions (torch, the operating system) are
joined into one line; an unexpected one says how to see its traceback.
"""

from __future__ import annotations

from onespike.errors import InputRangeError, OnespikeError

__all__ = ["cli_spelling", "describe_error", "one_line"]

#: Longest message of a foreign exception shown (onespike's own are shown whole).
_MAX_FOREIGN = 600

#: API parameter → how the command line spells it.
_OPTIONS = {
    "root": "--root DIR",
    "clip": "--clip",
    "input_range": "--input-range LOW HIGH",
    "normalization": "--normalize MEAN STD",
    "weights": "--weights FILE",
    "calibration": "--calibration DATA",
}


def cli_spelling(param: str) -> str:
    """The option for an API parameter named in an error message."""
    return _OPTIONS.get(param, "--" + param.replace("_", "-"))


def one_line(text: str) -> str:
    """Join the lines of a foreign message, dropping embedded tracebacks."""
    for marker in ("Traceback (most recent call last)", "\n\nWhile executing"):
        head, found, _ = str(text).partition(marker)
        if found:
            text = head.rstrip() + " …"
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _input_range(exc: InputRangeError) -> str:
    f = exc.facts
    if not {"tensor", "observed", "declared"} <= f.keys():
        return one_line(exc.render(cli_spelling))
    (lo, hi), (low, high) = f["observed"], f["declared"]
    return (f"{f['tensor']} has values in [{lo:.8g}, {hi:.8g}] outside the declared "
            f"input_range of the network ([{low:.8g}, {high:.8g}] at the widest); add --clip "
            "to clip inputs to the range, or convert with the model's real input range "
            "(--input-range LOW HIGH or --normalize MEAN STD)")


def describe_error(exc: BaseException) -> str:
    """One-line message (with the way out) for an exception raised by a command."""
    if isinstance(exc, InputRangeError):
        return _input_range(exc)
    if isinstance(exc, OnespikeError):
        return one_line(exc.render(cli_spelling))
    msg = one_line(str(exc))
    if len(msg) > _MAX_FOREIGN:  # torch can put a whole C++ trace in one message
        msg = msg[: _MAX_FOREIGN - 1] + "…"
    if isinstance(exc, OSError) and exc.filename is not None:
        what = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {what.lower()}"
    if isinstance(exc, (FileNotFoundError, ValueError)):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg} (run with --debug for the traceback)"
