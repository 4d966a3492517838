"""The shipped trained weights load and reach their recorded accuracy."""

from __future__ import annotations

import pytest
import torch

from onespike.data import load_dataset
from onespike.models import PRETRAINED_NAMES, load_pretrained, pretrained_info
from onespike.models.pretrained import PRETRAINED_DIR

MAX_BYTES = 20_000_000


@pytest.mark.parametrize("name", PRETRAINED_NAMES)
def test_files_and_record(name: str) -> None:
    path = PRETRAINED_DIR / f"{name}.safetensors"
    assert path.is_file(), f"{path} missing"
    assert path.stat().st_size <= MAX_BYTES
    info = pretrained_info(name)
    assert info["model"] == name
    for key in ("epochs", "seed", "test_accuracy", "training_seconds", "torch_version", "command"):
        assert key in info


@pytest.mark.parametrize("name", PRETRAINED_NAMES)
def test_loads_in_eval_mode(name: str) -> None:
    model = load_pretrained(name)
    assert not model.training
    assert all(not m.training for m in model.modules())


def test_digits_accuracy() -> None:
    model = load_pretrained("digits_cnn")
    data = load_dataset("digits", "test")
    with torch.no_grad():
        acc = (model(data.images).argmax(1) == data.labels).float().mean().item()
    assert acc >= 0.95
    assert acc == pytest.approx(pretrained_info("digits_cnn")["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize(
    "name",
    [
        "mlp_fmnist",
        "lenet5_fmnist",
        pytest.param("vgg_fmnist", marks=pytest.mark.slow),
        pytest.param("resnet_fmnist", marks=pytest.mark.slow),
        pytest.param("densenet_fmnist", marks=pytest.mark.slow),
    ],
)
def test_fashion_mnist_accuracy(name: str) -> None:
    """Full 10,000-image test split: matches the training record (VGG ≥ 92 %)."""
    model = load_pretrained(name)
    data = load_dataset("fashion-mnist", "test")
    correct = 0
    with torch.no_grad():
        for x, y in data.batches(1000):
            correct += int((model(x).argmax(1) == y).sum())
    acc = correct / len(data)
    assert acc == pytest.approx(pretrained_info(name)["test_accuracy"], abs=2e-4)
    if name == "vgg_fmnist":
        assert acc >= 0.92


@pytest.mark.parametrize("name", ["resnet_fmnist", "densenet_fmnist"])
def test_dag_models_accuracy_on_a_subset(name: str) -> None:
    """The residual / dense models: ≥ 85 % on the first 1,000 test images (quick), ≥ 89 % on
    the full test split according to their training record."""
    model = load_pretrained(name)
    data = load_dataset("fashion-mnist", "test", limit=1000)
    with torch.no_grad():
        acc = (model(data.images).argmax(1) == data.labels).float().mean().item()
    assert acc >= 0.85
    info = pretrained_info(name)
    assert info["test_accuracy"] >= 0.89
    assert info["parameters"] == sum(p.numel() for p in model.parameters())


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="available"):
        load_pretrained("vgg16_cifar")
    with pytest.raises(ValueError, match="available"):
        load_pretrained("resnet18_cifar")
