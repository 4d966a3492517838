"""The synapses of one population: the sum of its edges' Linear/Conv maps.

A population ``p`` reads its sources through edges ``e`` (see :mod:`onespike.conversion.fold`)::

    z_p = b_p + Σ_e A_e(x_e),     x_e = route_e(x_{s_e})   (delay-aligned values)

:class:`Synapses` evaluates ``Σ_e A_e(x_e)`` with any replacement weights (the certificates
use ``W⁺``, ``|W⁻|``, float32 copies), and gathers each neuron's inputs over all edges for the
exact first-crossing walk. Inputs are always lists with one tensor per edge; a chain has one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from onespike.simulation.affine import Affine
from onespike.simulation.ops import weight_fact

__all__ = ["Synapses", "select_rows"]


@dataclass
class Synapses:
    """``Σ_e A_e(x_e)`` over ``affines`` (one per edge, all with the same ``out_shape``)."""

    affines: list[Affine]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.affines[0].out_shape)

    @property
    def weights(self) -> list[Tensor]:
        return [a.weight for a in self.affines]

    @property
    def fan_in(self) -> int:
        """Synapses per neuron over all edges (kernel volumes × input channels)."""
        return sum(a.fan_in for a in self.affines)

    def linear(self, xs: Sequence[Tensor], weights: Sequence[Tensor] | None = None, *,
               out_dtype: torch.dtype | None = None, rows_invariant: bool = False,
               any_layout: bool = False) -> Tensor:
        """``Σ_e W_e x_e`` (no bias); ``weights`` replace the ``W_e``; ``out_dtype``: each
        edge's map is converted to it before the edges are summed (the bfloat16 drive bound
        sums its edges in float32); ``rows_invariant``, ``any_layout`` (one edge only; with
        several the result is NCHW): see :meth:`Affine.linear`.

        With several edges, an edge whose weight has few non-zero output rows (a block of a
        concatenation, e.g. DenseNet: one edge per concatenated source) is computed for those
        rows only and added into them: the other rows' terms are exact zeros. (The rows'
        fan-in sums may then be ordered differently by the backend: the certificates'
        rounding bounds hold for any order.)"""
        out: Tensor | None = None
        multi = len(self.affines) > 1
        for i, (a, x) in enumerate(zip(self.affines, xs)):
            w = a.weight if weights is None else weights[i]
            rows = _live_rows(a, w) if multi else None
            if (out is not None and rows is None and a.is_channel_scale
                    and out.dtype == x.dtype == w.dtype and out_dtype in (None, x.dtype)
                    and not (torch.is_grad_enabled()
                             and (out.requires_grad or x.requires_grad or w.requires_grad))):
                _add_channel_scale(out, *a.channel_scale_operands(x, w))
                continue
            if rows is None:
                y = a.linear(x, w, rows_invariant=rows_invariant,
                             any_layout=any_layout and not multi)
                if out_dtype is not None:
                    y = y.to(out_dtype)
                out = y if out is None else out.add_(y)
                continue
            if out is None:
                out = x.new_zeros((x.shape[0], *self.out_shape), dtype=out_dtype or x.dtype)
            if rows.numel():
                sub = replace(a, weight=w[rows], out_shape=(int(rows.numel()), *a.out_shape[1:]))
                out.index_add_(1, rows,
                               sub.linear(x, rows_invariant=rows_invariant).to(out.dtype))
        assert out is not None
        return out

    def fan_in_sum(self) -> Tensor:
        """``S_i = Σ_j W_ij`` over every input each neuron really has (padding excluded)."""
        out = self.affines[0].fan_in_sum()
        for a in self.affines[1:]:
            out = out + a.fan_in_sum()
        return out

    def macs(self) -> int:
        return sum(a.macs() for a in self.affines)

    def channel_abs_sum(self) -> Tensor:
        """``Σ_e Σ_j |W_e,ij|`` per output channel (feature for Linear edges), float64."""
        total: Tensor | None = None
        for a in self.affines:
            s = a.weight.abs().reshape(a.weight.shape[0], -1).sum(dim=1).to(torch.float64)
            total = s if total is None else total + s
        assert total is not None
        return total

    def channel_closure(self, mask: Tensor) -> Tensor:
        """The smallest superset of the output channels ``mask`` (boolean, (C,)) that holds
        whole groups of every grouped edge: the channels :meth:`select` can keep."""
        c = self.out_shape[0]
        while True:
            grown = mask
            for a in self.affines:
                if a.groups > 1:
                    grown = grown.reshape(a.groups, c // a.groups).any(dim=1,
                                                                        keepdim=True)
                    grown = grown.expand(a.groups, c // a.groups).reshape(c)
            if bool((grown == mask).all()):
                return mask
            mask = grown

    def input_channels(self, channels: Tensor) -> list[Tensor | None]:
        """Per edge, the input channels that output ``channels`` (a :meth:`channel_closure`)
        read: ``None`` for an edge without groups (all of them)."""
        out: list[Tensor | None] = []
        c = self.out_shape[0]
        for a in self.affines:
            if a.groups == 1:
                out.append(None)
                continue
            groups = torch.unique_consecutive(channels // (c // a.groups))
            cg = int(a.weight.shape[1])
            idx = groups[:, None] * cg + torch.arange(cg, device=channels.device)[None, :]
            out.append(idx.reshape(-1))
        return out

    def select(self, channels: Tensor, weights: Sequence[Tensor] | None = None) -> Synapses:
        """The synapses of output channels ``channels`` only (increasing, a
        :meth:`channel_closure`). A grouped edge keeps the groups it touches and reads only
        their input channels (:meth:`input_channels`; inputs are sliced by
        :meth:`select_inputs`). ``weights``: per edge, the weights to select from instead of
        the edges' own (e.g. the certificates' bfloat16 copies: no float64 copy is made)."""
        n = int(channels.numel())
        c = self.out_shape[0]
        parts = []
        ws = [a.weight for a in self.affines] if weights is None else list(weights)
        for a, w, idx in zip(self.affines, ws, self.input_channels(channels)):
            sub = replace(a, weight=select_rows(w, channels), out_shape=(n, *a.out_shape[1:]))
            if idx is not None:
                sub = replace(sub, groups=n // (c // a.groups),
                              in_shape=(int(idx.numel()), *a.in_shape[1:]))
            parts.append(sub)
        return Synapses(parts)

    def select_inputs(self, channels: Tensor, xs: Sequence[Tensor]) -> list[Tensor]:
        """Edge inputs ``xs`` as the :meth:`select`-ed synapses of ``channels`` read them."""
        return [x if idx is None else x.index_select(1, idx)
                for x, idx in zip(xs, self.input_channels(channels))]

    @property
    def groups_one(self) -> bool:
        return all(a.groups == 1 for a in self.affines)

    # -- fan-in gathering -------------------------------------------------------------------
    def _group_split(self) -> tuple[int, int]:
        """``(C, Gc)``: neurons of output channels in the same block of ``C/Gc`` channels
        read the same input patch on every edge."""
        c = self.out_shape[0]
        groups = [a.groups for a in self.affines]
        g = max(groups)
        if all(g % x == 0 for x in groups):
            return c, g
        return c, c

    def patch_keys(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """For flat neuron indices into (B, *out_shape): ``(key, row)`` with ``key`` equal for
        neurons that read the same inputs on every edge (same sample, position and channel
        group) and ``row`` the neuron's weight row (output channel or feature)."""
        if len(self.affines) == 1:
            return self.affines[0].patch_keys(index)
        n_out = math.prod(self.out_shape)
        b, o = index // n_out, index % n_out
        if self.affines[0].kind == "linear":
            return b, o
        c, gc = self._group_split()
        n_sp = n_out // c
        co = o // n_sp
        g = co // (c // gc)
        return (b * gc + g) * n_sp + o % n_sp, co

    def patches(self, xs: Sequence[Tensor], key: Tensor, fill: float = 0.0
                ) -> tuple[Tensor, Tensor]:
        """Inputs ``(xs, valid)`` (U, fan_in) of patch ``key``s, edges one after the other."""
        if len(self.affines) == 1:
            return self.affines[0].patches(xs[0], key, fill)
        if self.affines[0].kind == "linear":
            parts = [a.patches(x, key, fill) for a, x in zip(self.affines, xs)]
        else:
            c, gc = self._group_split()
            n_sp = math.prod(self.out_shape[1:])
            sp, bg = key % n_sp, key // n_sp
            b, g = bg // gc, bg % gc
            co = g * (c // gc)  # a channel of the block
            parts = []
            for a, x in zip(self.affines, xs):
                ge = co // (c // a.groups)
                parts.append(a.patches(x, (b * a.groups + ge) * n_sp + sp, fill))
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)

    def weight_rows(self, row: Tensor) -> Tensor:
        """Weights of the rows ``row`` (M, fan_in), edges in the order of :meth:`patches`."""
        return torch.cat([a.weight.reshape(a.weight.shape[0], -1).index_select(0, row)
                          for a in self.affines], 1)

    def gather(self, xs: Sequence[Tensor], index: Tensor, fill: float = 0.0
               ) -> tuple[Tensor, Tensor]:
        """Inputs and weights of selected neurons (zero weight where padding is covered)."""
        key, row = self.patch_keys(index)
        vals, valid = self.patches(xs, key, fill)
        ws = self.weight_rows(row)
        return vals, torch.where(valid, ws, torch.zeros((), dtype=ws.dtype, device=ws.device))


