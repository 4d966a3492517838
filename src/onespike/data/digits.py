"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, no download needed)."""

from __future__ import annotations

import numpy as np
import torch

from onespike.data.dataset import Dataset, check_split

__all__ = ["CLASSES", "load_digits"]

CLASSES = [str(k) for k in range(10)]

#: Size of the held-out test split (the train split holds the other 1,347 images).
TEST_SIZE = 450


def load_digits(split: str = "test", *, limit: int | None = None, seed: int = 0) -> Dataset:
    """Load the scikit-learn digits as 1×8×8 float32 images in [0, 1] (pixels / 16).

    The split is stratified and deterministic (``train_test_split(..., test_size=450,
    stratify=y, random_state=seed)``): 1,347 train and 450 test images.

    Args:
        split: ``"train"`` or ``"test"``.
        limit: keep only the first ``limit`` samples of the split.
        seed: the ``random_state`` of the split (0 by default; keep it for comparable results).
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    check_split(split)
    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32).reshape(-1, 1, 8, 8) / np.float32(16.0)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=seed
    )
    xs, ys = (x_train, y_train) if split == "train" else (x_test, y_test)
    if limit is not None:
        xs, ys = xs[:limit], ys[:limit]
    return Dataset(
        torch.from_numpy(np.ascontiguousarray(xs)),
        torch.from_numpy(np.ascontiguousarray(ys)),
        list(CLASSES),
        f"digits/{split}",
        (0.0, 1.0),
    )
