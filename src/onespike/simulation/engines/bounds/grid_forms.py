"""What every form of the grid certificate shares: the two equal forms of ``f(c)`` per grid
point (which one, and its shift), their running maxima, and the verdict from the sums."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.engines.bounds.precision import _U32, _gamma, _nchw64, _unit
from onespike.simulation.ops import rsub

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike


# Small batches: the grid's input maps are stacked into one convolution call of up to this
# many samples (one weight packing instead of one per grid point).
_STACK_SAMPLES = 32


def _grid_jobs(pts: Sequence[float], x_max: float, s64: Tensor, lk64: Tensor, err: Tensor
               ) -> list[tuple[bool, float, Tensor]]:
    """Per grid point ``c < max x``: which form of ``f(c)`` (small: ``f(c) − (z − B)``,
    |error of its sum| ≤ err·c; else ``f(c) − (b − B)``, |error| ≤ err·(x_max − c): ``err``
    per neuron or channel, e.g. ``γ·A`` for float32 sums) and the float32 shift subtracted
    from its sum (``c ≥ max x`` needs no sum: ``f_max`` of the verdict)."""
    jobs: list[tuple[bool, float, Tensor]] = []
    for c in pts:
        if c <= x_max - c:
            jobs.append((True, c, (s64 * c - err * c).to(torch.float32)))
        elif c < x_max:
            jobs.append((False, c, (lk64 * c - err * (x_max - c)).to(torch.float32)))
    return jobs


def _ramp(x: Tensor, c: float, small: bool) -> Tensor:
    """``(c − x)⁺`` (``small``) or ``(x − c)⁺``."""
    return (rsub(c, x) if small else x - c).clamp_min_(0.0)


def _keep_max(low: Tensor | None, high: Tensor | None, small: bool, cand: Tensor
              ) -> tuple[Tensor | None, Tensor | None]:
    """Running maxima of the small-form (``low``) and large-form (``high``) candidates."""
    if small:
        return (cand if low is None else torch.maximum(low, cand, out=low)), high
    return low, (cand if high is None else torch.maximum(high, cand, out=high))


def _grid_verdict(layer: PopulationLike, z: Tensor, low: Tensor | None, high: Tensor | None,
                  d: Tensor, wx: Tensor | None, s64: Tensor, lk64: Tensor, b64: Tensor,
                  a: Tensor, x_max: float, u_end: float, e32: float) -> Tensor:
    """The grid bound's decision from its float32 sums (conv form: maps of the selected
    channels; patch form: vectors of neurons with their parameters gathered alike)."""
    B = layer.B
    u = 8.0 * _U32
    ed = _gamma(layer.synapses.fan_in + 8, _unit(z.dtype))
    # D = Σ_j |W⁻_ij| T(x_j) ≥ 0, so D ≤ D̂/(1 − e32)
    # |ẑ − z| ≤ ed·(|b| + Σ_j |W_ij| x_j): with float64 z the crude Σ ≤ A·B_in does; in
    # lower precision the sum itself is computed (Σ ≤ Σ̂/(1 − e32))
    wx64 = a * u_end if wx is None else wx.to(torch.float64).div_(1.0 - e32)
    # f32 roundings of x, the maps, the tents (1-Lipschitz in x) and the shifts: ≤ u·scale
    scale = (a + s64.abs() + lk64.abs()) * u_end
    slack = u * scale + ed * (b64.abs() + wx64 + B + (s64.abs() + lk64.abs()) * u_end)
    bound = d.to(torch.float64).div_(1.0 - e32).add_(slack)  # d is not used after this
    # f(c) − (z − B) ≤ max(low, 0) at the small grid points (c = 0 included)
    top = z.to(torch.float64) - B if low is None else \
        _nchw64(low).clamp_min_(0.0).add_(z).sub_(B)
    f_max = b64 - B - lk64 * x_max  # f(max x): every input has arrived
    if high is not None:
        f_max = torch.maximum(f_max, high.to(torch.float64).add_(b64 - B))
    f_end = b64 - B - lk64 * u_end  # f(u_end): every input has arrived
    # max(top, f_max, f_end) + bound < 0 ⇔ each of them + bound < 0 (rounded addition is
    # monotone): one comparison. top has the full shape; the others broadcast to it.
    worst = torch.maximum(top, torch.maximum(f_max, f_end), out=top)
    return worst.add_(bound) < 0