def select_rows(w: Tensor, rows: Tensor) -> Tensor:
    """``w.index_select(0, rows)``, channels-last as ``w`` is (a kernel's rows are then
    contiguous)."""
    if w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last) \
            and not w.is_contiguous():
        return w.permute(0, 2, 3, 1).index_select(0, rows).permute(0, 3, 1, 2)
    return w.index_select(0, rows)


# An edge is computed on its non-zero output rows only when they are at most this fraction.
LIVE_ROWS_FRACTION = 0.75


#: Entries per piece of :func:`_add_channel_scale` (half a megabyte of float64: stays in cache).
SCALE_PIECE_ELEMENTS = 1 << 16


def _add_channel_scale(out: Tensor, x: Tensor, scale: Tensor) -> None:
    """``out += x · scale`` (a per-channel scale edge, e.g. an identity shortcut) through one
    small buffer, a few samples at a time: the same product and sum per entry as ``out.add_(x
    * scale)``, so the same values, without a map as large as ``out`` (whose fresh pages cost
    more than the two passes: ResNet-18's 32×32 blocks at batch 64, 17 → 4 ms)."""
    bsz = out.shape[0]
    step = max(1, SCALE_PIECE_ELEMENTS // max(1, out[0].numel()))
    if step >= bsz:
        out.add_(x * scale)
        return
    buf = out.new_empty((step, *out.shape[1:]))
    for s in range(0, bsz, step):
        n = min(step, bsz - s)
        out[s : s + n].add_(torch.mul(x[s : s + n], scale, out=buf[:n]))


def _live_rows(a: Affine, w: Tensor) -> Tensor | None:
    """Indices of the output rows (channels / features) of ``w`` with a non-zero weight, or
    None to compute every row (grouped convolutions; most rows non-zero). A fact kept on
    ``w`` (:func:`~onespike.simulation.ops.weight_fact`): the populations' weights and the
    certificates' cached copies are scanned once, not at every sum (a 512 × 4608 weight:
    6 ms a scan)."""
    if a.groups != 1:
        return None
    return weight_fact(w, "live_rows", _scan_live_rows)


def _scan_live_rows(w: Tensor) -> Tensor | None:
    live = w.reshape(w.shape[0], -1).ne(0).any(dim=1)
    return None if int(live.sum()) > LIVE_ROWS_FRACTION * w.shape[0] else \
        live.nonzero().reshape(-1)
