"""The grid certificate's float32 convolution form: ``f(c)`` at each grid point from ramp maps
(one convolution per point, small batches stacked), the tents' sum and ``Σ|W|x``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from onespike.simulation.engines.bounds.grid_forms import (
    _STACK_SAMPLES,
    _grid_jobs,
    _keep_max,
    _ramp,
)
from onespike.simulation.engines.bounds.inputs import InputMaps
from onespike.simulation.engines.bounds.precision import sum_dtype
from onespike.simulation.engines.bounds.reads import Reads
from onespike.simulation.engines.bounds.tents import _tent_sum, _tents
from onespike.simulation.synapses import Synapses


def _grid_sums32(syn: Synapses, inputs: InputMaps, reads: Reads, pts: Sequence[float],
                 knots: Sequence[float], x_max: float, s64: Tensor, lk64: Tensor, a: Tensor,
                 e32: float, *, need_wx: bool
                 ) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor | None]:
    """The conv form's float32 sums: ``low``/``high`` (the maxima over the grid points of
    ``f(c) − (z − B)`` and ``f(c) − (b − B)``, rounding of the sums included), the tents'
    ``D̂`` and, for networks below float64, ``Σ_j |W_ij| x_j`` — each read by ``reads``
    right after its convolution (``s64``, ``lk64`` and ``a`` are read alike)."""
    xs = inputs.xs
    dt = sum_dtype(xs[0].device)
    x32s = [x.to(dt) for x in inputs.f32()]
    w32 = [w.to(torch.float32).to(dt) for w in syn.weights]
    bsz = xs[0].shape[0]
    jobs = _grid_jobs(pts, x_max, s64, lk64, e32 * a)
    low: Tensor | None = None  # ≥ max over the small c of  f(c) − (z − B)
    high: Tensor | None = None  # ≥ max over the large c of  f(c) − (b − B)
    per_call = max(1, _STACK_SAMPLES // max(1, bsz))  # maps stacked in one conv call
    for s in range(0, len(jobs), per_call):
        group = jobs[s : s + per_call]
        maps = []
        for x32 in x32s:
            per = [_ramp(x32, c, small) for small, c, _ in group]
            maps.append(torch.cat(per) if len(per) > 1 else per[0])
        sums = syn.linear(maps, w32)
        for (small, _, shift), part in zip(group, sums.split(bsz)):
            low, high = _keep_max(low, high, small, reads.sums(part).sub_(shift))
    d = reads.sums(_tent_sum(syn, x32s, [w.neg().clamp_min_(0.0) for w in w32],
                             lambda x32: _tents(x32, knots, x_max)))
    wx = reads.sums(syn.linear(x32s, [w.abs() for w in w32])) if need_wx else None
    return low, high, d, wx
