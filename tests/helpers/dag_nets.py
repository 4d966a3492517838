"""A zoo of non-chain ReLU networks (residual, branching, concatenating) that conversion must
handle, written the way users write them (torchvision / common CIFAR repositories style).

Pure PyTorch, no onespike import. Every model is ``torch.fx.symbolic_trace``-able (no
data-dependent control flow; Python-level flags such as ``downsample is None`` are fixed at
construction). Each factory draws its weights and random batch-norm statistics (about a third of
the gammas negative, so no batch norm is the identity) from torch's global RNG, so the caller
seeds: ``torch.manual_seed(s); model, shape = ZOO[name]()``. It returns
``(model.double().eval(), input_shape)`` with ``input_shape`` the ``(C, H, W)`` or ``(F,)`` of
one sample; a forward of 8 samples takes milliseconds.

Every zoo model has at least one value read by several consumers, an addition or a
concatenation (even the ones about a chain pattern, such as two Linear layers in a row, embed it
in a residual or branching model).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ZOO", "randomize_bn"]

Factory = Callable[[], tuple[nn.Module, tuple[int, ...]]]


# ----------------------------------------------------------------------------- utilities


def randomize_bn(model: nn.Module, negative: bool = True) -> None:
    """Random running statistics and affine parameters for every batch norm (global RNG)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c) * 0.6 - 0.3)
                m.running_var.copy_(torch.rand(c) * 1.5 + 0.5)
                gamma = torch.rand(c) * 1.5 + 0.25
                if negative:
                    gamma = gamma * torch.where(torch.rand(c) < 0.33, -1.0, 1.0)
                if m.weight is not None:
                    m.weight.copy_(gamma)
                    m.bias.copy_(torch.rand(c) * 0.4 - 0.2)


def _finish(model: nn.Module, shape: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    randomize_bn(model)
    return model.double().eval(), shape


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1 and no bias (torchvision)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups,
                     bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution without bias (torchvision)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def _projection(inplanes: int, planes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))


# ----------------------------------------------------------------------------- torchvision ResNet


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock``: one in-place ReLU module used twice, ``out += identity``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
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


