"""Fast reductions of boolean masks.

torch's reductions of ``bool`` tensors on the CPU are slow (``any`` of 4M entries: 3.6 ms,
its ``uint8`` view's ``max``: 0.1 ms; along a dimension, 6 ms against 0.2 ms): these helpers
reduce the mask's ``uint8`` view instead (same bytes, same result, on every device). Counts
of contiguous CPU masks go through numpy's ``count_nonzero`` (4M entries: 0.17 ms against
torch's 0.9 ms; per sample 1.2 ms against 17 ms for the ``uint8`` view's sum): integers, the
same on every path."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["any_along", "any_true", "count_per_sample", "count_true",
           "per_sample_from_index", "true_index"]


def _bytes(mask: Tensor) -> Tensor:
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def any_true(mask: Tensor) -> bool:
    """Whether any entry of ``mask`` is True."""
    return bool(mask.numel()) and bool(_bytes(mask).max())


def _host_bool(mask: Tensor) -> np.ndarray | None:
    """The mask as a numpy array without a copy (a contiguous boolean CPU tensor), else None."""
    if (mask.device.type == "cpu" and mask.dtype == torch.bool and mask.is_contiguous()
            and not mask.requires_grad):
        return mask.numpy()
    return None


def count_true(mask: Tensor) -> int:
    """Number of True entries."""
    if not mask.numel():
        return 0
    host = _host_bool(mask)
    return int(np.count_nonzero(host)) if host is not None else int(torch.count_nonzero(mask))


def true_index(mask: Tensor) -> Tensor:
    """Flat indices (int64, increasing) of the True entries, ``mask.reshape(-1).nonzero()``
    as a vector: through numpy's ``flatnonzero`` for contiguous CPU masks (4M entries, 2 %
    True: 2.3 ms against torch's 4.3 ms)."""
    host = _host_bool(mask)
    if host is not None:
        return torch.from_numpy(np.flatnonzero(host).astype(np.int64, copy=False))
    return mask.reshape(-1).nonzero().reshape(-1)


def count_per_sample(mask: Tensor) -> Tensor:
    """Per-sample count (int64) of True entries of a (batch, ...) mask."""
    if not any_true(mask):
        return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
    host = _host_bool(mask)
    if host is not None:
        counts = np.count_nonzero(host.reshape(mask.shape[0], -1), axis=1)
        return torch.from_numpy(np.asarray(counts, dtype=np.int64))
    return _bytes(mask).reshape(mask.shape[0], -1).sum(dim=1)


def any_along(mask: Tensor, dim: int) -> Tensor:
    """``mask.any(dim)`` (boolean)."""
    if mask.shape[dim] == 0:
        return mask.any(dim=dim)
    return _bytes(mask).amax(dim=dim).to(torch.bool)


def per_sample_from_index(index: Tensor, per_sample: int, batch: int) -> Tensor:
    """Per-sample counts (int64, ``batch``) of the entries at flat ``index`` into a
    (batch, ...) map of ``per_sample`` entries per sample."""
    return torch.bincount(index // per_sample, minlength=batch)[:batch]
