"""Directed roundings shared by the certificates' low-precision sums."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bf16_up"]


def bf16_up(w: Tensor) -> Tensor:
    """Non-negative ``w`` rounded *up* to bfloat16 (every entry ≥ ``w``)."""
    wb = w.to(torch.bfloat16)
    up = torch.nextafter(wb, torch.full_like(wb, float("inf")))
    return torch.where(wb.to(w.dtype) < w, up, wb)
