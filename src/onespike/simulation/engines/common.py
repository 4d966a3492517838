"""Shared pieces of the engines: the per-layer step result and the model-A step (certificates,
then the exact first crossing of the neurons they do not cover)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.engines.bounds import (
    GRID_QUANTILES,
    InputMaps,
    certify_drive,
    certify_grid,
    certify_model_a,
    grid_stages,
    input_range,
)
from onespike.simulation.engines.bounds.drive import drive_holds
from onespike.simulation.engines.crossing import first_crossing_sorted
from onespike.simulation.engines.ordering import argsort_descending
from onespike.simulation.engines.step import PopulationStep
from onespike.simulation.masks import (
    any_true,
    count_per_sample,
    count_true,
    per_sample_from_index,
    true_index,
)

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike

__all__ = ["exact_values", "model_a_step"]

# Fraction of a layer's neurons the drive certificate must miss before the grid certificate
# runs (0: whenever it misses one; the grid bound then works on the input patches of the
# missed neurons when they are few, so it is cheaper than their exact walk).
GRID_MIN_FRACTION = 0.0
# ... and the missed neurons' inputs (neurons × fan-in) must exceed this many: below it, their
# exact walk (a few milliseconds) is cheaper than the grid bound's fixed costs. The same holds
# before each further grid stage (the neurons the stages before left).
GRID_MIN_ELEMENTS = 1 << 16
# The grid bound runs in stages, each on the neurons the previous ones left: (quantiles of
# the inputs as grid points, precision of the sums — "bfloat16" runs in float32 where it is
# not native). A coarse grid in bfloat16 (the quartiles of the inputs and their maximum)
# clears most of them, the full grid (GRID_QUANTILES) in float32 nearly all the rest, and a
# fine grid (every 16th quantile) what the full one leaves on wide layers — e.g. VGG-16's
# 2×2 layers at batch 64: 484, 258, 218 neurons, cleared in 8–11 ms each instead of an exact
# walk of 45, 28, 21 ms (the walk keeps the few a stage leaves: GRID_MIN_ELEMENTS).
GRID_STAGES: tuple[tuple[tuple[float, ...], str], ...] = (
    ((0.25, 0.5, 0.75), "bfloat16"), (GRID_QUANTILES, "float32"),
    (tuple(k / 16 for k in range(1, 16)), "float32"))
# The bfloat16 stage runs only when its neurons' inputs (neurons × fan-in) exceed this many:
# below it, its fixed costs buy less than going straight to the float32 stage, which clears
# more of them (against no minimum: VGG-16 32×32 at batch 1, same process, fastest of 15:
# 76.7 → 72.3 ms, ResNet-18 94.8 → 91.1; batch 64 unchanged). 2¹⁸ rather than 2²⁰ lets it
# take LeNet-5's third layer at batch 64 (1,828 neurons of fan-in 400): 12.3 → 11.6 ms in
# float64, 9.0 → 8.1 in float32 (medians of 41 alternated calls); VGG-16, ResNet-18 at
# batch 1 and the Fashion-MNIST VGG at batch 64 within the noise (77.7–78.0, 95.7–96.1,
# 97.2–98.0 ms).
BF16_STAGE_MIN_ELEMENTS = 1 << 18
# Elements gathered per chunk of the exact path (M × fan-in); bounds its memory.
GATHER_ELEMENTS = 1 << 21
# The exact walk of neurons the drive bound left without a grid stage tries the float64 drive
# condition on their gathered inputs first (exact_values' drive_first): LeNet-5 at batch 64,
# its first layer's 11 such neurons all proven (tests switch it off to compare).
DRIVE_FIRST = True


def exact_values(
    layer: PopulationLike,
    xs: list[Tensor],
    index: Tensor,
    gain: Tensor | None = None,
    *,
    early_only: bool = False,
    drive_first: bool = False,
) -> Tensor:
    """Exact ``t_max − t`` of the neurons at flat ``index`` (into (B, *out_shape)) by walking
    their piecewise-linear trajectory (:func:`first_crossing_sorted`), in memory-bounded
    chunks. Neurons that read the same input patch (same sample, position and group) share
    one sort of the patch by arrival time; only their weights are permuted.
    ``gain`` (out_shape): per-neuron factor on ``alpha`` (perturbed dynamics).

    ``early_only`` (valid when no input arrives after ``t_min``): only crossings before the
    window are computed — on the inputs that have arrived by then (``x > 0``) — and NaN is
    returned for the others, whose crossing is then the closed form. Otherwise NaN marks the
    neurons whose crossing the closed form gives as well (after ``t_min``, once their inputs
    have arrived: :func:`first_crossing_sorted`'s ``closed_after``), so that a neuron's
    value never depends on whether its batch has late inputs or a certificate covered it.

    ``drive_first`` (with ``early_only``, unperturbed): a chunk whose neurons all satisfy the
    drive condition in float64 on their own gathered inputs (:func:`~.bounds.drive.drive_holds`) is
    returned as NaN without its walk — the walk's own answer for them — at the cost of one
    product of the gathered rows (for neurons the low-precision drive bound left by its
    rounding margin alone, e.g. LeNet-5's first layer)."""
    syn = layer.synapses
    x0 = xs[0]
    out = torch.empty(index.numel(), dtype=x0.dtype, device=x0.device)
    if index.numel() == 0:
        return out
    key, row = syn.patch_keys(index)
    key_sorted, perm = torch.sort(key)
    fan_in = syn.fan_in
    step = max(1, GATHER_ELEMENTS // max(1, fan_in))
    bias_flat = layer.bias.reshape(-1)
    s_flat = layer.S.reshape(-1)
    n_out = layer.num_neurons
    for s in range(0, index.numel(), step):
        sel = perm[s : s + step]
        keys, inverse = torch.unique_consecutive(key_sorted[s : s + step], return_inverse=True)
        vals, valid = syn.patches(xs, keys)
        w_rows = syn.weight_rows(row[sel])
        pos = index[sel] % n_out
        if (drive_first and early_only and gain is None
                and drive_holds(layer, vals.index_select(0, inverse), w_rows,
                                bias_flat[pos])):
            out[sel] = float("nan")  # none crosses before t_min: the closed form holds
            continue
        order = argsort_descending(vals)
        x_sorted = torch.gather(vals, 1, order)
        if early_only:  # inputs with x ≤ 0 act only from t_min on: leave them out
            keep = max(1, int((x_sorted > 0).sum(dim=1).max()))
            x_sorted, order = x_sorted[:, :keep], order[:, :keep]
        # rows per neuron: index_select (several times faster than [inverse] on CPU)
        order_n = order.index_select(0, inverse)
        mask = torch.gather(valid, 1, order).index_select(0, inverse)
        ws = torch.gather(w_rows, 1, order_n)
        ws = torch.where(mask, ws, torch.zeros((), dtype=ws.dtype, device=ws.device))
        b, leak = bias_flat[pos], 1.0 - s_flat[pos]
        if gain is not None:
            b, leak = _perturbed(b, s_flat[pos], gain.reshape(-1)[pos], layer.B_in)
        u = first_crossing_sorted(x_sorted.index_select(0, inverse), ws, b, layer.B_in,
                                  layer.B, leak, early_only=early_only,
                                  closed_after=not early_only)
        out[sel] = layer.B + u
    return out


def _perturbed(b: Tensor, S: Tensor, gain: Tensor, B_in: float) -> tuple[Tensor, Tensor]:
    """Bias and ``u`` coefficient of ``f`` when ``alpha`` is multiplied by ``gain = 1 + δ``
    while ``theta`` and ``J`` keep ``alpha = 1``:
    ``f̃(u) = b + δ(1 − S)B_in + Σ_j W_ij (x_j − u)⁺ − (1 − S)(1 + δ) u − B``."""
    delta = gain - 1.0
    return b + delta * (1.0 - S) * B_in, (1.0 - S) * gain


def model_a_step(
    layer: PopulationLike,
    xs: list[Tensor],
    z: Tensor,
    *,
    use_exact: bool,
    gain: Tensor | None = None,
    late_possible: bool = True,
) -> PopulationStep:
    """Model-A step given clipped edge inputs ``xs`` and ``z = b + Σ_e W_e x_e`` (``z`` is
    consumed).

    Certified neurons take ``ReLU(z)``; the others are computed exactly. With ``use_exact``
    False (closed engine) the exact values only feed the certificate counts. ``gain``
    (out_shape) multiplies each neuron's ``alpha`` (robustness studies); certified neurons
    then cross at ``u* = (z̃ − B)/(S + (1 − S)·gain)`` with ``z̃`` the perturbed ``z``.
    ``late_possible=False`` tells that no input arrives after ``t_min`` (no perturbation),
    which skips the checks for late inputs."""
    B = layer.B
    # the inputs' range (one pass): late arrivals, and the grid stages below
    x_range = input_range(xs) if late_possible else None
    late = x_range is not None and x_range[0] < 0
    bias = leak = None
    maps = None  # the inputs' float32/bfloat16 copies, made once for the drive and the grid
    if gain is not None:
        bias, leak = _perturbed(layer.bias, layer.S, gain, layer.B_in)
        z = z + (bias - layer.bias)
        ok = certify_model_a(layer, xs, bias) & (leak > 0)
    elif late:
        ok = certify_model_a(layer, xs, late_ok=True)
    else:
        maps = InputMaps(xs)
        ok = certify_drive(layer, xs, maps=maps)
    grid_ran = False
    if not late:
        missed = ok.numel() - count_true(ok)
        if (missed > GRID_MIN_FRACTION * ok.numel()
                and missed * layer.synapses.fan_in > GRID_MIN_ELEMENTS):
            if x_range is None:
                x_range = input_range(xs)
            grids = grid_stages(xs, layer.B_in, [q for q, _ in GRID_STAGES], top=x_range[1])
            for grid, (_, precision) in zip(grids, GRID_STAGES):
                need = ~ok
                # the same rule for every stage: few neurons left go to the exact walk
                work = count_true(need) * layer.synapses.fan_in
                if work <= GRID_MIN_ELEMENTS:
                    break
                if precision == "bfloat16" and work <= BF16_STAGE_MIN_ELEMENTS:
                    continue
                grid_ok = certify_grid(layer, xs, z, bias=bias, leak=leak, grid=grid,
                                       need=need, precision=precision, x_range=x_range,
                                       maps=maps)
                grid_ran = True
                ok |= grid_ok if leak is None else grid_ok & (leak > 0)
    del maps  # freed before the exact walk
    if gain is not None:
        assert leak is not None
        finite = False  # (the driver scans these values)
        sat = count_per_sample(z > B)
        slope = layer.S + leak
        safe = torch.where(slope > 0, slope, torch.ones_like(slope))
        values = torch.where(slope > 0, (B + (z - B) / safe).clamp_min(0), torch.zeros_like(z))
    else:
        # one pass for both: saturation, and whether ReLU(z) is finite (NaN fails both tests)
        lo, hi = (float(t) for t in torch.aminmax(z)) if z.numel() else (0.0, 0.0)
        finite = lo > float("-inf") and hi < float("inf")
        sat = count_per_sample(z > B) if hi > B else _zeros(z)
        values = z.clamp_min_(0.0)
    missing = ~ok
    if not any_true(missing):
        return PopulationStep(values, _zeros(values), sat, _zeros(values), finite)
    index = true_index(missing)
    # neurons straight from the drive bound (no grid stage ran) may have been left by its
    # low-precision rounding margin alone: a float64 drive on their gathered inputs first
    exact = exact_values(layer, xs, index, gain, early_only=not late,
                         drive_first=DRIVE_FIRST and not grid_ran)
    # NaN: the crossing is after t_min with every input arrived, so the closed form holds
    exact = torch.where(torch.isnan(exact), values.reshape(-1)[index], exact)
    if use_exact:  # values is this step's own map (z, consumed, or a new one): no copy
        values.view(-1)[index] = exact
    n, bsz = layer.num_neurons, values.shape[0]
    if use_exact and finite:  # the replaced values too
        finite = bool(torch.isfinite(exact).all())
    return PopulationStep(values, per_sample_from_index(index[exact > B], n, bsz), sat,
                          per_sample_from_index(index, n, bsz), finite)


def _zeros(t: Tensor) -> Tensor:
    return torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
