"""The grid certificate's points: quantiles of a population's positive inputs (one subsample,
one sort for every stage), rounded to float32, and the largest input."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from onespike.simulation.engines.bounds.precision import _f32

# Quantiles of the positive inputs used as grid points by certify_grid.
GRID_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.85, 0.95, 0.99)


# Entries sampled for the quantiles (one numpy sort per population): 4,096 instead of 16,384
# made batch-1 calls 2–7 % faster (VGG-16 float64 95.4 → 93.6 ms, float32 85.4 → 79.5 ms,
# ResNet-18 126.2 → 121.8 ms, one process) with the same outputs and the same neurons left
# to the exact walk within a few (checked on four bench models at batch 1 and 64).
_GRID_SAMPLE = 1 << 12


def grid_points(x: Tensor | Sequence[Tensor], B_in: float,
                quantiles: Sequence[float] = GRID_QUANTILES) -> list[float]:
    """Interior grid points for :func:`certify_grid`: ``quantiles`` of the positive inputs
    ``x`` (a fixed subsample of at most 4,096 entries), rounded to float32, then the largest
    input (rounded up). Any points are correct; these make the bound tight where the inputs
    are."""
    return grid_stages(x, B_in, [quantiles])[0]


def grid_stages(x: Tensor | Sequence[Tensor], B_in: float,
                stages: Sequence[Sequence[float]], *, top: float | None = None
                ) -> list[list[float]]:
    """:func:`grid_points` for several sets of quantiles, from one subsample of ``x`` (the
    edge inputs of a population are sampled in place, as if concatenated). ``top``: the
    largest input, when the caller already has it (else computed)."""
    flats = [t.reshape(-1) for t in ([x] if isinstance(x, Tensor) else x)]
    n = sum(f.numel() for f in flats)
    if n == 0:
        return [[] for _ in stages]
    if n > _GRID_SAMPLE:  # spread the sample over samples, channels and positions
        idx = _sample_index(n, flats[0].device)
        if len(flats) == 1:
            sample = flats[0][idx]
        else:
            parts, off = [], 0
            for f in flats:  # the entries of the virtual concatenation, edge by edge
                mine = idx[(idx >= off) & (idx < off + f.numel())]
                parts.append(f[mine - off])
                off += f.numel()
            sample = torch.cat(parts)
    else:
        sample = torch.cat(flats)
    pos = sample[sample > 0].to(torch.float64)
    if top is None:
        top = max(float(f.max()) for f in flats if f.numel())
    if pos.numel() == 0 or not top > 0.0:
        return [[] for _ in stages]
    top32 = _f32(top, up=True)  # no input lies above it
    wanted = [float(q) for quantiles in stages for q in quantiles]
    values: list[float] = []
    if wanted:  # nearest-rank quantiles, one sort for every stage
        last = pos.numel() - 1
        at = [round(q * last) for q in wanted]
        if pos.device.type == "cpu":  # numpy's sort is an order of magnitude faster here
            values = [float(v) for v in np.sort(pos.detach().numpy())[at]]
        else:
            values = torch.sort(pos).values[torch.tensor(at, device=pos.device)].tolist()
    out = []
    for quantiles in stages:
        q, values = values[:len(quantiles)], values[len(quantiles):]
        pts = sorted({v for v in (_f32(c) for c in q) if 0.0 < v < top32})
        out.append([*pts, top32] if top32 < B_in else pts)
    return out


@functools.lru_cache(maxsize=64)
def _sample_index(n: int, device: torch.device) -> Tensor:
    """:data:`_GRID_SAMPLE` indices spread over ``range(n)`` (a multiplicative hash)."""
    return (torch.arange(_GRID_SAMPLE, device=device, dtype=torch.int64) * 2654435761) % n
