"""Model factories named on the command line in the CLI tests (``--model
tests.apps.cli.factory_models:tiny``), plus broken ones for the error tests."""

from __future__ import annotations

from torch import nn


def tiny() -> nn.Sequential:
    """A small CNN for the 1×8×8 digits: conv - BN - ReLU - maxpool - flatten - linear."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )


def other() -> nn.Sequential:
    """An MLP whose weights do not fit :func:`tiny`."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def with_sigmoid() -> nn.Sequential:
    """Not convertible: a sigmoid hidden layer."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Sigmoid(), nn.Linear(16, 10))


#: A module object (not a factory) is accepted as well.
TINY_MODULE = tiny()

#: Not callable.
NOT_CALLABLE = 42


def needs_args(width: int) -> nn.Module:
    """A factory that cannot be called without arguments."""
    return nn.Linear(64, width)


def returns_dict() -> dict:
    """A factory that does not return a module."""
    return {"not": "a module"}


def explodes() -> nn.Module:
    """A factory that raises."""
    raise RuntimeError("factory exploded")


def cifar_tiny() -> nn.Sequential:
    """A small CNN for 3×32×32 CIFAR images (random weights: the CIFAR tests only convert)."""
    import torch

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10),
    )
