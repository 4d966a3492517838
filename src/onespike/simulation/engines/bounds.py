"""Certificates: which model-A neurons provably fire at ``t_max − ReLU(z)``.

For ``u = t_min(n) − t ∈ [0, B_in]`` and inputs ``x_j = t_min(n) − t_j ∈ [0, B_in]`` (docs/method.md
§3)::

    V_i(t) − theta_i = G_i · f_i(u),
    f_i(u) = b_i + Σ_j W_ij (x_j − u)⁺ − (1 − S_i) u − B
           = (z_i − B) − u + Σ_j W_ij (u − x_j)⁺            [(x − u)⁺ = x − u + (u − x)⁺]

A neuron with ``f_i < 0`` on ``[0, B_in]`` does not fire before its window, so it fires at
``t_max − ReLU(z_i)``. Three proofs of that, from cheap to less cheap:

* :func:`certify_drive` — the drive certificate (docs/method.md §7) ``b + Σ_j W⁺_ij x_j < B`` (one
  float32 convolution/GEMM with the positive weights). On trained networks it certifies
  (nearly) every neuron.
* :func:`certify_grid` — for layers where the first bound misses many neurons (e.g. random
  weights): ``f`` evaluated exactly at a few grid points ``0 = c_0 < c_1 < … < c_G <
  c_{G+1} = B_in`` (one float32 convolution each) plus one convolution that bounds how far
  ``f`` can rise between grid points. On ``[c_k, c_{k+1}]`` every term of ``f`` is linear
  except those whose input ``x_j`` lies inside the interval: excitatory ones (``W > 0``) are
  convex, so below their chord; inhibitory ones are concave and exceed their chord by at most
  the "tent" ``|W⁻_ij| (x_j − c_k)(c_{k+1} − x_j)/(c_{k+1} − c_k)``. Hence::

      max_[0, B_in] f_i  ≤  max_k f_i(c_k) + D_i,    D_i = Σ_j |W⁻_ij| T(x_j),

  with ``T`` the tent of the grid interval containing ``x_j``, ``f_i(c_k) = z_i − B − c_k +
  Σ_j W_ij (c_k − x_j)⁺`` and ``f_i(B_in) = b_i − B − (1 − S_i) B_in``. The sums are
  convolutions over the output channels that hold a needed neuron, or — when the needed
  neurons read few input patches — the same sums over their gathered patches (one matrix
  product per map).
* :func:`certify_late` — inputs arriving after ``t_min`` (perturbations such as jitter).

Neurons that no certificate covers get the exact first-crossing walk
(:mod:`onespike.simulation.engines.crossing`). The float32 sums carry rigorous rounding margins (the
standard bound ``|fl(Σ a_j) − Σ a_j| ≤ γ_K Σ |a_j|``, ``γ_K ≈ K·2⁻²⁴``, valid for any
summation order). They assume IEEE float32 arithmetic: where the backend may round float32
matmuls/convolutions more coarsely (TF32 or bf16, e.g. cuDNN's default TF32 on GPUs), the same
sums run in float64 instead (:func:`sum_dtype`) — sound, since float64 rounds less — and no
process-wide backend flag is ever changed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from onespike.errors import ArgumentError
from onespike.simulation.affine import Affine, bf16_map, keep_packed
from onespike.simulation.masks import any_along, any_true, count_true
from onespike.simulation.ops import positive_part, rsub
from onespike.simulation.rounding import bf16_up
from onespike.simulation.synapses import Synapses, select_rows

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike

__all__ = [
    "BF16_DRIVE",
    "GRID_QUANTILES",
    "InputMaps",
    "bf16_drive_available",
    "certify_drive",
    "certify_grid",
    "certify_late",
    "certify_model_a",
    "float32_is_ieee",
    "grid_points",
    "grid_stages",
    "input_range",
    "sum_dtype",
]

_U32 = 2.0**-24
# Quantiles of the positive inputs used as grid points by certify_grid.
GRID_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.85, 0.95, 0.99)
_GRID_SAMPLE = 1 << 14
# Small batches: the grid's input maps are stacked into one convolution call of up to this
# many samples (one weight packing instead of one per grid point).
_STACK_SAMPLES = 32
#: Let :func:`certify_drive` sum in bfloat16 where :func:`bf16_drive_available` (tests switch
#: it off to compare both paths).
BF16_DRIVE = True


def _edges(xs: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Edge inputs as a list (a single tensor is the input of a one-edge population)."""
    return [xs] if isinstance(xs, Tensor) else list(xs)


