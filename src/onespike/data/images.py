"""Decoding one image file (Pillow, installed with matplotlib) into RGB pixels — shared by the
in-memory image-folder loader and its streaming dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onespike.data.dataset import DatasetFormatError
from onespike.errors import MissingDependencyError

__all__ = ["open_rgb"]


def open_rgb(path: Path, resize: int | None = None,
             center_crop: int | tuple[int, int] | None = None) -> np.ndarray:
    """The image at ``path`` as RGB ``uint8`` pixels ``(H, W, 3)``: its shorter side resized
    to ``resize`` (bilinear), then the centre ``center_crop`` (``size`` or ``(height, width)``)
    cut out. Raises :class:`DatasetFormatError` naming the file when it cannot be decoded or
    is smaller than the crop."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a matplotlib dependency
        raise MissingDependencyError("reading image folders needs Pillow (`pip install pillow`)",
                                     package="pillow") from exc
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except Exception as exc:
        raise DatasetFormatError(f"{path}: cannot read image ({exc})") from None
    if resize is not None:
        w, h = img.size
        scale = resize / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size != img.size:
            img = img.resize(size, Image.Resampling.BILINEAR)
    if center_crop is not None:
        ch, cw = (center_crop, center_crop) if isinstance(center_crop, int) else center_crop
        w, h = img.size
        if cw > w or ch > h:
            raise DatasetFormatError(
                f"{path}: image {w}×{h} is smaller than the center crop {cw}×{ch}; "
                "use resize= as well"
            )
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return np.asarray(img, dtype=np.uint8)
