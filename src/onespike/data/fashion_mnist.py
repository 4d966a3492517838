"""Fashion-MNIST from its IDX files (gzip-compressed or plain).

The Debian/Ubuntu package ``dataset-fashion-mnist`` installs the four files into
``/usr/share/datasets/fashion-mnist/``; any other folder holding them can be given as ``root``.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onespike.data.dataset import Dataset, DatasetFormatError, DatasetNotFoundError, check_split
from onespike.data.stream import ArrayStream

__all__ = ["CLASSES", "DEFAULT_ROOT", "load_fashion_mnist", "read_idx"]

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")

CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}

_INSTALL_HINT = (
    "install the Debian/Ubuntu package with `apt-get install -y dataset-fashion-mnist` "
    f"(files go to {DEFAULT_ROOT}/), or pass the folder holding the IDX files as {{root}}"
)

# IDX type codes -> numpy big-endian dtypes.
_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str], *, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip-compressed or plain) into a numpy array.

    The magic number (two zero bytes, a type code, the number of dimensions), the dimension
    sizes and the data length are all checked; any mismatch raises
    :class:`DatasetFormatError` naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"IDX file not found: {path}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetFormatError(f"{path}: corrupted gzip stream ({exc})") from None
    if len(raw) < 4:
        raise DatasetFormatError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise DatasetFormatError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTNN with a known "
            "type code TT and NN >= 1 dimensions)"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetFormatError(
            f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_TYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetFormatError(
            f"{path}: IDX data is {len(raw) - header} bytes, expected {expected} for shape "
            f"{dims} (truncated or corrupted file)"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _find(root: Path, stem: str) -> Path:
    for name in (
        stem + ".gz",
        stem,
        stem.replace("-idx", ".idx") + ".gz",
        stem.replace("-idx", ".idx"),
    ):
        candidate = root / name
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        f"Fashion-MNIST file {stem}.gz (or {stem}) not found in {root}; {_INSTALL_HINT}",
        params=("root",), path=root / stem,
    )


def load_fashion_mnist(
    split: str = "test",
    *,
    root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    stream: bool = False,
) -> Dataset | ArrayStream:
    """Load a Fashion-MNIST split as 1×28×28 float32 images in [0, 1] and int64 labels.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: folder with the IDX files; defaults to ``/usr/share/datasets/fashion-mnist``.
        limit: keep only the first ``limit`` samples.
        stream: return an :class:`~onespike.data.stream.ArrayStream` (the uint8 pixels,
            converted to float32 one image per item) instead of float32 tensors.

    Raises:
        DatasetNotFoundError: the folder or a file is missing (the message says how to install).
        DatasetFormatError: a file is corrupted, truncated, or has the wrong magic number.
    """
    check_split(split)
    folder = Path(root) if root is not None else DEFAULT_ROOT
    if not folder.is_dir():
        raise DatasetNotFoundError(f"Fashion-MNIST folder {folder} does not exist; {_INSTALL_HINT}",
                                   params=("root",), path=folder)
    image_stem, label_stem, _ = _FILES[split]
    image_path = _find(folder, image_stem)
    label_path = _find(folder, label_stem)
    images = read_idx(image_path, expected_ndim=3)
    labels = read_idx(label_path, expected_ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DatasetFormatError(
            f"Fashion-MNIST IDX files must hold unsigned bytes, got {images.dtype} / {labels.dtype}"
        )
    if images.shape[1:] != (28, 28):
        raise DatasetFormatError(f"{image_path}: images are {images.shape[1:]}, expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise DatasetFormatError(
            f"{image_path} holds {images.shape[0]} images but {label_path} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise DatasetFormatError(f"{label_path}: label {int(labels.max())} out of range 0..9")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if stream:
        return ArrayStream(images[:, None], torch.from_numpy(labels.astype(np.int64)), CLASSES,
                           f"fashion-mnist/{split}")
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return Dataset(x, y, list(CLASSES), f"fashion-mnist/{split}", (0.0, 1.0))