class Bottleneck(nn.Module):
    """torchvision ``Bottleneck`` (stride on the 3×3 conv, expansion 4)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """torchvision ``ResNet`` with a configurable small stem and any number of stages."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int],
                 widths: list[int], in_channels: int = 3, num_classes: int = 5,
                 stem_width: int = 4, maxpool: bool = True) -> None:
        super().__init__()
        self.inplanes = stem_width
        self.conv1 = nn.Conv2d(in_channels, stem_width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if maxpool else None
        stages = []
        for i, (n, w) in enumerate(zip(layers, widths)):
            stages.append(self._make_layer(block, w, n, stride=1 if i == 0 else 2))
        self.stages = nn.ModuleList(stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _projection(self.inplanes, planes * block.expansion, stride)
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.stages:
            x = stage(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class _Stem(nn.Module):
    """``conv - BN - ReLU`` then ``body`` then optionally a pool + flatten + Linear head."""

    def __init__(self, in_channels: int, width: int, body: nn.Module, out_channels: int,
                 num_classes: int | None = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.body = body
        self.head = None if num_classes is None else nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(out_channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.body(self.relu(self.bn(self.conv(x))))
        return x if self.head is None else self.head(x)


def basic_block_identity() -> tuple[nn.Module, tuple[int, ...]]:
    """Stem + two torchvision BasicBlocks with identity shortcuts; output the feature map."""
    body = nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 4))
    return _finish(_Stem(3, 4, body, 4, num_classes=None), (3, 6, 6))


def basic_block_downsample() -> tuple[nn.Module, tuple[int, ...]]:
    """Stem + a stride-2 BasicBlock with a 1×1-conv + BN projection shortcut + head."""
    body = BasicBlock(4, 6, stride=2, downsample=_projection(4, 6, 2))
    return _finish(_Stem(2, 4, body, 6), (2, 8, 8))


def bottleneck_identity() -> tuple[nn.Module, tuple[int, ...]]:
    """Stem (8 channels) + a Bottleneck(8, 2) with identity shortcut + head."""
    return _finish(_Stem(3, 8, Bottleneck(8, 2), 8), (3, 6, 6))


def bottleneck_downsample() -> tuple[nn.Module, tuple[int, ...]]:
    """Stem + a stride-2 Bottleneck(4→12) with projection shortcut + head."""
    body = Bottleneck(4, 3, stride=2, downsample=_projection(4, 12, 2))
    return _finish(_Stem(3, 4, body, 12), (3, 8, 8))


def resnet_basic(layers: tuple[int, ...] = (2, 1), widths: tuple[int, ...] = (4, 8),
                 maxpool: bool = True) -> tuple[nn.Module, tuple[int, ...]]:
    """Small torchvision ResNet of BasicBlocks: stem conv-BN-ReLU-maxpool, 2 stages (the second
    with a stride-2 projection), AdaptiveAvgPool2d(1), flatten, fc."""
    model = ResNet(BasicBlock, list(layers), list(widths), stem_width=4, maxpool=maxpool)
    return _finish(model, (3, 12, 12))


def resnet_bottleneck(layers: tuple[int, ...] = (1, 2), widths: tuple[int, ...] = (2, 3),
                      maxpool: bool = True) -> tuple[nn.Module, tuple[int, ...]]:
    """Small torchvision ResNet of Bottlenecks (projection in both stages: the width changes)."""
    model = ResNet(Bottleneck, list(layers), list(widths), stem_width=4, maxpool=maxpool)
    return _finish(model, (3, 12, 12))


class ResNetDBlock(nn.Module):
    """BasicBlock whose downsampling shortcut is ``AvgPool2d(2) - conv1x1 - BN`` (ResNet-D)."""

    def __init__(self, inplanes: int, planes: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, 2)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
            conv1x1(inplanes, planes), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.downsample(x)
        x = self.act(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        x = x + shortcut
        return self.act(x)


def resnet_d_block() -> tuple[nn.Module, tuple[int, ...]]:
    """Stem + a ResNet-D block (average-pooled projection shortcut) + head."""
    return _finish(_Stem(3, 4, ResNetDBlock(4, 6), 6), (3, 8, 8))


# ----------------------------------------------------------------------------- CIFAR ResNets


class LambdaLayer(nn.Module):
    """Wraps a function as a module (the CIFAR-ResNet repositories' shortcut)."""

    def __init__(self, lambd: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return self.lambd(x)


class OptionABlock(nn.Module):
    """CIFAR ResNet block (He et al. option A): parameter-free shortcut that subsamples and
    zero-pads the channels; ``identity`` picks ``nn.Identity`` or an empty ``nn.Sequential``
    when the shape does not change."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 identity: str = "identity") -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity() if identity == "identity" else nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = LambdaLayer(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4),
                                "constant", 0))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class CifarResNet(nn.Module):
    """The CIFAR ResNet-20/32/... layout (16/32/64 widths there) with option-A shortcuts."""

    def __init__(self, num_blocks: tuple[int, ...] = (1, 1, 1),
                 widths: tuple[int, ...] = (4, 8, 16), identity: str = "identity",
                 num_classes: int = 4) -> None:
        super().__init__()
        self.in_planes = widths[0]
        self.conv1 = conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        for i, (n, w) in enumerate(zip(num_blocks, widths)):
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            blocks = []
            for s in strides:
                blocks.append(OptionABlock(self.in_planes, w, s, identity))
                self.in_planes = w
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


def cifar_option_a() -> tuple[nn.Module, tuple[int, ...]]:
    """CIFAR ResNet with option-A (subsample + zero-pad channels) shortcuts, nn.Identity
    shortcuts elsewhere, F.relu, F.avg_pool2d over the whole map and ``view``."""
    return _finish(CifarResNet((2, 1, 1), (4, 8, 16), "identity"), (3, 8, 8))


def cifar_option_a_sequential() -> tuple[nn.Module, tuple[int, ...]]:
    """As :func:`cifar_option_a` with the identity shortcut an empty ``nn.Sequential()``."""
    return _finish(CifarResNet((2, 2), (4, 8), "sequential"), (3, 8, 8))


# ----------------------------------------------------------------------------- pre-activation


class PreActBlock(nn.Module):
    """Pre-activation block: ``BN - ReLU - conv - BN - ReLU - conv`` plus the shortcut; the
    projection shortcut reads the pre-activated input, the identity the raw sum."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.has_shortcut = stride != 1 or in_planes != planes
        if self.has_shortcut:
            self.shortcut = nn.Sequential(conv1x1(in_planes, planes, stride))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.has_shortcut else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out += shortcut
        return out


class PreActResNet(nn.Module):
    """Pre-activation ResNet: the sum of a block feeds the next block's BN-ReLU; final BN-ReLU
    before pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, 4)
        self.layers = nn.Sequential(PreActBlock(4, 4), PreActBlock(4, 4), PreActBlock(4, 8, 2),
                                    PreActBlock(8, 8))
        self.bn = nn.BatchNorm2d(8)
        self.linear = nn.Linear(8, 4)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.layers(out)
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1)
        out = out.view(out.size(0), -1)
        return self.linear(out)


def preact_resnet() -> tuple[nn.Module, tuple[int, ...]]:
    """Pre-activation ResNet (identity and 1×1-projection shortcuts)."""
    return _finish(PreActResNet(), (3, 8, 8))


# ----------------------------------------------------------------------------- MobileNetV2


class ConvBNReLU(nn.Sequential):
    """torchvision MobileNetV2 ``Conv2d - BN - ReLU6(inplace)``."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """torchvision MobileNetV2 block: 1×1 expand - 3×3 depthwise - 1×1 linear projection;
    ``x + conv(x)`` when stride 1 and the widths match."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden_dim = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers += [
            ConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """A tiny torchvision MobileNetV2 (same layout, few channels and blocks)."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        settings = [(1, 4, 1, 1), (4, 6, 2, 2), (4, 8, 2, 1)]  # t, c, n, s
        features: list[nn.Module] = [ConvBNReLU(3, 4, stride=2)]
        c = 4
        for t, out, n, s in settings:
            for i in range(n):
                features.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        features.append(ConvBNReLU(c, 16, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def inverted_residual() -> tuple[nn.Module, tuple[int, ...]]:
    """Stem conv-BN-ReLU6 then two stride-1 inverted residuals with ``x + conv(x)``."""
    body = nn.Sequential(InvertedResidual(4, 4, 1, 3), InvertedResidual(4, 4, 1, 2))
    model = nn.Sequential(ConvBNReLU(2, 4), body)
    return _finish(model, (2, 6, 6))


def mobilenet_v2() -> tuple[nn.Module, tuple[int, ...]]:
    """Tiny MobileNetV2 (stride-2 stem, expand ratios 1/4, one residual, 1×1 head conv)."""
    return _finish(MobileNetV2(), (3, 16, 16))


# ----------------------------------------------------------------------------- DenseNet


class DenseLayer(nn.Module):
    """torchvision ``_DenseLayer``: BN-ReLU-conv1x1-BN-ReLU-conv3x3 on ``torch.cat(inputs, 1)``."""

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def bn_function(self, inputs: list[Tensor]) -> Tensor:
        concated_features = torch.cat(inputs, 1)
        return self.conv1(self.relu1(self.norm1(concated_features)))

    def forward(self, inputs: list[Tensor]) -> Tensor:
        bottleneck_output = self.bn_function(inputs)
        return self.conv2(self.relu2(self.norm2(bottleneck_output)))


class DenseBlock(nn.ModuleDict):
    """torchvision ``_DenseBlock``: the growing list of features, concatenated at the end."""

    def __init__(self, num_layers: int, num_input_features: int, bn_size: int,
                 growth_rate: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for _name, layer in self.items():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """torchvision ``_Transition``: BN-ReLU-conv1x1-AvgPool2d(2)."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, 1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """Tiny torchvision DenseNet: conv0-norm0-relu0, dense blocks and transitions, norm5, ReLU,
    adaptive average pool, flatten, classifier."""

    def __init__(self, growth_rate: int = 3, block_config: tuple[int, ...] = (2, 3),
                 num_init_features: int = 4, bn_size: int = 2, num_classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 3, padding=1,
                                                    bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        c = num_init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(n, c, bn_size, growth_rate))
            c += n * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        return self.classifier(out)


def densenet() -> tuple[nn.Module, tuple[int, ...]]:
    """Tiny DenseNet-BC (2 blocks, one transition)."""
    return _finish(DenseNet(), (3, 8, 8))


# ----------------------------------------------------------------------------- Inception


class BasicConv2d(nn.Module):
    """torchvision GoogLeNet ``BasicConv2d``: conv (no bias) - BN(eps 1e-3) - F.relu(inplace)."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


class Inception(nn.Module):
    """1×1 / 1×1-3×3 / 1×1-5×5 / maxpool3x3(s1, p1)-1×1 branches, ``torch.cat(..., 1)``."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outputs, 1)


class InceptionNet(nn.Module):
    """Stem, two Inception blocks separated by a max pool, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = BasicConv2d(3, 6, kernel_size=3, padding=1)
        self.inc1 = Inception(6, 2, 2, 3, 1, 2, 2)  # 9 channels
        self.pool = nn.MaxPool2d(2)
        self.inc2 = Inception(9, 3, 2, 2, 2, 2, 1)  # 8 channels
        self.fc = nn.Linear(8, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = self.inc2(self.pool(self.inc1(self.stem(x))))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def inception() -> tuple[nn.Module, tuple[int, ...]]:
    """Two GoogLeNet Inception blocks (four concatenated conv-BN-ReLU branches)."""
    return _finish(InceptionNet(), (3, 8, 8))


# ----------------------------------------------------------------------------- concatenations


class FlattenConcat(nn.Module):
    """Two conv branches on the input, each flattened, ``torch.cat(..., dim=1)``, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2))
        self.b = nn.Sequential(nn.Conv2d(2, 2, 5, stride=2, padding=2), nn.ReLU())
        self.fc = nn.Linear(3 * 2 * 2 + 2 * 3 * 3, 5)

    def forward(self, x: Tensor) -> Tensor:
        a = torch.flatten(self.a(x), 1)
        b = self.b(x).flatten(1)
        return self.fc(torch.cat((a, b), dim=1))


def flatten_concat_linear() -> tuple[nn.Module, tuple[int, ...]]:
    """Concatenation of two flattened conv branches before a Linear."""
    return _finish(FlattenConcat(), (2, 6, 6))


class MultiConsumer(nn.Module):
    """One ReLU output read by a max pool, an average pool and a ``reshape``, each followed by
    its own Linear; the three logits are summed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.avgpool = nn.AvgPool2d(3, stride=3)
        self.fc_max = nn.Linear(3 * 3 * 3, 4)
        self.fc_avg = nn.Linear(3 * 2 * 2, 4)
        self.fc_all = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.bn(self.conv(x)))
        a = self.fc_max(torch.flatten(self.maxpool(h), 1))
        b = self.fc_avg(self.avgpool(h).view(h.size(0), -1))
        c = self.fc_all(h.reshape(h.shape[0], -1))
        return a + b + c


def multi_consumer() -> tuple[nn.Module, tuple[int, ...]]:
    """A ReLU output with three consumers (MaxPool / AvgPool / reshape), logits summed."""
    return _finish(MultiConsumer(), (2, 6, 6))


class MultiConsumerCat(nn.Module):
    """One ReLU output max-pooled and average-pooled, the two maps concatenated, then a conv
    that reads the ReLU output again through a residual-style add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.mp = nn.MaxPool2d(3, stride=1, padding=1)
        self.ap = nn.AvgPool2d(3, stride=1, padding=1)
        self.mix = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.conv(x))
        y = self.mix(torch.cat([self.mp(h), self.ap(h)], 1)) + h
        return self.fc(torch.flatten(F.relu(y), 1))


def multi_consumer_cat() -> tuple[nn.Module, tuple[int, ...]]:
    """Same-size max and average pools of one ReLU output, concatenated, mixed, plus a skip."""
    return _finish(MultiConsumerCat(), (3, 5, 5))


# ----------------------------------------------------------------------------- sums


class Branches(nn.Module):
    """A shared stem ReLU ``h`` read by three conv(-BN) branches ``a, b, c`` combined by
    ``combine`` (``use_c=False``: ``c`` is not computed and ``None`` is passed), then ReLU,
    flatten and a Linear."""

    def __init__(self, combine: Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor],
                 use_c: bool = True) -> None:
        super().__init__()
        self.use_c = use_c
        self.stem = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3))
        self.b = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
        self.c = nn.Sequential(nn.Conv2d(3, 3, 3, padding=2, dilation=2))
        self.combine = combine
        self.fc = nn.Linear(3 * 5 * 5, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        y = self.combine(h, self.a(h), self.b(h), self.c(h) if self.use_c else None)
        return self.fc(torch.flatten(F.relu(y), 1))


def _sum3(h: Tensor, a: Tensor, b: Tensor, c: Tensor | None) -> Tensor:
    return a + b + c


def _sum4(h: Tensor, a: Tensor, b: Tensor, c: Tensor | None) -> Tensor:
    out = a + b
    out += c
    return out + h


def _scaled(h: Tensor, a: Tensor, b: Tensor, c: Tensor | None) -> Tensor:
    return 0.5 * a + b - c * 0.25


def _difference(h: Tensor, a: Tensor, b: Tensor, c: Tensor | None) -> Tensor:
    return a - b


def _add_alpha(h: Tensor, a: Tensor, b: Tensor, c: Tensor | None) -> Tensor:
    return torch.add(a, b, alpha=0.5)


def _torch_add(h: Tensor, a: Tensor, b: Tensor, c: Tensor | None) -> Tensor:
    return torch.add(torch.add(a, b), h)


def _neg_div(h: Tensor, a: Tensor, b: Tensor, c: Tensor | None) -> Tensor:
    return (a + b) / 2 - c + torch.sub(h, a)


def sum3() -> tuple[nn.Module, tuple[int, ...]]:
    """``a + b + c`` of three branches of one ReLU output."""
    return _finish(Branches(_sum3), (2, 5, 5))


def sum4_inplace() -> tuple[nn.Module, tuple[int, ...]]:
    """``a + b``, ``+= c``, ``+ h`` (the shared ReLU output itself)."""
    return _finish(Branches(_sum4), (2, 5, 5))


def scaled_sum() -> tuple[nn.Module, tuple[int, ...]]:
    """``0.5 * a + b - c * 0.25`` (constant coefficients on both sides)."""
    return _finish(Branches(_scaled), (2, 5, 5))


def difference() -> tuple[nn.Module, tuple[int, ...]]:
    """``a - b`` (branch c not built into the graph)."""
    return _finish(Branches(_difference, use_c=False), (2, 5, 5))


def add_alpha() -> tuple[nn.Module, tuple[int, ...]]:
    """``torch.add(a, b, alpha=0.5)``."""
    return _finish(Branches(_add_alpha, use_c=False), (2, 5, 5))


def torch_add() -> tuple[nn.Module, tuple[int, ...]]:
    """``torch.add(torch.add(a, b), h)``."""
    return _finish(Branches(_torch_add, use_c=False), (2, 5, 5))


def mixed_arithmetic() -> tuple[nn.Module, tuple[int, ...]]:
    """``(a + b) / 2 - c + torch.sub(h, a)``."""
    return _finish(Branches(_neg_div), (2, 5, 5))


# ----------------------------------------------------------------------------- affine chains


class ResidualMLP(nn.Module):
    """``h = relu(fc1(x))``; ``fc3(fc2(h))`` (two Linear layers, no ReLU between) plus ``h``;
    ReLU; Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 8)
        self.fc2 = nn.Linear(8, 5)
        self.fc3 = nn.Linear(5, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.fc1(x))
        y = self.fc3(self.fc2(h)) + h
        return self.out(F.relu(y))


def linear_linear() -> tuple[nn.Module, tuple[int, ...]]:
    """Two Linear layers with no ReLU in between, inside a residual MLP (1-D input)."""
    return _finish(ResidualMLP(), (12,))


class ResBNReadout(nn.Module):
    """A BasicBlock trunk, flatten, then the readout ``Linear - BatchNorm1d - Linear``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv3x3(2, 3), nn.BatchNorm2d(3), nn.ReLU(inplace=True))
        self.block = BasicBlock(3, 3)
        self.readout = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6), nn.BatchNorm1d(6),
                                     nn.Linear(6, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.block(self.stem(x)))


def linear_bn_linear_readout() -> tuple[nn.Module, tuple[int, ...]]:
    """Residual trunk with a ``Linear -> BatchNorm1d -> Linear`` readout."""
    return _finish(ResBNReadout(), (2, 4, 4))


class ConvConvBlock(nn.Module):
    """Residual block whose branch is two 3×3 convs (stride 1, padding 1) with no ReLU between,
    then BN, ``+ x``, ReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv2(self.conv1(x))) + x)


def conv_conv() -> tuple[nn.Module, tuple[int, ...]]:
    """Stem ReLU then a residual block of two 3×3 convs in a row with no ReLU, then head."""
    return _finish(_Stem(2, 3, ConvConvBlock(3), 3), (2, 5, 5))


# ----------------------------------------------------------------------------- clipped ReLUs


class ClippedBlock(nn.Module):
    """Residual block ``x + conv2(act(bn(conv1(x))))`` with a clipped ReLU ``act``; the stem
    uses ``act`` too."""

    def __init__(self, act: Callable[[Tensor], Tensor] | nn.Module) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.act = act
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.stem(x))
        y = h + self.conv2(self.act(self.bn(self.conv1(h))))
        return self.fc(torch.flatten(self.act(y), 1))


def _relu6(x: Tensor) -> Tensor:
    return F.relu6(x)


def _clamp(x: Tensor) -> Tensor:
    return torch.clamp(x, 0, 1.5)


def _clamp_method(x: Tensor) -> Tensor:
    return x.clamp(min=0.0, max=0.75)


def relu6_module() -> tuple[nn.Module, tuple[int, ...]]:
    """Residual block with ``nn.ReLU6``."""
    return _finish(ClippedBlock(nn.ReLU6()), (2, 4, 4))


def relu6_functional() -> tuple[nn.Module, tuple[int, ...]]:
    """Residual block with ``F.relu6``."""
    return _finish(ClippedBlock(_relu6), (2, 4, 4))


def hardtanh() -> tuple[nn.Module, tuple[int, ...]]:
    """Residual block with ``nn.Hardtanh(0, 2)``."""
    return _finish(ClippedBlock(nn.Hardtanh(0.0, 2.0)), (2, 4, 4))


def clamp() -> tuple[nn.Module, tuple[int, ...]]:
    """Residual block with ``torch.clamp(x, 0, 1.5)``."""
    return _finish(ClippedBlock(_clamp), (2, 4, 4))


def clamp_method() -> tuple[nn.Module, tuple[int, ...]]:
    """Residual block with ``x.clamp(min=0.0, max=0.75)``."""
    return _finish(ClippedBlock(_clamp_method), (2, 4, 4))


#: Every zoo factory by name.
ZOO: dict[str, Factory] = {
    "basic_block_identity": basic_block_identity,
    "basic_block_downsample": basic_block_downsample,
    "bottleneck_identity": bottleneck_identity,
    "bottleneck_downsample": bottleneck_downsample,
    "resnet_basic": resnet_basic,
    "resnet_bottleneck": resnet_bottleneck,
    "resnet_d_block": resnet_d_block,
    "cifar_option_a": cifar_option_a,
    "cifar_option_a_sequential": cifar_option_a_sequential,
    "preact_resnet": preact_resnet,
    "inverted_residual": inverted_residual,
    "mobilenet_v2": mobilenet_v2,
    "densenet": densenet,
    "inception": inception,
    "flatten_concat_linear": flatten_concat_linear,
    "multi_consumer": multi_consumer,
    "multi_consumer_cat": multi_consumer_cat,
    "sum3": sum3,
    "sum4_inplace": sum4_inplace,
    "scaled_sum": scaled_sum,
    "difference": difference,
    "add_alpha": add_alpha,
    "torch_add": torch_add,
    "mixed_arithmetic": mixed_arithmetic,
    "linear_linear": linear_linear,
    "linear_bn_linear_readout": linear_bn_linear_readout,
    "conv_conv": conv_conv,
    "relu6_module": relu6_module,
    "relu6_functional": relu6_functional,
    "hardtanh": hardtanh,
    "clamp": clamp,
    "clamp_method": clamp_method,
}
