"""Batches of any data form, and a rank's contiguous shard of them.

:func:`shard_batches` turns what :func:`onespike.evaluate`, :func:`onespike.convert` and
:func:`onespike.measure` accept into ``(inputs, labels or None)`` batches:

* a tensor (with optional labels) or an in-memory :class:`~onespike.data.Dataset`: sliced;
* a map-style ``torch.utils.data.Dataset`` (a :class:`~onespike.data.StreamingDataset`, a
  torchvision dataset, …) with ``(input, label)`` or input items: a ``DataLoader`` over the
  shard, ``workers`` worker processes;
* a ``DataLoader`` over a map-style dataset in order: rebuilt over the shard with its own
  batch size, workers and collate function (as it is, with one process);
* any other iterable of batches (tensors or ``(input, label)`` pairs): read as it is — with
  a process group it is taken as this rank's own share.

Shards are contiguous, in rank order, without padding: whole batches
(:func:`onespike.distributed.batch_shard_bounds`) or samples
(:func:`onespike.distributed.shard_bounds`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.data as tud
from torch import Tensor

from onespike.data.dataset import Dataset
from onespike.data.stream import is_map_dataset
from onespike.distributed import batch_shard_bounds, shard_bounds
from onespike.errors import ArgumentError, ArgumentTypeError

__all__ = ["Shard", "first_inputs", "shard_batches", "split_item"]

Batch = tuple[Tensor, Tensor | None]


@dataclass
class Shard:
    """A rank's batches. ``size``: its samples (None: an iterable of unknown length);
    ``total``: the samples of all ranks (None: unknown); ``start``: its first sample."""

    batches: Iterator[Batch]
    size: int | None
    total: int | None
    start: int = 0


def split_item(item: Any, i: int, what: str = "data") -> Batch:
    """``(inputs, labels or None)`` of one batch: a tensor or an ``(input, label, …)``
    tuple/list."""
    if isinstance(item, Tensor):
        return item, None
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        y = item[1] if len(item) > 1 else None
        if y is not None and not isinstance(y, Tensor):
            y = torch.as_tensor(y)
        return item[0], y
    raise ArgumentTypeError(f"{what} batch {i} is a {type(item).__name__}, not a tensor or an "
                            "(input, label) pair")


def _slices(x: Tensor, y: Tensor | None, lo: int, hi: int, batch_size: int
            ) -> Iterator[Batch]:
    for s in range(lo, hi, batch_size):
        e = min(s + batch_size, hi)
        yield x[s:e], (None if y is None else y[s:e])


def _iterate(items: Iterable[Any], what: str) -> Iterator[Batch]:
    for i, item in enumerate(items):
        yield split_item(item, i, what)


def _is_sequential(loader: tud.DataLoader[Any]) -> bool:
    return isinstance(loader.sampler, tud.SequentialSampler) and loader.batch_size is not None


def shard_batches(data: Any, labels: Tensor | None = None, *, batch_size: int = 256,
                  workers: int = 0, rank: int = 0, world_size: int = 1,
                  what: str = "data", whole_batches: bool = True) -> Shard:
    """Rank ``rank``'s batches of ``data`` (see the module docstring). ``whole_batches``:
    shards are made of whole batches of a one-process run
    (:func:`~onespike.distributed.batch_shard_bounds`), else of samples."""

    def bounds(n: int, size: int) -> tuple[int, int]:
        if whole_batches:
            return batch_shard_bounds(n, size, rank, world_size)
        return shard_bounds(n, rank, world_size)

    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {batch_size}", argument="batch_size")
    if workers < 0:
        raise ArgumentError(f"workers must be >= 0, got {workers}", argument="workers")
    if isinstance(data, Dataset):
        data, labels = data.images, data.labels if labels is None else labels
    if isinstance(data, Tensor):
        n = int(data.shape[0]) if data.dim() else 0
        if labels is not None:
            labels = torch.as_tensor(labels).reshape(-1)
            if int(labels.shape[0]) != n:
                raise ArgumentError(f"{labels.shape[0]} labels for {n} samples",
                                    argument="labels")
        lo, hi = bounds(n, batch_size)
        return Shard(_slices(data, labels, lo, hi, batch_size), hi - lo, n, lo)
    if labels is not None:
        raise ArgumentError("labels go with a tensor of inputs; a dataset or a DataLoader "
                            "brings its own", argument="labels")
    if isinstance(data, tud.DataLoader):
        ds = data.dataset
        if world_size == 1:
            size = (len(ds) if is_map_dataset(ds) and _is_sequential(data)  # type: ignore[arg-type]
                    else None)
            return Shard(_iterate(data, what), size, size)
        if not (is_map_dataset(ds) and _is_sequential(data)):
            raise ArgumentError(
                f"a DataLoader can only be split over {world_size} processes when it reads a "
                "map-style dataset in order (no shuffle, no sampler, a batch_size); pass the "
                "dataset itself, or an iterable of this rank's own batches", argument="data")
        n = len(ds)  # type: ignore[arg-type]
        lo, hi = bounds(n, int(data.batch_size or 1))
        loader = tud.DataLoader(tud.Subset(ds, range(lo, hi)), batch_size=data.batch_size,
                                num_workers=data.num_workers, collate_fn=data.collate_fn,
                                pin_memory=data.pin_memory)
        return Shard(_iterate(loader, what), hi - lo, n, lo)
    if is_map_dataset(data):
        n = len(data)
        lo, hi = bounds(n, batch_size)
        part = data if (lo, hi) == (0, n) else tud.Subset(data, range(lo, hi))
        loader = tud.DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=workers)
        return Shard(_iterate(loader, what), hi - lo, n, lo)
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        return Shard(_iterate(data, what), None, None)
    raise ArgumentTypeError(
        f"{what} must be a tensor, a dataset, a DataLoader or an iterable of batches, got "
        f"{type(data).__name__}", argument="data")


def first_inputs(data: Any, k: int = 2) -> Tensor | None:
    """The first ``k`` inputs of ``data`` as a batch, without consuming it (None for a
    one-shot iterable: the caller takes its first batch)."""
    if isinstance(data, Dataset):
        return data.images[:k]
    if isinstance(data, Tensor):
        return data[:k]
    ds = data.dataset if isinstance(data, tud.DataLoader) else data
    if is_map_dataset(ds):
        items = [split_item(ds[i], i)[0] for i in range(min(k, len(ds)))]  # type: ignore[arg-type]
        return torch.stack(items) if items else None
    return None
