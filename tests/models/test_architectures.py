"""Model factories: shapes, layer counts, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from onespike.models import MODEL_NAMES, get_model, vgg16_cifar, vgg_fmnist

INPUTS = {
    "digits_cnn": (1, 8, 8),
    "mlp_fmnist": (1, 28, 28),
    "lenet5_fmnist": (1, 28, 28),
    "vgg_fmnist": (1, 28, 28),
    "vgg16_cifar": (3, 32, 32),
}

ALLOWED = (
    nn.Sequential, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU,
    nn.MaxPool2d, nn.Flatten, nn.Dropout,
)  # fmt: skip


def count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_shape_and_determinism(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name).eval()
    x = torch.rand(3, *INPUTS[name])
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert y1.shape == (3, 10)
    assert torch.equal(y1, y2)
    assert torch.isfinite(y1).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_only_mappable_layers(name: str) -> None:
    for path, module in get_model(name).named_modules():
        if path:
            assert isinstance(module, ALLOWED), f"{name}.{path}: {type(module).__name__}"


def test_layer_counts() -> None:
    assert count(get_model("digits_cnn"), nn.Conv2d) == 2
    mlp = get_model("mlp_fmnist")
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [600, 10]
    lenet = get_model("lenet5_fmnist")
    assert count(lenet, nn.Conv2d) == 2 and count(lenet, nn.Linear) == 3
    assert count(lenet, nn.BatchNorm2d) == 2 and count(lenet, nn.BatchNorm1d) == 2


def test_lenet_bn_before_relu_and_vgg_bn_after_relu() -> None:
    lenet = list(get_model("lenet5_fmnist"))
    for k, m in enumerate(lenet):
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert isinstance(lenet[k - 1], (nn.Conv2d, nn.Linear))
            assert isinstance(lenet[k + 1], nn.ReLU)
    feats = list(vgg_fmnist().features)
    assert sum(isinstance(m, nn.Conv2d) for m in feats) >= 8
    for k, m in enumerate(feats):
        if isinstance(m, nn.Conv2d):
            assert m.kernel_size == (3, 3) and m.padding == (1, 1)
            assert isinstance(feats[k + 1], nn.ReLU) and isinstance(feats[k + 2], nn.BatchNorm2d)


def test_vgg16_layout() -> None:
    model = vgg16_cifar()
    assert count(model, nn.Conv2d) == 13
    assert count(model, nn.Linear) == 3
    assert count(model, nn.MaxPool2d) == 5
    assert count(model, nn.BatchNorm2d) == 13
    assert isinstance(model.features, nn.Sequential)
    assert isinstance(model.classifier, nn.Sequential)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 512), (512, 10)]


@pytest.mark.parametrize(("num_classes", "in_size"), [(100, 32), (10, 64), (1000, 64)])
def test_vgg16_options(num_classes: int, in_size: int) -> None:
    model = vgg16_cifar(num_classes=num_classes, in_size=in_size).eval()
    assert model.classifier[1].in_features == 512 * (in_size // 32) ** 2
    with torch.no_grad():
        assert model(torch.rand(2, 3, in_size, in_size)).shape == (2, num_classes)


def test_vgg16_bad_arguments() -> None:
    with pytest.raises(ValueError, match="in_size"):
        vgg16_cifar(in_size=48)
    with pytest.raises(ValueError, match="num_classes"):
        vgg16_cifar(num_classes=0)


def test_get_model_unknown_and_aliases() -> None:
    with pytest.raises(ValueError, match="known models"):
        get_model("resnet50")
    assert isinstance(get_model("VGG-FMNIST"), nn.Module)
    assert get_model("vgg16_cifar", num_classes=100).classifier[-1].out_features == 100
