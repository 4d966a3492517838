"""Spike routing between spiking layers: max pooling ("first spike wins") and reshapes.

Routing acts on *values* ``v = t_max − t`` of the previous layer (``−inf`` for a neuron that
never fires, model B). Max pooling of values is the earliest spike of the pooling window; a
channel with ``sign = −1`` (a batch norm with negative scale folded forward across the pool,
docs/method.md §4) takes the minimum value = the latest spike, which needs every input to fire
(it fires when its last input has fired, and stays silent if any input is silent).
Reshapes do not change spike times; slicing (``x[:, :, ::2, ::2]``) passes on the spikes of
the selected neurons only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MaxPoolRoute", "ReshapeRoute", "Route", "SliceRoute"]


@dataclass
class MaxPoolRoute:
    """Signed max pooling ``v' = s · maxpool(s · v)`` per channel (``sign`` None: all +1)."""

    dims: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    sign: Tensor | None = None
    source: str = ""

    def __call__(self, v: Tensor) -> Tensor:
        s = None
        if self.sign is not None:
            s = self.sign.to(v.dtype).reshape((-1,) + (1,) * self.dims)
            v = v * s
        out = self._tiled(v) if self._tiles() else self._pool(v)
        return out if s is None else out * s

    def _pool(self, v: Tensor) -> Tensor:
        pool = F.max_pool1d if self.dims == 1 else F.max_pool2d
        return pool(v, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)

    def _tiles(self) -> bool:
        """Non-overlapping windows (kernel = stride, no padding or dilation) that tile the
        output exactly: the common 2×2/2 pool."""
        return (self.dims == 2 and tuple(self.kernel) == tuple(self.stride)
                and not any(self.padding) and all(d == 1 for d in self.dilation)
                and all(o * k <= i for o, k, i in
                        zip(self.out_shape[1:], self.kernel, self.in_shape[1:])))

    def _tiled(self, v: Tensor) -> Tensor:
        """:meth:`_pool` for :meth:`_tiles` windows as elementwise maxima of strided views
        (exact, NaN-propagating like the pool; several times faster than ``max_pool2d`` on
        CPU for NCHW maps): first over each window's rows — views of whole rows, read
        contiguously — then over the columns of that map. The same maxima as one pass per
        window entry, in 2.5–2.7× less time (one thread, batch 64: 32 × 28 × 28 float32 1.57
        → 0.59 ms, 64 × 32 × 32 float64 7.8 → 3.0 ms; batch 1 0.084 → 0.041 ms; all pools
        of a call: Fashion-MNIST VGG float32 batch 64 3.1 → 1.5 ms, VGG-16 float64 batch 64
        17.0 → 5.1 ms)."""
        (kh, kw), (oh, ow) = self.kernel, self.out_shape[1:]
        v = v[:, :, : oh * kh, : ow * kw]  # floor mode drops the last partial window
        if kh == kw == 1:
            return v.clone()
        rows = v if kh == 1 else _strided_max([v[:, :, i::kh] for i in range(kh)])
        return rows if kw == 1 else _strided_max([rows[..., j::kw] for j in range(kw)])


def _strided_max(parts: list[Tensor]) -> Tensor:
    """Elementwise maximum of two or more ``parts`` (views of one map), a fresh tensor."""
    out = torch.maximum(parts[0], parts[1])
    for part in parts[2:]:
        torch.maximum(out, part, out=out)
    return out


@dataclass
class ReshapeRoute:
    """Reshape every sample to ``out_shape`` (flatten or any order-preserving view)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    source: str = ""

    def __call__(self, v: Tensor) -> Tensor:
        return v.reshape(v.shape[0], *self.out_shape)


@dataclass
class SliceRoute:
    """Select ``v[:, a_0:b_0:s_0, a_1:b_1:s_1, …]`` (per-sample dims; ``slices[d] = (a, b, s)``)."""

    slices: tuple[tuple[int, int, int], ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    source: str = ""

    def __call__(self, v: Tensor) -> Tensor:
        return v[(slice(None), *(slice(a, b, s) for a, b, s in self.slices))]


Route = MaxPoolRoute | ReshapeRoute | SliceRoute
