"""bfloat16 convolutions with weights packed once for oneDNN give bit for bit the plain
convolution's result, for any geometry, and repack when the weights change in place."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from onespike.simulation import affine
from onespike.simulation.affine import Affine, keep_packed

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="no oneDNN in this build")


@pytest.fixture(autouse=True)
def _packing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The packed path on every CPU (by default only where it pays: AMX)."""
    monkeypatch.setattr(affine, "PACK_WEIGHTS", True)


def _conv(c_in: int, c_out: int, k: int, stride: int, pad: tuple[int, int, int, int],
          dilation: int, groups: int, size: int) -> Affine:
    w = torch.randn(c_out, c_in // groups, k, k, dtype=torch.float64)
    h = (size + pad[0] + pad[1] - dilation * (k - 1) - 1) // stride + 1
    wd = (size + pad[2] + pad[3] - dilation * (k - 1) - 1) // stride + 1
    return Affine("conv", w, torch.zeros(c_out, h, wd, dtype=torch.float64), (c_in, size, size),
                  (c_out, h, wd), 2, (stride, stride), pad, (dilation, dilation), groups)


@settings(max_examples=30, deadline=None)
@given(groups=st.sampled_from([1, 2, 4]), k=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 2, 0)]),
       dilation=st.integers(1, 2), batch=st.integers(1, 2), seed=st.integers(0, 1000))
def test_packed_bf16_convolution_is_the_plain_one(groups: int, k: int, stride: int, pad,
                                                  dilation: int, batch: int, seed: int
                                                  ) -> None:
    torch.manual_seed(seed)
    a = _conv(8, 8, k, stride, pad, dilation, groups, 5)
    # small maps of several samples run as a matrix product (test_affine_gemm.py)
    assume(batch == 1 or not a.prefers_gemm)
    x = torch.rand(batch, 8, 5, 5).to(torch.bfloat16)
    w = keep_packed(a.weight.to(torch.bfloat16))
    got = a.linear(x, w)
    xp = F.pad(x, [pad[2], pad[3], pad[0], pad[1]])
    want = F.conv2d(xp, w, None, stride, 0, dilation, groups)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, want)
    assert w._onespike_packed  # the packed path ran and kept its packing
    w.mul_(-1.0)  # in place: the packed copy must follow
    assert torch.equal(a.linear(x, w), F.conv2d(xp, w, None, stride, 0, dilation, groups))


def test_unmarked_weights_and_other_dtypes_take_the_plain_path() -> None:
    a = _conv(4, 4, 3, 1, (1, 1, 1, 1), 1, 1, 6)
    x = torch.rand(2, 4, 6, 6, dtype=torch.float64)
    wb = a.weight.to(torch.bfloat16)
    assert not affine._packable(x.to(torch.bfloat16), wb, 2)  # a temporary: not marked
    assert affine._packable(x.to(torch.bfloat16), keep_packed(wb), 2)
    big = torch.rand(8, 4, 6, 6).to(torch.bfloat16)  # 8 × 36 positions: the plain call
    assert not affine._packable(big, wb, 2)
    assert not affine._packable(x, a.weight, 2)
    assert not affine._packable(x.float(), a.weight.float(), 2)
    assert torch.equal(a.linear(x), F.conv2d(x, a.weight, None, 1, 1))

