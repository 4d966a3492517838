"""Load the trained weights shipped in ``onespike/pretrained/``.

Each ``<name>.safetensors`` file holds a ``state_dict`` written with
:func:`safetensors.torch.save_file` (no pickle); ``<name>.safetensors.json`` records how it was
trained (epochs, seed, test accuracy, training time, command line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from onespike.errors import ArgumentError, MissingFileError
from onespike.models.registry import get_model

__all__ = ["PRETRAINED_DIR", "PRETRAINED_NAMES", "load_pretrained", "pretrained_info"]

#: Folder holding the shipped weight files.
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"

#: Models that ship with trained weights.
PRETRAINED_NAMES: tuple[str, ...] = (
    "digits_cnn", "mlp_fmnist", "lenet5_fmnist", "vgg_fmnist", "resnet_fmnist", "densenet_fmnist",
)


def _path(name: str) -> Path:
    key = name.strip().lower().replace("-", "_")
    if key not in PRETRAINED_NAMES:
        raise ArgumentError(
            f"no pretrained weights for {name!r}; available: {', '.join(PRETRAINED_NAMES)}"
        )
    return PRETRAINED_DIR / f"{key}.safetensors"


def load_pretrained(name: str) -> nn.Module:
    """Build model ``name`` and load its shipped trained weights; returned in eval mode.

    Raises:
        ValueError: no weights are shipped for ``name``.
        FileNotFoundError: the weight file is missing from the installation.
    """
    from safetensors.torch import load_file

    path = _path(name)
    if not path.is_file():
        raise MissingFileError(
            f"pretrained weights {path} are missing; reinstall onespike or retrain with "
            f"`python scripts/train.py --model {path.stem} --out {path}`"
        )
    model = get_model(path.stem)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def pretrained_info(name: str) -> dict[str, Any]:
    """The training record (``<name>.safetensors.json``) of a shipped model."""
    path = _path(name)
    meta = path.with_name(path.name + ".json")
    if not meta.is_file():
        raise MissingFileError(f"training record {meta} is missing")
    return json.loads(meta.read_text())
