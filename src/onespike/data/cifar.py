"""CIFAR-10 / CIFAR-100 from the standard "python version" pickle archives.

``root`` may be the extracted folder (``cifar-10-batches-py/`` or ``cifar-100-python/``), the
folder that contains it, the ``.tar.gz`` archive itself (read in memory, nothing is extracted),
or a folder containing that archive.

The batches are Python pickles. They are read with :class:`SafeUnpickler`, which refuses every
global except the three numpy functions needed to rebuild an array, so a tampered archive
cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onespike.data.dataset import Dataset, DatasetFormatError, DatasetNotFoundError, check_split
from onespike.data.stream import ArrayStream
from onespike.errors import ArgumentError

__all__ = ["SafeUnpickler", "UnsafePickleError", "archive_classes", "load_cifar", "safe_loads"]


class UnsafePickleError(DatasetFormatError, pickle.UnpicklingError):
    """A pickle referred to a global that is not on the allow-list (it was not loaded)."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    objs = {
        "_reconstruct": multiarray._reconstruct,
        "ndarray": np.ndarray,
        "dtype": np.dtype,
    }
    allowed: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): objs["_reconstruct"],
        ("numpy", "ndarray"): objs["ndarray"],
        ("numpy", "dtype"): objs["dtype"],
    }
    # numpy >= 2 writes the same function under its new module name.
    allowed[("numpy._core.multiarray", "_reconstruct")] = objs["_reconstruct"]
    return allowed


_ALLOWED = _numpy_globals()


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that only resolves ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``
    and ``numpy.dtype`` (the globals of a pickled numpy array); any other global raises
    :class:`UnsafePickleError`. Dicts, lists, strings, bytes and numbers need no globals."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: CIFAR batches only contain "
                "dicts, lists, bytes and numpy arrays (the file is corrupted or malicious)"
            ) from None


