"""Streaming datasets: a ``torch.utils.data.Dataset`` that decodes one image per item.

``load_dataset(..., stream=True)`` returns a :class:`StreamingDataset` instead of an in-memory
:class:`~onespike.data.Dataset`. Items are ``(image, label)`` with a float32 ``(C, H, W)``
image (normalised if the dataset says so) and an int64 scalar label (``-1``: unlabelled), so
a ``DataLoader`` (with ``num_workers`` worker processes) batches them; :func:`onespike.evaluate`,
:func:`onespike.convert`, :func:`onespike.measure` and the CLI take one directly.

* :class:`ImageFolderStream` keeps only the file names: memory does not grow with the number
  of images; each item is read and decoded when it is asked for.
* :class:`ArrayStream` (Fashion-MNIST, CIFAR) keeps the files' ``uint8`` pixels (a quarter of
  the float32 size) and converts one image per item.

Labels are known without decoding (:attr:`StreamingDataset.labels`). Items are decoded the
same way as the in-memory loaders do, so both give bit-identical images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data
from torch import Tensor

from onespike.data.dataset import Dataset, DatasetFormatError
from onespike.data.images import open_rgb
from onespike.errors import ArgumentError, OutOfRangeError

__all__ = ["ArrayStream", "ImageFolderStream", "StreamingDataset", "is_map_dataset"]


def is_map_dataset(data: Any) -> bool:
    """A map-style ``torch.utils.data.Dataset`` with a length (a :class:`StreamingDataset`, a
    ``TensorDataset``, a torchvision dataset): read by index. A list or a tuple is an
    iterable of batches, not a dataset."""
    return (isinstance(data, torch.utils.data.Dataset)
            and not isinstance(data, torch.utils.data.IterableDataset)
            and hasattr(data, "__getitem__") and hasattr(data, "__len__"))


class StreamingDataset(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    """A labelled image dataset decoded item by item (see the module docstring).

    Attributes:
        labels: int64 ``(N,)``, ``-1`` where unlabelled.
        classes, name, input_range: as for :class:`~onespike.data.Dataset`.
        normalization: ``(mean, std)`` per channel applied to every item, or None.
    """

    def __init__(self, labels: Sequence[int] | Tensor, classes: Sequence[str], name: str,
                 input_range: tuple[float, float] = (0.0, 1.0),
                 normalization: tuple[Sequence[float], Sequence[float]] | None = None
                 ) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        self.classes = list(classes)
        self.name = name
        self.input_range = input_range
        self.normalization = (None if normalization is None else
                              (list(map(float, normalization[0])),
                               list(map(float, normalization[1]))))
        self._shape: tuple[int, int, int] | None = None

    # -- subclasses --------------------------------------------------------------------------
    def decode(self, index: int) -> Tensor:
        """The float32 ``(C, H, W)`` image ``index`` in [0, 1], before normalisation."""
        raise NotImplementedError

    def _take(self, indices: Sequence[int]) -> StreamingDataset:
        raise NotImplementedError

    # -- the dataset protocol ----------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise OutOfRangeError(f"item {index} of a dataset of {n} items")
        index %= n
        x = self.decode(index)
        shape = (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]))
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise DatasetFormatError(
                f"{self.describe_item(index)} is {shape} but the first image read was "
                f"{self._shape}; the images differ in size (use resize= and center_crop=)")
        if self.normalization is not None:
            x = _normalise(x[None], self.normalization)[0]
        return x, self.labels[index]

    def describe_item(self, index: int) -> str:
        """What item ``index`` is, for messages (a file name, or ``name[index]``)."""
        return f"{self.name}[{index}]"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The ``(C, H, W)`` shape of one image (the first one is decoded once)."""
        if self._shape is None:
            if not len(self):
                raise ArgumentError(f"{self.name} has no images")
            self[0]
        assert self._shape is not None
        return self._shape

    def subset(self, limit: int | None) -> StreamingDataset:
        """The first ``limit`` items (all if None)."""
        if limit is None:
            return self
        if limit < 0:
            raise ArgumentError(f"limit must be >= 0, got {limit}")
        return self._take(range(min(limit, len(self))))

    def with_normalization(self, normalization: tuple[Sequence[float], Sequence[float]] | None
                           ) -> StreamingDataset:
        """A copy whose items are normalised with ``(mean, std)`` (None: raw pixels)."""
        out = self._take(range(len(self)))
        out.normalization = (None if normalization is None else
                             (list(map(float, normalization[0])),
                              list(map(float, normalization[1]))))
        return out

    def materialize(self) -> Dataset:
        """Decode everything into an in-memory :class:`~onespike.data.Dataset`."""
        items = [self[i][0] for i in range(len(self))]
        x = torch.stack(items) if items else torch.zeros((0, 1, 1, 1))
        return Dataset(x.contiguous(), self.labels.clone(), list(self.classes), self.name,
                       self.input_range)

    def _copy_meta(self, other: StreamingDataset, indices: Sequence[int]) -> StreamingDataset:
        other.classes, other.name = list(self.classes), self.name
        other.input_range, other.normalization = self.input_range, self.normalization
        other._shape = self._shape
        return other

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} items)"


def _normalise(x: Tensor, normalization: tuple[Sequence[float], Sequence[float]]) -> Tensor:
    """``(x − mean)/std`` per channel, as the in-memory path computes it (float32)."""
    mean, std = (torch.tensor(v, dtype=x.dtype) for v in normalization)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.reshape(shape)) / std.reshape(shape)


class ImageFolderStream(StreamingDataset):
    """The images of an image folder, read and decoded one per item (Pillow)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], classes: Sequence[str],
                 name: str, *, resize: int | None = None,
                 center_crop: int | tuple[int, int] | None = None,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                 input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(labels, classes, name, input_range, normalize)
        self.paths = [str(p) for p in paths]
        self.resize, self.center_crop = resize, center_crop

    def decode(self, index: int) -> Tensor:
        a = open_rgb(Path(self.paths[index]), self.resize, self.center_crop)
        return torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).float().div_(255.0)

    def describe_item(self, index: int) -> str:
        return self.paths[index]

    def _take(self, indices: Sequence[int]) -> StreamingDataset:
        idx = list(indices)
        out = ImageFolderStream([Path(self.paths[i]) for i in idx],
                                [int(self.labels[i]) for i in idx], self.classes, self.name,
                                resize=self.resize, center_crop=self.center_crop)
        return self._copy_meta(out, idx)


class ArrayStream(StreamingDataset):
    """Images held as ``uint8`` ``(N, C, H, W)`` pixels, converted to float32 per item."""

    def __init__(self, pixels: np.ndarray, labels: Sequence[int] | Tensor,
                 classes: Sequence[str], name: str,
                 input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(labels, classes, name, input_range)
        if pixels.dtype != np.uint8 or pixels.ndim != 4:
            raise ArgumentError(f"pixels must be uint8 NCHW, got {pixels.dtype} "
                                f"{pixels.shape}")
        self.pixels = pixels

    def decode(self, index: int) -> Tensor:
        a = self.pixels[index].astype(np.float32) / np.float32(255.0)
        return torch.from_numpy(a)

    def _take(self, indices: Sequence[int]) -> StreamingDataset:
        idx = list(indices)
        sel = (self.pixels[idx[0]: idx[-1] + 1] if idx == list(range(idx[0], idx[-1] + 1))
               else self.pixels[idx]) if idx else self.pixels[:0]
        out = ArrayStream(sel, self.labels[idx] if idx else self.labels[:0], self.classes,
                          self.name)
        return self._copy_meta(out, idx)
