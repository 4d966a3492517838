"""ReLU network architectures used by the examples, tests and benchmarks.

All models are plain :class:`torch.nn.Module` stacks of Conv2d / Linear / BatchNorm / ReLU /
MaxPool2d / Flatten / Dropout, i.e. exactly the operations the single-spike conversion maps.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from onespike.errors import ArgumentError

__all__ = [
    "VGG",
    "VGG16_CFG",
    "VGG_FMNIST_CFG",
    "digits_cnn",
    "lenet5_fmnist",
    "mlp_fmnist",
    "vgg16_cifar",
    "vgg_fmnist",
]

#: Conv widths of :func:`vgg_fmnist` ("M" = 2×2 max pooling): 10 conv layers, 3 pools.
VGG_FMNIST_CFG: tuple[int | str, ...] = (
    32, 32, "M",
    64, 64, "M",
    128, 128, 128, "M",
    256, 256, 256,
)  # fmt: skip

#: Conv widths of VGG-16 ("M" = 2×2 max pooling): 13 conv layers, 5 pools.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, "M",
    512, 512, 512, "M",
    512, 512, 512, "M",
)  # fmt: skip


def digits_cnn() -> nn.Sequential:
    """Small CNN for the 1×8×8 scikit-learn digits (10 classes).

    ``conv3x3(1→16) - BN - ReLU - conv3x3(16→32) - BN - ReLU - maxpool2 - flatten -
    linear(512→10)``; 'same' padding, about 10k parameters.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def mlp_fmnist() -> nn.Sequential:
    """MLP 784-600-10 for 1×28×28 Fashion-MNIST: ``Flatten - Linear - ReLU - Linear``."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 600),
        nn.ReLU(),
        nn.Linear(600, 10),
    )


def lenet5_fmnist() -> nn.Sequential:
    """LeNet-5 for 1×28×28 Fashion-MNIST with batch norm *before* each ReLU.

    ``conv5x5(1→6, pad 2) - BN - ReLU - maxpool2 - conv5x5(6→16) - BN - ReLU - maxpool2 -
    flatten - linear(400→120) - BN1d - ReLU - linear(120→84) - BN1d - ReLU - linear(84→10)``.
    """
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.BatchNorm1d(120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.BatchNorm1d(84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


class VGG(nn.Module):
    """A VGG-style network: ``features`` (convs and pools) then ``classifier`` (flatten + MLP)."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        """Apply ``features`` then ``classifier``."""
        return self.classifier(self.features(x))


def _vgg_features(
    cfg: Sequence[int | str], in_channels: int, *, bn_after_relu: bool
) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        assert isinstance(v, int)
        layers.append(nn.Conv2d(c, v, 3, padding=1))
        if bn_after_relu:
            layers += [nn.ReLU(), nn.BatchNorm2d(v)]
        else:
            layers += [nn.BatchNorm2d(v), nn.ReLU()]
        c = v
    return nn.Sequential(*layers)


def vgg_fmnist() -> VGG:
    """VGG-style network for 1×28×28 Fashion-MNIST with batch norm *after* each ReLU.

    ``features``: 10 × [conv3x3 'same' - ReLU - BN] with widths
    32,32 | M | 64,64 | M | 128,128,128 | M | 256,256,256 (28→14→7→3 pixels);
    ``classifier``: flatten - linear(2304→256) - ReLU - dropout(0.3) - linear(256→10).
    About 2.5 M parameters.
    """
    features = _vgg_features(VGG_FMNIST_CFG, 1, bn_after_relu=True)
    width = int(VGG_FMNIST_CFG[-1])
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(width * 3 * 3, 256),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, 10),
    )
    return VGG(features, classifier)


def vgg16_cifar(num_classes: int = 10, in_size: int = 32, *, bn_after_relu: bool = False) -> VGG:
    """VGG-16 for 3×``in_size``×``in_size`` images (CIFAR: 32; downscaled ImageNet-style: 64).

    ``features``: 13 × [conv3x3 'same' - BN - ReLU] with 5 max pools
    (64,64 | 128,128 | 256×3 | 512×3 | 512×3), or 13 × [conv3x3 - ReLU - BN] with
    ``bn_after_relu=True`` (batch norm *after* each ReLU, as in :func:`vgg_fmnist`; the
    conversion folds it into the next layer); ``classifier``:
    flatten - linear(512·(in_size/32)²→512) - ReLU - linear(512→512) - ReLU -
    linear(512→num_classes).
    """
    if in_size not in (32, 64):
        raise ArgumentError(f"in_size must be 32 or 64, got {in_size}")
    if num_classes < 1:
        raise ArgumentError(f"num_classes must be >= 1, got {num_classes}")
    features = _vgg_features(VGG16_CFG, 3, bn_after_relu=bn_after_relu)
    side = in_size // 32
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(512 * side * side, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, num_classes),
    )
    return VGG(features, classifier)
