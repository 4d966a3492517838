"""One-pass elementwise helpers for the simulation's large maps, and facts kept on weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["clamped", "positive_float32", "positive_part", "rsub", "weight_fact"]

_T = TypeVar("_T")


def rsub(c: float, x: Tensor, *, out: Tensor | None = None) -> Tensor:
    """``c − x`` in one pass over ``x``, with ``c`` first rounded to ``x``'s dtype.

    ``c − x`` with a Python scalar ``c`` runs several times slower on the CPU than a tensor
    operation, and the usual rewrite ``(−x) + c`` takes two passes; a 0-dim tensor ``c``
    gives one fast pass. The value is bit for bit that of ``(−x) + c``: ``a − b = a + (−b)``
    exactly in IEEE arithmetic, and both forms round ``c`` to ``x``'s dtype first."""
    ct = torch.scalar_tensor(c, dtype=x.dtype, device=x.device)
    return torch.sub(ct, x) if out is None else torch.sub(ct, x, out=out)


def clamped(x: Tensor, low: float | None = None, high: float | None = None) -> Tensor:
    """``x`` clamped to ``[low, high]`` (a missing bound: none): ``x`` itself when every entry
    already lies inside (a reduction per bound instead of a new map, for callers that only read
    the result), else a new clamped map (``x`` is never written). A NaN makes the minimum and
    the maximum NaN, and then the clamp runs."""
    if x.numel() and (low is None or float(x.min()) >= low) \
            and (high is None or float(x.max()) <= high):
        return x
    return torch.clamp(x, low, high)


def positive_part(x: Tensor) -> Tensor:
    """``max(x, 0)`` by :func:`clamped`: ``x`` itself when no entry is negative."""
    return clamped(x, low=0.0)


def positive_float32(x: Tensor) -> Tensor:
    """``max(x, 0)`` rounded to float32 (the same values either way round: rounding is
    monotone and keeps 0): a converted copy is clamped in place (one fresh map, not two); a
    float32 ``x`` — which ``x.to`` returns itself — goes through :func:`positive_part`
    (itself when no entry is negative; ``x`` is never written)."""
    x32 = x.to(torch.float32)
    return x32.clamp_min_(0.0) if x32 is not x else positive_part(x)


def weight_fact(w: Tensor, name: str, compute: Callable[[Tensor], _T]) -> _T:
    """``compute(w)``, kept on the tensor ``w`` itself under ``name`` for as long as its storage,
    version, shape, dtype and device stay the same (an in-place write bumps the version, so a
    changed weight is scanned again). For facts about long-lived weights — the populations'
    own and the certificates' cached copies — that a scan would otherwise recompute at every
    step (a 512 × 4608 weight: several milliseconds). The facts go with ``w``: no global
    cache to grow or to invalidate."""
    key = (w.data_ptr(), w._version, tuple(w.shape), w.dtype, w.device)
    facts: dict[str, tuple[tuple[object, ...], object]] | None = getattr(
        w, "_onespike_facts", None)
    if facts is None:
        facts = {}
        w._onespike_facts = facts  # type: ignore[attr-defined]
    hit = facts.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]  # type: ignore[return-value]
    value = compute(w)
    facts[name] = (key, value)
    return value
