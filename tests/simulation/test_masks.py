"""Mask reductions (uint8 views; numpy counts and indices of contiguous CPU masks, torch's
otherwise) agree with torch's boolean reductions."""

from __future__ import annotations

import pytest
import torch

from onespike.simulation.masks import (
    any_along,
    any_true,
    count_per_sample,
    count_true,
    per_sample_from_index,
    true_index,
)


@pytest.mark.parametrize("p", [0.0, 1e-4, 0.3, 1.0])
@pytest.mark.parametrize("strided", [False, True])
def test_reductions_match_torch(p: float, strided: bool) -> None:
    g = torch.Generator().manual_seed(int(p * 1e4))
    m = torch.rand((5, 7, 3, 4), generator=g) < p
    if strided:
        m = m.transpose(1, 3)
    assert any_true(m) == bool(m.any())
    assert count_true(m) == int(m.sum())
    per = count_per_sample(m)
    assert per.dtype == torch.int64 and per.device == m.device
    assert torch.equal(per, m.reshape(m.shape[0], -1).sum(dim=1))
    for dim in range(m.dim()):
        assert torch.equal(any_along(m, dim), m.any(dim=dim))
    index = true_index(m)
    assert index.dtype == torch.int64 and index.device == m.device
    assert torch.equal(index, m.reshape(-1).nonzero().reshape(-1))


def test_empty_masks() -> None:
    e = torch.zeros((0, 3), dtype=torch.bool)
    assert not any_true(e) and count_true(e) == 0
    assert true_index(e).dtype == torch.int64 and true_index(e).numel() == 0
    assert torch.equal(any_along(e, 0), e.any(dim=0))
    assert torch.equal(any_along(e, 1), e.any(dim=1))


def test_per_sample_from_index_counts_the_flat_entries() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.rand((6, 2, 5), generator=g) < 0.3
    index = m.reshape(-1).nonzero().reshape(-1)
    assert torch.equal(per_sample_from_index(index, 10, 6), m.reshape(6, -1).sum(dim=1))
    none = torch.zeros(0, dtype=torch.long)
    assert torch.equal(per_sample_from_index(none, 10, 6), torch.zeros(6, dtype=torch.long))
