"""A population step's edge inputs as the certificates read them: their float32/bfloat16
copies (:class:`InputMaps`, made once per step), their range, and the sum of several edges
with identity shortcuts (per-channel scale edges) kept in float32."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from onespike.simulation.affine import Affine, bf16_map
from onespike.simulation.ops import positive_float32
from onespike.simulation.synapses import Synapses


def _edges(xs: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Edge inputs as a list (a single tensor is the input of a one-edge population)."""
    return [xs] if isinstance(xs, Tensor) else list(xs)


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
            self._f32 = [positive_float32(x) for x in self.xs]
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

    def samples(self, part: slice) -> InputMaps:
        """The maps of the samples ``part`` (views, the copies already made included)."""
        out = type(self)([x[part] for x in self.xs])
        out._f32 = None if self._f32 is None else [x[part] for x in self._f32]
        out._bf16 = {i: t[part] for i, t in self._bf16.items()}
        return out

    def select(self, pick: Callable[[list[Tensor]], list[Tensor]]) -> InputMaps:
        """The maps as selected synapses read them (``pick``: e.g. the input channels of a
        :meth:`~onespike.simulation.synapses.Synapses.select`-ed grouped edge), copies
        already made included."""
        out = type(self)(pick(self.xs))
        out._f32 = None if self._f32 is None else pick(self._f32)
        if len(self._bf16) == len(self.xs):  # (pick takes every edge)
            out._bf16 = dict(enumerate(pick(self.bf16())))
        return out


def input_range(xs: Sequence[Tensor]) -> tuple[float, float]:
    """Smallest and largest entry over the edge inputs ``xs`` (0, 0 when all are empty): one
    pass per edge."""
    ranges = [torch.aminmax(x) for x in xs if x.numel()]
    return (min((float(r.min) for r in ranges), default=0.0),
            max((float(r.max) for r in ranges), default=0.0))


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
