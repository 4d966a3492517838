"""The :class:`Dataset` container returned by every loader, and the data errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from onespike.errors import (
    ArgumentError,
    DatasetFormatError,
    DatasetNotFoundError,
    UnknownDatasetError,
)

__all__ = ["Dataset", "DatasetFormatError", "DatasetNotFoundError", "UnknownDatasetError"]


@dataclass(frozen=True)
class Dataset:
    """An in-memory labelled image dataset.

    Attributes:
        images: float32 tensor of shape ``(N, C, H, W)``.
        labels: int64 tensor of shape ``(N,)``; ``-1`` where the dataset has no labels.
        classes: class names, ``classes[k]`` is the name of label ``k`` (empty if unlabelled).
        name: a short name such as ``"fashion-mnist/test"``.
        input_range: the natural ``(low, high)`` range of the pixel values, ``(0.0, 1.0)``
            unless the loader normalised the images.
    """

    images: Tensor
    labels: Tensor
    classes: list[str] = field(default_factory=list)
    name: str = ""
    input_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise ArgumentError(f"images must be NCHW, got shape {tuple(self.images.shape)}")
        if self.labels.dim() != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise ArgumentError(
                f"labels shape {tuple(self.labels.shape)} does not match "
                f"{self.images.shape[0]} images"
            )
        if self.images.dtype != torch.float32:
            raise ArgumentError(f"images must be float32, got {self.images.dtype}")
        if self.labels.dtype != torch.int64:
            raise ArgumentError(f"labels must be int64, got {self.labels.dtype}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The ``(C, H, W)`` shape of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images, labels)`` batches in order; the last batch may be smaller."""
        if batch_size < 1:
            raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield (
                self.images[start : start + batch_size],
                self.labels[start : start + batch_size],
            )

    def subset(self, limit: int | None) -> Dataset:
        """The first ``limit`` samples (all of them if ``limit`` is None)."""
        if limit is None:
            return self
        if limit < 0:
            raise ArgumentError(f"limit must be >= 0, got {limit}")
        return Dataset(
            images=self.images[:limit],
            labels=self.labels[:limit],
            classes=list(self.classes),
            name=self.name,
            input_range=self.input_range,
        )


def check_split(split: str) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise ValueError."""
    if split not in ("train", "test"):
        raise ArgumentError(f"split must be 'train' or 'test', got {split!r}")
    return split