def safe_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (``encoding="bytes"`` as CIFAR needs).

    Raises:
        UnsafePickleError: the pickle refers to a forbidden global.
        DatasetFormatError: the data is not a valid pickle.
    """
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{source}: {exc}") from None
    except Exception as exc:
        raise DatasetFormatError(
            f"{source}: not a valid CIFAR pickle ({type(exc).__name__}: {exc})"
        ) from None


_LAYOUT: dict[int, dict[str, Any]] = {
    10: {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": [f"data_batch_{k}" for k in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "labels": "labels",
        "names": "label_names",
    },
    100: {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "labels": "fine_labels",
        "names": "fine_label_names",
    },
}


def _get(d: Any, key: str, source: str) -> Any:
    """``d[key]`` for bytes or str keys (Python 2 pickles read with encoding="bytes")."""
    if not isinstance(d, dict):
        raise DatasetFormatError(f"{source}: expected a dict, got {type(d).__name__}")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetFormatError(f"{source}: missing key {key!r} (keys: {sorted(map(str, d))})")


_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _unreadable(what: object, exc: BaseException) -> str:
    return (f"{what}: truncated or corrupted archive, cannot be read ({exc}); download it "
            "again (the CIFAR 'python version' download)")


#: Member names that identify each archive (its top folder, or files only it has).
_MARKERS = {
    10: {"cifar-10-batches-py", "batches.meta", "data_batch_1", "test_batch"},
    100: {"cifar-100-python"},
}


def archive_classes(path: str | os.PathLike[str]) -> int | None:
    """10 or 100 if the tar archive ``path`` holds CIFAR-10 / CIFAR-100 (read up to the first
    member that tells), None if it holds neither.

    Raises:
        DatasetFormatError: the archive cannot be read (truncated or corrupted).
    """
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = set(Path(member.name).parts)
                for num_classes, names in _MARKERS.items():
                    if parts & names:
                        return num_classes
    except _ARCHIVE_ERRORS as exc:
        raise DatasetFormatError(_unreadable(path, exc)) from None
    return None


class _Reader:
    """Reads member files either from a folder or from a .tar.gz archive."""

    def __init__(self, root: Path, num_classes: int) -> None:
        layout = _LAYOUT[num_classes]
        self.folder: Path | None = None
        self.archive: Path | None = None
        self._tar: tarfile.TarFile | None = None
        hint = (
            f"pass {{root}} as the extracted {layout['folder']}/ folder, the folder containing it, "
            f"or the {layout['archive']} archive (the CIFAR 'python version' download)"
        )
        if root.is_file():
            self.archive = root
        elif root.is_dir():
            if root.name == layout["folder"]:
                self.folder = root
            elif (root / layout["folder"]).is_dir():
                self.folder = root / layout["folder"]
            elif (root / layout["archive"]).is_file():
                self.archive = root / layout["archive"]
            elif (root / layout["meta"]).is_file():
                self.folder = root  # extracted under another name
            else:
                raise DatasetNotFoundError(f"no CIFAR-{num_classes} data in {root}; {hint}",
                                           params=("root",), path=root)
        else:
            raise DatasetNotFoundError(f"CIFAR-{num_classes} path {root} does not exist; {hint}",
                                       params=("root",), path=root)
        self.hint = hint
        self.num_classes = num_classes

    def __enter__(self) -> _Reader:
        if self.archive is not None:
            try:
                self._tar = tarfile.open(self.archive, "r:*")
                self._members = {Path(m.name).name: m for m in self._tar.getmembers() if m.isfile()}
            except _ARCHIVE_ERRORS as exc:
                raise DatasetFormatError(_unreadable(self.archive, exc)) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tar is not None:
            self._tar.close()

    def read(self, member: str) -> tuple[bytes, str]:
        if self.folder is not None:
            path = self.folder / member
            if not path.is_file():
                raise DatasetNotFoundError(
                    f"CIFAR-{self.num_classes} file {path} is missing; {self.hint}",
                    params=("root",), path=path,
                )
            return path.read_bytes(), str(path)
        assert self._tar is not None
        source = f"{self.archive}:{member}"
        info = self._members.get(member)
        if info is None:
            raise DatasetFormatError(
                f"{self.archive}: archive has no member {member!r}; {self.hint}",
                params=("root",), path=self.archive,
            )
        try:
            fh = self._tar.extractfile(info)
            assert fh is not None
            return fh.read(), source
        except _ARCHIVE_ERRORS as exc:
            raise DatasetFormatError(_unreadable(source, exc)) from None


def _decode_batch(obj: Any, labels_key: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    data = _get(obj, "data", source)
    labels = _get(obj, labels_key, source)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise DatasetFormatError(f"{source}: 'data' must be a uint8 numpy array")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(f"{source}: 'data' has shape {data.shape}, expected (N, 3072)")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{source}: {labels_key!r} is not a list of integers") from None
    if y.shape != (data.shape[0],):
        raise DatasetFormatError(
            f"{source}: {data.shape[0]} images but {labels_key!r} has shape {y.shape}"
        )
    return data, y


def load_cifar(
    root: str | os.PathLike[str],
    split: str = "test",
    *,
    num_classes: int = 10,
    limit: int | None = None,
    stream: bool = False,
) -> Dataset | ArrayStream:
    """Load CIFAR-10 or CIFAR-100 as 3×32×32 float32 images in [0, 1] and int64 labels.

    Args:
        root: extracted folder, its parent, the ``.tar.gz`` archive, or the archive's folder.
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000 images).
        num_classes: 10 (CIFAR-10) or 100 (CIFAR-100, fine labels).
        limit: keep only the first ``limit`` samples (later batches are not decoded).
        stream: return an :class:`~onespike.data.stream.ArrayStream` (the uint8 pixels,
            converted to float32 one image per item) instead of float32 tensors.

    Raises:
        DatasetNotFoundError: the path or a batch file is missing.
        DatasetFormatError: a file is corrupted, or an archive member is missing.
        UnsafePickleError: a batch tries to load a forbidden global.
    """
    check_split(split)
    if num_classes not in _LAYOUT:
        raise ArgumentError(f"num_classes must be 10 or 100, got {num_classes}",
                            argument="num_classes")
    layout = _LAYOUT[num_classes]
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    with _Reader(Path(root).expanduser(), num_classes) as reader:
        raw, source = reader.read(layout["meta"])
        names = _get(safe_loads(raw, source=source), layout["names"], source)
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        if len(classes) != num_classes:
            raise DatasetFormatError(
                f"{source}: {len(classes)} class names, expected {num_classes}"
            )
        count = 0
        for member in layout[split]:
            if limit is not None and count >= limit:
                break
            raw, source = reader.read(member)
            x, y = _decode_batch(safe_loads(raw, source=source), layout["labels"], source)
            if y.size and (y.min() < 0 or y.max() >= num_classes):
                raise DatasetFormatError(f"{source}: labels out of range 0..{num_classes - 1}")
            xs.append(x)
            ys.append(y)
            count += len(y)
    x = np.concatenate(xs) if xs else np.zeros((0, 3072), np.uint8)
    y = np.concatenate(ys) if ys else np.zeros((0,), np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if stream:
        return ArrayStream(np.ascontiguousarray(x.reshape(-1, 3, 32, 32)), torch.from_numpy(y),
                           classes,
                           f"cifar{num_classes}/{split}")
    images = torch.from_numpy(x.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0))
    return Dataset(images, torch.from_numpy(y), classes, f"cifar{num_classes}/{split}", (0.0, 1.0))
