"""The grid certificate's patch form: the same float32 sums as the convolution form, term by
term, for a few neurons from their gathered input patches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.engines.bounds.grid_forms import (
    _grid_jobs,
    _grid_verdict,
    _keep_max,
    _ramp,
)
from onespike.simulation.engines.bounds.precision import sum_dtype
from onespike.simulation.engines.bounds.tents import _tents
from onespike.simulation.synapses import Synapses

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike


# Input values gathered per chunk of the patch form of the grid bound (patches × fan-in).
PATCH_ELEMENTS = 1 << 20


def _grid_at_patches(layer: PopulationLike, syn: Synapses, xs: list[Tensor], z: Tensor,
                     index: Tensor, b: Tensor, lk: Tensor, sigma: Tensor, a: Tensor,
                     pts: Sequence[float], x_max: float, u_end: float, e32: float) -> Tensor:
    """:func:`certify_grid` (conv form's very sums, term by term) for the neurons at flat
    ``index`` into (B, *out_shape), from their gathered input patches: each float32 sum
    ``Σ_j W_ij m(x_j)`` has the same K = fan-in terms as the convolution's (zero where the
    kernel covers padding), so the same γ_K bound covers it in any summation order.
    Neurons that read the same patch share its maps; one matrix product per map gives the
    sums of every output channel of the chunk."""
    out = torch.empty(index.numel(), dtype=torch.bool, device=z.device)
    n_out = layer.num_neurons
    shape = (-1,) + (1,) * (len(layer.out_shape) - 1)
    full = layer.out_shape

    def flat(t: Tensor) -> Tensor:  # a per-neuron parameter, as a flat map over out_shape
        return t.expand(full).reshape(-1) if t.dim() == len(full) else \
            t.reshape(shape).expand(full).reshape(-1)

    b_f, lk_f = flat(b.to(torch.float64)), flat(lk.to(torch.float64))
    s_f, a_f = flat(sigma.to(torch.float64)), flat(a.reshape(shape))
    z_f = z.reshape(-1)
    dt = sum_dtype(xs[0].device)
    knots = sorted({0.0, *pts, u_end})
    key, row = syn.patch_keys(index)
    key_sorted, perm = torch.sort(key)
    step = max(1, PATCH_ELEMENTS // max(1, syn.fan_in))
    for s in range(0, index.numel(), step):
        sel = perm[s : s + step]
        keys, inverse = torch.unique_consecutive(key_sorted[s : s + step], return_inverse=True)
        rows, r_inv = torch.unique(row[sel], return_inverse=True)
        # the patches and weight rows gathered first, then rounded to float32: the same
        # values as gathering from float32 copies of the whole maps and weights
        vals, valid = syn.patches(xs, keys)
        vals = vals.to(torch.float32).to(dt)
        wr = syn.weight_rows(rows).to(torch.float32).to(dt)  # (R, K), order of patches()
        # every channel of the chunk at every patch (one matrix product), unless that is
        # much more than the neurons' own sums
        pick = (inverse, r_inv, keys.numel() * rows.numel() <= 16 * sel.numel())

        def sums(m: Tensor, w: Tensor, valid: Tensor = valid,
                 pick: tuple[Tensor, Tensor, bool] = pick) -> Tensor:
            m = torch.where(valid, m, torch.zeros((), dtype=m.dtype, device=m.device))
            inv, r, dense = pick
            return (m @ w.T)[inv, r] if dense else (m[inv] * w[r]).sum(dim=1)

        pos = index[sel] % n_out
        s64, lk64, b64, a_n = s_f[pos], lk_f[pos], b_f[pos], a_f[pos]
        low: Tensor | None = None
        high: Tensor | None = None
        for small, c, shift in _grid_jobs(pts, x_max, s64, lk64, e32 * a_n):
            low, high = _keep_max(low, high, small, sums(_ramp(vals, c, small), wr).sub_(shift))
        d = sums(_tents(vals, knots, x_max), wr.neg().clamp_min(0.0))
        wx = None if z.dtype == torch.float64 else sums(vals, wr.abs())
        out[sel] = _grid_verdict(layer, z_f[index[sel]], low, high, d, wx, s64, lk64, b64,
                                 a_n, x_max, u_end, e32)
    return out
