"""Writers for tiny datasets in the real on-disk formats, shared by the data tests.

The ``formats`` fixture gives the test functions access to them (so they work under any
pytest import mode).
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    """Serialise a uint8 array in IDX format: magic 0x0000 TT NN, big-endian dims, data."""
    header = struct.pack(">HBB", 0, type_code, arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_fmnist(
    folder: Path, n_train: int = 12, n_test: int = 7, *, compress: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four Fashion-MNIST files; return the arrays written per split."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)[::-1].copy()
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            data = idx_bytes(arr)
            name = f"{prefix}-{kind}"
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        out[split] = (images, labels)
    return out


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes protocol-2 pickles as Python 2's cPickle did for CIFAR: str/bytes become
    BINSTRING opcodes and arrays refer to ``numpy.core.multiarray._reconstruct``."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def dumps_py2(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _batch(rng: np.random.Generator, n: int, labels_key: bytes, num_classes: int, tag: int):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, size=n)]
    batch = {
        b"batch_label": f"batch {tag}".encode(),
        labels_key: labels,
        b"data": data,
        b"filenames": [f"img_{tag}_{k}.png".encode() for k in range(n)],
    }
    if labels_key == b"fine_labels":
        batch[b"coarse_labels"] = [v // 5 for v in labels]
    return batch


def write_cifar10(folder: Path, per_batch: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``cifar-10-batches-py`` under ``folder``; return the train/test arrays."""
    rng = np.random.default_rng(1)
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]  # fmt: skip
    meta = {b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (root / "batches.meta").write_bytes(dumps_py2(meta))
    xs, ys = [], []
    for k in range(1, 6):
        batch = _batch(rng, per_batch, b"labels", 10, k)
        (root / f"data_batch_{k}").write_bytes(dumps_py2(batch))
        xs.append(batch[b"data"])
        ys += batch[b"labels"]
    test = _batch(rng, per_batch + 1, b"labels", 10, 0)
    (root / "test_batch").write_bytes(dumps_py2(test))
    (root / "readme.html").write_text("<html></html>")
    return {
        "train": (np.concatenate(xs), np.array(ys)),
        "test": (test[b"data"], np.array(test[b"labels"])),
    }


def write_cifar100(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2)
    root = folder / "cifar-100-python"
    root.mkdir(parents=True)
    meta = {
        b"fine_label_names": [f"class{k:03d}".encode() for k in range(100)],
        b"coarse_label_names": [f"super{k:02d}".encode() for k in range(20)],
    }
    (root / "meta").write_bytes(dumps_py2(meta))
    out = {}
    for split, n in (("train", 6), ("test", 4)):
        batch = _batch(rng, n, b"fine_labels", 100, 0)
        (root / split).write_bytes(dumps_py2(batch))
        out[split] = (batch[b"data"], np.array(batch[b"fine_labels"]))
    return out


def make_targz(folder: Path, name: str) -> Path:
    archive = folder.parent / f"{folder.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=name)
    return archive


def save(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (6, 4)) -> np.ndarray:
    """Save a solid-colour image of ``size`` (width, height); return its HWC uint8 array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[...] = rgb
    Image.fromarray(arr).save(path)
    return arr


def make_classes(root: Path) -> None:
    # Class folders created out of order; files of several extensions.
    save(root / "zebra" / "b.png", (0, 0, 255))
    save(root / "zebra" / "a.bmp", (0, 255, 0))
    save(root / "apple" / "x.png", (255, 0, 0))
    save(root / "mango" / "m1.ppm", (10, 20, 30))
    save(root / "mango" / "m0.png", (40, 50, 60))
    (root / "mango" / "notes.txt").write_text("not an image")


@pytest.fixture
def formats() -> SimpleNamespace:
    """The dataset writers of this module."""
    return SimpleNamespace(
        idx_bytes=idx_bytes,
        write_fmnist=write_fmnist,
        dumps_py2=dumps_py2,
        write_cifar10=write_cifar10,
        write_cifar100=write_cifar100,
        make_targz=make_targz,
        save=save,
        make_classes=make_classes,
    )
