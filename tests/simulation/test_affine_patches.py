"""Input patches of convolution neurons (the exact walk and the grid bound's patch form read
them): both 2-d gathers — offsets into the input (entries in the padding masked), and
offsets into a padded copy — give the patches of an independent ``F.unfold`` of the padded
input, with ``fill`` where the kernel covers padding and the matching ``valid`` mask, for any
2-d geometry (stride, dilation, asymmetric padding, groups); and each neuron's ``Σ W x``
over its patch is the convolution's output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tests.simulation.test_affine_packed import _conv

from onespike.simulation import affine


def unfold_patches(a: affine.Affine, x: torch.Tensor, key: torch.Tensor, fill: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    p = [a.pad[2], a.pad[3], a.pad[0], a.pad[1]]
    kernel = tuple(a.weight.shape[2:])
    cols = F.unfold(F.pad(x, p, value=fill), kernel, a.dilation, 0, a.stride)
    inside = F.unfold(F.pad(torch.ones_like(x), p, value=0.0), kernel, a.dilation, 0, a.stride)
    n_sp = a.out_shape[1] * a.out_shape[2]
    sp, bg = key % n_sp, key // n_sp
    b, g = bg // a.groups, bg % a.groups
    k = a.fan_in
    rows = g[:, None] * k + torch.arange(k)[None, :]  # the group's block of unfold rows
    vals = cols[b[:, None], rows, sp[:, None]]
    valid = inside[b[:, None], rows, sp[:, None]] > 0
    return vals, valid


@settings(max_examples=60, deadline=None)
@given(groups=st.sampled_from([1, 2]), k=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 2, 0), (2, 1, 0, 2)]),
       dilation=st.integers(1, 2), batch=st.integers(1, 3), size=st.integers(3, 6),
       fill=st.sampled_from([0.0, -1.5]), seed=st.integers(0, 1000))
def test_both_gathers_are_the_unfolded_patches(groups: int, k: int, stride: int, pad,
                                               dilation: int, batch: int, size: int,
                                               fill: float, seed: int) -> None:
    span = dilation * (k - 1) + 1
    assume(size + pad[0] + pad[1] >= span and size + pad[2] + pad[3] >= span)
    torch.manual_seed(seed)
    a = _conv(4, 4, k, stride, pad, dilation, groups, size)
    x = torch.rand(batch, 4, size, size, dtype=torch.float64)
    n_keys = batch * groups * a.out_shape[1] * a.out_shape[2]
    key = torch.randperm(n_keys)[: max(1, n_keys // 2)]
    want_v, want_ok = unfold_patches(a, x, key, fill)
    for factor in (0, 10**9):  # straight from the input, from a padded copy
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(affine, "PAD_GATHER_FACTOR", factor)
            vals, valid = a.patches(x, key, fill)
        assert torch.equal(valid, want_ok)
        assert torch.equal(vals, want_v)


@pytest.mark.parametrize("factor", [0, 10**9])
def test_patch_sums_are_the_convolution(factor: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(affine, "PAD_GATHER_FACTOR", factor)
    torch.manual_seed(0)
    a = _conv(6, 4, 3, 2, (1, 0, 2, 1), 1, 2, 7)
    x = torch.rand(2, 6, 7, 7, dtype=torch.float64)
    index = torch.arange(2 * a.out_shape[0] * a.out_shape[1] * a.out_shape[2])
    xs, ws = a.gather(x, index)
    assert torch.allclose((xs * ws).sum(dim=1), a.linear(x).reshape(-1), rtol=0, atol=1e-12)
