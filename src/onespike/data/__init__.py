"""Dataset loaders returning in-memory torch tensors (float32 NCHW images, int64 labels).

Use :func:`load_dataset` (``"digits"``, ``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"``,
``"imagefolder"``, or a path); every loader returns a :class:`Dataset`.
"""

from onespike.data.dataset import (
    Dataset,
    DatasetFormatError,
    DatasetNotFoundError,
    UnknownDatasetError,
)
from onespike.data.registry import DATASET_NAMES, load_dataset

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "UnknownDatasetError",
    "load_dataset",
]
