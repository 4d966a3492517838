"""Fashion-MNIST IDX reader: synthetic files in the real format, and the real test split."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from onespike.data import DatasetFormatError, DatasetNotFoundError, load_dataset
from onespike.data.fashion_mnist import CLASSES, DEFAULT_ROOT, load_fashion_mnist, read_idx


@pytest.mark.parametrize("compress", [True, False])
def test_reads_synthetic_idx(tmp_path: Path, compress: bool, formats: SimpleNamespace) -> None:
    arrays = formats.write_fmnist(tmp_path, compress=compress)
    for split in ("train", "test"):
        ds = load_fashion_mnist(split, root=tmp_path)
        images, labels = arrays[split]
        assert ds.images.shape == (len(labels), 1, 28, 28)
        assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
        np.testing.assert_allclose(ds.images[:, 0].numpy(), images / 255.0, rtol=0, atol=1e-7)
        assert ds.labels.tolist() == labels.tolist()
        assert ds.classes == CLASSES and ds.input_range == (0.0, 1.0)
        assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0


def test_limit(tmp_path: Path, formats: SimpleNamespace) -> None:
    arrays = formats.write_fmnist(tmp_path)
    ds = load_fashion_mnist("train", root=tmp_path, limit=5)
    assert len(ds) == 5 and ds.labels.tolist() == arrays["train"][1][:5].tolist()


def test_missing_folder_mentions_apt_get(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("test", root=tmp_path / "nope")
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_missing_file(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        load_fashion_mnist("test", root=tmp_path)
    assert "apt-get install -y dataset-fashion-mnist" in str(info.value)
    assert "root=" in str(info.value)
    # The train split is still readable.
    assert len(load_fashion_mnist("train", root=tmp_path)) == 12


def test_bad_magic(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path, compress=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[0:4] = b"\x12\x34\x08\x03"
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetFormatError, match="magic"):
        load_fashion_mnist("test", root=tmp_path)


def test_wrong_ndim(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path)
    # A labels file where the images file should be.
    labels = np.zeros(7, np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(formats.idx_bytes(labels)))
    with pytest.raises(DatasetFormatError, match="1 dimensions, expected 3"):
        load_fashion_mnist("test", root=tmp_path)


def test_truncated(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetFormatError, match="truncated"):
        load_fashion_mnist("test", root=tmp_path)


def test_truncated_gzip_stream(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DatasetFormatError, match="gzip"):
        load_fashion_mnist("test", root=tmp_path)


def test_count_mismatch(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(formats.idx_bytes(np.zeros(6, np.uint8)))
    )
    with pytest.raises(DatasetFormatError, match="7 images but"):
        load_fashion_mnist("test", root=tmp_path)


def test_label_out_of_range(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(formats.idx_bytes(np.full(7, 10, np.uint8)))
    )
    with pytest.raises(DatasetFormatError, match="out of range"):
        load_fashion_mnist("test", root=tmp_path)


def test_read_idx_other_types(tmp_path: Path) -> None:
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    raw = struct.pack(">HBB", 0, 0x0C, 2) + struct.pack(">2I", 2, 3) + arr.tobytes()
    (tmp_path / "x.idx").write_bytes(raw)
    out = read_idx(tmp_path / "x.idx")
    assert out.tolist() == [[0, 1, 2], [3, 4, 5]] and out.dtype == np.int32


def test_real_fashion_mnist_test_split() -> None:
    """The real files of the Debian package (installed in CI): never skipped."""
    if not (DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            f"Fashion-MNIST is not installed in {DEFAULT_ROOT}: run "
            "`apt-get install -y dataset-fashion-mnist`"
        )
    ds = load_dataset("fashion-mnist", "test")
    assert ds.images.shape == (10000, 1, 28, 28)
    assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
    assert torch.bincount(ds.labels, minlength=10).tolist() == [1000] * 10
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
    # The first test image is an ankle boot (label 9), the second a pullover (label 2).
    assert ds.labels[:2].tolist() == [9, 2]
