"""The benchmark's models: what each ``--models`` key is, how it is built (shipped weights or a
seeded random initialisation following a weight *recipe*, :data:`RECIPES`) and which inputs it
is fed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from onespike.errors import ArgumentError

__all__ = [
    "BENCH_MODELS",
    "DEFAULT_MODELS",
    "DTYPES",
    "QUICK_MODELS",
    "RECIPES",
    "BenchModel",
    "apply_recipe",
    "bench_data",
    "build_model",
    "kaiming_init",
    "randomise_batchnorm",
]

#: dtype names accepted by ``--dtypes``.
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class BenchModel:
    """A model of the benchmark: how to build it and what it is fed.

    ``factory``: a :func:`onespike.models.get_model` name (or a tiny model of this module);
    ``data``: ``"fashion-mnist"`` (real images; random ones if the files are missing) or
    ``"random"`` (uniform in [0, 1]); ``calibration``: default number of calibration images;
    ``kwargs``: arguments of the factory. Without shipped weights (or with ``kwargs`` or a
    ``recipe`` other than ``"plausible"``) the weights are random, made by the recipe
    ``recipe`` (one of :data:`RECIPES`) with seed ``--seed`` + ``seed``.
    """

    key: str
    label: str
    factory: str
    input_shape: tuple[int, ...]
    data: str
    calibration: int = 1000
    kwargs: dict[str, Any] = field(default_factory=dict)
    recipe: str = "plausible"
    seed: int = 0


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
        BenchModel("vgg16_cifar_spread", "VGG-16 32×32, spread BN (seed 1)", "vgg16_cifar",
                   (3, 32, 32), "random", recipe="spread", seed=1),
        BenchModel("vgg16_cifar_bnrelu", "VGG-16 32×32, BN after ReLU", "vgg16_cifar",
                   (3, 32, 32), "random", kwargs={"bn_after_relu": True}),
        BenchModel("vgg16_cifar_kaiming", "VGG-16 32×32, Kaiming init", "vgg16_cifar",
                   (3, 32, 32), "random", recipe="kaiming"),
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
                                   "densenet_fmnist", "vgg16_cifar", "vgg16_cifar_spread",
                                   "vgg16_cifar_bnrelu", "vgg16_cifar_kaiming",
                                   "vgg16_cifar64", "resnet18_cifar")
#: Models of ``--quick``.
QUICK_MODELS: tuple[str, ...] = ("tiny_mlp", "tiny_cnn")


def _instantiate(spec: BenchModel) -> nn.Module:
    if spec.factory in _TINY:
        return _TINY[spec.factory]()
    from onespike.models import get_model

    return get_model(spec.factory, **spec.kwargs)


def randomise_batchnorm(
    model: nn.Module,
    sample: Tensor,
    *,
    seed: int = 0,
    gamma: tuple[float, float] = (0.8, 1.2),
    beta: tuple[float, float] = (-0.1, 0.1),
    mean_shift: float = 0.1,
    var_scale: tuple[float, float] = (0.8, 1.25),
) -> None:
    """Give a randomly initialised model plausible batch-norm parameters and statistics.

    Affine parameters are drawn (``gamma ~ U(*gamma)``, ``beta ~ U(*beta)``; default
    ``U(0.8, 1.2)`` and ``U(-0.1, 0.1)``); the running statistics are those of ``sample``
    flowing through the network in training mode (so every layer sees roughly unit-scale
    inputs, as after training), then perturbed (means shifted by
    ``N(0, mean_shift²)·std``, variances scaled by ``U(*var_scale)``; default
    ``N(0, 0.1²)·std`` and ``U(0.8, 1.25)``). Draws come from a generator seeded with ``seed``,
    layer by layer in module order. The model is left in eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        model.eval()
        return
    g_lo, g_hi = gamma
    b_lo, b_hi = beta
    v_lo, v_hi = var_scale
    with torch.no_grad():
        for bn in bns:
            if bn.affine:
                bn.weight.copy_(g_lo + (g_hi - g_lo) * torch.rand(bn.weight.shape, generator=g))
                bn.bias.copy_((b_hi - b_lo) * torch.rand(bn.bias.shape, generator=g) + b_lo)
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
            mean.add_(mean_shift * std * torch.randn(std.shape, generator=g))
            var.mul_(v_lo + (v_hi - v_lo) * torch.rand(std.shape, generator=g))
    model.eval()


