"""One-pass elementwise helpers for the simulation's large maps."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["positive_part", "rsub"]


def rsub(c: float, x: Tensor, *, out: Tensor | None = None) -> Tensor:
    """``c − x`` in one pass over ``x``, with ``c`` first rounded to ``x``'s dtype.

    ``c − x`` with a Python scalar ``c`` runs several times slower on the CPU than a tensor
    operation, and the usual rewrite ``(−x) + c`` takes two passes; a 0-dim tensor ``c``
    gives one fast pass. The value is bit for bit that of ``(−x) + c``: ``a − b = a + (−b)``
    exactly in IEEE arithmetic, and both forms round ``c`` to ``x``'s dtype first."""
    ct = torch.scalar_tensor(c, dtype=x.dtype, device=x.device)
    return torch.sub(ct, x) if out is None else torch.sub(ct, x, out=out)


def positive_part(x: Tensor) -> Tensor:
    """``max(x, 0)``: ``x`` itself when no entry is negative (one reduction instead of a new
    map, for callers that only read the result), else a new clamped map (``x`` is never
    written). A NaN makes the minimum NaN, and then the clamp runs."""
    if x.numel() and float(x.min()) >= 0.0:
        return x
    return torch.clamp_min(x, 0.0)
