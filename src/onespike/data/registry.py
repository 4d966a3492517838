"""``load_dataset``: one entry point for every dataset loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, overload

from onespike.data.dataset import (
    Dataset,
    DatasetFormatError,
    DatasetNotFoundError,
    UnknownDatasetError,
    check_split,
)
from onespike.data.stream import StreamingDataset
from onespike.errors import ArgumentError

__all__ = ["DATASET_NAMES", "load_dataset"]

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES: tuple[str, ...] = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder")

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "image-folder": "imagefolder",
    "image_folder": "imagefolder",
}


def _canonical(name: str) -> str | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASET_NAMES else None


#: File names read as tar archives (their members tell CIFAR-10 from CIFAR-100).
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _looks_like_path(text: str) -> bool:
    """A folder or file name rather than a dataset name: a separator, a suffix, ``~``/``.``."""
    return any(c in text for c in "/\\") or text.startswith(("~", ".")) or bool(Path(text).suffix)


def _guess_from_path(path: Path) -> str | None:
    """Which loader reads ``path`` (a folder or an archive), or None.

    Raises:
        DatasetFormatError: ``path`` is an archive that cannot be read (truncated, corrupted).
    """
    name = path.name.lower()
    if path.is_file():
        if name.endswith(_ARCHIVE_SUFFIXES):
            from onespike.data.cifar import archive_classes

            kind = archive_classes(path)
            if kind is None:
                raise DatasetFormatError(
                    f"{path}: the archive holds no CIFAR-10/100 data (expected the "
                    "cifar-10-batches-py/ or cifar-100-python/ folder of the python version)"
                )
            return f"cifar{kind}"
        if name.startswith("cifar-100"):
            return "cifar100"
        if name.startswith("cifar-10"):
            return "cifar10"
        return None
    if not path.is_dir():
        return None
    if name == "cifar-100-python" or (path / "cifar-100-python").is_dir():
        return "cifar100"
    if name == "cifar-10-batches-py" or (path / "cifar-10-batches-py").is_dir():
        return "cifar10"
    if any(path.glob("t10k-images*idx3-ubyte*")) or any(path.glob("train-images*idx3-ubyte*")):
        return "fashion-mnist"
    if (path / "cifar-100-python.tar.gz").is_file():
        return "cifar100"
    if (path / "cifar-10-python.tar.gz").is_file():
        return "cifar10"
    return "imagefolder"


@overload
def load_dataset(name_or_path: str, split: str = ..., *, limit: int | None = ...,
                 root: str | None = ..., stream: Literal[False] = ..., **options: Any
                 ) -> Dataset: ...
@overload
def load_dataset(name_or_path: str, split: str = ..., *, limit: int | None = ...,
                 root: str | None = ..., stream: bool, **options: Any
                 ) -> Dataset | StreamingDataset: ...
def load_dataset(
    name_or_path: str,
    split: str = "test",
    *,
    limit: int | None = None,
    root: str | None = None,
    stream: bool = False,
    **options: Any,
) -> Dataset | StreamingDataset:
    """Load a dataset by name, or by the path of its folder / archive.

    Args:
        name_or_path: one of :data:`DATASET_NAMES` (``digits``, ``fashion-mnist``, ``cifar10``,
            ``cifar100``, ``imagefolder``), or an existing folder / CIFAR ``.tar.gz`` archive
            whose kind is recognised from its layout (an unrecognised folder is read as an
            image folder).
        split: ``"train"`` or ``"test"``.
        limit: keep only the first ``limit`` samples (deterministic).
        root: where the files are; required for ``cifar10``, ``cifar100`` and ``imagefolder``;
            optional for ``fashion-mnist`` (default ``/usr/share/datasets/fashion-mnist``).
        stream: return a :class:`~onespike.data.stream.StreamingDataset` (a
            ``torch.utils.data.Dataset`` decoding one image per item) for image folders,
            CIFAR and Fashion-MNIST; the digits (1,797 8×8 images) stay in memory.
        **options: passed to the loader (e.g. ``resize``, ``center_crop``, ``normalize`` for
            image folders; ``seed`` for digits).

    Raises:
        UnknownDatasetError: the name is unknown and is not an existing path.
        DatasetNotFoundError: the files are missing, or ``name_or_path`` is a path (it has
            a folder separator or a suffix) that does not exist.
        DatasetFormatError: the files are corrupted, or an archive is truncated.
    """
    check_split(split)
    if limit is not None and limit < 0:
        raise ArgumentError(f"limit must be >= 0, got {limit}", argument="limit")
    name = _canonical(name_or_path)
    if name is None:
        path = Path(name_or_path).expanduser()
        if not path.exists() and _looks_like_path(name_or_path):
            raise DatasetNotFoundError(
                f"{name_or_path}: file or folder not found (nor a dataset name: "
                f"{', '.join(DATASET_NAMES)})"
            )
        guessed = _guess_from_path(path) if path.exists() else None
        if guessed is None and path.is_file():
            raise UnknownDatasetError(
                f"{name_or_path} is a file but not a dataset: expected a dataset name "
                f"({', '.join(DATASET_NAMES)}), a dataset folder or a CIFAR .tar.gz archive"
            )
        if guessed is None:
            raise UnknownDatasetError(
                f"unknown dataset {name_or_path!r}: not a known name ({', '.join(DATASET_NAMES)})"
                " nor an existing dataset folder or CIFAR archive"
            )
        if root is not None:
            raise ArgumentError("give either a dataset path or {root}, not both", argument="root",
                                params=("root",))
        name, root = guessed, str(path)

    if name == "digits":
        from onespike.data.digits import load_digits

        if root is not None:
            raise ArgumentError("the digits dataset is bundled with scikit-learn; it takes no "
                                "{root}", argument="root", params=("root",))
        return load_digits(split, limit=limit, **options)
    if name == "fashion-mnist":
        from onespike.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist(split, root=root, limit=limit, stream=stream, **options)
    if name in ("cifar10", "cifar100"):
        from onespike.data.cifar import load_cifar

        if root is None:
            raise ArgumentError(
                f"{name} needs {{root}} (the extracted cifar folder or the .tar.gz archive)",
                argument="root", params=("root",),
            )
        return load_cifar(
            root, split, num_classes=10 if name == "cifar10" else 100, limit=limit, stream=stream,
            **options
        )
    from onespike.data.imagefolder import load_imagefolder

    if root is None:
        raise ArgumentError("imagefolder needs {root} (a folder of <class>/<image> files)",
                            argument="root", params=("root",))
    return load_imagefolder(root, split, limit=limit, stream=stream, **options)
