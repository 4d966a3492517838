"""One-pass elementwise helpers for the simulation's large maps."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rsub"]


def rsub(c: float, x: Tensor, *, out: Tensor | None = None) -> Tensor:
    """``c − x`` in one pass over ``x``, with ``c`` first rounded to ``x``'s dtype.

    ``c − x`` with a Python scalar ``c`` runs several times slower on the CPU than a tensor
    operation, and the usual rewrite ``(−x) + c`` takes two passes; a 0-dim tensor ``c``
    gives one fast pass. The value is bit for bit that of ``(−x) + c``: ``a − b = a + (−b)``
    exactly in IEEE arithmetic, and both forms round ``c`` to ``x``'s dtype first."""
    ct = torch.scalar_tensor(c, dtype=x.dtype, device=x.device)
    return torch.sub(ct, x) if out is None else torch.sub(ct, x, out=out)
