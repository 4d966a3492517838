"""``rsub``: ``c − x`` in one pass, bit for bit the two-pass ``(−x) + c``; ``weight_fact``:
facts kept on weights until they change."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onespike.simulation.ops import rsub, weight_fact


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


def test_weight_fact_is_computed_once_per_weight_version() -> None:
    """A fact is kept on the tensor: asked again, it is not recomputed; an in-place write (a
    new version) recomputes it; facts of other names and of other tensors are apart."""
    w = torch.zeros(4, 3, dtype=torch.float64)
    calls: list[str] = []

    def nonzero(t: torch.Tensor) -> bool:
        calls.append("nonzero")
        return bool(t.ne(0).any())

    def total(t: torch.Tensor) -> float:
        calls.append("total")
        return float(t.sum())

    assert weight_fact(w, "nonzero", nonzero) is False
    assert weight_fact(w, "nonzero", nonzero) is False
    assert weight_fact(w, "total", total) == 0.0
    assert calls == ["nonzero", "total"]
    w[1, 2] = 3.0  # in place: a new version
    assert weight_fact(w, "nonzero", nonzero) is True and weight_fact(w, "total", total) == 3.0
    assert calls == ["nonzero", "total", "nonzero", "total"]
    v = w[2:]  # a view: another storage offset, its own facts
    assert weight_fact(v, "nonzero", nonzero) is False
    assert weight_fact(w.clone(), "total", total) == 3.0
    assert len(calls) == 6


def test_has_nonzero_follows_in_place_writes() -> None:
    from onespike.simulation.engines.bounds.tents import _has_nonzero

    w = torch.zeros(2, 2, dtype=torch.bfloat16)
    assert not _has_nonzero(w) and not _has_nonzero(w)
    w[0, 1] = 1.0
    assert _has_nonzero(w)
    w.zero_()
    assert not _has_nonzero(w)


def test_clamped_returns_the_map_itself_when_inside_and_never_writes_it() -> None:
    from onespike.simulation.ops import clamped, positive_part

    x = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert clamped(x, 0.0, 1.0) is x and clamped(x, high=1.0) is x and positive_part(x) is x
    y = torch.tensor([-0.5, 0.5, 2.0], dtype=torch.float64)
    before = y.clone()
    for low, high, want in ((0.0, None, [0.0, 0.5, 2.0]), (None, 1.0, [-0.5, 0.5, 1.0]),
                            (0.0, 1.0, [0.0, 0.5, 1.0])):
        got = clamped(y, low, high)
        assert got is not y and got.tolist() == want
    assert torch.equal(y, before)  # read only
    nan = torch.tensor([float("nan"), 0.5], dtype=torch.float64)
    assert clamped(nan, 0.0, 1.0) is not nan  # a NaN takes the clamp, as torch.clamp does
    empty = torch.zeros(0, dtype=torch.float64)
    assert clamped(empty, high=1.0).numel() == 0
