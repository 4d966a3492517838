"""A small, deterministic CPU training loop for onespike's ReLU models.

Used by ``onespike demo`` when the shipped digits weights are missing. It follows the recipe
of ``scripts/train.py`` (AdamW + one-cycle learning rate, seeded shuffling, no augmentation
for the digits): ``train_pretrained("digits_cnn")`` trains the same model the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from onespike.data import Dataset
from onespike.errors import ArgumentError

__all__ = ["DIGITS_RECIPE", "Recipe", "accuracy", "train", "train_pretrained"]


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters of one model."""

    dataset: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float


#: The digits CNN recipe of ``scripts/train.py``.
DIGITS_RECIPE = Recipe("digits", epochs=30, batch_size=64, lr=3e-3, weight_decay=1e-4)


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (switched to eval mode) on ``data``."""
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in data.batches(batch_size))
    return correct / max(len(data), 1)


def train(
    model: nn.Module,
    train_ds: Dataset,
    test_ds: Dataset | None = None,
    *,
    epochs: int,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train ``model`` in place with AdamW + OneCycleLR and cross-entropy; returns one record
    per epoch (loss, train accuracy, test accuracy if ``test_ds``). The model ends in eval
    mode. Shuffling uses a generator seeded with ``seed``."""
    if epochs < 1:
        raise ArgumentError(f"epochs must be >= 1, got {epochs}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = -(-len(train_ds) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs,
                                                steps_per_epoch=steps)
    history: list[dict[str, Any]] = []
    bar = tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not progress,
               leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train_ds), generator=gen)
        loss_sum, correct = 0.0, 0
        for k in range(steps):
            idx = order[k * batch_size : (k + 1) * batch_size]
            x, y = train_ds.images[idx], train_ds.labels[idx]
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
        row: dict[str, Any] = {"epoch": epoch, "loss": loss_sum / len(train_ds),
                               "train_acc": correct / len(train_ds)}
        if test_ds is not None:
            row["test_acc"] = accuracy(model, test_ds)
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
    model.eval()
    return history


def train_pretrained(name: str = "digits_cnn", *, seed: int = 0, epochs: int | None = None,
                     progress: bool = True) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train a built-in model from scratch with its recipe (only ``digits_cnn`` here)."""
    from onespike.data import load_dataset
    from onespike.models import get_model

    if name != "digits_cnn":
        raise ArgumentError(f"no training recipe for {name!r} in onespike.apps.training (use "
                            "scripts/train.py)")
    r = DIGITS_RECIPE
    torch.manual_seed(seed)  # the initial weights, as in scripts/train.py
    model = get_model(name)
    history = train(model, load_dataset(r.dataset, "train"), load_dataset(r.dataset, "test"),
                    epochs=epochs or r.epochs, seed=seed, batch_size=r.batch_size, lr=r.lr,
                    weight_decay=r.weight_decay, progress=progress)
    return model, history
