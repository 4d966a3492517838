"""The exact walk's orderings (numpy on the CPU) agree with torch's own."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onespike.simulation.engines.ordering import argsort_descending, first_true


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 40), seed=st.integers(0, 10_000),
       levels=st.sampled_from([2, 5, 1000]))
def test_argsort_descending_sorts_every_row(rows: int, cols: int, seed: int, levels: int
                                            ) -> None:
    """Rows with many ties (few distinct values) come out in decreasing order, as a
    permutation of each row."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randint(0, levels, (rows, cols), generator=g).to(torch.float64) / levels
    order = argsort_descending(v)
    assert order.dtype == torch.int64 and order.shape == v.shape
    s = torch.gather(v, 1, order)
    assert bool((s[:, :-1] >= s[:, 1:]).all())
    assert torch.equal(torch.sort(order, dim=1).values,
                       torch.arange(cols).expand(rows, cols))
    assert torch.equal(s, torch.sort(v, dim=1, descending=True).values)


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 40), p=st.floats(0.0, 1.0),
       seed=st.integers(0, 10_000), dim=st.sampled_from([0, 1]))
def test_first_true_is_torchs_first_maximum(rows: int, cols: int, p: float, seed: int,
                                            dim: int) -> None:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand((rows, cols), generator=g) < p
    want = torch.argmax(m.to(torch.int8), dim=dim)  # first maximum; 0 for an all-False row
    assert torch.equal(first_true(m, dim=dim), want)
    assert torch.equal(first_true(m.t().contiguous().t(), dim=dim), want)  # strided
