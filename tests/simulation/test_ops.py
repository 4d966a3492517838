"""``rsub``: ``c − x`` in one pass, bit for bit the two-pass ``(−x) + c``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onespike.simulation.ops import rsub


@settings(max_examples=50, deadline=None)
@given(c=st.floats(-1e6, 1e6, allow_nan=False), seed=st.integers(0, 1000),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_rsub_is_the_two_pass_form(c: float, seed: int, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(257, generator=g, dtype=torch.float64) * 10.0 ** (seed % 7)).to(dtype)
    x[::17] = float("inf")
    x[::23] = float("-inf")
    want = x.neg().add_(c)
    assert torch.equal(rsub(c, x), want)
    out = torch.empty_like(x)
    assert rsub(c, x, out=out) is out and torch.equal(out, want)


def test_rsub_keeps_dtype_and_device() -> None:
    x = torch.zeros(3, dtype=torch.float32)
    assert rsub(0.1, x).dtype == torch.float32
    assert rsub(0.1, x)[0].item() == pytest.approx(0.1, rel=1e-7)
