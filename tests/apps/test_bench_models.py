"""The benchmark's models: weight recipes (seeded, documented in the weights string), the
VGG-16 recipe keys, and the conversion of a VGG with batch norm after each ReLU (a tiny
variant: the full VGG-16 is only built here, never converted)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import onespike
from onespike.apps.bench import (
    BENCH_MODELS,
    DEFAULT_MODELS,
    RECIPES,
    apply_recipe,
    build_model,
)
from onespike.models.architectures import VGG, _vgg_features

VGG16_RECIPE_KEYS = ("vgg16_cifar", "vgg16_cifar_spread", "vgg16_cifar_bnrelu",
                     "vgg16_cifar_kaiming")


def _bn_state(model: nn.Module) -> torch.Tensor:
    parts = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            parts += [m.weight.detach(), m.bias.detach(), m.running_mean, m.running_var]
    return torch.cat([p.reshape(-1) for p in parts])


@pytest.fixture(scope="module")
def vgg16_models() -> dict[str, tuple[nn.Module, str]]:
    return {key: build_model(BENCH_MODELS[key]) for key in VGG16_RECIPE_KEYS}


def test_recipe_keys_are_benchmarked() -> None:
    for key in VGG16_RECIPE_KEYS:
        assert key in DEFAULT_MODELS
    recipes = {BENCH_MODELS[k].recipe for k in VGG16_RECIPE_KEYS}
    assert recipes == set(RECIPES)
    assert BENCH_MODELS["vgg16_cifar_bnrelu"].kwargs == {"bn_after_relu": True}


def test_vgg16_recipes(vgg16_models: dict[str, tuple[nn.Module, str]]) -> None:
    states = {}
    for key, (model, weights) in vgg16_models.items():
        spec = BENCH_MODELS[key]
        assert not model.training
        assert weights == f"random, recipe {spec.recipe}, seed {spec.seed} (none shipped)"
        states[key] = _bn_state(model)
        with torch.no_grad():
            y = model(torch.rand(2, 3, 32, 32))
        assert y.shape == (2, 10) and torch.isfinite(y).all()
    keys = list(states)
    for i, a in enumerate(keys):  # every recipe gives other batch-norm statistics
        for b in keys[i + 1:]:
            assert not torch.allclose(states[a], states[b]), (a, b)
    spread = vgg16_models["vgg16_cifar_spread"][0]
    gammas = torch.cat([m.weight.detach() for m in spread.modules()
                        if isinstance(m, nn.BatchNorm2d)])
    assert 0.5 <= float(gammas.min()) < 0.8 and 1.2 < float(gammas.max()) <= 1.5
    kaiming = vgg16_models["vgg16_cifar_kaiming"][0]
    for m in kaiming.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert m.bias is not None and not bool(m.bias.any())


def test_recipe_is_seeded() -> None:
    spec = BENCH_MODELS["tiny_cnn"]
    a, wa = build_model(spec, seed=3)
    b, wb = build_model(spec, seed=3)
    c, _ = build_model(spec, seed=4)
    assert wa == wb == "random, recipe plausible, seed 3 (none shipped)"
    assert torch.equal(_bn_state(a), _bn_state(b))
    assert not torch.equal(_bn_state(a), _bn_state(c))


def test_unknown_recipe() -> None:
    with pytest.raises(ValueError, match="unknown weight recipe"):
        apply_recipe(nn.Linear(2, 2), "golden", torch.rand(4, 2), seed=0)


def _tiny_vgg(bn_after_relu: bool) -> VGG:
    features = _vgg_features((4, 4, "M", 6), 3, bn_after_relu=bn_after_relu)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 4, 8), nn.ReLU(),
                               nn.Linear(8, 3))
    return VGG(features, classifier)


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("bn_after_relu", [False, True])
def test_tiny_vgg_recipes_convert_exactly(recipe: str, bn_after_relu: bool) -> None:
    """Every recipe, batch norm before or after the ReLU: the converted network reproduces
    the ReLU logits (closed form; and the exact dynamics where the certificate holds)."""
    torch.manual_seed(0)
    model = _tiny_vgg(bn_after_relu)
    g = torch.Generator().manual_seed(1)
    apply_recipe(model, recipe, torch.rand(64, 3, 8, 8, generator=g), seed=0)
    assert not model.training
    x = torch.rand(6, 3, 8, 8, generator=g)
    snn = onespike.convert(model, [torch.rand(32, 3, 8, 8, generator=g)], dtype=torch.float64,
                           progress=False)
    with torch.no_grad():
        ref = model.double()(x.double())
    scale = float(ref.abs().max())
    closed = snn.simulate(x.double(), engine="closed", record=False).output
    assert float((closed - ref).abs().max()) <= 1e-9 * scale
    sim = snn.simulate(x.double())
    if sim.certificate.exact:
        assert float((sim.output - ref).abs().max()) <= 1e-9 * scale
