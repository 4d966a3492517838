"""Directed roundings shared by the certificates' low-precision sums."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bf16_up", "round_up"]


def round_up(w: Tensor, dtype: torch.dtype) -> Tensor:
    """``w`` rounded *up* to ``dtype``: the smallest ``dtype`` value ≥ each entry (the
    nearest, or the next one above it where the nearest lies below), for either sign."""
    wb = w.to(dtype)
    up = torch.nextafter(wb, torch.full_like(wb, float("inf")))
    return torch.where(wb.to(w.dtype) < w, up, wb)


def bf16_up(w: Tensor) -> Tensor:
    """``w`` rounded *up* to bfloat16 (:func:`round_up`)."""
    return round_up(w, torch.bfloat16)
