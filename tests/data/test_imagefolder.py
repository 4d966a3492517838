"""Image-folder loader: class folders, flat folders, resize / crop / normalise."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from onespike.data import DatasetFormatError, DatasetNotFoundError, load_dataset
from onespike.data.imagefolder import list_images, load_imagefolder


def test_class_folders(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.make_classes(tmp_path)
    ds = load_imagefolder(tmp_path)
    assert ds.classes == ["apple", "mango", "zebra"]
    assert ds.labels.tolist() == [0, 1, 1, 2, 2]
    assert ds.images.shape == (5, 3, 4, 6) and ds.images.dtype == torch.float32
    # Order: class, then file name: apple/x, mango/m0, mango/m1, zebra/a, zebra/b.
    colours = (ds.images[:, :, 0, 0] * 255).round().int().tolist()
    assert colours == [[255, 0, 0], [40, 50, 60], [10, 20, 30], [0, 255, 0], [0, 0, 255]]
    assert ds.input_range == (0.0, 1.0)
    paths, labels, classes = list_images(tmp_path)
    assert labels == [0, 1, 1, 2, 2] and classes == ["apple", "mango", "zebra"]
    assert [p.name for p in paths] == ["x.png", "m0.png", "m1.ppm", "a.bmp", "b.png"]


def test_jpeg_and_grayscale_are_converted_to_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((5, 5), 128, np.uint8), mode="L").save(tmp_path / "g.png")
    Image.fromarray(np.full((5, 5, 3), 200, np.uint8)).save(tmp_path / "c.jpg", quality=95)
    ds = load_imagefolder(tmp_path)
    assert ds.images.shape == (2, 3, 5, 5)
    assert abs(float(ds.images[0].mean()) * 255 - 200) < 3  # c.jpg first (sorted)
    assert torch.allclose(ds.images[1], torch.full((3, 5, 5), 128 / 255))


def test_flat_folder_is_unlabelled(tmp_path: Path, formats: SimpleNamespace) -> None:
    for k in range(3):
        formats.save(tmp_path / f"img{k}.png", (k, k, k))
    ds = load_dataset("imagefolder", root=str(tmp_path))
    assert ds.labels.tolist() == [-1, -1, -1] and ds.classes == []
    assert len(ds) == 3


def test_limit(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.make_classes(tmp_path)
    ds = load_imagefolder(tmp_path, limit=2)
    assert ds.labels.tolist() == [0, 1]


def test_resize_and_center_crop(tmp_path: Path, formats: SimpleNamespace) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :, 0] = np.arange(40, dtype=np.uint8)[None, :] * 6  # horizontal red ramp
    Image.fromarray(arr).save(tmp_path / "a.png")
    formats.save(tmp_path / "b.png", (1, 2, 3), size=(30, 30))
    ds = load_imagefolder(tmp_path, resize=10, center_crop=8)
    assert ds.images.shape == (2, 3, 8, 8)
    # The crop of the ramp is centred: its mean red is close to the full ramp's mean.
    assert abs(float(ds.images[0, 0].mean()) - arr[:, :, 0].mean() / 255) < 0.05
    rect = load_imagefolder(tmp_path, resize=12, center_crop=(6, 10))
    assert rect.images.shape == (2, 3, 6, 10)


def test_different_sizes_need_resize(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.save(tmp_path / "a.png", (0, 0, 0), size=(5, 5))
    formats.save(tmp_path / "b.png", (0, 0, 0), size=(6, 5))
    with pytest.raises(DatasetFormatError, match="resize"):
        load_imagefolder(tmp_path)


def test_crop_larger_than_image(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.save(tmp_path / "a.png", (0, 0, 0), size=(5, 5))
    with pytest.raises(DatasetFormatError, match="smaller than the center crop"):
        load_imagefolder(tmp_path, center_crop=8)


def test_normalize(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.save(tmp_path / "a.png", (255, 0, 51))
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    ds = load_imagefolder(tmp_path, normalize=(mean, std))
    assert torch.allclose(ds.images[0, :, 0, 0], torch.tensor([1.0, -1.0, 0.1]))
    assert ds.input_range == pytest.approx((-1.0, 3.0))


def test_split_folders(tmp_path: Path, formats: SimpleNamespace) -> None:
    formats.make_classes(tmp_path / "train")
    formats.save(tmp_path / "val" / "cat" / "c.png", (1, 1, 1))
    assert load_imagefolder(tmp_path, "train").classes == ["apple", "mango", "zebra"]
    test = load_imagefolder(tmp_path, "test")  # "val" stands in for "test"
    assert test.classes == ["cat"] and len(test) == 1


def test_errors(tmp_path: Path, formats: SimpleNamespace) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_imagefolder(tmp_path / "missing")
    with pytest.raises(DatasetNotFoundError, match="no images"):
        load_imagefolder(tmp_path)
    formats.save(tmp_path / "cls" / "a.png", (0, 0, 0))
    formats.save(tmp_path / "loose.png", (0, 0, 0))
    with pytest.raises(DatasetFormatError, match="mixes"):
        load_imagefolder(tmp_path)


def test_corrupted_image(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetFormatError, match=r"bad\.png"):
        load_imagefolder(tmp_path)
