"""The benchmark's models: what each ``--models`` key is, how it is built (shipped weights or a
seeded random initialisation with plausible batch norm) and which inputs it is fed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "BENCH_MODELS",
    "DEFAULT_MODELS",
    "DTYPES",
    "QUICK_MODELS",
    "BenchModel",
    "bench_data",
    "build_model",
    "randomise_batchnorm",
]

#: dtype names accepted by ``--dtypes``.
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class BenchModel:
    """A model of the benchmark: how to build it and what it is fed.

    ``factory``: a :func:`onespike.models.get_model` name (or a tiny model of this module);
    ``data``: ``"fashion-mnist"`` (real images; random ones if the files are missing) or
    ``"random"`` (uniform in [0, 1]); ``calibration``: default number of calibration images.
    """

    key: str
    label: str
    factory: str
    input_shape: tuple[int, ...]
    data: str
    calibration: int = 1000
    kwargs: dict[str, Any] = field(default_factory=dict)


def _tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 16),
                         nn.ReLU(), nn.Linear(16, 3))


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3),
    )


_TINY: dict[str, Callable[[], nn.Module]] = {"tiny_mlp": _tiny_mlp, "tiny_cnn": _tiny_cnn}

#: Every model the benchmark knows, by ``--models`` key.
BENCH_MODELS: dict[str, BenchModel] = {
    m.key: m
    for m in (
        BenchModel("mlp_fmnist", "MLP 784-600-10", "mlp_fmnist", (1, 28, 28), "fashion-mnist"),
        BenchModel("lenet5_fmnist", "LeNet-5", "lenet5_fmnist", (1, 28, 28), "fashion-mnist"),
        BenchModel("vgg_fmnist", "VGG (Fashion-MNIST)", "vgg_fmnist", (1, 28, 28),
                   "fashion-mnist"),
        BenchModel("vgg16_cifar", "VGG-16 32×32", "vgg16_cifar", (3, 32, 32), "random"),
        BenchModel("vgg16_cifar64", "VGG-16 64×64", "vgg16_cifar", (3, 64, 64), "random",
                   kwargs={"in_size": 64}),
        BenchModel("resnet_fmnist", "ResNet (Fashion-MNIST)", "resnet_fmnist", (1, 28, 28),
                   "fashion-mnist"),
        BenchModel("densenet_fmnist", "DenseNet (Fashion-MNIST)", "densenet_fmnist",
                   (1, 28, 28), "fashion-mnist"),
        BenchModel("resnet18_cifar", "ResNet-18 32×32", "resnet18_cifar", (3, 32, 32),
                   "random"),
        BenchModel("tiny_mlp", "tiny MLP 64-24-16-3", "tiny_mlp", (1, 8, 8), "random",
                   calibration=32),
        BenchModel("tiny_cnn", "tiny CNN", "tiny_cnn", (1, 8, 8), "random", calibration=32),
    )
}
#: Models of the full benchmark.
DEFAULT_MODELS: tuple[str, ...] = ("mlp_fmnist", "lenet5_fmnist", "vgg_fmnist", "resnet_fmnist",
                                   "densenet_fmnist", "vgg16_cifar", "vgg16_cifar64",
                                   "resnet18_cifar")
#: Models of ``--quick``.
QUICK_MODELS: tuple[str, ...] = ("tiny_mlp", "tiny_cnn")


def _instantiate(spec: BenchModel) -> nn.Module:
    if spec.factory in _TINY:
        return _TINY[spec.factory]()
    from onespike.models import get_model

    return get_model(spec.factory, **spec.kwargs)


def randomise_batchnorm(model: nn.Module, sample: Tensor, *, seed: int = 0) -> None:
    """Give a randomly initialised model plausible batch-norm parameters and statistics.

    Affine parameters are drawn (``gamma ~ U(0.8, 1.2)``, ``beta ~ U(-0.1, 0.1)``); the
    running statistics are those of ``sample`` flowing through the network in training mode
    (so every layer sees roughly unit-scale inputs, as after training), then perturbed
    (means shifted by ``N(0, 0.1²)·std``, variances scaled by ``U(0.8, 1.25)``). The model is
    left in eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        model.eval()
        return
    with torch.no_grad():
        for bn in bns:
            if bn.affine:
                bn.weight.copy_(0.8 + 0.4 * torch.rand(bn.weight.shape, generator=g))
                bn.bias.copy_(0.2 * torch.rand(bn.bias.shape, generator=g) - 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the sample
        model.train()
        model(sample)
        for bn in bns:
            bn.momentum = 0.1
            mean, var = bn.running_mean, bn.running_var
            if mean is None or var is None:  # track_running_stats=False: nothing to perturb
                continue
            std = var.sqrt()
            mean.add_(0.1 * std * torch.randn(std.shape, generator=g))
            var.mul_(0.8 + 0.45 * torch.rand(std.shape, generator=g))
    model.eval()


def build_model(spec: BenchModel, *, seed: int = 0) -> tuple[nn.Module, str]:
    """The model in eval mode and where its weights come from: ``"pretrained"`` (shipped
    weights) or ``"random (…)"`` (seeded default initialisation, batch norm randomised by
    :func:`randomise_batchnorm`)."""
    from onespike.models import load_pretrained

    if spec.factory not in _TINY and not spec.kwargs:
        try:
            return load_pretrained(spec.factory).float().eval(), "pretrained"
        except (ValueError, FileNotFoundError, OSError, RuntimeError, ImportError) as exc:
            reason = type(exc).__name__
            if isinstance(exc, FileNotFoundError):
                reason = "no weight file"
            elif isinstance(exc, ValueError):
                reason = "none shipped"
    else:
        reason = "none shipped"
    torch.manual_seed(seed)
    model = _instantiate(spec).float()
    g = torch.Generator().manual_seed(seed + 1)
    randomise_batchnorm(model, torch.rand((64, *spec.input_shape), generator=g), seed=seed)
    return model.eval(), f"random ({reason})"


def load_model(spec: BenchModel, weights: str, dtype: torch.dtype) -> nn.Module:
    """The model of ``spec`` with the weights of the safetensors file ``weights``, in
    ``dtype`` and eval mode (how a measuring process gets the ReLU model)."""
    from safetensors.torch import load_file

    model = _instantiate(spec)
    model.load_state_dict(load_file(weights), strict=True)
    return model.to(dtype).eval()


def bench_data(spec: BenchModel, n_eval: int, n_calib: int, *, seed: int = 0
               ) -> tuple[Tensor, Tensor, str]:
    """``(inputs, calibration, description)``: ``n_eval`` inputs to simulate (test split) and
    ``n_calib`` calibration images (train split), float32 in [0, 1]."""
    shape = spec.input_shape
    if spec.data == "fashion-mnist":
        try:
            from onespike.data import load_dataset

            test = load_dataset("fashion-mnist", "test", limit=n_eval).images
            train = load_dataset("fashion-mnist", "train", limit=n_calib).images
            if test.shape[0] == n_eval and train.shape[0] == n_calib:
                return test.contiguous(), train.contiguous(), "fashion-mnist (test / train)"
        except (OSError, ValueError) as exc:
            note = f"random [0, 1] (fashion-mnist unavailable: {type(exc).__name__})"
        else:
            note = "random [0, 1] (fashion-mnist too small)"
    else:
        note = "random [0, 1]"
    g = torch.Generator().manual_seed(seed + 7)
    return (torch.rand((n_eval, *shape), generator=g),
            torch.rand((n_calib, *shape), generator=g), note)