def float32_is_ieee(device: torch.device) -> bool:
    """Whether float32 matmuls and convolutions on ``device`` round as IEEE float32 under the
    current backend settings (no TF32/bf16 shortcuts). Reads the flags, never sets them."""
    backends = torch.backends
    new_api = hasattr(getattr(backends.cudnn, "conv", None), "fp32_precision")
    if device.type == "cuda":
        if new_api:
            mm = backends.cuda.matmul.fp32_precision
            conv = backends.cudnn.conv.fp32_precision  # type: ignore[attr-defined]
            mm_ok = mm == "ieee" or (mm == "none" and not backends.cuda.matmul.allow_tf32
                                     and torch.get_float32_matmul_precision() == "highest")
            return mm_ok and conv == "ieee"
        return not backends.cuda.matmul.allow_tf32 and not backends.cudnn.allow_tf32
    if device.type == "cpu":
        if new_api:
            return all(getattr(o, "fp32_precision", "none") in ("none", "ieee")
                       # torch's stubs omit the PropModule's matmul/conv (torch >= 2.9)
                       for o in (backends.mkldnn.matmul,  # type: ignore[attr-defined]
                                 backends.mkldnn.conv))  # type: ignore[attr-defined]
        return True
    return False


def sum_dtype(device: torch.device) -> torch.dtype:
    """dtype of the certificates' fast sums: float32 where it is IEEE, else float64."""
    return torch.float32 if float32_is_ieee(device) else torch.float64


def _f32_down(exact: Tensor) -> Tensor:
    """float64 ``exact`` rounded down to float32 (every entry ≤ ``exact``)."""
    t32 = exact.to(torch.float32)
    return torch.where(t32.to(torch.float64) > exact,
                       torch.nextafter(t32, torch.full_like(t32, float("-inf"))), t32)


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


def bf16_drive_available(layer: PopulationLike, device: torch.device) -> bool:
    """Whether :func:`certify_drive` may sum in bfloat16: enabled (:data:`BF16_DRIVE`), a CPU
    whose oneDNN has native bfloat16 convolutions (AVX512-BF16/AMX: several times faster
    than float32 there), and only convolution edges (oneDNN's direct convolution multiplies
    bfloat16 pairs exactly and accumulates in float32; CPU bfloat16 matrix products have had
    other accumulation paths, so Linear layers keep float32)."""
    if not BF16_DRIVE or device.type != "cpu" or not _bf16_conv_native():
        return False
    return all(a.kind == "conv" for a in layer.synapses.affines)


@functools.cache
def _bf16_conv_native() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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
        wmax = max(float(w.float().max()) if w.numel() else 0.0
                   for w in layer.positive_weight_bf16())
        absolute = 2.0 * terms * 2.0**-126 * max(1.0, wmax, layer.B_in)
        ub = 2.0**-7
        return _f32_down((layer.B - b.to(torch.float64) - absolute)
                         * ((1.0 - ub) ** 2 * (1.0 - gamma)))

    return make() if bias is not None else layer.derived("threshold_bf16", make)


def _drive_threshold_bf16_up(layer: PopulationLike, bias: Tensor | None = None) -> Tensor:
    """:func:`_drive_threshold_bf16` rounded up to bfloat16 (the smallest bfloat16 ≥ ``T``):
    for a bfloat16 ``d̂``, ``d̂ < T`` exactly when ``d̂ < T↑``. Cached per layer for the
    unperturbed bias."""

    def make() -> Tensor:
        return bf16_up(_drive_threshold_bf16(layer, bias))

    return make() if bias is not None else layer.derived("threshold_bf16_up", make)


