"""Dataset loaders returning in-memory torch tensors (float32 NCHW images, int64 labels).

Use :func:`load_dataset` (``"digits"``, ``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"``,
``"imagefolder"``, or a path); every loader returns a :class:`Dataset`, or with ``stream=True`` a
:class:`StreamingDataset` (a ``torch.utils.data.Dataset`` decoding one image per item).
"""

from onespike.data.dataset import (
    Dataset,
    DatasetFormatError,
    DatasetNotFoundError,
    UnknownDatasetError,
)
from onespike.data.registry import DATASET_NAMES, load_dataset
from onespike.data.stream import ArrayStream, ImageFolderStream, StreamingDataset

__all__ = [
    "DATASET_NAMES",
    "ArrayStream",
    "Dataset",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageFolderStream",
    "StreamingDataset",
    "UnknownDatasetError",
    "load_dataset",
]
