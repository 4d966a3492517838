"""The channel-maximum certificate: whole output channels proven without a convolution.

Every input a neuron of output channel ``i`` reads on a convolution edge from input channel
``c`` is at most that channel's largest value ``m_c`` in its sample (a padded position reads
``0 ≤ m_c``), so for every position of channel ``i`` (all terms non-negative)::

    Σ_j W⁺_ij x_j⁺  ≤  Σ_e Σ_c s_e,ic · m_e,c,      s_e,ic = Σ_k W⁺_e,ick   (the kernel's sum)

and ``b_i + Σ_j W⁺_ij x_j⁺ < B`` — the drive certificate's condition — holds at every
position once ``max_positions(b_i) + Σ_e Σ_c s_e,ic m_e,c < B``. One layer's time window
is sized by its most active channels, so most channels of a trained network stay far below
it (the Fashion-MNIST VGG: 66–100 % of the channels of every layer, for all 64 samples of a
batch): their drive is never computed (:func:`~.drive.certify_drive` convolves the other
channels only). The cost is one pass over the inputs (their channel maxima) and one
``(samples × C_in) · (C_in × C_out)`` product.

Rounding, in the certificates' sum dtype ``D`` (:func:`~.precision.sum_dtype`: float32 where
it is IEEE), unit roundoff ``u``: the kernel sums are rounded *up* to ``D`` (``ŝ ≥ s``, made
once per layer), the channel maxima to nearest (``m ≤ m̂/(1 − u)``: one more rounding per
term); the product of ``C_in·E + E`` non-negative terms (``E`` edges) then gives ``Ĝ``
with ``G ≤ Ĝ/(1 − γ_n) ≤ Ĝ(1 + 2γ_n)``, ``n = C_in·E + E + 1``, in any summation order,
and with subnormals flushed at most ``2n·2⁻¹²⁶`` less. A plane (sample, channel) is proven
when ``Ĝ < T`` with ``T ≤ (B − max b − 2n·2⁻¹²⁶)/(1 + 2γ_n)`` (rounded down to ``D``).
Each sample's product is computed in blocks of the same rows whatever the batch
(:func:`~onespike.simulation.affine._blocked_mm`), so a sample's verdict does not depend on
the samples beside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.affine import _blocked_mm
from onespike.simulation.engines.bounds.precision import _f32_down, _gamma, _unit, sum_dtype
from onespike.simulation.rounding import pieces, round_up

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike

__all__ = ["proven_planes"]


def proven_planes(layer: PopulationLike, xs: Sequence[Tensor],
                  bias: Tensor | None = None) -> Tensor | None:
    """Boolean (samples, C_out): output channel ``c`` of sample ``n`` proven at every
    position by the channel-maximum bound (module docstring); ``bias`` replaces ``b``
    (perturbed dynamics). ``None`` where the bound does not apply: an edge that is not a
    convolution (a Linear edge's input has no channels to take maxima over)."""
    syn = layer.synapses
    if any(a.kind != "conv" for a in syn.affines) or not xs or xs[0].dim() < 3:
        return None
    dt = sum_dtype(xs[0].device)
    kernels = _kernel_sums(layer, dt)
    total: Tensor | None = None
    for x, s in zip(xs, kernels):
        m = x.amax(dim=tuple(range(2, x.dim()))) if x.shape[0] else x.new_zeros(x.shape[:2])
        g = _blocked_mm(m.clamp_min(0.0).to(dt), s)
        total = g if total is None else total.add_(g)
    assert total is not None
    return total < _plane_threshold(layer, dt, bias)


def _kernel_sums(layer: PopulationLike, dt: torch.dtype) -> list[Tensor]:
    """Per edge, ``ŝ`` (C_out, C_in) in ``dt``: the kernel sums of ``W⁺`` rounded up (zero
    outside a grouped edge's groups). Cached per layer and dtype."""

    def make() -> list[Tensor]:
        out = []
        for a in layer.synapses.affines:
            w = a.weight
            c_out, c_group = int(w.shape[0]), int(w.shape[1])
            k = math.prod(w.shape[2:])
            # a few rows at a time: no float64 copy of the whole weight
            s = w.new_empty((c_out, c_group), dtype=torch.float64)
            for part in pieces(c_out, c_group * k):
                s[part] = (w[part].clamp_min(0).to(torch.float64)
                           .reshape(-1, c_group, k).sum(dim=2))
            s = s * (1.0 + 2.0 * _gamma(k + 1, _unit(torch.float64)))  # ≥ the exact sum
            # block-diagonal over a grouped edge's groups (one block without groups)
            per = c_out // a.groups
            rows = torch.arange(c_out, device=w.device)
            cols = (rows // per)[:, None] * c_group + torch.arange(c_group, device=w.device)
            dense = s.new_zeros((c_out, c_group * a.groups))
            dense[rows[:, None], cols] = s
            out.append(round_up(dense, dt).contiguous())
        return out

    return layer.derived(f"channel_kernel_sums_{dt}", make)


def _plane_threshold(layer: PopulationLike, dt: torch.dtype, bias: Tensor | None) -> Tensor:
    """``T`` (C_out,) in ``dt``: ``Ĝ < T`` proves every position of the channel (module
    docstring). Cached per layer for the unperturbed bias."""

    def make() -> Tensor:
        b = layer.bias if bias is None else bias
        syn = layer.synapses
        b_max = b.reshape(b.shape[0], -1).amax(dim=1).to(torch.float64)
        n = sum(int(a.weight.shape[1]) * a.groups for a in syn.affines) + len(syn.affines) + 1
        gamma = _gamma(n, _unit(dt))
        flushed = 2.0 * n * 2.0**-126
        # (1 − 2⁻⁵⁰): the float64 subtraction and division rounded at most 3·2⁻⁵³ upward
        t = (layer.B - b_max - flushed) / (1.0 + 2.0 * gamma) * (1.0 - 2.0**-50)
        return _f32_down(t) if dt == torch.float32 else t

    return make() if bias is not None else layer.derived(f"channel_threshold_{dt}", make)