class InputMaps:
    """One population step's edge inputs ``xs`` with their low-precision copies, each made at
    most once and shared by the certificates that read them (the drive bound, then the grid
    stages): ``x⁺`` rounded to float32 and, from it, to bfloat16 (channels-last for 2-d maps,
    the layout of the bfloat16 convolutions). The copies are only read, and so are the
    inputs, which the late-input check and the exact walk read afterwards: a float32 input
    without negative entries serves as its own float32 copy."""

    def __init__(self, xs: Sequence[Tensor]) -> None:
        self.xs = list(xs)
        self._f32: list[Tensor] | None = None
        self._bf16: dict[int, Tensor] = {}  # per edge, as made (bf16_at)

    def f32(self) -> list[Tensor]:
        """``max(x, 0)`` rounded to float32, per edge."""
        if self._f32 is None:
            self._f32 = [_positive32(x) for x in self.xs]
        return self._f32

    def bf16(self) -> list[Tensor]:
        """:meth:`f32` rounded to bfloat16 (float64 → float32 → bfloat16: a faithful
        rounding, and faster than the direct cast), 2-d maps channels-last."""
        return self.bf16_at(range(len(self.xs)))

    def bf16_at(self, edges: Sequence[int]) -> list[Tensor]:
        """:meth:`bf16` of the edges ``edges`` only (the others' copies are not made)."""
        for i in edges:
            if i not in self._bf16:
                self._bf16[i] = bf16_map(self.f32()[i])
        return [self._bf16[i] for i in edges]

    def select(self, pick: Callable[[list[Tensor]], list[Tensor]]) -> InputMaps:
        """The maps as selected synapses read them (``pick``: e.g. the input channels of a
        :meth:`~onespike.simulation.synapses.Synapses.select`-ed grouped edge), copies
        already made included."""
        out = type(self)(pick(self.xs))
        out._f32 = None if self._f32 is None else pick(self._f32)
        if len(self._bf16) == len(self.xs):  # (pick takes every edge)
            out._bf16 = dict(enumerate(pick(self.bf16())))
        return out


def _positive32(x: Tensor) -> Tensor:
    """``max(x, 0)`` rounded to float32 (the same values either way round: rounding is
    monotone and keeps 0): a converted copy is clamped in place (one fresh map, not two); a
    float32 ``x`` — which ``x.to`` returns itself — goes through :func:`positive_part`
    (itself when no entry is negative; the input is never written)."""
    x32 = x.to(torch.float32)
    return x32.clamp_min_(0.0) if x32 is not x else positive_part(x)


def certify_drive(layer: PopulationLike, xs: list[Tensor] | Tensor, bias: Tensor | None = None,
                  *, maps: InputMaps | None = None) -> Tensor:
    """``b + Σ_j W⁺_ij x_j⁺ < B`` (docs/method.md) with the excitatory drive over every edge
    computed in float32 — in bfloat16 with float32 accumulation where that is native and
    faster (:func:`bf16_drive_available`) — and compared with a rigorously rounded
    threshold. ``bias`` replaces ``b`` (perturbed dynamics); ``maps``: the step's
    :class:`InputMaps` of ``xs`` (made here if not given). Boolean map (B, *out_shape)."""
    xs = _edges(xs)
    if maps is None:
        maps = InputMaps(xs)
    if bf16_drive_available(layer, xs[0].device):
        syn = layer.synapses
        if len(syn.affines) == 1:
            # one edge: the drive is a bfloat16 map d̂, and d̂ < T ⇔ d̂ < T↑ (T rounded up to
            # bfloat16: no bfloat16 lies in [T, T↑)) — one bfloat16 comparison, which also
            # reorders a channels-last d̂ into the NCHW result
            drive = syn.linear(maps.bf16(), layer.positive_weight_bf16(), any_layout=True)
            ok = torch.empty(drive.shape, dtype=torch.bool, device=drive.device)
            return torch.lt(drive, _drive_threshold_bf16_up(layer, bias), out=ok)
        return _drive_sum_bf16(layer, maps) < _drive_threshold_bf16(layer, bias)
    dt = sum_dtype(xs[0].device)
    drive = layer.synapses.linear([x.to(dt) for x in maps.f32()],
                                  [w.to(dt) for w in layer.positive_weight32()])
    return drive < _drive_threshold32(layer, bias)


def _drive_sum_bf16(layer: PopulationLike, maps: InputMaps) -> Tensor:
    """The excitatory drive ``Σ_e Σ_j Ŵ⁺_e,ij x̂_j`` of a population with several edges, in
    float32 (NCHW): the convolution edges as bfloat16 sums (float32 accumulation, each
    output rounded to bfloat16), summed in float32; a per-channel scale edge (an identity
    shortcut after folding: one weight per neuron) as ``ŵ⁺·x`` from the float32 copy of its
    input, added in the same float32 sum — no bfloat16 map of that input, no product in
    bfloat16, one pass. Each such term is within a relative ``2⁻²³`` of the exact
    ``W⁺·x`` (the input's and the product's float32 roundings: less than the ``(1 −
    2⁻⁷)²`` of a bfloat16 edge that :func:`_drive_threshold_bf16` allows every edge), so
    the same threshold holds."""
    syn = layer.synapses
    weights = layer.positive_weight_bf16()
    scale, convs = _scale_edges(syn)
    drive = (_edge_sum_f32(syn, convs, maps.bf16_at(convs), [weights[i] for i in convs])
             if convs else None)
    x32s = maps.f32()
    for i in scale:
        x, w = _scale_term(syn.affines[i], x32s[i], weights[i])
        drive = x * w if drive is None else drive.addcmul_(x, w)
    assert drive is not None
    return drive


