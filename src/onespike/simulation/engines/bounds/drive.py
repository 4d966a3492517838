"""The drive certificate ``b + Σ_j W⁺_ij x_j < B`` (docs/method.md §7): one float32 — or, on CPUs
with bfloat16 instructions, bfloat16 with float32 accumulation — convolution/GEMM
with the positive weights, compared with a threshold lowered by every rounding's bound."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.engines.bounds.channels import proven_planes
from onespike.simulation.engines.bounds.inputs import (
    InputMaps,
    _edge_sum_f32,
    _edges,
    _scale_edges,
    _scale_term,
)
from onespike.simulation.engines.bounds.late import certify_late
from onespike.simulation.engines.bounds.precision import (
    _U32,
    _f32_down,
    _gamma,
    _unit,
    sum_dtype,
)
from onespike.simulation.masks import any_true, count_true, true_index
from onespike.simulation.rounding import bf16_up
from onespike.simulation.synapses import Synapses

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike


#: Let :func:`certify_drive` sum in bfloat16 where :func:`bf16_drive_available` (tests switch
#: it off to compare both paths).
BF16_DRIVE = True
#: ... also on CPUs without bfloat16 instructions, where oneDNN emulates them with AVX-512
#: float32 arithmetic (:func:`_bf16_conv_supported` but not :func:`_bf16_instructions`):
#: the same arithmetic — bfloat16 operands widened exactly, float32 accumulation — but
#: slower than the float32 forms there (an Intel Xeon, Ice Lake, one thread, whole calls:
#: VGG-16 32×32 in float32 at batch 64 2.52 → 1.72 s, in float64 at batch 1 133 → 108 ms
#: and at batch 64 4.38 → 3.17 s without it). Off; tests switch it on to check the bfloat16
#: forms on any CPU where oneDNN runs them.
BF16_EMULATED = False


def bf16_drive_available(layer: PopulationLike, device: torch.device) -> bool:
    """Whether :func:`certify_drive` may sum in bfloat16: enabled (:data:`BF16_DRIVE`), a CPU
    with bfloat16 instructions (AVX512-BF16 or AMX: several times faster than float32
    there; elsewhere only with :data:`BF16_EMULATED`) whose oneDNN runs bfloat16
    convolutions, and only convolution edges (oneDNN's direct convolution multiplies
    bfloat16 pairs exactly and accumulates in float32; CPU bfloat16 matrix products have had
    other accumulation paths, so Linear layers keep float32)."""
    if not BF16_DRIVE or device.type != "cpu" or not _bf16_conv_supported():
        return False
    if not (BF16_EMULATED or _bf16_instructions()):
        return False
    return all(a.kind == "conv" for a in layer.synapses.affines)


@functools.cache
def _bf16_conv_supported() -> bool:
    """Whether oneDNN runs bfloat16 convolutions on this CPU (natively or emulated)."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def _bf16_instructions() -> bool:
    """Whether this CPU has bfloat16 instructions — AVX512-BF16, or AMX tiles (which come
    with AMX-BF16) — as PyTorch reports them; False where it cannot tell (the float32
    forms are then used: always sound). oneDNN's own check (``_is_mkldnn_bf16_supported``)
    also accepts plain AVX-512, where it emulates them (:data:`BF16_EMULATED`)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported()
                    or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def _drive_threshold32(layer: PopulationLike, bias: Tensor | None = None) -> Tensor:
    """float32 map ``T`` with: ``d̂ < T`` ⇒ ``b + d < B`` for the float32-computed excitatory
    drive ``d̂`` of the exact ``d = Σ_j W⁺_ij x_j`` (non-negative terms, so
    ``d ≤ d̂·(1 + 2γ)`` with ``γ = (K + 2)·2⁻²⁴``). ``T = (B − b)/(1 + 2γ)`` rounded down to
    float32. Cached per layer for the unperturbed bias."""

    def make() -> Tensor:
        b = layer.bias if bias is None else bias
        gamma = (layer.synapses.fan_in + 2) * _U32
        if b.dtype == torch.float32:
            gamma *= 2.0  # b and B themselves are then only float32
        return _f32_down((layer.B - b.to(torch.float64)) / (1.0 + 2.0 * gamma))

    return make() if bias is not None else layer.derived("threshold32", make)


def _drive_threshold_bf16(layer: PopulationLike, bias: Tensor | None = None) -> Tensor:
    """float32 map ``T`` with: ``d̂ < T`` ⇒ ``b + d < B`` for the excitatory drive ``d̂``
    computed from bfloat16 inputs and weights, for the exact ``d = Σ_j W⁺_ij x_j`` (all terms
    non-negative, so every rounding is a relative one):

    * weights rounded *up* to bfloat16 (``Ŵ ≥ W⁺``), inputs rounded faithfully
      (``x ≤ x̂/(1 − 2⁻⁷)``, also under double rounding float64 → float32 → bfloat16);
    * bfloat16 products are exact in float32; their float32 sum in any order, plus the
      float32 sum over the ``E`` edges: ``s ≤ ŝ/(1 − γ)``, ``γ = (K + E)·2⁻²³`` (twice the
      unit roundoff: any rounding mode);
    * each edge's output rounded faithfully to bfloat16 (factor ``1/(1 − 2⁻⁷)``);
    * flushed subnormals (hardware bfloat16 units flush them): at most
      ``2⁻¹²⁶·max(1, Ŵ_max, B_in)`` per term, ``2(K + E)`` such terms.

    Hence ``d ≤ d̂ / ((1 − 2⁻⁷)²(1 − γ)) + a`` and ``T = (B − b − a)(1 − 2⁻⁷)²(1 − γ)``
    rounded down to float32. Cached per layer for the unperturbed bias."""

    def make() -> Tensor:
        b = layer.bias if bias is None else bias
        terms = layer.synapses.fan_in + len(layer.synapses.affines)
        gamma = terms * 2.0**-23
        if b.dtype == torch.float32:
            gamma *= 2.0  # b and B themselves are then only float32 (as for float32 sums)
        wmax = max(float(w.max()) if w.numel() else 0.0  # (exact: no float32 copy)
                   for w in layer.positive_weight_bf16())
        absolute = 2.0 * terms * 2.0**-126 * max(1.0, wmax, layer.B_in)
        ub = 2.0**-7
        return _f32_down((layer.B - b.to(torch.float64) - absolute)
                         * ((1.0 - ub) ** 2 * (1.0 - gamma)))

    return make() if bias is not None else layer.derived("threshold_bf16", make)


def _drive_threshold_bits(layer: PopulationLike, bias: Tensor | None = None) -> Tensor:
    """:func:`_drive_threshold_bf16` rounded up to bfloat16 (``T↑``, the smallest bfloat16 ≥
    ``T``: for a bfloat16 ``d̂``, ``d̂ < T`` exactly when ``d̂ < T↑``), as
    :func:`int16_threshold` bit patterns (one int16 comparison is about 1.4× as fast as the
    bfloat16 one on the CPU: 64 × 32 × 28 × 28 channels-last drives, 1.47 → 1.02 ms).
    Cached per layer for the unperturbed bias."""

    def make() -> Tensor:
        return int16_threshold(bf16_up(_drive_threshold_bf16(layer, bias)))

    return make() if bias is not None else layer.derived("threshold_bf16_bits", make)


def int16_threshold(t: Tensor) -> Tensor:
    """The bit patterns of the bfloat16 thresholds ``t`` as int16, every ``t ≤ 0`` (``−0``
    included) replaced by the smallest int16, so that ``bits(d̂) < int16_threshold(t)``
    decides ``d̂ < t`` for a bfloat16 ``d̂``:

    * sign bit of ``d̂`` clear (``+0``, positive values, ``+inf``, NaNs without sign):
      exactly — for ``t > 0`` non-negative floats are ordered as their bit patterns and a
      NaN's lie above every finite ``t``'s; for ``t ≤ 0`` both are false;
    * sign bit set (``−0``, negative values; a sum of non-negative products gives none):
      as the float comparison for ``t > 0``, false otherwise — never true where the float
      comparison is false, except for a NaN with its sign bit set, which needs a NaN
      input: the neuron's ``z`` is NaN then as well, and the step reports it (its
      ``finite`` test)."""
    smallest = torch.full((), torch.iinfo(torch.int16).min, dtype=torch.int16, device=t.device)
    return torch.where(t > 0, t.view(torch.int16), smallest)


#: Let :func:`certify_drive` prove whole channels by the channel-maximum bound first
#: (:mod:`.channels`; tests switch it off to compare).
CHANNEL_BOUND = True
#: ... on populations whose drive costs at least this many multiply-adds per call (samples ×
#: neurons × fan-in): below it, the bound's own dozens of small operations cost more than the
#: channels it saves (VGG-16 32×32 at batch 1, 38M MACs a layer: 6.2 → 7.7 ms a call).
CHANNEL_MIN_MACS = 1 << 26
#: ... or at least this many neurons per call (a small fan-in, where the drive's passes over
#: its outputs cost most: the Fashion-MNIST VGG's first layer at batch 64, 1.6M neurons of
#: fan-in 9, every channel proven: 1.7 → 0.3 ms).
CHANNEL_MIN_NEURONS = 1 << 20
#: ... and convolve only the other channels when they are at most this fraction of the layer
#: (above it, selecting the weights costs more than the channels it saves).
CHANNEL_SELECT_FRACTION = 0.75


def certify_drive(layer: PopulationLike, xs: list[Tensor] | Tensor, bias: Tensor | None = None,
                  *, maps: InputMaps | None = None) -> Tensor:
    """``b + Σ_j W⁺_ij x_j⁺ < B`` (docs/method.md) with the excitatory drive over every edge
    computed in float32 — in bfloat16 with float32 accumulation where that is native and
    faster (:func:`bf16_drive_available`) — and compared with a rigorously rounded
    threshold. ``bias`` replaces ``b`` (perturbed dynamics); ``maps``: the step's
    :class:`InputMaps` of ``xs`` (made here if not given). Boolean map (B, *out_shape).

    The output channels that the channel-maximum bound (:func:`.channels.proven_planes`)
    proves for every sample are not convolved (:data:`CHANNEL_SELECT_FRACTION`); a plane
    (sample, channel) it proves is proven whatever the drive gives."""
    xs = _edges(xs)
    if maps is None:
        maps = InputMaps(xs)
    syn = layer.synapses
    neurons = xs[0].shape[0] * layer.num_neurons
    planes = (proven_planes(layer, xs, bias) if CHANNEL_BOUND and (
        neurons * syn.fan_in >= CHANNEL_MIN_MACS or neurons >= CHANNEL_MIN_NEURONS) else None)
    if planes is None:
        return _drive_ok(layer, maps, bias, None)
    shape = (xs[0].shape[0], *layer.out_shape)
    open_channels = ~planes.all(dim=0)
    n_open = count_true(open_channels)
    if n_open == 0:
        return torch.ones(shape, dtype=torch.bool, device=planes.device)
    sel = None
    if n_open <= CHANNEL_SELECT_FRACTION * shape[1]:
        sel = syn.channel_closure(open_channels).nonzero().reshape(-1)
    ok = _drive_ok(layer, maps, bias, sel).contiguous()
    # the planes proven in the convolved channels: whole planes set, not a pass over the map
    own = (planes if sel is None else planes.index_select(1, sel)).reshape(-1)
    if any_true(own):
        ok.view(own.numel(), -1).index_fill_(0, true_index(own), True)
    if sel is None:
        return ok
    # every channel left out is proven in every sample
    return torch.ones(shape, dtype=torch.bool, device=ok.device).index_copy_(1, sel, ok)


def _drive_ok(layer: PopulationLike, maps: InputMaps, bias: Tensor | None,
              sel: Tensor | None) -> Tensor:
    """The drive certificate's verdict (:func:`certify_drive`) for the output channels
    ``sel`` (increasing, a channel closure; all when None): (B, len(sel), *spatial)."""
    xs = maps.xs
    syn = layer.synapses
    if sel is not None and not syn.groups_one:  # (else every edge reads all its inputs)
        maps = maps.select(functools.partial(syn.select_inputs, sel))
    bf16 = bf16_drive_available(layer, xs[0].device)
    # one bfloat16 edge: the drive is a bfloat16 map d̂, and d̂ < T ⇔ d̂ < T↑ (T rounded up to
    # bfloat16: no bfloat16 lies in [T, T↑)) — one comparison of their bit patterns
    # (int16_threshold), which also reorders a channels-last d̂ into the NCHW result
    bits = bf16 and len(syn.affines) == 1
    if bf16:
        weights = layer.positive_weight_bf16()
        threshold = (_drive_threshold_bits(layer, bias) if bits
                     else _drive_threshold_bf16(layer, bias))
    else:
        weights, threshold = layer.positive_weight32(), _drive_threshold32(layer, bias)
    if sel is not None:
        syn, threshold = syn.select(sel, weights), threshold.index_select(0, sel)
        weights = syn.weights
    if bits:
        drive = syn.linear(maps.bf16(), weights, any_layout=True)
        assert drive.dtype == torch.bfloat16  # (its bits are compared)
        ok = torch.empty(drive.shape, dtype=torch.bool, device=drive.device)
        return torch.lt(drive.view(torch.int16), threshold, out=ok)
    if bf16:
        return _drive_sum_bf16(syn, weights, maps) < threshold
    dt = sum_dtype(xs[0].device)
    drive = syn.linear([x.to(dt) for x in maps.f32()], [w.to(dt) for w in weights])
    return drive < threshold


def _drive_sum_bf16(syn: Synapses, weights: list[Tensor], maps: InputMaps) -> Tensor:
    """The excitatory drive ``Σ_e Σ_j Ŵ⁺_e,ij x̂_j`` of a population with several edges, in
    float32 (NCHW): the convolution edges as bfloat16 sums (float32 accumulation, each
    output rounded to bfloat16), summed in float32; a per-channel scale edge (an identity
    shortcut after folding: one weight per neuron) as ``ŵ⁺·x`` from the float32 copy of its
    input, added in the same float32 sum — no bfloat16 map of that input, no product in
    bfloat16, one pass. Each such term is within a relative ``2⁻²³`` of the exact
    ``W⁺·x`` (the input's and the product's float32 roundings: less than the ``(1 −
    2⁻⁷)²`` of a bfloat16 edge that :func:`_drive_threshold_bf16` allows every edge), so
    the same threshold holds."""
    scale, convs = _scale_edges(syn)
    drive = (_edge_sum_f32(syn, convs, maps.bf16_at(convs), [weights[i] for i in convs])
             if convs else None)
    x32s = maps.f32()
    for i in scale:
        x, w = _scale_term(syn.affines[i], x32s[i], weights[i])
        drive = x * w if drive is None else drive.addcmul_(x, w)
    assert drive is not None
    return drive


def drive_holds(layer: PopulationLike, x: Tensor, w: Tensor, b: Tensor) -> bool:
    """The drive condition of :func:`certify_drive` on gathered rows, in float64: whether
    ``b_i + Σ_j W⁺_ij x_j⁺ < B`` (no crossing before ``t_min`` for inputs in ``[0, B_in]``)
    holds for every row of the gathered inputs ``x`` and weights ``w`` (M, K; padding
    entries hold ``x = 0``) with biases ``b`` (M,). The sum ``d̂`` runs in float64: each
    product is exact for float32 operands and within ``2⁻⁵³`` relative for float64 ones,
    and a sum of ``K`` non-negative terms in any order is within ``γ_K`` — so ``d ≤
    d̂(1 + γ_{K+1}) + K·2⁻¹⁰⁷⁴`` (the last term for products that underflow). ``d̂ < T``
    with ``T = (B − b − K·2⁻¹⁰⁷⁴)/(1 + γ_{K+1})`` computed in float64 and lowered by
    ``(1 − 2⁻⁵⁰)`` (its three roundings) then proves ``b + d < B``. A NaN input fails the
    comparison."""
    f64 = torch.float64
    k = int(x.shape[1])
    d = (w.clamp_min(0).to(f64) * x.clamp_min(0).to(f64)).sum(dim=1)
    absolute = k * 2.0**-1074
    gamma = _gamma(k + 1, _unit(f64))
    t = (layer.B - b.to(f64) - absolute) / (1.0 + gamma) * (1.0 - 2.0**-50)
    return bool((d < t).all())


def certify_model_a(
    layer: PopulationLike, xs: list[Tensor] | Tensor, bias: Tensor | None = None, *,
    late_ok: bool = False,
) -> Tensor:
    """:func:`certify_drive`, and for neurons with inputs arriving after ``t_min``
    (``x_j < 0``, only under perturbations) :func:`certify_late` when ``late_ok`` (otherwise
    such neurons are never certified)."""
    xs = _edges(xs)
    syn = layer.synapses
    ok = certify_drive(layer, xs, bias)
    late = [x < 0 for x in xs]
    if any(any_true(m) for m in late):
        if late_ok:
            ok &= certify_late(layer, xs, late)
        else:
            dt = xs[0].dtype
            nz = [(w != 0).to(dt) for w in syn.weights]
            ok &= syn.linear([m.to(dt) for m in late], nz) == 0
    return ok
