"""``Synapses.linear`` over several edges: a per-channel scale edge (an identity shortcut after
folding) is added piece by piece through a small buffer, with the values of the whole-map
``out + x · w`` for any stride, batch and piece size; other dtypes keep the plain sum."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onespike.simulation import synapses
from onespike.simulation.affine import Affine
from onespike.simulation.synapses import Synapses


def _edges(c: int, size: int, stride: int, dtype: torch.dtype) -> Synapses:
    out = (size - 1) // stride + 1
    out_shape = (c, out, out)
    bias = torch.zeros(out_shape, dtype=dtype)
    conv = Affine("conv", torch.randn(c, c, 3, 3, dtype=dtype), bias, (c, size, size), out_shape,
                  2, (stride, stride), (1, 1, 1, 1), (1, 1), 1)
    scale = Affine("conv", torch.randn(c, 1, 1, 1, dtype=dtype), bias, (c, size, size),
                   out_shape, 2, (stride, stride), (0, 0, 0, 0), (1, 1), c)
    assert scale.is_channel_scale and not conv.is_channel_scale
    return Synapses([conv, scale])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 9), c=st.integers(1, 4), size=st.integers(1, 7),
       stride=st.integers(1, 2), piece=st.integers(1, 400), seed=st.integers(0, 1000))
def test_scale_edge_in_pieces_is_the_whole_map_sum(
        batch: int, c: int, size: int, stride: int, piece: int, seed: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(seed)
    syn = _edges(c, size, stride, torch.float64)
    xs = [torch.rand(batch, c, size, size, dtype=torch.float64) for _ in range(2)]
    conv, scale = syn.affines
    strided, w = scale.channel_scale_operands(xs[1], scale.weight)
    want = conv.linear(xs[0]).add_(strided * w)
    monkeypatch.setattr(synapses, "SCALE_PIECE_ELEMENTS", piece)
    before = [x.clone() for x in xs]
    got = syn.linear(xs)
    assert torch.equal(got, want)
    assert all(torch.equal(a, b) for a, b in zip(xs, before))  # inputs only read


def test_pieces_use_one_small_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples go through the buffer ``SCALE_PIECE_ELEMENTS`` entries at a time: no product
    map of the whole batch."""
    syn = _edges(2, 4, 1, torch.float64)
    xs = [torch.rand(5, 2, 4, 4, dtype=torch.float64) for _ in range(2)]
    monkeypatch.setattr(synapses, "SCALE_PIECE_ELEMENTS", 2 * 32)  # two samples a piece
    shapes: list[tuple[int, ...]] = []
    real = torch.mul

    def spy(*args: object, **kw: object) -> torch.Tensor:
        out = real(*args, **kw)  # type: ignore[arg-type]
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(synapses.torch, "mul", spy)
    syn.linear(xs)
    assert [s[0] for s in shapes] == [2, 2, 1]


def test_other_dtypes_keep_the_plain_sum() -> None:
    """A float32 sum of float64 edges (``out_dtype``) converts each edge, as before."""
    syn = _edges(3, 5, 1, torch.float64)
    xs = [torch.rand(4, 3, 5, 5, dtype=torch.float64) for _ in range(2)]
    conv, scale = syn.affines
    strided, w = scale.channel_scale_operands(xs[1], scale.weight)
    want = conv.linear(xs[0]).float().add_((strided * w).float())
    assert torch.equal(syn.linear(xs, out_dtype=torch.float32), want)


def test_autograd_keeps_the_plain_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under autograd the scale edge is the plain product (no buffer written with ``out=``), so
    gradients reach its input."""
    monkeypatch.setattr(synapses, "SCALE_PIECE_ELEMENTS", 32)  # pieces of one sample
    syn = _edges(2, 4, 1, torch.float64)
    xs = [torch.rand(5, 2, 4, 4, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    syn.linear(xs).sum().backward()
    scale = syn.affines[1].weight.reshape(1, -1, 1, 1)
    assert xs[1].grad is not None
    assert torch.equal(xs[1].grad, scale.expand_as(xs[1]).contiguous())
