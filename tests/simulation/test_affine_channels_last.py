"""bfloat16 convolutions on the CPU run channels-last (oneDNN's fast layout) and come back
NCHW-contiguous: the convolution's sums (bfloat16 products, float32 accumulation in some
order, the result rounded to bfloat16) for any geometry, groups and input layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tests.simulation.test_affine_gemm import _within_rounding
from tests.simulation.test_affine_packed import _conv

from onespike.simulation import affine

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="no oneDNN in this build")


@settings(max_examples=40, deadline=None)
@given(groups=st.sampled_from([1, 2, 6]), k=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 2, 0), (2, 2, 1, 1)]),
       dilation=st.integers(1, 2), batch=st.integers(1, 6), size=st.integers(5, 9),
       x_channels_last=st.booleans(), seed=st.integers(0, 1000))
def test_channels_last_form_is_the_convolutions_sum(groups: int, k: int, stride: int, pad,
                                                    dilation: int, batch: int, size: int,
                                                    x_channels_last: bool, seed: int) -> None:
    torch.manual_seed(seed)
    a = _conv(6, 12, k, stride, pad, dilation, groups, size)
    assume(not a.prefers_gemm)  # small maps run as a matrix product (test_affine_gemm.py)
    x = torch.randn(batch, 6, size, size).to(torch.bfloat16)
    if x_channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = a.weight.to(torch.bfloat16)
    assert affine._channels_last_form(x, w)
    calls = []
    real = F.conv2d

    def spy(xx, ww, *args):
        calls.append((xx.is_contiguous(memory_format=torch.channels_last),
                      ww.is_contiguous(memory_format=torch.channels_last)))
        return real(xx, ww, *args)

    affine.F.conv2d = spy  # type: ignore[assignment]
    try:
        got = a.linear(x, w)
    finally:
        affine.F.conv2d = real  # type: ignore[assignment]
    assert calls == [(True, True)]  # maps and weights channels-last
    assert got.shape == (batch, *a.out_shape) and got.is_contiguous()
    assert got.dtype == torch.bfloat16

    def conv(xx, ww):
        return F.conv2d(F.pad(xx, [pad[2], pad[3], pad[0], pad[1]]), ww, None, stride, 0,
                        dilation, groups)

    _within_rounding(got, x, w, conv)


def test_other_convolutions_keep_their_layout() -> None:
    """float32/float64 convolutions do not take the channels-last form (their sums are the
    network's own, or float32 sums whose layout oneDNN already handles well)."""
    a = _conv(4, 4, 3, 1, (1, 1, 1, 1), 1, 1, 8)
    for dt in (torch.float32, torch.float64):
        x = torch.rand(2, 4, 8, 8, dtype=dt)
        assert not affine._channels_last_form(x, a.weight.to(dt))
        assert torch.equal(a.linear(x, a.weight.to(dt)),
                           F.conv2d(x, a.weight.to(dt), None, 1, 1))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bf16_map_rounds_each_entry_and_is_channels_last(layout: str, dtype: torch.dtype) -> None:
    """:func:`affine.bf16_map`: every entry rounded to bfloat16 as ``Tensor.to`` rounds it
    (ties, tiny and huge values included), 2-d maps channels-last whatever the input's
    layout, other maps as they are."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 4, 6, generator=g, dtype=dtype) * 10.0
    x.view(-1)[:4] = torch.tensor([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1e-40, 3e38], dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    xb = affine.bf16_map(x)
    assert xb.dtype == torch.bfloat16
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(xb.view(torch.int16), x.to(torch.bfloat16).view(torch.int16))
    flat = torch.randn(7, 9, generator=g, dtype=dtype)
    assert torch.equal(affine.bf16_map(flat).view(torch.int16),
                       flat.to(torch.bfloat16).view(torch.int16))
