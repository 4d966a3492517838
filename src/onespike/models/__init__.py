"""ReLU network architectures (no torchvision): chains (``architectures``), residual and dense
networks (``dag``), and the shipped pretrained weights."""

from onespike.models.architectures import (
    VGG,
    VGG16_CFG,
    VGG_FMNIST_CFG,
    digits_cnn,
    lenet5_fmnist,
    mlp_fmnist,
    vgg16_cifar,
    vgg_fmnist,
)
from onespike.models.dag import (
    BasicBlock,
    DenseNet,
    ResNet,
    densenet_fmnist,
    resnet18_cifar,
    resnet_fmnist,
)
from onespike.models.pretrained import PRETRAINED_NAMES, load_pretrained, pretrained_info
from onespike.models.registry import MODEL_NAMES, get_model

__all__ = [
    "MODEL_NAMES",
    "PRETRAINED_NAMES",
    "VGG",
    "VGG16_CFG",
    "VGG_FMNIST_CFG",
    "BasicBlock",
    "DenseNet",
    "ResNet",
    "densenet_fmnist",
    "digits_cnn",
    "get_model",
    "lenet5_fmnist",
    "load_pretrained",
    "mlp_fmnist",
    "pretrained_info",
    "resnet18_cifar",
    "resnet_fmnist",
    "vgg16_cifar",
    "vgg_fmnist",
]
