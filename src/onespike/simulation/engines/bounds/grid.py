"""The grid certificate :func:`certify_grid` (module docstring of
:mod:`onespike.simulation.engines.bounds`): checks its arguments, keeps the output channels that
hold a needed neuron, and picks the form — the needed neurons' input patches when they are few
(:mod:`.grid_patches`), else convolutions in bfloat16 (:mod:`.grid_bf16`) or float32
(:mod:`.grid_f32`) — whose sums :func:`~.grid_forms._grid_verdict` turns into a decision."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.errors import ArgumentError
from onespike.simulation.engines.bounds.drive import bf16_drive_available
from onespike.simulation.engines.bounds.grid_bf16 import _grid_sums_bf16, _grid_weights_bf16
from onespike.simulation.engines.bounds.grid_f32 import _grid_sums32
from onespike.simulation.engines.bounds.grid_forms import _grid_verdict
from onespike.simulation.engines.bounds.grid_patches import _grid_at_patches
from onespike.simulation.engines.bounds.inputs import InputMaps, _edges, input_range
from onespike.simulation.engines.bounds.points import grid_points
from onespike.simulation.engines.bounds.precision import _U32, _f32, _gamma, _unit
from onespike.simulation.engines.bounds.reads import (
    GATHER_FRACTION,
    ChannelReads,
    NeededReads,
    Reads,
)
from onespike.simulation.masks import any_along, count_true, true_index

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike


# Cost of the grid bound on one gathered input patch, in units of one output position of the
# convolution form (which computes every position of the selected channels; measured on
# ResNet-18, 4 channels: about 7): the patch form runs when (patches the needed neurons
# read) × PATCH_COST < (output positions).
PATCH_COST = 8

#: The grid bound runs on chunks of samples of at most this many neurons (samples × neurons
#: per sample; one sample at least): its maps — the clamped inputs, the sums, their maxima,
#: the float64 verdict — then take a few times a chunk's map, not the batch's (VGG-16's
#: 32×32 layers in float32 at batch 64: 53 MiB above the step's own maps at once). Every
#: chunk uses the batch's grid points and input range, so a sample's bound is the same
#: proof in any chunk.
GRID_CHUNK_NEURONS = 1 << 20


#: The bfloat16 stage bounds the rounding of a float32 ``z`` by the crude ``Σ_j |W_ij| x_j ≤
#: A_i·u_end`` (no convolution) when that term, ``ed·u_end``, is at most this fraction of the
#: stage's own margin at its smallest grid point (about ``2⁻⁶·c_1`` per unit of ``A_i``).
WX_CRUDE_FRACTION = 1.0


def _abs_row_sum(layer: PopulationLike) -> Tensor:
    """``A_i = Σ_j |W_ij|`` per output channel, shaped to broadcast against ``out_shape``."""
    def make() -> Tensor:
        a = layer.synapses.channel_abs_sum()
        return a.reshape((-1,) + (1,) * (len(layer.out_shape) - 1))

    return layer.derived("abs_row_sum", make)


def certify_grid(
    layer: PopulationLike,
    xs: list[Tensor] | Tensor,
    z: Tensor,
    *,
    bias: Tensor | None = None,
    leak: Tensor | None = None,
    grid: Sequence[float] | None = None,
    need: Tensor | None = None,
    precision: str = "float32",
    x_range: tuple[float, float] | None = None,
    maps: InputMaps | None = None,
) -> Tensor:
    """Boolean map (B, *out_shape): neurons proven not to fire before ``t_min`` by the grid
    bound (:mod:`onespike.simulation.engines.bounds`), for inputs ``0 ≤ x ≤ B_in`` and
    ``z = W x + b``.

    ``bias``/``leak`` replace ``b`` and ``1 − S`` (perturbed ``alpha``); ``grid``: increasing
    float32 points in ``(0, B_in)`` (default :func:`grid_points`); ``need``: boolean map of
    the neurons to prove — only the output channels (features) that hold one are computed,
    the others come back False; ``x_range``: the smallest and largest input over every
    edge, when the caller already has them (:func:`input_range`; else computed); ``maps``:
    the step's :class:`InputMaps` of ``xs`` (their float32/bfloat16 copies; made here if
    not given — the inputs are non-negative here, so ``x⁺ = x``).

    In float32, ``f(c)`` is evaluated in whichever of two equal forms has the smaller
    rounding bound::

        f(c) = z − B − (S + leak)·c + Σ_j W_ij (c − x_j)⁺      (small c)
             = b − B − leak·c + Σ_j W_ij (x_j − c)⁺            (c near max x; exact at max x)

    With ``precision="bfloat16"`` the sums run in bfloat16 with float32 accumulation where
    :func:`bf16_drive_available` (else float32; always float32 in the patch form), in a third
    equal form ``f(c) = z − B − leak·c − Σ_j W_ij min(x_j, c)`` (one clamp per map):
    several times faster, with a margin about 2⁻⁶·c·Σ_j |W_ij| wider
    (:func:`_grid_sums_bf16`). Every rounding error (the sums, the roundings of ``W``,
    ``x``, the input maps and ``z``) is covered by a margin."""
    if precision not in ("float32", "bfloat16"):
        raise ArgumentError(f"certify_grid precision must be 'float32' or 'bfloat16', got "
                            f"{precision!r}")
    xs = _edges(xs)
    if maps is None:
        maps = InputMaps(xs)  # (its copies are made only when a sum needs them)
    B_in = layer.B_in
    b = layer.bias if bias is None else bias
    lk = (1.0 - layer.S) if leak is None else leak
    sigma = layer.S + lk
    pts = list(grid_points(xs, B_in) if grid is None else grid)
    if (any(not 0.0 < c < B_in or _f32(c) != c for c in pts) or pts != sorted(set(pts))):
        raise ArgumentError("grid points must be float32 values increasing strictly inside "
                            f"(0, B_in={B_in}): {pts}")
    nonempty = any(x.numel() for x in xs)
    x_min, x_max = input_range(xs) if x_range is None else x_range
    if nonempty and (x_min < 0.0 or x_max > B_in * (1.0 + 2.0**-20)):
        raise ArgumentError(f"certify_grid needs inputs in [0, B_in={B_in}] (inputs arriving after "
                            f"t_min go to certify_late), got [{x_min}, {x_max}]")
    # the proof covers [0, u_end] ⊇ [0, B_in] (float32 inputs clipped to B_in may exceed the
    # float64 B_in by a rounding)
    u_end = max(B_in, x_max)
    bsz = z.shape[0]
    step = max(1, GRID_CHUNK_NEURONS // max(1, layer.num_neurons))
    if bsz <= step:
        return _certify_grid(layer, z, maps, b, lk, sigma, pts, need, precision, x_max, u_end)
    ok = torch.empty(z.shape, dtype=torch.bool, device=z.device)
    for s in range(0, bsz, step):
        part = slice(s, min(bsz, s + step))
        ok[part] = _certify_grid(layer, z[part], maps.samples(part), b, lk, sigma, pts,
                                 None if need is None else need[part], precision, x_max, u_end)
    return ok


def _certify_grid(layer: PopulationLike, z: Tensor, maps: InputMaps, b: Tensor, lk: Tensor,
                  sigma: Tensor, pts: list[float], need: Tensor | None, precision: str,
                  x_max: float, u_end: float) -> Tensor:
    """:func:`certify_grid` on the samples of ``maps`` (its arguments checked; ``b``, ``lk``,
    ``sigma``: the bias, leak and ``S + leak`` it uses; ``x_max``: the largest input of the
    whole batch, whose grid points and range every chunk shares — the bound of a sample with
    smaller inputs holds as well, with the same margins; ``u_end``: the end of the interval
    proven, ``max(B_in, x_max)``)."""
    xs = maps.xs
    syn = layer.synapses
    a = _abs_row_sum(layer)
    c_out = layer.out_shape[0]
    # rounding: γ bound of a float32 fan-in sum (e32), float32 unit roundoff (u) for the
    # maps and shifts, and the γ bound of z in the network's own dtype (ed)
    e32 = _gamma(syn.fan_in + 8, _U32)
    if e32 >= 0.25:  # fan-in too large for a float32 bound
        return torch.zeros(z.shape, dtype=torch.bool, device=z.device)
    sel: Tensor | None = None
    reads = Reads()
    use_bf16 = precision == "bfloat16" and bf16_drive_available(layer, xs[0].device)
    if need is not None:
        per_channel = need.reshape(z.shape[0], c_out, -1)
        channels = any_along(any_along(per_channel, 0), 1)
        if not bool(channels.any()):
            return torch.zeros(z.shape, dtype=torch.bool, device=z.device)
        channels = syn.channel_closure(channels)  # grouped edges keep whole groups
        n_sel = int(channels.sum())
        # input patches read by the needed neurons (samples × positions holding one)
        n_patch = count_true(any_along(per_channel, 1))
        positions = z.shape[0] * (layer.num_neurons // c_out)
        if n_patch * PATCH_COST < positions:
            # few neurons: their input patches, not the whole layer
            index = true_index(need)
            full = torch.zeros(z.shape, dtype=torch.bool, device=z.device)
            full.view(-1)[index] = _grid_at_patches(
                layer, syn, xs, z, index, b, lk, sigma, a, pts, x_max, u_end, e32)
            return full
        if n_sel < c_out:
            sel = channels.nonzero().reshape(-1)
            # grouped edges read only their input channels (the copies made so far too)
            maps = maps.select(functools.partial(syn.select_inputs, sel))
            xs = maps.xs
            # these channels of the cached bfloat16 weights (no float64 copy), or of the
            # float64 ones (made float32 per call: a cached float32 copy of every weight
            # would cost half the network's memory again)
            syn = syn.select(sel, _grid_weights_bf16(layer)["signed"] if use_bf16 else None)
        # the sums are read at the needed neurons only when they are few beside the maps
        # computed (reads), else as maps of the computed channels
        if count_true(need) <= GATHER_FRACTION * positions * n_sel:
            reads = NeededReads(need, sel)
        elif sel is not None:
            reads = ChannelReads(sel)
    shape = (z.shape[0], *layer.out_shape)
    a, b, lk, sigma = (reads.param(t) for t in (a, b, lk, sigma))
    z = reads.own(z)
    s64, lk64, b64 = sigma.to(torch.float64), lk.to(torch.float64), b.to(torch.float64)
    knots = sorted({0.0, *pts, u_end})
    if use_bf16:
        low, high, d, wx = _grid_sums_bf16(layer, syn, maps, sel, reads, pts, knots, x_max, u_end,
                                           lk64, need_wx=_wx_pays(layer, z, pts, u_end))
    else:
        low, high, d, wx = _grid_sums32(syn, maps, reads, pts, knots, x_max, s64, lk64, a,
                                        e32, need_wx=z.dtype != torch.float64)
    ok = _grid_verdict(layer, z, low, high, d, wx, s64, lk64, b64, a, x_max, u_end, e32)
    return reads.verdict(ok, shape)


def _wx_pays(layer: PopulationLike, z: Tensor, pts: Sequence[float], u_end: float) -> bool:
    """Whether the bfloat16 grid stage computes ``Σ_j |W_ij| x_j`` for the rounding of ``z``
    (networks below float64), rather than the crude ``A_i·u_end`` (:data:`WX_CRUDE_FRACTION`:
    the crude term is small beside that stage's margin on layers of small fan-in, e.g. the
    first layers of VGG-16, where the sum costs one more convolution for nothing)."""
    if z.dtype == torch.float64:
        return False
    ed = _gamma(layer.synapses.fan_in + 8, _unit(z.dtype))
    c_min = min(pts, default=u_end)
    return ed * u_end > WX_CRUDE_FRACTION * 2.0**-6 * c_min
