"""Model factories: shapes, layer counts, determinism."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.fx
from torch import nn

from onespike.models import (
    MODEL_NAMES,
    BasicBlock,
    densenet_fmnist,
    get_model,
    resnet18_cifar,
    resnet_fmnist,
    vgg16_cifar,
    vgg_fmnist,
)
from onespike.models.dag import DenseBlock, DenseLayer, DenseNet, ResNet, Transition

INPUTS = {
    "digits_cnn": (1, 8, 8),
    "mlp_fmnist": (1, 28, 28),
    "lenet5_fmnist": (1, 28, 28),
    "vgg_fmnist": (1, 28, 28),
    "vgg16_cifar": (3, 32, 32),
    "resnet_fmnist": (1, 28, 28),
    "densenet_fmnist": (1, 28, 28),
    "resnet18_cifar": (3, 32, 32),
}

#: The residual / dense models of ``onespike.models.dag`` (not chains).
DAG_MODELS = ("resnet_fmnist", "densenet_fmnist", "resnet18_cifar")
CHAIN_MODELS = tuple(n for n in MODEL_NAMES if n not in DAG_MODELS)

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


def test_every_model_has_an_input_shape() -> None:
    assert set(INPUTS) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", CHAIN_MODELS)
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


def test_vgg16_bn_after_relu() -> None:
    """``bn_after_relu=True``: conv - ReLU - BN (the order of :func:`vgg_fmnist`); the default
    stays conv - BN - ReLU; get_model passes the option on."""
    for model, after in ((vgg16_cifar(bn_after_relu=True), True), (vgg16_cifar(), False),
                         (get_model("vgg16_cifar", bn_after_relu=True), True)):
        feats = list(model.features)
        assert count(model, nn.BatchNorm2d) == 13 and count(model, nn.Conv2d) == 13
        for k, m in enumerate(feats):
            if isinstance(m, nn.Conv2d):
                nxt = (nn.ReLU, nn.BatchNorm2d) if after else (nn.BatchNorm2d, nn.ReLU)
                assert isinstance(feats[k + 1], nxt[0]) and isinstance(feats[k + 2], nxt[1])


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


DAG_ALLOWED = (
    ResNet, BasicBlock, DenseNet, DenseBlock, DenseLayer, Transition, nn.Sequential, nn.Conv2d,
    nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.Identity,
)  # fmt: skip


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", DAG_MODELS)
def test_dag_models_layers_and_traceable(name: str) -> None:
    model = get_model(name).eval()
    for path, module in model.named_modules():
        if path:
            assert isinstance(module, DAG_ALLOWED), f"{name}.{path}: {type(module).__name__}"
    traced = torch.fx.symbolic_trace(model)
    targets = {n.target for n in traced.graph.nodes if n.op == "call_function"}
    x = torch.rand(2, *INPUTS[name])
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    assert targets & {torch.cat, operator.add, operator.iadd}


def test_parameter_counts() -> None:
    assert n_params(resnet_fmnist()) == 173_842
    assert n_params(densenet_fmnist()) == 74_338
    assert n_params(resnet18_cifar()) == 11_173_962  # torchvision ResNet-18, 3x3 stem, 10 classes
    assert 100_000 <= n_params(resnet_fmnist()) <= 300_000
    assert 50_000 <= n_params(densenet_fmnist()) <= 200_000


def _projections(model: nn.Module) -> list[nn.Sequential]:
    return [m.downsample for m in model.modules()
            if isinstance(m, BasicBlock) and m.downsample is not None]


def test_resnet_fmnist_layout() -> None:
    model = resnet_fmnist()
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3
    assert blocks[0].downsample is None  # identity shortcut in the first stage
    projections = _projections(model)
    assert len(projections) == 2
    for proj in projections:
        conv, bn = proj
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
        assert conv.stride == (2, 2) and isinstance(bn, nn.BatchNorm2d)
    assert model.conv1.in_channels == 1 and isinstance(model.maxpool, nn.MaxPool2d)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        feats = model.layers(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
    assert feats.shape == (2, 96, 4, 4)


def test_resnet18_cifar_layout() -> None:
    model = resnet18_cifar(num_classes=100)
    assert len([m for m in model.modules() if isinstance(m, BasicBlock)]) == 8
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 20
    assert len(_projections(model)) == 3
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.fc.in_features == 512 and model.fc.out_features == 100


def test_densenet_fmnist_layout() -> None:
    model = densenet_fmnist()
    blocks = [m for m in model.modules() if isinstance(m, DenseBlock)]
    assert [len(b) for b in blocks] == [3, 6]
    transitions = [m for m in model.modules() if isinstance(m, Transition)]
    assert len(transitions) == 1
    assert isinstance(transitions[0].pool, nn.AvgPool2d)
    assert transitions[0].conv.in_channels == 60 and transitions[0].conv.out_channels == 30
    for layer in (m for m in model.modules() if isinstance(m, DenseLayer)):
        assert layer.conv1.kernel_size == (1, 1) and layer.conv2.kernel_size == (3, 3)
        assert layer.conv2.out_channels == 12
    assert model.classifier.in_features == 102
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert model.features(x).shape == (2, 102, 7, 7)


def test_dag_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        resnet18_cifar(num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        densenet_fmnist(num_classes=0)
    with pytest.raises(ValueError, match="must match"):
        ResNet((1, 1), (8,))
    with pytest.raises(ValueError, match="stem_kernel"):
        ResNet((1,), (8,), stem_kernel=5)
