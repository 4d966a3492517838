"""Image-folder datasets (Places365 / PASS style).

Two layouts are understood:

* ``root/<class>/<image>`` — one sub-folder per class, classes sorted alphabetically and
  numbered 0, 1, ...;
* ``root/<image>`` — a flat folder without labels (PASS): every label is ``-1``.

If ``root`` holds only ``train`` / ``test`` / ``val`` sub-folders, ``root/<split>`` is read
(``val`` stands in for ``test``). Images are read with Pillow (installed with matplotlib) and
converted to RGB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from onespike.data.dataset import Dataset, DatasetFormatError, DatasetNotFoundError, check_split
from onespike.data.images import open_rgb
from onespike.data.stream import ImageFolderStream, _normalise
from onespike.errors import ArgumentError

__all__ = ["IMAGE_EXTENSIONS", "list_images", "load_imagefolder"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm"})
_SPLIT_DIRS = {"train", "test", "val"}


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _split_root(root: Path, split: str) -> Path:
    subdirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if subdirs and subdirs <= _SPLIT_DIRS:
        for name in (split, "val") if split == "test" else (split,):
            if name in subdirs:
                return root / name
        raise DatasetNotFoundError(
            f"{root} has split folders {sorted(subdirs)} but none for split {split!r}"
        )
    return root


def list_images(root: str | os.PathLike[str]) -> tuple[list[Path], list[int], list[str]]:
    """List the images of an image folder: ``(paths, labels, class_names)``.

    Class sub-folders are sorted alphabetically, files within a class by name. A flat folder
    gives labels ``-1`` and no class names.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist")
    class_dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    loose = sorted((p for p in root.iterdir() if _is_image(p)), key=lambda p: p.name)
    if class_dirs and loose:
        raise DatasetFormatError(
            f"{root} mixes class sub-folders with loose images ({loose[0].name}, ...); use "
            "either root/<class>/<image> or a flat folder of images"
        )
    if not class_dirs:
        if not loose:
            raise DatasetNotFoundError(
                f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {root}"
            )
        return loose, [-1] * len(loose), []
    paths: list[Path] = []
    labels: list[int] = []
    for k, d in enumerate(class_dirs):
        files = sorted((p for p in d.rglob("*") if _is_image(p)), key=lambda p: str(p))
        paths += files
        labels += [k] * len(files)
    if not paths:
        raise DatasetNotFoundError(f"no images in the class folders of {root}")
    return paths, labels, [d.name for d in class_dirs]


def _check_normalize(normalize: tuple[Sequence[float], Sequence[float]] | None
                     ) -> tuple[tuple[list[float], list[float]] | None, tuple[float, float]]:
    """``((mean, std) as 3 values each, input range)`` of ``normalize`` (checked)."""
    if normalize is None:
        return None, (0.0, 1.0)
    mean = torch.as_tensor(normalize[0], dtype=torch.float32).reshape(-1)
    std = torch.as_tensor(normalize[1], dtype=torch.float32).reshape(-1)
    if mean.numel() not in (1, 3) or std.numel() not in (1, 3):
        raise ArgumentError("normalize needs (mean, std) with 1 or 3 values each")
    if bool((std <= 0).any()):
        raise ArgumentError(f"normalize std must be positive, got {std.tolist()}")
    mean3, std3 = mean.expand(3), std.expand(3)
    input_range = (float(((0.0 - mean3) / std3).min()), float(((1.0 - mean3) / std3).max()))
    return (mean3.tolist(), std3.tolist()), input_range


def load_imagefolder(
    root: str | os.PathLike[str],
    split: str = "test",
    *,
    limit: int | None = None,
    resize: int | None = None,
    center_crop: int | tuple[int, int] | None = None,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    stream: bool = False,
) -> Dataset | ImageFolderStream:
    """Load an image folder as float32 RGB images (3×H×W) in [0, 1] and int64 labels.

    Args:
        root: ``root/<class>/<image>`` or a flat folder of images (labels ``-1``); if it
            holds only ``train``/``test``/``val`` folders, the one for ``split`` is used.
        split: ``"train"`` or ``"test"`` (only used with split sub-folders).
        limit: read only the first ``limit`` images (in class, then file-name order).
        resize: scale each image so its shorter side is ``resize`` pixels (bilinear).
        center_crop: crop the central ``size`` (int or ``(height, width)``) pixels.
        normalize: ``(mean, std)`` per channel; images become ``(x - mean) / std`` and
            ``input_range`` is widened to cover the normalised range of [0, 1].
        stream: return an :class:`~onespike.data.stream.ImageFolderStream` that reads and
            decodes one image per item (memory independent of the number of images; a
            file that cannot be read or differs in size raises when its item is read).

    Raises:
        DatasetNotFoundError: the folder does not exist or holds no images.
        DatasetFormatError: an image cannot be decoded, or the images differ in size
            (use ``resize`` and ``center_crop``).
    """
    check_split(split)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist")
    folder = _split_root(root, split)
    paths, labels, classes = list_images(folder)
    if limit is not None:
        paths, labels = paths[:limit], labels[:limit]
    if stream:
        norm, input_range = _check_normalize(normalize)
        return ImageFolderStream(paths, labels, classes, f"imagefolder:{folder.name}",
                                 resize=resize, center_crop=center_crop, normalize=norm,
                                 input_range=input_range)
    arrays = [open_rgb(p, resize, center_crop) for p in paths]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DatasetFormatError(
            f"images in {folder} have different sizes {sorted(shapes)[:3]}...; pass resize= "
            "and center_crop= to make them equal"
        )
    if arrays:
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    else:
        x = torch.zeros((0, 3, 1, 1))
    x = x.contiguous()
    norm, input_range = _check_normalize(normalize)
    if norm is not None:
        x = _normalise(x, norm)
    return Dataset(
        x,
        torch.tensor(labels, dtype=torch.int64),
        classes,
        f"imagefolder:{folder.name}",
        input_range,
    )
