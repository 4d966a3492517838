"""Look up model factories by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from onespike.errors import ArgumentError
from onespike.models.architectures import (
    digits_cnn,
    lenet5_fmnist,
    mlp_fmnist,
    vgg16_cifar,
    vgg_fmnist,
)
from onespike.models.dag import densenet_fmnist, resnet18_cifar, resnet_fmnist

__all__ = ["MODEL_NAMES", "get_model"]

_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": digits_cnn,
    "mlp_fmnist": mlp_fmnist,
    "lenet5_fmnist": lenet5_fmnist,
    "vgg_fmnist": vgg_fmnist,
    "vgg16_cifar": vgg16_cifar,
    "resnet_fmnist": resnet_fmnist,
    "densenet_fmnist": densenet_fmnist,
    "resnet18_cifar": resnet18_cifar,
}

#: Names accepted by :func:`get_model`.
MODEL_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised model by name (``kwargs`` go to the factory).

    Raises:
        ValueError: ``name`` is not one of :data:`MODEL_NAMES`.
    """
    key = name.strip().lower().replace("-", "_")
    try:
        factory = _FACTORIES[key]
    except KeyError:
        raise ArgumentError(
            f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}"
        ) from None
    return factory(**kwargs)