def _scale_edges(syn: Synapses) -> tuple[list[int], list[int]]:
    """The edges of a population with several edges split into per-channel scale edges
    (:attr:`Affine.is_channel_scale`: identity shortcuts after folding) and the others; one
    edge alone is never split."""
    if len(syn.affines) == 1:
        return [], [0]
    scale = [i for i, a in enumerate(syn.affines) if a.is_channel_scale]
    return scale, [i for i in range(len(syn.affines)) if i not in scale]


def _edge_sum_f32(syn: Synapses, edges: Sequence[int], xbs: Sequence[Tensor],
                  weights: Sequence[Tensor]) -> Tensor:
    """``Σ_e W_e x_e`` over ``edges`` from bfloat16 maps and weights, each edge's (bfloat16)
    output summed in float32, as an NCHW float32 map (one edge: promoted and reordered in
    one pass)."""
    if len(edges) == 1:
        y = syn.affines[edges[0]].linear(xbs[0], weights[0], any_layout=True)
        return y.to(torch.float32, memory_format=torch.contiguous_format)
    sub = Synapses([syn.affines[i] for i in edges])
    return sub.linear(xbs, weights, out_dtype=torch.float32).contiguous()


def _scale_term(a: Affine, x32: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """A per-channel scale edge's input (subsampled by its stride) and its weights as a float32
    per-channel view: its term of a sum is their product."""
    return a.channel_scale_operands(x32, w.to(torch.float32))


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


def input_range(xs: Sequence[Tensor]) -> tuple[float, float]:
    """Smallest and largest entry over the edge inputs ``xs`` (0, 0 when all are empty): one
    pass per edge."""
    ranges = [torch.aminmax(x) for x in xs if x.numel()]
    return (min((float(r.min) for r in ranges), default=0.0),
            max((float(r.max) for r in ranges), default=0.0))


def grid_points(x: Tensor | Sequence[Tensor], B_in: float,
                quantiles: Sequence[float] = GRID_QUANTILES) -> list[float]:
    """Interior grid points for :func:`certify_grid`: ``quantiles`` of the positive inputs
    ``x`` (a fixed subsample of at most 16,384 entries), rounded to float32, then the largest
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


def _bf16(v: float) -> float:
    """``v`` rounded to the nearest bfloat16 (ties to even), as a tensor cast rounds."""
    return float(torch.tensor(v, dtype=torch.float32).to(torch.bfloat16))


def _f32(v: float, *, up: bool = False) -> float:
    """``v`` rounded to the nearest float32 (``up``: to the nearest float32 ≥ v)."""
    with np.errstate(over="ignore"):  # beyond float32's range: ±inf, as a cast would
        r = float(np.float32(v))
    if up and r < v:
        r = float(np.nextafter(np.float32(r), np.float32(np.inf)))
    return r


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
    bound (module docstring), for inputs ``0 ≤ x ≤ B_in`` and ``z = W x + b``.

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
    syn = layer.synapses
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
    a = _abs_row_sum(layer)
    c_out = layer.out_shape[0]
    # rounding: γ bound of a float32 fan-in sum (e32), float32 unit roundoff (u) for the
    # maps and shifts, and the γ bound of z in the network's own dtype (ed)
    e32 = _gamma(syn.fan_in + 8, _U32)
    if e32 >= 0.25:  # fan-in too large for a float32 bound
        return torch.zeros(z.shape, dtype=torch.bool, device=z.device)
    sel: Tensor | None = None
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
        if n_patch * PATCH_COST < z.shape[0] * (layer.num_neurons // c_out):
            # few neurons: their input patches, not the whole layer
            index = need.reshape(-1).nonzero().reshape(-1)
            full = torch.zeros(z.shape, dtype=torch.bool, device=z.device)
            full.view(-1)[index] = _grid_at_patches(
                layer, syn, xs, z, index, b, lk, sigma, a, pts, x_max, u_end, e32)
            return full
        if n_sel < c_out:
            sel = channels.nonzero().reshape(-1)
            a = a[sel]
            b, lk, sigma, z = b[sel], lk[sel], sigma[sel], z[:, sel]
            # grouped edges read only their input channels (the copies made so far too)
            maps = maps.select(functools.partial(syn.select_inputs, sel))
            xs = maps.xs
            # these channels of the cached bfloat16 weights (no float64 copy), or of the
            # float64 ones (made float32 per call: a cached float32 copy of every weight
            # would cost half the network's memory again)
            syn = syn.select(sel, _grid_weights_bf16(layer)["signed"] if use_bf16 else None)
    s64, lk64, b64 = sigma.to(torch.float64), lk.to(torch.float64), b.to(torch.float64)
    knots = sorted({0.0, *pts, u_end})
    if use_bf16:
        low, high, d, wx = _grid_sums_bf16(layer, syn, maps, sel, pts, knots, x_max, u_end,
                                           lk64, need_wx=_wx_pays(layer, z, pts, u_end))
    else:
        low, high, d, wx = _grid_sums32(syn, maps, pts, knots, x_max, s64, lk64, a, e32,
                                        need_wx=z.dtype != torch.float64)
    ok = _grid_verdict(layer, z, low, high, d, wx, s64, lk64, b64, a, x_max, u_end, e32)
    if sel is None:
        return ok
    full = torch.zeros((z.shape[0], *layer.out_shape), dtype=torch.bool, device=z.device)
    full[:, sel] = ok
    return full


#: The bfloat16 stage bounds the rounding of a float32 ``z`` by the crude ``Σ_j |W_ij| x_j ≤
#: A_i·u_end`` (no convolution) when that term, ``ed·u_end``, is at most this fraction of the
#: stage's own margin at its smallest grid point (about ``2⁻⁶·c_1`` per unit of ``A_i``).
WX_CRUDE_FRACTION = 1.0


def _wx_pays(layer: PopulationLike, z: Tensor, pts: Sequence[float], u_end: float) -> bool:
    """Whether the bfloat16 grid stage computes ``Σ_j |W_ij| x_j`` for the rounding of ``z``
    (networks below float64), rather than the crude ``A_i·u_end`` (:data:`WX_CRUDE_FRACTION`:
    the crude term is small beside that stage's margin on layers of small fan-in, e.g. the
    first layers of VGG-16, where the sum costs one more convolution for nothing)."""
    if z.dtype == torch.float64:
        return False
    ed = _gamma(layer.synapses.fan_in + 8, torch.finfo(z.dtype).eps / 2)
    c_min = min(pts, default=u_end)
    return ed * u_end > WX_CRUDE_FRACTION * 2.0**-6 * c_min


def _grid_sums32(syn: Synapses, inputs: InputMaps, pts: Sequence[float], knots: Sequence[float],
                 x_max: float, s64: Tensor, lk64: Tensor, a: Tensor, e32: float, *,
                 need_wx: bool) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor | None]:
    """The conv form's float32 sums: ``low``/``high`` (the maxima over the grid points of
    ``f(c) − (z − B)`` and ``f(c) − (b − B)``, rounding of the sums included), the tents'
    ``D̂`` and, for networks below float64, ``Σ_j |W_ij| x_j``."""
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
            low, high = _keep_max(low, high, small, part.sub_(shift))
    d = _tent_sum(syn, x32s, [w.neg().clamp_min_(0.0) for w in w32],
                  lambda x32: _tents(x32, knots, x_max))
    wx = syn.linear(x32s, [w.abs() for w in w32]) if need_wx else None
    return low, high, d, wx


def _tent_sum(syn: Synapses, x32s: Sequence[Tensor], w_neg: Sequence[Tensor],
              tents: Callable[[Tensor], Tensor], **linear: Any) -> Tensor:
    """``D̂ = Σ_e Σ_j |W⁻_e,ij| T(x_j)`` (``syn.linear`` with ``linear``'s options) over the
    edges that have an inhibitory weight: an edge without any (e.g. an identity shortcut
    with positive scales) adds exact zeros, so neither its tents map nor its sum is
    computed. Fewer terms only lower the sum's rounding bound."""
    live = [i for i, w in enumerate(w_neg) if len(w_neg) == 1 or _has_nonzero(w)]
    if len(live) == len(w_neg):
        return syn.linear([tents(x) for x in x32s], list(w_neg), **linear)
    if not live:
        dtype = linear.get("out_dtype") or x32s[0].dtype
        return torch.zeros((x32s[0].shape[0], *syn.out_shape), dtype=dtype,
                           device=x32s[0].device)
    sub = Synapses([syn.affines[i] for i in live])
    return sub.linear([tents(x32s[i]) for i in live], [w_neg[i] for i in live], **linear)


def _has_nonzero(w: Tensor) -> bool:
    """Whether ``w`` has a non-zero entry (kept on a long-lived weight, e.g. the cached
    bfloat16 copies, for as long as its storage and version stay the same)."""
    key = (w.data_ptr(), w._version, tuple(w.shape), w.dtype)
    hit = getattr(w, "_onespike_nonzero", None)
    if hit is not None and hit[0] == key:
        return bool(hit[1])
    found = bool(w.ne(0).any())
    w._onespike_nonzero = (key, found)  # type: ignore[attr-defined]
    return found


def _keep_max(low: Tensor | None, high: Tensor | None, small: bool, cand: Tensor
              ) -> tuple[Tensor | None, Tensor | None]:
    """Running maxima of the small-form (``low``) and large-form (``high``) candidates."""
    if small:
        return (cand if low is None else torch.maximum(low, cand, out=low)), high
    return low, (cand if high is None else torch.maximum(high, cand, out=high))


#: Relative error of a faithful rounding to bfloat16 (8 significant bits: below 2⁻⁷).
_UB = 2.0**-7


def _grid_weights_bf16(layer: PopulationLike) -> dict[str, Any]:
    """The bfloat16 grid bound's weights per edge — ``W`` rounded to nearest (``Ŵ``),
    ``|W⁻|`` and ``|W|`` rounded up — and per output channel (float64, summed over the
    edges) ``Σ_j |W_ij − Ŵ_ij|`` and ``Σ_j |Ŵ_ij|``; cached per layer."""

    def make() -> dict[str, Any]:
        f64 = torch.float64
        signed, neg, mag = [], [], []
        lo: Tensor | None = None
        hat: Tensor | None = None
        wmax = 0.0
        for a in layer.synapses.affines:
            w = a.weight
            wb = w.to(torch.bfloat16)
            signed.append(keep_packed(wb))
            neg.append(keep_packed(bf16_up(w.neg().clamp_min(0))))
            mag.append(keep_packed(bf16_up(w.abs())))
            rows = w.shape[0]
            r = (w.to(f64) - wb.to(f64)).abs_().reshape(rows, -1).sum(dim=1)
            h = wb.to(f64).abs_().reshape(rows, -1).sum(dim=1)
            lo, hat = (r, h) if lo is None or hat is None else (lo + r, hat + h)
            if w.numel():
                wmax = max(wmax, float(mag[-1].float().max()))
        return {"signed": signed, "neg": neg, "abs": mag, "lo": lo, "hat": hat, "wmax": wmax}

    return layer.derived("grid_bf16", make)


def _grid_sums_bf16(layer: PopulationLike, syn: Synapses, inputs: InputMaps,
                    sel: Tensor | None, pts: Sequence[float], knots: Sequence[float],
                    x_max: float, u_end: float, lk64: Tensor, *, need_wx: bool
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
    point has the min form) and float64 (``D``, ``Σ|W|x``: already divided)."""
    cached = _grid_weights_bf16(layer)
    pick = (lambda ws: ws) if sel is None else (lambda ws: [select_rows(w, sel) for w in ws])
    # the selected synapses already hold the selected signed weights (certify_grid)
    w_signed = cached["signed"] if sel is None else syn.weights
    w_neg, w_abs = pick(cached["neg"]), pick(cached["abs"])
    view = (-1,) + (1,) * (len(layer.out_shape) - 1)
    lo, hat = cached["lo"], cached["hat"]
    if sel is not None:
        lo, hat = lo[sel], hat[sel]
    terms = syn.fan_in + len(syn.affines)
    gamma = terms * 2.0**-23
    r = _UB / (1.0 - _UB)
    one_edge = len(syn.affines) == 1
    # error of a sum per unit of c; several edges: each edge's output rounding too
    coef = lo + hat * (_UB + gamma * (1.0 + _UB))
    if not one_edge:
        coef = coef + hat * (r * (1.0 + _UB) * (1.0 + gamma))
    coef = coef.reshape(view)
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
    d64 = _nchw64(d).mul_(scale).add_(absolute)
    wx = None
    if need_wx:
        wx = _nchw64(syn.linear(inputs.bf16(), w_abs, out_dtype=torch.float32, any_layout=True)
                     ).mul_(scale).add_(absolute)
    return low, None, d64, wx


def _nchw64(t: Tensor) -> Tensor:
    """``t`` in float64, NCHW-contiguous (a channels-last map reordered in the same pass)."""
    return t.to(torch.float64, memory_format=torch.contiguous_format)


# Cost of the grid bound on one gathered input patch, in units of one output position of the
# convolution form (which computes every position of the selected channels; measured on
# ResNet-18, 4 channels: about 7): the patch form runs when (patches the needed neurons
# read) × PATCH_COST < (output positions).
PATCH_COST = 8


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


#: Elements of the input map per block of :func:`_tents` and per thread (its scratch maps
#: then stay in the CPU's cache: about 3× faster than whole-map passes on a 2-million-entry
#: map; a 4-million-entry map at two threads: 7.8 ms in blocks of 2 × 65,536, 10.2 ms in
#: blocks of 65,536, whose halves are too short for the threads' passes).
TENT_BLOCK = 1 << 16


def _tents(x32: Tensor, knots: Sequence[float], top: float,
           dtype: torch.dtype | None = None) -> Tensor:
    """``T(x)``: the tent of the grid interval holding ``x`` (the tents have disjoint
    supports and are negative outside them: T = max(0, tents)). Intervals that hold no
    input (above ``top ≥ max x``) are skipped: every tent is 0 at its knots. ``dtype``: of
    the result (the float32 tents rounded to it, as ``.to(dtype)`` rounds; default
    ``x32``'s). The map is processed in blocks of :data:`TENT_BLOCK` entries per thread with two
    scratch blocks (CPU): the very same float operations per entry as whole-map passes, so
    the same values, with far less memory traffic."""
    x = x32.contiguous().reshape(-1)
    out = torch.empty(x32.shape, dtype=x32.dtype if dtype is None else dtype,
                      device=x32.device)
    flat = out.view(-1)
    n = x.numel()
    if n == 0:
        return out
    # blocks on the CPU (TENT_BLOCK per thread); one block elsewhere (a GPU gains nothing from
    # it but kernel launches)
    size = min(TENT_BLOCK * max(1, torch.get_num_threads()), n) if x.device.type == "cpu" else n
    direct = out.dtype == x32.dtype  # the tents accumulate in the result itself
    part_buf = torch.empty(size, dtype=x32.dtype, device=x32.device)
    other_buf = torch.empty_like(part_buf)
    tent_buf = None if direct else torch.empty_like(part_buf)
    intervals = [(lo, hi) for lo, hi in pairwise(knots) if lo < top]
    for s in range(0, n, size):
        xb = x[s : s + size]
        m = xb.numel()
        part, other = part_buf[:m], other_buf[:m]
        tent = flat[s : s + m] if tent_buf is None else tent_buf[:m]
        tent.zero_()
        for lo, hi in intervals:
            # (x − lo)(hi − x)/(hi − lo), written without scalar − tensor (slow on CPU); the
            # negations are exact, so the values are the same
            torch.sub(xb, lo, out=part)
            torch.sub(xb, hi, out=other)
            part.mul_(other).mul_(-1.0 / (hi - lo))
            torch.maximum(tent, part, out=tent)
        if tent_buf is not None:
            flat[s : s + m].copy_(tent)
    return out


def _grid_verdict(layer: PopulationLike, z: Tensor, low: Tensor | None, high: Tensor | None,
                  d: Tensor, wx: Tensor | None, s64: Tensor, lk64: Tensor, b64: Tensor,
                  a: Tensor, x_max: float, u_end: float, e32: float) -> Tensor:
    """The grid bound's decision from its float32 sums (conv form: maps of the selected
    channels; patch form: vectors of neurons with their parameters gathered alike)."""
    B = layer.B
    u = 8.0 * _U32
    ed = _gamma(layer.synapses.fan_in + 8, torch.finfo(z.dtype).eps / 2)
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


# Input values gathered per chunk of the patch form of the grid bound (patches × fan-in).
PATCH_ELEMENTS = 1 << 20


def _gamma(n: int, unit: float) -> float:
    """``γ_n = n·u/(1 − n·u)``: relative error bound of an n-term floating-point sum."""
    nu = n * unit
    return nu / (1.0 - nu) if nu < 1.0 else float("inf")


def _fan_in_min(layer: PopulationLike, xs: list[Tensor]) -> Tensor:
    """``min_j x_j`` over each neuron's receptive field on every edge (zero padding
    excluded), shape (B, *out_shape)."""
    out: Tensor | None = None
    for i, x in enumerate(xs):
        m = _edge_fan_in_min(layer.edge_affine(i), x)
        out = m if out is None else torch.minimum(out, m)
    assert out is not None
    return out


def _edge_fan_in_min(aff: Affine, x: Tensor) -> Tensor:
    if aff.kind == "linear":
        m = x.reshape(x.shape[0], -1).amin(dim=1)
        return m.reshape((-1,) + (1,) * len(aff.out_shape)).expand(x.shape[0],
                                                                   *aff.out_shape)
    g = aff.groups
    bsz, c = x.shape[0], x.shape[1]
    per_group = x.reshape(bsz, g, c // g, *x.shape[2:]).amin(dim=2)  # (B, G, *spatial)
    pad: list[int] = []
    for i in reversed(range(aff.dims)):
        pad += [aff.pad[2 * i], aff.pad[2 * i + 1]]
    neg = torch.nn.functional.pad(-per_group, pad, value=float("-inf"))
    pool = (torch.nn.functional.max_pool1d if aff.dims == 1
            else torch.nn.functional.max_pool2d)
    kernel = tuple(aff.weight.shape[2:])
    mins = -pool(neg, kernel, aff.stride, 0, aff.dilation)  # (B, G, *out_spatial)
    c_out = aff.out_shape[0]
    return mins.repeat_interleave(c_out // g, dim=1)


def certify_late(layer: PopulationLike, xs: list[Tensor] | Tensor,
                 late: list[Tensor] | Tensor) -> Tensor:
    """Neurons whose inputs partly arrive after ``t_min`` and that provably spike at
    ``t_max − ReLU(z)`` with ``z = b + Σ_j W_ij x_j`` (late inputs have ``x_j < 0``).

    With ``A`` the inputs arrived by ``t_min`` and ``L`` the late ones, for ``u ≤ 0``
    (docs/method.md)::

        f(u) = (z_A − B) − (1 − S_L)·u + Σ_{j∈L} W_ij (x_j − u)⁺
             ≤ g(u) = (z_A − B) − (1 − S_L)·u + Σ_{j∈L} W⁺_ij (x_j − u)⁺,

    ``g`` is convex, so ``g < 0`` on ``[x_min, 0]`` iff it is negative at both ends; below
    ``x_min`` every input has arrived and ``f(u) = z − B − u``. Together with the bound for
    ``u ≥ 0`` this proves the spike is at ``u = z − B`` (or forced at ``t_max``).

    The sums run in float64 whatever the network's dtype (products of float32 values are
    exact there) and every rounding is covered: with ``A_i = Σ_j |W_ij||x_j|`` and
    ``L_i = Σ_{j∈L} |W_ij|``, each end value is off by at most
    ``γ_{K+8} (|b_i| + B + 2A_i + 2|x_min|(1 + L_i))`` (``γ`` of float64), which is added
    as a margin.
    """
    xs, late = _edges(xs), _edges(late)
    syn = layer.synapses
    f64 = torch.float64
    xs64 = [x.to(f64) for x in xs]
    lm = [m.to(f64) for m in late]
    w64 = [w.to(f64) for w in syn.weights]
    w_pos = [w.clamp_min(0) for w in w64]
    w_abs = [w.abs() for w in w64]
    b = layer.bias.to(f64)
    z_a = syn.linear([x.clamp_min(0) for x in xs64], w64).add_(b)  # b + Σ_A W x
    s_late = syn.linear(lm, w64)  # S_L
    x_late = [x * m for x, m in zip(xs64, lm)]
    x_min = _fan_in_min(layer, xs64)
    excit = syn.linear(x_late, w_pos) - x_min * syn.linear(lm, w_pos)  # Σ_L W⁺ (x_j − x_min)
    B = layer.B
    end0 = z_a - B
    end1 = end0 - x_min * (1.0 - s_late) + excit
    a_sum = syn.linear([x.abs() for x in xs64], w_abs)
    l_sum = syn.linear(lm, w_abs)
    gamma = _gamma(syn.fan_in + 8, torch.finfo(f64).eps / 2)
    margin = late_margin_scale() * gamma * (b.abs() + B + 2.0 * a_sum
                                            + 2.0 * x_min.abs() * (1.0 + l_sum))
    return (end0 < -margin) & (end1 < -margin)


def late_margin_scale() -> float:
    """Factor on :func:`certify_late`'s rounding margin (1; the tests set it to 0 to show
    that the margin is needed)."""
    return 1.0
