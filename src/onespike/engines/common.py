"""Shared pieces of the engines: the per-layer step result and the model-A certificate pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..layers import SpikingLayer
from .crossing import first_crossing_sorted

__all__ = ["LayerStep", "certify_model_a", "exact_values"]

_U32 = 2.0**-24
# Elements gathered per chunk of the exact path (M × fan-in); bounds its memory.
GATHER_ELEMENTS = 1 << 21


@dataclass
class LayerStep:
    """What an engine returns for one hidden layer of a batch.

    ``values``: ``t_max − t`` per neuron (−inf = no spike); ``early`` / ``saturated`` /
    ``checked``: per-sample counts of neurons that fire before their window, whose activation
    exceeds the window, and that needed the exact first-crossing computation.
    """

    values: Tensor
    early: Tensor
    saturated: Tensor
    checked: Tensor


def _per_sample(mask: Tensor) -> Tensor:
    """Per-sample count of True entries (fast when there are none)."""
    if not bool(mask.any()):
        return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
    return mask.reshape(mask.shape[0], -1).sum(dim=1)


def drive_threshold32(layer: SpikingLayer, bias: Tensor | None = None) -> Tensor:
    """float32 map ``T`` with: ``d̂ < T`` ⇒ ``b + d < B`` for the float32-computed excitatory
    drive ``d̂`` of the exact ``d = Σ_j W⁺_ij x_j`` (non-negative terms, so
    ``d ≤ d̂·(1 + 2γ)`` with ``γ = (K + 2)·2⁻²⁴``). ``T = (B − b)/(1 + 2γ)`` rounded down to
    float32. Cached per layer for the unperturbed bias."""
    layer.positive_weight32()  # validates the layer's caches
    if bias is None and layer._threshold32 is not None:
        return layer._threshold32
    b = layer.bias if bias is None else bias
    gamma = (layer.affine.fan_in + 2) * _U32
    if b.dtype == torch.float32:
        gamma *= 2.0  # b and B themselves are then only float32
    exact = ((layer.B - b.to(torch.float64)) / (1.0 + 2.0 * gamma))
    t32 = exact.to(torch.float32)
    t32 = torch.where(t32.to(torch.float64) > exact,
                      torch.nextafter(t32, torch.full_like(t32, float("-inf"))), t32)
    if bias is None:
        layer._threshold32 = t32
    return t32


def certify_model_a(
    layer: SpikingLayer, x: Tensor, bias: Tensor | None = None, *, late_ok: bool = False
) -> Tensor:
    """Boolean map (B, *out_shape): neurons proven to spike at ``t_max − ReLU(z)``.

    Certificate (design note §2): ``b_i + Σ_j W⁺_ij x_j < B`` ⇒ ``f_i(u) < 0`` for all
    ``u ∈ [0, B_in]`` (no early spike). The excitatory sum is computed in float32 with a
    rigorous rounding margin ``(K + 2)·2⁻²⁴·Σ``. ``bias`` replaces ``b`` (perturbed
    dynamics).

    Inputs arriving after ``t_min`` (``x_j < 0``, only under perturbations such as jitter) are
    covered by :func:`certify_late` when ``late_ok``; otherwise such neurons are never
    certified.
    """
    aff = layer.affine
    ok = _certify_drive(layer, x, bias)
    late = x < 0
    if bool(late.any()):
        if late_ok:
            ok &= certify_late(layer, x, late)
        else:
            nz = (layer.weight != 0).to(x.dtype)
            ok &= aff.linear(late.to(x.dtype), nz) == 0
    return ok


def _certify_drive(layer: SpikingLayer, x: Tensor, bias: Tensor | None = None) -> Tensor:
    """``b + Σ_j W⁺_ij x_j⁺ < B`` with the float32 drive (see :func:`drive_threshold32`)."""
    x32 = x.to(torch.float32).clamp_min_(0.0)
    return layer.affine.linear(x32, layer.positive_weight32()) < drive_threshold32(layer, bias)


def _fan_in_min(layer: SpikingLayer, x: Tensor) -> Tensor:
    """``min_j x_j`` over each neuron's receptive field (zero padding excluded), shape
    (B, *out_shape)."""
    if layer.kind == "linear":
        m = x.reshape(x.shape[0], -1).amin(dim=1)
        return m.reshape((-1,) + (1,) * len(layer.out_shape)).expand(x.shape[0],
                                                                     *layer.out_shape)
    g = layer.groups
    bsz, c = x.shape[0], x.shape[1]
    per_group = x.reshape(bsz, g, c // g, *x.shape[2:]).amin(dim=2)  # (B, G, *spatial)
    pad: list[int] = []
    for i in reversed(range(layer.dims)):
        pad += [layer.pad[2 * i], layer.pad[2 * i + 1]]
    neg = torch.nn.functional.pad(-per_group, pad, value=float("-inf"))
    pool = (torch.nn.functional.max_pool1d if layer.dims == 1
            else torch.nn.functional.max_pool2d)
    kernel = tuple(layer.weight.shape[2:])
    mins = -pool(neg, kernel, layer.stride, 0, layer.dilation)  # (B, G, *out_spatial)
    c_out = layer.out_shape[0]
    return mins.repeat_interleave(c_out // g, dim=1)


def certify_late(layer: SpikingLayer, x: Tensor, late: Tensor) -> Tensor:
    """Neurons whose inputs partly arrive after ``t_min`` and that provably spike at
    ``t_max − ReLU(z)`` with ``z = b + Σ_j W_ij x_j`` (late inputs have ``x_j < 0``).

    With ``A`` the inputs arrived by ``t_min`` and ``L`` the late ones, for ``u ≤ 0``
    (design note §2)::

        f(u) = (z_A − B) − (1 − S_L)·u + Σ_{j∈L} W_ij (x_j − u)⁺
             ≤ g(u) = (z_A − B) − (1 − S_L)·u + Σ_{j∈L} W⁺_ij (x_j − u)⁺,

    ``g`` is convex, so ``g < 0`` on ``[x_min, 0]`` iff it is negative at both ends; below
    ``x_min`` every input has arrived and ``f(u) = z − B − u``. Together with the bound for
    ``u ≥ 0`` this proves the spike is at ``u = z − B`` (or forced at ``t_max``). All sums in
    float64, with a small safety margin.
    """
    aff = layer.affine
    dt = x.dtype
    lm = late.to(dt)
    w_pos = layer.weight.clamp_min(0)
    z_a = aff(x.clamp_min(0))  # b + Σ_A W x
    s_late = aff.linear(lm, layer.weight)  # S_L
    x_late = x * lm
    x_min = _fan_in_min(layer, x)
    excit = aff.linear(x_late, w_pos) - x_min * aff.linear(lm, w_pos)  # Σ_L W⁺ (x_j − x_min)
    tol = 1e-9 * max(1.0, layer.B)
    end0 = z_a - layer.B
    end1 = end0 - x_min * (1.0 - s_late) + excit
    return (end0 < -tol) & (end1 < -tol)


def exact_values(
    layer: SpikingLayer,
    x: Tensor,
    index: Tensor,
    gain: Tensor | None = None,
    *,
    early_only: bool = False,
) -> Tensor:
    """Exact ``t_max − t`` of the neurons at flat ``index`` (into (B, *out_shape)) by walking
    their piecewise-linear trajectory (:func:`first_crossing_sorted`), in memory-bounded
    chunks. Neurons that read the same input patch (same sample, position and group) share
    one sort of the patch by arrival time; only their weights are permuted.
    ``gain`` (out_shape): per-neuron factor on ``alpha`` (perturbed dynamics).

    ``early_only`` (valid when no input arrives after ``t_min``): only crossings before the
    window are computed — on the inputs that have arrived by then (``x > 0``) — and NaN is
    returned for the others, whose crossing is then the closed form."""
    aff = layer.affine
    out = torch.empty(index.numel(), dtype=x.dtype, device=x.device)
    if index.numel() == 0:
        return out
    key, row = aff.patch_keys(index)
    key_sorted, perm = torch.sort(key)
    fan_in = aff.fan_in
    step = max(1, GATHER_ELEMENTS // max(1, fan_in))
    w_rows = layer.weight.reshape(layer.weight.shape[0], -1)
    bias_flat = layer.bias.reshape(-1)
    s_flat = layer.S.reshape(-1)
    n_out = layer.num_neurons
    for s in range(0, index.numel(), step):
        sel = perm[s : s + step]
        keys, inverse = torch.unique_consecutive(key_sorted[s : s + step], return_inverse=True)
        xs, valid = aff.patches(x, keys)
        order = torch.argsort(xs, dim=1, descending=True)
        x_sorted = torch.gather(xs, 1, order)
        if early_only:  # inputs with x ≤ 0 act only from t_min on: leave them out
            keep = max(1, int((x_sorted > 0).sum(dim=1).max()))
            x_sorted, order = x_sorted[:, :keep], order[:, :keep]
        mask = torch.gather(valid, 1, order)[inverse]
        ws = torch.gather(w_rows[row[sel]], 1, order[inverse])
        ws = torch.where(mask, ws, torch.zeros((), dtype=ws.dtype, device=ws.device))
        pos = index[sel] % n_out
        b, leak = bias_flat[pos], 1.0 - s_flat[pos]
        if gain is not None:
            b, leak = _perturbed(b, s_flat[pos], gain.reshape(-1)[pos], layer.B_in)
        u = first_crossing_sorted(x_sorted[inverse], ws, b, layer.B_in, layer.B, leak,
                                  early_only=early_only)
        out[sel] = layer.B + u
    return out


def _perturbed(b: Tensor, S: Tensor, gain: Tensor, B_in: float) -> tuple[Tensor, Tensor]:
    """Bias and ``u`` coefficient of ``f`` when ``alpha`` is multiplied by ``gain = 1 + δ``
    while ``theta`` and ``J`` keep ``alpha = 1``:
    ``f̃(u) = b + δ(1 − S)B_in + Σ_j W_ij (x_j − u)⁺ − (1 − S)(1 + δ) u − B``."""
    delta = gain - 1.0
    return b + delta * (1.0 - S) * B_in, (1.0 - S) * gain


def model_a_step(
    layer: SpikingLayer,
    x: Tensor,
    z: Tensor,
    *,
    use_exact: bool,
    gain: Tensor | None = None,
    late_possible: bool = True,
) -> LayerStep:
    """Model-A step given clipped inputs ``x`` and ``z = W x + b`` (``z`` is consumed).

    Certified neurons take ``ReLU(z)``; the others are computed exactly. With ``use_exact``
    False (closed engine) the exact values only feed the certificate counts. ``gain``
    (out_shape) multiplies each neuron's ``alpha`` (robustness studies); certified neurons
    then cross at ``u* = (z̃ − B)/(S + (1 − S)·gain)`` with ``z̃`` the perturbed ``z``.
    ``late_possible=False`` tells that no input arrives after ``t_min`` (no perturbation),
    which skips the checks for late inputs."""
    B = layer.B
    late = late_possible and bool((x < 0).any())
    if gain is not None:
        bias, leak = _perturbed(layer.bias, layer.S, gain, layer.B_in)
        z = z + (bias - layer.bias)
        sat = _per_sample(z > B)
        ok = certify_model_a(layer, x, bias) & (leak > 0)
        slope = layer.S + leak
        safe = torch.where(slope > 0, slope, torch.ones_like(slope))
        values = torch.where(slope > 0, (B + (z - B) / safe).clamp_min(0), torch.zeros_like(z))
    else:
        sat = _per_sample(z > B) if float(z.max()) > B else _zeros(z)
        ok = certify_model_a(layer, x, late_ok=True) if late else _certify_drive(layer, x)
        values = z.clamp_min_(0.0)
    if bool(ok.all()):
        return LayerStep(values, _zeros(values), sat, _zeros(values))
    early = torch.zeros_like(values, dtype=torch.bool)
    index = (~ok).reshape(-1).nonzero().reshape(-1)
    exact = exact_values(layer, x, index, gain, early_only=not late)
    if not late:  # NaN: no crossing before t_min, so the closed form holds
        exact = torch.where(torch.isnan(exact), values.reshape(-1)[index], exact)
    early.view(-1)[index] = exact > B
    if use_exact:
        values = values.clone()
        values.view(-1)[index] = exact
    return LayerStep(values, _per_sample(early), sat, _per_sample(~ok))


def _zeros(t: Tensor) -> Tensor:
    return torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
