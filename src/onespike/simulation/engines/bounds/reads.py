"""Where the grid certificate's convolution form reads its sums: every neuron of the
population, every neuron of some output channels (maps), or only the needed neurons
(vectors, gathered right after each convolution).

The convolutions compute whole maps of the selected channels either way; what follows them —
per grid point a few elementwise passes, then the margins and the verdict in float64 — is
the same arithmetic on every entry, so it can run on the needed neurons alone: each value
read is bit for bit the one the whole map holds there. When the drive bound left a few
percent of a large layer, those passes over whole maps (several of them fresh float64 maps)
cost more than the convolutions: VGG-16 Kaiming in float32 at batch 64, first 32×32 layer,
2 % of 4 million neurons left, bfloat16 stage 93 → 74 ms, its four convolutions 12 ms."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from onespike.simulation.masks import true_index

#: The sums are gathered at the needed neurons when these are at most this fraction of the
#: entries of the computed maps (samples × selected channels × positions): the index
#: arithmetic grows with the neurons gathered, the passes it saves do not (0.25 and 0.5 ran
#: alike end to end on VGG-16 and ResNet-18; near 1 the gathers cost more than the passes).
GATHER_FRACTION = 0.25


class Reads:
    """Every neuron of the population: maps as they are (the base case)."""

    def own(self, t: Tensor) -> Tensor:
        """A map over the whole population, (B, *out_shape) (e.g. ``z``), as read."""
        return t

    def param(self, t: Tensor) -> Tensor:
        """A per-neuron or per-channel parameter (shaped to broadcast against
        ``out_shape``, first dimension the channels), as read."""
        return t

    def sums(self, t: Tensor) -> Tensor:
        """A map of sums over the computed channels, (B, n_sel, *spatial), as read."""
        return t

    def verdict(self, ok: Tensor, shape: tuple[int, ...]) -> Tensor:
        """The verdict on the neurons read, as a boolean map of ``shape`` = (B, *out_shape)
        (the neurons not read: False)."""
        return ok


class ChannelReads(Reads):
    """Every neuron of the output channels ``sel`` (sorted indices): maps of those channels."""

    def __init__(self, sel: Tensor) -> None:
        self.sel = sel

    def own(self, t: Tensor) -> Tensor:
        return t[:, self.sel]

    def param(self, t: Tensor) -> Tensor:
        return t[self.sel]

    def verdict(self, ok: Tensor, shape: tuple[int, ...]) -> Tensor:
        full = torch.zeros(shape, dtype=torch.bool, device=ok.device)
        full[:, self.sel] = ok
        return full


class NeededReads(Reads):
    """Only the neurons where ``need`` (B, *out_shape) is True, as vectors in the order of
    their flat index; the sums come from maps of the output channels ``sel`` (None: all),
    in whichever dense memory layout the convolution produced."""

    def __init__(self, need: Tensor, sel: Tensor | None) -> None:
        self.out_shape = tuple(need.shape[1:])
        n = math.prod(self.out_shape)
        self.index = true_index(need)  # flat into (B, *out_shape)
        self.sample = torch.div(self.index, n, rounding_mode="floor")
        self.pos = self.index - self.sample * n  # the neuron within its sample
        channels = self.out_shape[0]
        # each channel's place among the computed ones (channels not computed hold no
        # needed neuron: 0, never read)
        self.rank = torch.arange(channels, device=need.device)
        if sel is not None:
            self.rank = torch.zeros(channels, dtype=torch.long, device=need.device)
            self.rank[sel] = torch.arange(sel.numel(), device=need.device)
        self._offsets: dict[tuple[tuple[int, ...], tuple[int, ...]], Tensor] = {}

    def own(self, t: Tensor) -> Tensor:
        return t.reshape(-1).index_select(0, self.index)

    def param(self, t: Tensor) -> Tensor:
        return t.expand(self.out_shape).reshape(-1).index_select(0, self.pos)

    def sums(self, t: Tensor) -> Tensor:
        flat, strides = _storage(t)
        key = (tuple(t.shape), strides)
        off = self._offsets.get(key)
        if off is None:
            off = self._offsets[key] = self._storage_offsets(strides)
        return flat.index_select(0, off)

    def _storage_offsets(self, strides: tuple[int, ...]) -> Tensor:
        """Storage offsets of the needed neurons in a map of the computed channels with
        ``strides``: per position of a sample (channel rank and spatial index times their
        strides, one small table), plus the sample's."""
        spatial = self.out_shape[1:]
        dev = self.rank.device
        table = (self.rank * strides[1]).reshape((-1,) + (1,) * len(spatial))
        for i, size in enumerate(spatial):
            shape = [1] * (len(spatial) + 1)
            shape[i + 1] = size
            table = table + (torch.arange(size, device=dev) * strides[i + 2]).reshape(shape)
        return table.reshape(-1).index_select(0, self.pos).add_(self.sample * strides[0])

    def verdict(self, ok: Tensor, shape: tuple[int, ...]) -> Tensor:
        full = torch.zeros(shape, dtype=torch.bool, device=ok.device)
        full.view(-1)[self.index] = ok
        return full


def _storage(t: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """A flat view of the memory of ``t`` (entry ``Σ_d i_d·stride_d`` at that offset) and the
    strides that index it: ``t``'s own when it is dense in some order of its dimensions
    (NCHW, channels-last, …), else those of a contiguous copy."""
    order = sorted(range(t.dim()), key=lambda d: (t.stride(d), t.shape[d]), reverse=True)
    dense = t.permute(order)
    if not dense.is_contiguous():
        t = t.contiguous()
        return t.view(-1), t.stride()
    return dense.view(-1), t.stride()
