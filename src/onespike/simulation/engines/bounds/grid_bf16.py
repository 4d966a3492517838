"""The grid certificate's bfloat16 convolution form (float32 accumulation), in the min form of
``f``: one clamp and one convolution per grid point, with every bfloat16 rounding bounded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from onespike.simulation.affine import keep_packed
from onespike.simulation.engines.bounds.grid_forms import _STACK_SAMPLES
from onespike.simulation.engines.bounds.inputs import (
    InputMaps,
    _edge_sum_f32,
    _scale_edges,
    _scale_term,
)
from onespike.simulation.engines.bounds.precision import _bf16, _nchw64
from onespike.simulation.engines.bounds.reads import Reads
from onespike.simulation.engines.bounds.tents import _tent_sum, _tents
from onespike.simulation.rounding import bf16_up, pieces
from onespike.simulation.synapses import Synapses, select_rows

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike


#: Relative error of a faithful rounding to bfloat16 (8 significant bits: below 2⁻⁷).
_UB = 2.0**-7


def _grid_weights_bf16(layer: PopulationLike) -> dict[str, Any]:
    """The bfloat16 grid bound's weights per edge — ``W`` rounded to nearest (``Ŵ``) and
    ``|W⁻|`` rounded up — and per output channel (float64, summed over the edges)
    ``Σ_j |W_ij − Ŵ_ij|`` and ``Σ_j |Ŵ_ij|``, and the largest ``|W|`` rounded up to
    bfloat16; cached per layer. (``|W|`` rounded up, read by float32 networks only:
    :func:`_grid_abs_bf16`.)"""

    def make() -> dict[str, Any]:
        f64 = torch.float64
        signed, neg = [], []
        lo: Tensor | None = None
        hat: Tensor | None = None
        wmax = 0.0
        for a in layer.synapses.affines:
            w = a.weight
            wb = w.to(torch.bfloat16)
            signed.append(keep_packed(wb))
            neg.append(keep_packed(bf16_up(w, _negative_part)))
            rows = w.shape[0]
            # row sums a few rows at a time (no float64 temporary of the weight's size)
            r, h = w.new_empty(rows, dtype=f64), w.new_empty(rows, dtype=f64)
            for s in pieces(rows, w[0].numel() if rows else 0):
                hat64 = wb[s].to(f64)
                r[s] = (w[s].to(f64) - hat64).abs_().reshape(hat64.shape[0], -1).sum(dim=1)
                h[s] = hat64.abs_().reshape(hat64.shape[0], -1).sum(dim=1)
            lo, hat = (r, h) if lo is None or hat is None else (lo + r, hat + h)
            if w.numel():  # max of |W| rounded up = |W|'s max rounded up (monotone rounding)
                w_lo, w_hi = torch.aminmax(w)
                top = torch.maximum(w_hi, w_lo.neg()).reshape(1)
                wmax = max(wmax, float(bf16_up(top).float()))
        return {"signed": signed, "neg": neg, "lo": lo, "hat": hat, "wmax": wmax}

    return layer.derived("grid_bf16", make)


def _grid_abs_bf16(layer: PopulationLike) -> list[Tensor]:
    """``|W|`` rounded up to bfloat16 per edge, for the ``Σ_j |W_ij| x_j`` of networks below
    float64 (:func:`~.grid._wx_pays`); cached per layer apart from :func:`_grid_weights_bf16`, so
    that float64 networks never hold this copy."""
    return layer.derived("grid_bf16_abs", lambda: [
        keep_packed(bf16_up(a.weight, torch.abs)) for a in layer.synapses.affines])


def _grid_sums_bf16(layer: PopulationLike, syn: Synapses, inputs: InputMaps,
                    sel: Tensor | None, reads: Reads, pts: Sequence[float],
                    knots: Sequence[float], x_max: float, u_end: float, lk64: Tensor, *,
                    need_wx: bool
                    ) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor | None]:
    """:func:`_grid_sums32` with the maps and weights in bfloat16 and float32 accumulation
    (where :func:`bf16_drive_available`: several times cheaper than float32), in the *min
    form* of ``f`` — from ``(x − c)⁺ = x − min(x, c)`` and ``z = b + Σ_j W_ij x_j``::

        f(c) = (z − B) − leak·c − Σ_j W_ij min(x_j, c),

    one convolution per grid point ``c < max x`` on the map ``min(x, c)`` (one clamp), with
    no shift or second form. With ``m = min(x, c) ∈ [0, c]``, ``Ŵ`` the weights rounded to
    nearest and ``m̂`` the map rounded faithfully to bfloat16::

        Σ W m = Σ Ŵ m̂ + Σ (W − Ŵ) m + Σ Ŵ (m − m̂),
        |Σ (W − Ŵ) m| ≤ c·Σ|W − Ŵ|,   |Σ Ŵ (m − m̂)| ≤ 2⁻⁷·c·Σ|Ŵ|,

    the float32 sum of the exact bfloat16 products is within ``γ·c·Σ|Ŵ|(1 + 2⁻⁷)`` (``γ =
    (K + E)·2⁻²³``, any order), and the convolution's output ``ŝ``, rounded faithfully to
    bfloat16, within ``r·|ŝ|`` (``r = 2⁻⁷/(1 − 2⁻⁷)``) of its float32 sum (one edge; several
    edges: each edge's output within ``r·c·Σ|Ŵ_e|(1 + 2⁻⁷)(1 + γ)``, before their float32
    sum). Flushed subnormals add at most ``2(K + E)·2⁻¹²⁶·max(1, Ŵ_max, u_end)``. So, per
    grid point, ``f(c) − (z − B) ≤ k_c − ŝ + r·|ŝ|`` with the per-channel constant ``k_c =
    (coef − leak)·c + absolute``; the maxima over the grid points are kept separately —
    ``max_c (k_c − ŝ_c) + r·max_c |ŝ_c|`` bounds the maximum of the sums. The tents and
    ``Σ|W|x`` have non-negative terms (weights rounded up):
    ``D ≤ D̂/((1 − 2⁻⁷)²(1 − γ))`` plus the same absolute term, as in the drive bound. The
    values returned are float32 (``low``: margins already added; no ``high``: every grid
    point has the min form) and float64 (``D``, ``Σ|W|x``: already divided), read by
    ``reads`` (the sums over the output channels ``sel`` — None: all — as maps, or at the
    needed neurons; ``lk64`` is read alike)."""
    cached = _grid_weights_bf16(layer)
    pick = (lambda ws: ws) if sel is None else (lambda ws: [select_rows(w, sel) for w in ws])
    # the selected synapses already hold the selected signed weights (certify_grid)
    w_signed = cached["signed"] if sel is None else syn.weights
    w_neg = pick(cached["neg"])
    view = (-1,) + (1,) * (len(layer.out_shape) - 1)
    lo, hat = cached["lo"], cached["hat"]
    terms = syn.fan_in + len(syn.affines)
    gamma = terms * 2.0**-23
    r = _UB / (1.0 - _UB)
    one_edge = len(syn.affines) == 1
    # error of a sum per unit of c; several edges: each edge's output rounding too
    coef = lo + hat * (_UB + gamma * (1.0 + _UB))
    if not one_edge:
        coef = coef + hat * (r * (1.0 + _UB) * (1.0 + gamma))
    coef = reads.param(coef.reshape(view))
    absolute = 2.0 * terms * 2.0**-126 * max(1.0, cached["wmax"], u_end)
    xs = inputs.xs
    x32s = inputs.f32()
    bf = torch.bfloat16
    # min(x̂, ĉ) with x̂, ĉ the float32 x and c rounded to bfloat16 is bit for bit the map
    # min(x, c) rounded to bfloat16 (rounding is monotone), at a quarter of the traffic;
    # the maps are channels-last (the convolutions' layout: :meth:`Affine.linear`), so that
    # every clamped map below is made channels-last as well
    # a per-channel scale edge (identity shortcut) enters the float32 sum of the edges as
    # ŵ·min(x, c) from its float32 input: within c·|W − Ŵ| + 2⁻²³·c·|Ŵ| of W·min(x, c),
    # inside the allowance above for a bfloat16 edge (and no bfloat16 map of that input)
    scale_edges, convs = _scale_edges(syn)
    xbs = inputs.bf16_at(convs)
    w_convs = [w_signed[i] for i in convs]
    shortcuts = [_scale_term(syn.affines[i], x32s[i], w_signed[i]) for i in scale_edges]
    points = [c for c in pts if c < x_max]
    run: Tensor | None = None  # max over c of k_c − ŝ_c  (float32)
    mag: Tensor | None = None  # max over c of |ŝ_c|  (one edge: the output's own dtype)
    bsz = xs[0].shape[0]
    per_call = max(1, _STACK_SAMPLES // max(1, bsz))  # maps stacked in one conv call
    for s in range(0, len(points), per_call):
        group = points[s : s + per_call]
        if len(group) == 1:
            maps = [xb.clamp_max(_bf16(group[0])) for xb in xbs]
        else:  # the maps of the group stacked along the batch, each clamped in place
            maps = []
            for xb in xbs:
                stacked = torch.empty(
                    (len(group) * bsz, *xb.shape[1:]), dtype=xb.dtype, device=xb.device,
                    memory_format=(torch.channels_last if xb.dim() == 4
                                   else torch.contiguous_format))
                for k, c in enumerate(group):
                    torch.clamp_max(xb, _bf16(c), out=stacked[k * bsz : (k + 1) * bsz])
                maps.append(stacked)
        # (channels-last results stay so through the elementwise passes below; the verdict
        # reorders the maxima once)
        if one_edge:
            sums = syn.linear(maps, w_signed, any_layout=True)
        elif convs:
            sums = _edge_sum_f32(syn, convs, maps, w_convs)
        else:
            sums = torch.zeros((len(group) * bsz, *syn.out_shape), dtype=torch.float32,
                               device=xs[0].device)
        for c, part in zip(group, sums.split(bsz)):
            for x, w in shortcuts:
                part.addcmul_(x.clamp_max(c), w)
            part = reads.sums(part)
            k_c = ((coef - lk64) * c + absolute).to(torch.float32)
            p32 = part.to(torch.float32)  # exact; a mixed-dtype subtraction is slow on CPU
            cand = torch.sub(k_c, p32, out=p32)
            run = cand if run is None else torch.maximum(run, cand, out=run)
            if one_edge:
                a_part = part.abs()
                mag = a_part if mag is None else torch.maximum(mag, a_part, out=mag)
    low = run
    if run is not None and mag is not None:
        low = run.add_(mag.to(torch.float32).mul_(r))
    scale = 1.0 / ((1.0 - _UB) ** 2 * (1.0 - gamma))
    d = _tent_sum(syn, x32s, w_neg, lambda x32: _tents(x32, knots, x_max, bf),
                  out_dtype=torch.float32, any_layout=True)
    d64 = _nchw64(reads.sums(d)).mul_(scale).add_(absolute)
    wx = None
    if need_wx:
        w_abs = pick(_grid_abs_bf16(layer))
        wx = _nchw64(reads.sums(syn.linear(inputs.bf16(), w_abs, out_dtype=torch.float32,
                                           any_layout=True))).mul_(scale).add_(absolute)
    return low, None, d64, wx


def _negative_part(w: Tensor) -> Tensor:
    """``|W⁻| = max(−W, 0)``."""
    return w.neg().clamp_min(0)
