"""scikit-learn digits loader."""

from __future__ import annotations

import pytest
import torch

from onespike.data.digits import load_digits


def test_split_sizes_shapes_and_range() -> None:
    train, test = load_digits("train"), load_digits("test")
    assert len(train) == 1347 and len(test) == 450
    for ds in (train, test):
        assert ds.images.shape[1:] == (1, 8, 8)
        assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
        assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
        assert ds.classes == [str(k) for k in range(10)]
        assert ds.input_range == (0.0, 1.0)


def test_split_is_stratified_and_disjoint() -> None:
    train, test = load_digits("train"), load_digits("test")
    counts = torch.bincount(test.labels, minlength=10)
    totals = counts + torch.bincount(train.labels, minlength=10)
    expected = totals.double() * 450 / 1797
    assert float((counts - expected).abs().max()) <= 1.0
    # No test image appears in the training split (the digits have few exact duplicates).
    train_keys = {tuple(x.flatten().tolist()) for x in train.images}
    overlap = sum(tuple(x.flatten().tolist()) in train_keys for x in test.images)
    assert overlap < 5


def test_deterministic_and_limit() -> None:
    a, b = load_digits("test"), load_digits("test", limit=10)
    assert torch.equal(a.images[:10], b.images) and torch.equal(a.labels[:10], b.labels)
    assert len(b) == 10
    assert torch.equal(load_digits("test").images, a.images)


def test_values_are_pixels_over_16() -> None:
    ds = load_digits("train")
    assert torch.equal(ds.images * 16, (ds.images * 16).round())


def test_bad_split() -> None:
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")
