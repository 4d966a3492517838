"""load_dataset dispatch, the Dataset container and its errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from onespike.data import (
    DATASET_NAMES,
    Dataset,
    DatasetNotFoundError,
    UnknownDatasetError,
    load_dataset,
)


def test_known_names() -> None:
    assert set(DATASET_NAMES) == {"digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder"}


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownDatasetError) as info:
        load_dataset("mnist-but-not-really")
    for name in DATASET_NAMES:
        assert name in str(info.value)
    assert issubclass(UnknownDatasetError, ValueError)


def test_digits_via_registry_and_limit() -> None:
    ds = load_dataset("digits", "train", limit=17)
    assert isinstance(ds, Dataset) and len(ds) == 17 and ds.name == "digits/train"
    assert ds.input_shape == (1, 8, 8)


def test_bad_split_and_limit() -> None:
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "val")
    with pytest.raises(ValueError, match="limit"):
        load_dataset("digits", limit=-1)


def test_aliases_and_roots(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path / "fm")
    assert len(load_dataset("fashion_mnist", root=str(tmp_path / "fm"))) == 7
    assert len(load_dataset("FMNIST", "train", root=str(tmp_path / "fm"))) == 12
    with pytest.raises(DatasetNotFoundError, match="apt-get"):
        load_dataset("fashion-mnist", root=str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="root"):
        load_dataset("imagefolder")


def test_path_detection(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.write_fmnist(tmp_path / "fm")
    formats.write_cifar10(tmp_path / "c10")
    formats.make_classes(tmp_path / "imgs")
    assert load_dataset(str(tmp_path / "fm")).name == "fashion-mnist/test"
    assert load_dataset(str(tmp_path / "c10")).name == "cifar10/test"
    assert load_dataset(str(tmp_path / "c10" / "cifar-10-batches-py")).name == "cifar10/test"
    assert load_dataset(str(tmp_path / "imgs")).classes == ["apple", "mango", "zebra"]
    with pytest.raises(UnknownDatasetError, match="unknown dataset"):
        load_dataset("does-not-exist")  # neither a name nor a path


@pytest.mark.parametrize("missing", ["nowhere/data", "calib.pt", "cifar-10-python.tar.gz",
                                     "./gone"])
def test_missing_path_is_not_found(tmp_path: Path, monkeypatch, missing: str) -> None:
    """A name that looks like a path (a separator, a suffix, a leading dot) and does not
    exist is a missing file, not an unknown dataset."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="not found") as info:
        load_dataset(missing)
    assert missing in str(info.value)


def test_existing_file_that_is_no_dataset(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnknownDatasetError, match="is a file but not a dataset"):
        load_dataset(str(tmp_path / "notes.txt"))


def test_options_are_forwarded(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.make_classes(tmp_path)
    ds = load_dataset("imagefolder", root=str(tmp_path), center_crop=2, limit=3)
    assert ds.images.shape == (3, 3, 2, 2)
    with pytest.raises(TypeError):
        load_dataset("digits", bogus_option=1)


def test_dataset_batches_and_frozen() -> None:
    ds = load_dataset("digits", "test", limit=25)
    batches = list(ds.batches(10))
    assert [len(y) for _, y in batches] == [10, 10, 5]
    assert torch.equal(torch.cat([x for x, _ in batches]), ds.images)
    assert torch.equal(torch.cat([y for _, y in batches]), ds.labels)
    with pytest.raises(ValueError):
        list(ds.batches(0))
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]
    assert len(ds.subset(3)) == 3


def test_dataset_validation() -> None:
    with pytest.raises(ValueError, match="NCHW"):
        Dataset(torch.zeros(2, 8, 8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels"):
        Dataset(torch.zeros(2, 1, 8, 8), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="float32"):
        Dataset(torch.zeros(2, 1, 8, 8, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
