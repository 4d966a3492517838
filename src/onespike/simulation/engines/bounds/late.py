"""The late-input certificate: neurons some of whose inputs arrive after ``t_min`` (only under
perturbations such as jitter) that still provably fire at ``t_max − ReLU(z)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.affine import Affine
from onespike.simulation.engines.bounds.inputs import _edges
from onespike.simulation.engines.bounds.precision import _gamma, _unit

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike


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
    gamma = _gamma(syn.fan_in + 8, _unit(f64))
    margin = late_margin_scale() * gamma * (b.abs() + B + 2.0 * a_sum
                                            + 2.0 * x_min.abs() * (1.0 + l_sum))
    return (end0 < -margin) & (end1 < -margin)


def late_margin_scale() -> float:
    """Factor on :func:`certify_late`'s rounding margin (1; the tests set it to 0 to show
    that the margin is needed)."""
    return 1.0


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