def kaiming_init(model: nn.Module) -> None:
    """torchvision's VGG initialisation: every ``Conv2d`` weight Kaiming-normal
    (``N(0, 2 / fan_out)``, ``fan_out = out_channels · kernel area``: ``kaiming_normal_`` with
    ``mode="fan_out", nonlinearity="relu"``), every ``Linear`` weight ``N(0, 0.01²)``, all
    their biases 0, batch norm ``gamma = 1``, ``beta = 0``. Draws come from torch's global
    generator (seeded by :func:`build_model`), module by module."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                continue
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _plausible(model: nn.Module, sample: Tensor, seed: int) -> None:
    randomise_batchnorm(model, sample, seed=seed)


def _spread(model: nn.Module, sample: Tensor, seed: int) -> None:
    randomise_batchnorm(model, sample, seed=seed, gamma=(0.5, 1.5), beta=(-0.3, 0.3),
                        mean_shift=0.3, var_scale=(0.5, 2.0))


def _kaiming(model: nn.Module, sample: Tensor, seed: int) -> None:
    kaiming_init(model)
    randomise_batchnorm(model, sample, seed=seed)


#: Weight recipes of randomly initialised bench models, by :attr:`BenchModel.recipe`. Each
#: starts from PyTorch's default initialisation drawn after ``torch.manual_seed(seed)``
#: (Kaiming-uniform weights ``a=√5`` and uniform biases for conv and linear layers) and
#: feeds ``sample`` (64 inputs ``U(0, 1)`` from a generator seeded ``seed + 1``) to
#: :func:`randomise_batchnorm` (generator seeded ``seed``):
#:
#: * ``"plausible"``: batch norm ``gamma ~ U(0.8, 1.2)``, ``beta ~ U(-0.1, 0.1)``, running
#:   means the sample's plus ``N(0, 0.1²)·std``, variances the sample's times
#:   ``U(0.8, 1.25)``;
#: * ``"spread"``: wider statistics: ``gamma ~ U(0.5, 1.5)``, ``beta ~ U(-0.3, 0.3)``, means
#:   shifted by ``N(0, 0.3²)·std``, variances scaled by ``U(0.5, 2)``;
#: * ``"kaiming"``: first :func:`kaiming_init` (torchvision's VGG initialisation: conv weights
#:   ``N(0, 2 / fan_out)``, linear weights ``N(0, 0.01²)``, zero biases), then the
#:   ``"plausible"`` batch norm.
RECIPES: dict[str, Callable[[nn.Module, Tensor, int], None]] = {
    "plausible": _plausible,
    "spread": _spread,
    "kaiming": _kaiming,
}


def apply_recipe(model: nn.Module, recipe: str, sample: Tensor, *, seed: int) -> None:
    """Apply weight recipe ``recipe`` (:data:`RECIPES`) to a freshly built ``model`` with
    batch-norm statistics from ``sample``; leaves it in eval mode."""
    try:
        make = RECIPES[recipe]
    except KeyError:
        raise ArgumentError(f"unknown weight recipe {recipe!r}; known: "
                            f"{', '.join(RECIPES)}") from None
    make(model, sample, seed)
    model.eval()


def _trained(name: str) -> str:
    """How the shipped weights of ``name`` were made (from their training record)."""
    from onespike.models import pretrained_info

    try:
        info = pretrained_info(name)
        text = (f"pretrained: trained on {info['dataset']}, {info['epochs']} epochs, seed "
                f"{info['seed']}, test accuracy {100 * float(info['test_accuracy']):.1f}%")
    except (OSError, ValueError, KeyError, TypeError):
        text = "pretrained"
    return text + " (shipped weights)"


def build_model(spec: BenchModel, *, seed: int = 0) -> tuple[nn.Module, str]:
    """The model in eval mode and how its weights were made: ``"pretrained: trained on …
    (shipped weights)"``, or ``"random, recipe R, seed S (why)"`` — ``torch.manual_seed(S)``,
    the factory's default initialisation, then recipe ``R`` of :data:`RECIPES`, with
    ``S = seed + spec.seed``. Shipped weights are tried only for a factory called without
    ``kwargs`` and with the default recipe."""
    from onespike.models import PRETRAINED_NAMES, load_pretrained

    reason = "none shipped"
    if spec.factory in _TINY:
        pass
    elif not spec.kwargs and spec.recipe == "plausible":
        try:
            return load_pretrained(spec.factory).float().eval(), _trained(spec.factory)
        except (ValueError, FileNotFoundError, OSError, RuntimeError, ImportError) as exc:
            reason = type(exc).__name__
            if isinstance(exc, FileNotFoundError):
                reason = "no weight file"
            elif isinstance(exc, ValueError):
                reason = "none shipped"
    elif spec.factory in PRETRAINED_NAMES:
        reason = "shipped weights not used: other architecture options or recipe"
    s = seed + spec.seed
    torch.manual_seed(s)
    model = _instantiate(spec).float()
    g = torch.Generator().manual_seed(s + 1)
    apply_recipe(model, spec.recipe, torch.rand((64, *spec.input_shape), generator=g), seed=s)
    return model.eval(), f"random, recipe {spec.recipe}, seed {s} ({reason})"


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
