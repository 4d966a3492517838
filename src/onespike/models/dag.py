"""Residual and densely connected ReLU networks (no torchvision): ResNets and a DenseNet.

These are *not* chains: a ResNet block adds its input (or a 1×1-conv + BN projection of it) to
the output of its convolutions, and a DenseNet layer concatenates its output to all the features
before it. They are written the way torchvision writes them (``out += identity`` after an
in-place ReLU, ``torch.cat(features, 1)``), so ``torch.fx.symbolic_trace`` sees the same graph a
user's model would give.

* :func:`resnet_fmnist`: a small ResNet of :class:`BasicBlock` for 1×28×28 Fashion-MNIST
  (174k parameters; trained weights are shipped).
* :func:`densenet_fmnist`: a small DenseNet-BC for 1×28×28 Fashion-MNIST (74k parameters;
  trained weights are shipped).
* :func:`resnet18_cifar`: torchvision's ResNet-18 adapted to 3×32×32 CIFAR images (3×3 stem, no
  max pool); about 11.2 M parameters, used with random weights by the benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from onespike.errors import ArgumentError

__all__ = [
    "BasicBlock",
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "ResNet",
    "Transition",
    "densenet_fmnist",
    "resnet18_cifar",
    "resnet_fmnist",
]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block.

    ``conv3x3 - BN - ReLU - conv3x3 - BN``, plus the input (``downsample=None``: identity
    shortcut) or ``downsample(x)`` (a 1×1 conv + BN projection when the stride or the width
    changes), then ReLU.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """A torchvision-style ResNet of :class:`BasicBlock` stages.

    ``stem`` (conv - BN - ReLU, optionally max pool) then one stage per entry of ``layers``
    (``layers[i]`` blocks of width ``widths[i]``; every stage after the first starts with a
    stride-2 block whose shortcut is a 1×1 conv + BN projection), then adaptive average pooling
    to 1×1, flatten and a linear classifier ``fc``.

    Args:
        layers: number of blocks in each stage.
        widths: channels of each stage (same length as ``layers``).
        in_channels: input image channels.
        num_classes: outputs of ``fc``.
        stem_width: channels of the stem convolution.
        stem_kernel: kernel of the stem convolution (``3``: stride 1, padding 1;
            ``7``: torchvision's stride 2, padding 3).
        stem_pool: add torchvision's 3×3 stride-2 max pool after the stem.
    """

    def __init__(
        self,
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        stem_width: int | None = None,
        stem_kernel: int = 3,
        stem_pool: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths) or not layers:
            raise ArgumentError(f"layers {list(layers)} and widths {list(widths)} must match")
        if num_classes < 1:
            raise ArgumentError(f"num_classes must be >= 1, got {num_classes}")
        if stem_kernel not in (3, 7):
            raise ArgumentError(f"stem_kernel must be 3 or 7, got {stem_kernel}")
        self.inplanes = stem_width if stem_width is not None else widths[0]
        stride, pad = (1, 1) if stem_kernel == 3 else (2, 3)
        self.conv1 = nn.Conv2d(
            in_channels, self.inplanes, stem_kernel, stride=stride, padding=pad, bias=False
        )
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
        )
        stages = [
            self._make_layer(w, n, stride=1 if i == 0 else 2)
            for i, (n, w) in enumerate(zip(layers, widths))
        ]
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        blocks_: list[nn.Module] = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        blocks_ += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*blocks_)

    def forward(self, x: Tensor) -> Tensor:
        """Stem, stages, global average pool, ``fc``."""
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layers(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet_fmnist(num_classes: int = 10) -> ResNet:
    """Small torchvision-style ResNet for 1×28×28 Fashion-MNIST.

    Stem ``conv3x3(1→24) - BN - ReLU - maxpool3x3/2`` (28→14 pixels), then three stages of one
    :class:`BasicBlock` each: width 24 at 14×14 (identity shortcut), width 48 at 7×7 and width
    96 at 4×4 (stride 2, 1×1 conv + BN projection shortcuts), global average pool,
    ``linear(96→10)``. 173,842 parameters.
    """
    return ResNet(
        (1, 1, 1), (24, 48, 96), in_channels=1, num_classes=num_classes, stem_width=24,
        stem_pool=True,
    )


def resnet18_cifar(num_classes: int = 10) -> ResNet:
    """torchvision's ResNet-18 for 3×32×32 CIFAR images.

    The ImageNet stem (7×7 stride-2 conv + max pool) is replaced by a 3×3 stride-1 conv without
    max pool, the usual CIFAR adaptation; then four stages of two :class:`BasicBlock` with widths
    64, 128, 256, 512 (stride-2 projection shortcuts at the start of the last three), global
    average pool, ``linear(512→num_classes)``. About 11.2 M parameters.
    """
    return ResNet(
        (2, 2, 2, 2), (64, 128, 256, 512), in_channels=3, num_classes=num_classes, stem_width=64
    )


class DenseLayer(nn.Module):
    """A DenseNet-BC layer: ``BN - ReLU - conv1x1(→bn_size·growth) - BN - ReLU -
    conv3x3(→growth)`` applied to the concatenation of all earlier features."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        inter = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, inter, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(inter)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inter, growth_rate, 3, padding=1, bias=False)

    def forward(self, features: list[Tensor]) -> Tensor:
        """The ``growth_rate`` new channels computed from ``torch.cat(features, 1)``."""
        x = torch.cat(features, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` :class:`DenseLayer`; each sees every earlier output, the block returns the
    concatenation of its input and all of them."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: Tensor) -> Tensor:
        """``torch.cat([x, y1, y2, ...], 1)``."""
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """DenseNet transition: ``BN - ReLU - conv1x1 - AvgPool2d(2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """A torchvision-style DenseNet-BC.

    ``features``: stem ``conv3x3 - BN - ReLU`` (``stem_pool``: then 2×2 max pool), dense blocks
    separated by transitions that halve the channels (compression 0.5) and the resolution, final
    ``BN - ReLU``; then adaptive average pool to 1×1, flatten and ``classifier`` (linear).
    """

    def __init__(
        self,
        block_config: Sequence[int],
        *,
        growth_rate: int = 16,
        num_init_features: int = 32,
        bn_size: int = 4,
        in_channels: int = 1,
        num_classes: int = 10,
        stem_pool: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ArgumentError(f"num_classes must be >= 1, got {num_classes}")
        feats = nn.Sequential()
        feats.add_module("conv0", nn.Conv2d(in_channels, num_init_features, 3, padding=1,
                                            bias=False))
        feats.add_module("norm0", nn.BatchNorm2d(num_init_features))
        feats.add_module("relu0", nn.ReLU(inplace=True))
        if stem_pool:
            feats.add_module("pool0", nn.MaxPool2d(kernel_size=2, stride=2))
        c = num_init_features
        for i, n in enumerate(block_config):
            feats.add_module(f"denseblock{i + 1}", DenseBlock(n, c, growth_rate, bn_size))
            c += n * growth_rate
            if i != len(block_config) - 1:
                feats.add_module(f"transition{i + 1}", Transition(c, c // 2))
                c //= 2
        feats.add_module("norm5", nn.BatchNorm2d(c))
        feats.add_module("relu5", nn.ReLU(inplace=True))
        self.features = feats
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``features``, global average pool, ``classifier``."""
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def densenet_fmnist(num_classes: int = 10) -> DenseNet:
    """Small DenseNet-BC for 1×28×28 Fashion-MNIST.

    Stem ``conv3x3(1→24) - BN - ReLU - maxpool2`` (→14×14), dense block of 3 layers (growth
    12, bottleneck 48 channels: 24→60 channels), transition ``BN - ReLU - conv1x1(60→30) -
    avgpool2`` (→7×7), dense block of 6 layers (30→102 channels), ``BN - ReLU``, global average
    pool, ``linear(102→10)``. 74,338 parameters.
    """
    return DenseNet((3, 6), growth_rate=12, num_init_features=24, bn_size=4, in_channels=1,
                    num_classes=num_classes)
