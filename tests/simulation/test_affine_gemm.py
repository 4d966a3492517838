"""bfloat16 convolutions on small output maps run as one oneDNN matrix product over the
gathered input patches: the same sums as the convolution (bfloat16 products, float32
accumulation in some order, the result rounded to bfloat16), for any geometry, whatever the
weights' memory layout; other layers keep the convolution."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tests.simulation.test_affine_packed import _conv

from onespike.simulation import affine
from onespike.simulation.affine import keep_packed

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="no oneDNN in this build")


def _within_rounding(got: torch.Tensor, x: torch.Tensor, w: torch.Tensor, conv) -> None:
    """``got`` (bfloat16) is the exact sum of the bfloat16 products up to a float32 sum in
    any order (γ_K Σ|w||x|) and one rounding to bfloat16 (2⁻⁸ of the value)."""
    exact = conv(x.double(), w.double())
    mag = conv(x.double().abs(), w.double().abs())
    k = w[0].numel()
    gamma = k * 2.0**-24 / (1 - k * 2.0**-24)
    err = (got.double() - exact).abs()
    assert bool((err <= gamma * mag + 2.0**-8 * got.double().abs() + 1e-30).all())


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 2, 0), (2, 2, 1, 1)]),
       dilation=st.integers(1, 2), batch=st.integers(1, 40), size=st.integers(2, 5),
       channels_last=st.booleans(), seed=st.integers(0, 1000))
def test_gemm_form_is_the_convolutions_sum(k: int, stride: int, pad, dilation: int,
                                           batch: int, size: int, channels_last: bool,
                                           seed: int) -> None:
    torch.manual_seed(seed)
    span = dilation * (k - 1) + 1
    if size + pad[0] + pad[1] < span or size + pad[2] + pad[3] < span:
        return  # no output
    a = _conv(6, 5, k, stride, pad, dilation, 1, size)
    assume(a.prefers_gemm)  # at most 16 output positions
    x = torch.randn(batch, 6, size, size).to(torch.bfloat16)
    w = a.weight.to(torch.bfloat16)
    if channels_last:
        w = w.contiguous(memory_format=torch.channels_last)
    calls = []
    real = torch.ops.mkldnn._linear_pointwise

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    affine._LINEAR = spy
    try:
        got = a.linear(x, w)
    finally:
        affine._LINEAR = real
    assert calls  # the matrix product ran
    assert got.shape == (batch, *a.out_shape) and got.is_contiguous()

    def conv(xx, ww):
        return F.conv2d(F.pad(xx, [pad[2], pad[3], pad[0], pad[1]]), ww, None, stride, 0,
                        dilation)

    _within_rounding(got, x, w, conv)


def test_only_small_ungrouped_2d_maps_prefer_the_gemm_form() -> None:
    small = _conv(4, 4, 3, 1, (1, 1, 1, 1), 1, 1, 4)  # 4×4 output
    assert small.prefers_gemm
    assert not _conv(4, 4, 3, 1, (1, 1, 1, 1), 1, 1, 5).prefers_gemm  # 5×5 > 16 positions
    assert not _conv(4, 4, 3, 1, (1, 1, 1, 1), 1, 2, 4).prefers_gemm  # groups
    x = torch.rand(2, 4, 4, 4, dtype=torch.float64)
    assert not affine._gemm_form(x, small.weight)  # float64: the convolution
    assert affine._gemm_form(x.to(torch.bfloat16), small.weight.to(torch.bfloat16))
    # float64 takes the per-sample products (test_affine_small_maps): the same sums, another order
    torch.testing.assert_close(small.linear(x), F.conv2d(x, small.weight, None, 1, 1),
                               rtol=0, atol=1e-12)


def test_packed_weights_win_at_batch_one_and_keep_their_layout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where packing pays, marked weights on tiny inputs take the packed convolution (bit
    for bit the plain one); :func:`keep_packed` stores them channels-last, with the same
    values."""
    monkeypatch.setattr(affine, "PACK_WEIGHTS", True)
    a = _conv(8, 8, 3, 1, (1, 1, 1, 1), 1, 1, 4)
    x = torch.rand(1, 8, 4, 4).to(torch.bfloat16)
    wb = a.weight.to(torch.bfloat16)
    cl = keep_packed(wb.clone())
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, wb)
    assert affine._packable(x, cl, 2)
    assert torch.equal(a.linear(x, cl), F.conv2d(x, wb, None, 1, 1))
    assert math.prod(a.out_shape[1:]) <= affine.GEMM_MAX_POSITIONS


def test_packed_weights_of_small_maps_give_way_to_the_gemm_form_from_two_samples(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """From two samples on, a layer that prefers the matrix product runs it even with packed
    weights (the packed convolution's time grows linearly with the batch there); at batch 1
    the packed convolution runs, where packing pays. Both are the convolution within its
    rounding."""
    monkeypatch.setattr(affine, "PACK_WEIGHTS", True)
    a = _conv(8, 8, 3, 1, (1, 1, 1, 1), 1, 1, 2)
    w = keep_packed(a.weight.to(torch.bfloat16))
    real, calls = affine._LINEAR, []

    def spy(*args):
        calls.append(1)
        return real(*args)

    affine._LINEAR = spy
    try:
        for batch, gemm in ((1, False), (2, True), (9, True)):
            calls.clear()
            x = torch.rand(batch, 8, 2, 2).to(torch.bfloat16)
            assert affine._packable(x, w, 2, prefers_gemm=True) == (not gemm)
            assert affine._packable(x, w, 2)  # another layer's small map keeps the packing
            got = a.linear(x, w)
            assert bool(calls) == gemm
            _within_rounding(got, x, w, lambda xx, ww: F.conv2d(xx, ww, None, 1, 1))
    finally:
        affine._LINEAR = real


def test_without_packing_small_maps_take_the_gemm_form_at_batch_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights are packed by default only on CPUs with AMX (:data:`affine.PACK_WEIGHTS`).
    Without packing, marked weights keep no packed copy: at batch 1 a layer that prefers
    the matrix product runs it (within the convolution's rounding), another layer the plain
    convolution (bit for bit)."""
    assert affine.PACK_WEIGHTS == affine._cpu_has_amx()
    monkeypatch.setattr(affine, "PACK_WEIGHTS", False)
    real, calls = affine._LINEAR, []

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(affine, "_LINEAR", spy)
    for size in (2, 4, 6):
        calls.clear()
        a = _conv(8, 8, 3, 1, (1, 1, 1, 1), 1, 1, size)
        w = keep_packed(a.weight.to(torch.bfloat16))
        x = torch.rand(1, 8, size, size).to(torch.bfloat16)
        assert not affine._packable(x, w, 2, prefers_gemm=a.prefers_gemm)
        got = a.linear(x, w)
        assert not w._onespike_packed  # nothing packed, nothing kept
        assert bool(calls) == a.prefers_gemm == (size <= 4)
        if a.prefers_gemm:
            _within_rounding(got, x, w, lambda xx, ww: F.conv2d(xx, ww, None, 1, 1))
        else:
            assert torch.equal(got, F.conv2d(x, w, None, 1, 1))
