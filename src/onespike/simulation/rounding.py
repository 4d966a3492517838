"""Directed roundings shared by the certificates' low-precision sums."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bf16_up"]


def bf16_up(w: Tensor) -> Tensor:
    """``w`` rounded *up* to bfloat16: the smallest bfloat16 ≥ each entry (the nearest
    bfloat16, or the next one above it where the nearest lies below), for either sign."""
    wb = w.to(torch.bfloat16)
    up = torch.nextafter(wb, torch.full_like(wb, float("inf")))
    return torch.where(wb.to(w.dtype) < w, up, wb)
