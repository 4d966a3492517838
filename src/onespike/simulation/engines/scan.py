"""Row-wise prefix sums of the exact walk, added left to right on every device.

The walk's trajectory is a running sum over each neuron's inputs in arrival order, so a
neuron's spike time is only independent of the other neurons walked with it (how many, and
how long the longest row is: chunk sizes, batch composition, process counts) if the entry
``j`` of its prefix sum depends on its own first ``j + 1`` terms alone. A sequential sum
has that property. PyTorch's CPU ``cumsum`` is one sequential loop per row. Its CUDA
``cumsum`` is sequential only along an outer dimension (one loop per column). Along the last
dimension it runs a tree scan whose shape follows the number of rows and their length, and a
single row goes through a library scan. On other devices, rows are therefore summed as the
columns of their transpose, with at least two columns."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["prefix_sums"]


def prefix_sums(values: Tensor, out: Tensor) -> Tensor:
    """``out[i, j] = values[i, 0] + … + values[i, j]`` (inclusive, along dim 1), added left to
    right: each entry depends only on its row's entries up to it. ``out``: (M, K), may be a
    strided view. Returns ``out``."""
    if values.device.type == "cpu":
        return torch.cumsum(values, dim=1, out=out)
    return _by_columns(values, out)


def _by_columns(values: Tensor, out: Tensor) -> Tensor:
    """:func:`prefix_sums` as the scan of the transpose's columns (dim 0), two at least."""
    m = values.shape[0]
    cols = values.t()
    if m == 1:  # a lone column would be scanned as one flat vector
        cols = torch.cat([cols, torch.zeros_like(cols)], dim=1)
    out.copy_(torch.cumsum(cols.contiguous(), dim=0)[:, :m].t())
    return out
