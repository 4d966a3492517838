"""Small image folders and a tiny model for the streaming and distributed tests."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: A model file for ``--model FILE.py:make`` (3×SIZE×SIZE inputs, three classes).
MODEL_SOURCE = '''
import torch
from torch import nn

def make(size: int = 8):
    torch.manual_seed(0)
    k = 4 if size >= 16 else 3
    s = 4 if size >= 16 else 1
    n = (size - k) // s + 1
    return nn.Sequential(nn.Conv2d(3, 2, k, stride=s), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * n * n, 3)).eval()

def make48():
    return make(48)
'''


def tiny_model(size: int = 8) -> nn.Module:
    scope: dict[str, object] = {}
    exec(MODEL_SOURCE, scope)
    return scope["make"](size)  # type: ignore[operator]


def write_model_file(folder: Path) -> Path:
    path = folder / "tinynet.py"
    path.write_text(MODEL_SOURCE)
    return path


def make_image_folder(root: Path, count: int, size: int = 8, classes: int = 3,
                      seed: int = 0) -> Path:
    """``root/<class>/<k>.png``: ``count`` random RGB images of ``size``×``size``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(count):
        d = root / f"c{k % classes}"
        d.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(d / f"{k:05d}.png")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", ONESPIKE_THREADS="1", PYTHONUNBUFFERED="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def onespike_cmd() -> list[str]:
    """The onespike command of this interpreter (its scripts folder, else -m)."""
    exe = Path(sys.executable).with_name("onespike")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "onespike"]


def torchrun_cmd(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "--no-python", *onespike_cmd()]


_ = torch  # the model source imports it in its own scope
