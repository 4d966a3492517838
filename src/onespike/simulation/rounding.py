"""Directed roundings shared by the certificates' low-precision sums, and the piecewise
evaluation that keeps their temporaries small."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["PIECE_ELEMENTS", "bf16_up", "in_pieces", "pieces", "round_up"]

#: Entries per piece of :func:`in_pieces`: a certificate's weight copy is made a piece at a
#: time, so that its float64 temporaries (the positive part, the comparison's widened copy)
#: take a few hundred kilobytes instead of several times the weight (VGG-16's 512 × 4,608
#: layers: about 60 MB of temporaries each, at a network's first simulation).
PIECE_ELEMENTS = 1 << 16


def pieces(n_rows: int, row_elements: int) -> Iterator[slice]:
    """Slices of whole rows (along the first dimension) of about :data:`PIECE_ELEMENTS`
    entries each (one row at least)."""
    step = max(1, PIECE_ELEMENTS // max(1, row_elements))
    for s in range(0, n_rows, step):
        yield slice(s, min(n_rows, s + step))


def in_pieces(w: Tensor, fn: Callable[[Tensor], Tensor], dtype: torch.dtype) -> Tensor:
    """``fn(w)`` for an *elementwise* ``fn`` whose result has ``dtype``, evaluated on pieces
    of whole rows of ``w`` (:data:`PIECE_ELEMENTS`) into one result of ``w``'s shape
    (contiguous): the same values as ``fn(w)``, with temporaries the size of a piece."""
    if w.dim() == 0:
        return fn(w).to(dtype)
    out = torch.empty(w.shape, dtype=dtype, device=w.device)
    row = w[0].numel() if w.shape[0] else 0
    for s in pieces(w.shape[0], row):
        out[s] = fn(w[s])
    return out


def _round_up_piece(w: Tensor, dtype: torch.dtype) -> Tensor:
    wb = w.to(dtype)
    inf = torch.full((), float("inf"), dtype=dtype, device=w.device)
    return torch.where(wb.to(w.dtype) < w, torch.nextafter(wb, inf), wb)


def round_up(w: Tensor, dtype: torch.dtype,
             part: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``w`` — or ``part(w)``, an elementwise map such as the positive part — rounded *up* to
    ``dtype``: the smallest ``dtype`` value ≥ each entry (the nearest, or the next one above
    it where the nearest lies below), for either sign. Evaluated :func:`in_pieces`: no
    temporary of ``w``'s size."""
    if part is None:
        return in_pieces(w, lambda p: _round_up_piece(p, dtype), dtype)
    return in_pieces(w, lambda p: _round_up_piece(part(p), dtype), dtype)


def bf16_up(w: Tensor, part: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``w`` (or ``part(w)``) rounded *up* to bfloat16 (:func:`round_up`)."""
    return round_up(w, torch.bfloat16, part)
