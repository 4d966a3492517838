"""CIFAR loaders: tiny archives in the real pickle format, folders and .tar.gz, unsafe pickles."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from onespike.data import DatasetFormatError, DatasetNotFoundError, load_dataset
from onespike.data.cifar import (
    SafeUnpickler,
    UnsafePickleError,
    archive_classes,
    load_cifar,
    safe_loads,
)


def check(ds, data: np.ndarray, labels: np.ndarray) -> None:
    assert ds.images.shape == (len(labels), 3, 32, 32)
    assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
    expected = data.reshape(-1, 3, 32, 32) / 255.0
    np.testing.assert_allclose(ds.images.numpy(), expected, rtol=0, atol=1e-7)
    assert ds.labels.tolist() == labels.tolist()
    assert ds.input_range == (0.0, 1.0)


def test_cifar10_folder(tmp_path: Path, formats: SimpleNamespace) -> None:
    arrays = formats.write_cifar10(tmp_path)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        for split in ("train", "test"):
            ds = load_cifar(root, split)
            check(ds, *arrays[split])
            assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    # Channel layout: the first 1024 bytes of a row are the red plane.
    ds = load_cifar(tmp_path, "test")
    red = torch.tensor(arrays["test"][0][0, :1024], dtype=torch.float32)
    assert torch.equal((ds.images[0, 0].flatten() * 255).round(), red)


def test_cifar10_targz_and_registry(tmp_path: Path, formats: SimpleNamespace) -> None:
    arrays = formats.write_cifar10(tmp_path / "src")
    archive = formats.make_targz(tmp_path / "src" / "cifar-10-batches-py", "cifar-10-batches-py")
    archive = archive.rename(tmp_path / "cifar-10-python.tar.gz")
    ds = load_dataset("cifar10", "train", root=str(archive))
    check(ds, *arrays["train"])
    ds = load_dataset("cifar10", "test", root=str(tmp_path), limit=2)  # folder with the archive
    check(ds, arrays["test"][0][:2], arrays["test"][1][:2])
    ds = load_dataset(str(archive), "test")  # archive path instead of a name
    check(ds, *arrays["test"])


def test_cifar10_limit_reads_first_samples(tmp_path: Path, formats: SimpleNamespace) -> None:
    arrays = formats.write_cifar10(tmp_path)
    ds = load_cifar(tmp_path, "train", limit=4)
    check(ds, arrays["train"][0][:4], arrays["train"][1][:4])


def test_cifar100_folder_and_archive(tmp_path: Path, formats: SimpleNamespace) -> None:
    arrays = formats.write_cifar100(tmp_path / "src")
    ds = load_dataset("cifar100", "train", root=str(tmp_path / "src"))
    check(ds, *arrays["train"])
    assert len(ds.classes) == 100 and ds.classes[7] == "class007"
    archive = formats.make_targz(tmp_path / "src" / "cifar-100-python", "cifar-100-python")
    ds = load_dataset("cifar100", "test", root=str(archive))
    check(ds, *arrays["test"])


def test_wrong_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_cifar(tmp_path / "missing", "test")
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_cifar(tmp_path, "test")
    with pytest.raises(ValueError, match="root"):
        load_dataset("cifar10")


def test_missing_batch(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        load_cifar(tmp_path, "train")


def test_corrupted_batch(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetFormatError, match="test_batch"):
        load_cifar(tmp_path, "test")


def test_wrong_data_shape(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_cifar10(tmp_path)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(formats.dumps_py2(bad))
    with pytest.raises(DatasetFormatError, match=r"\(N, 3072\)"):
        load_cifar(tmp_path, "test")


def test_corrupted_archive(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00 this is not a tarball")
    with pytest.raises(DatasetFormatError, match="tar"):
        load_cifar(archive, "test")


def _archive(tmp_path: Path, formats: SimpleNamespace, classes: int = 10) -> Path:
    if classes == 10:
        formats.write_cifar10(tmp_path / "src", per_batch=20)
        return formats.make_targz(tmp_path / "src" / "cifar-10-batches-py",
                                  "cifar-10-batches-py")
    formats.write_cifar100(tmp_path / "src")
    return formats.make_targz(tmp_path / "src" / "cifar-100-python", "cifar-100-python")


@pytest.mark.parametrize("classes", [10, 100])
def test_archive_kind_from_its_members(tmp_path: Path, formats: SimpleNamespace,
                                       classes: int) -> None:
    archive = _archive(tmp_path, formats, classes)
    neutral = archive.rename(tmp_path / "download.tgz")  # the name tells nothing
    assert archive_classes(neutral) == classes
    ds = load_dataset(str(neutral), "test")
    assert ds.name == f"cifar{classes}/test"


def test_archive_of_something_else(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.make_classes(tmp_path / "imgs")
    archive = formats.make_targz(tmp_path / "imgs", "imgs")
    assert archive_classes(archive) is None
    with pytest.raises(DatasetFormatError, match="no CIFAR-10/100 data"):
        load_dataset(str(archive))


@pytest.mark.parametrize("name", ["cifar-10-python.tar.gz", "data.tar.gz"])
@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_archive(tmp_path: Path, formats: SimpleNamespace, name: str,
                           keep: float) -> None:
    raw = _archive(tmp_path, formats).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(raw[: max(20, int(len(raw) * keep))])
    for call in (lambda: load_dataset(str(cut), "train"),
                 lambda: load_dataset("cifar10", "train", root=str(cut)),
                 lambda: load_cifar(cut, "train")):
        with pytest.raises(DatasetFormatError) as info:
            call()
        message = str(info.value)
        assert str(cut) in message
        assert "truncated" in message.replace(str(cut), "")  # tmp_path holds the word too


def test_archive_missing_member(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_cifar10(tmp_path / "src")
    (tmp_path / "src" / "cifar-10-batches-py" / "test_batch").unlink()
    archive = formats.make_targz(tmp_path / "src" / "cifar-10-batches-py", "cifar-10-batches-py")
    with pytest.raises(DatasetFormatError, match="test_batch"):
        load_cifar(archive, "test")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path, formats: SimpleNamespace) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2)
    # The payload refers to os.system (posix.system): a plain pickle.loads would run it.
    assert b"system" in payload
    with pytest.raises(UnsafePickleError, match="refusing to unpickle global"):
        safe_loads(payload)
    assert not marker.exists()

    formats.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(payload)
    with pytest.raises(UnsafePickleError, match="test_batch"):
        load_cifar(tmp_path, "test")
    assert not marker.exists()
    assert issubclass(UnsafePickleError, DatasetFormatError)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("numpy", "load"),
        ("numpy.core.multiarray", "scalar"),
        ("subprocess", "Popen"),
        ("numpy.lib.npyio", "load"),
        ("_codecs", "encode"),
    ],
)
def test_only_three_numpy_globals_allowed(module: str, name: str) -> None:
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        SafeUnpickler(io.BytesIO(b"")).find_class(module, name)


def test_allowed_globals() -> None:
    up = SafeUnpickler(io.BytesIO(b""))
    assert up.find_class("numpy", "ndarray") is np.ndarray
    assert up.find_class("numpy", "dtype") is np.dtype
    assert callable(up.find_class("numpy.core.multiarray", "_reconstruct"))


def test_python3_pickles_also_load() -> None:
    obj = {b"data": np.arange(3072, dtype=np.uint8)[None], b"labels": [3]}
    out = safe_loads(pickle.dumps(obj, protocol=3))
    assert np.array_equal(out[b"data"], obj[b"data"]) and out[b"labels"] == [3]
