"""Folding batch norm, input range and pooling: the folded network equals the original."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.nets import randomize_bn
from torch import nn

import onespike
from onespike.conversion.fold import fold
from onespike.conversion.trace import to_graph, validate_and_trace


def folded_of(model: nn.Module, x: torch.Tensor, low=0.0, high=1.0):
    gm = validate_and_trace(model)
    graph = to_graph(gm, x[:2].to(next(model.parameters()).dtype), torch.float64)
    shape = graph.nodes[0].out_shape
    lo = torch.as_tensor(low, dtype=torch.float64).expand(shape).clone() if not isinstance(
        low, torch.Tensor) else low
    hi = torch.as_tensor(high, dtype=torch.float64).expand(shape).clone() if not isinstance(
        high, torch.Tensor) else high
    return fold(graph, lo, hi), lo, hi


def folded_logits(model: nn.Module, x: torch.Tensor, low=0.0, high=1.0) -> torch.Tensor:
    f, lo, hi = folded_of(model, x, low, high)
    xhat = (x.double() - lo) / (hi - lo)
    out = f.forward_values(xhat)["readout"]
    for r in f.output_routes:
        out = r(out)
    return out


CONV_CASES = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=5, padding=2),
    dict(kernel_size=3, padding=1, stride=2),
    dict(kernel_size=3, padding=2, dilation=2),
    dict(kernel_size=3, padding=1, groups=2),
    dict(kernel_size=4, padding="same"),
    dict(kernel_size=(3, 5), padding=(1, 2), stride=(2, 1)),
    dict(kernel_size=5, padding=3, stride=2, dilation=2, groups=2),
]


@pytest.mark.parametrize("conv_kw", CONV_CASES)
def test_bn_after_relu_padding_bias_map(conv_kw: dict) -> None:
    """ReLU → BN → zero-padded conv: the folded bias must be a per-position map."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4),
        nn.Conv2d(4, 6, **conv_kw), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3),
    )
    x = torch.rand(8, 2, 11, 11)
    model(x)  # materialise the lazy layer
    model = nn.Sequential(*list(model.children())[:-1], nn.Linear(model[-1].in_features, 3))
    randomize_bn(model, torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        ref = model.double()(x.double())
    out = folded_logits(model, x)
    assert float((out - ref).abs().max()) < 1e-12
    # a single bias per channel (the "interior" value) is NOT exact at the border: the map
    # varies over positions, so the per-position handling is really exercised
    f, _, _ = folded_of(model, x)
    bias = f.populations[1].bias
    assert float((bias - bias[:, bias.shape[1] // 2 : bias.shape[1] // 2 + 1,
                          bias.shape[2] // 2 : bias.shape[2] // 2 + 1]).abs().max()) > 1e-6


@pytest.mark.parametrize("order", ["bn-relu", "relu-bn"])
@pytest.mark.parametrize("dims", [1, 2])
def test_batchnorm_before_and_after_relu(order: str, dims: int) -> None:
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
    shape = (3, 16) if dims == 1 else (3, 8, 8)
    act = [bn(5), nn.ReLU()] if order == "bn-relu" else [nn.ReLU(), bn(5)]
    model = nn.Sequential(conv(3, 5, 3, padding=1), *act, pool(2), conv(5, 4, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * (8 if dims == 1 else 16), 3),
                          nn.BatchNorm1d(3))
    randomize_bn(model, torch.Generator().manual_seed(2))
    model.eval()
    x = torch.rand(10, *shape)
    with torch.no_grad():
        ref = model.double()(x.double())
    assert float((folded_logits(model, x) - ref).abs().max()) < 1e-12


def test_negative_gamma_across_max_pool_becomes_min_pool() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(2),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 2)).eval()
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([-1.5, 2.0]))
    x = torch.rand(6, 1, 8, 8)
    f, _, _ = folded_of(model, x)
    route = f.readout.edges[0].routes[0]
    assert route.sign is not None and route.sign.tolist() == [-1.0, 1.0]
    with torch.no_grad():
        ref = model.double()(x.double())
    assert float((folded_logits(model, x) - ref).abs().max()) < 1e-12
    # and through the spiking network (model A)
    snn = onespike.convert(model, x, progress=False)
    assert float((snn(x) - ref).abs().max()) < 1e-10


def test_batchnorm_on_input_and_per_channel_range() -> None:
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    randomize_bn(model, torch.Generator().manual_seed(3))
    model.eval()
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    low, high = (0 - mean) / std, (1 - mean) / std
    x = (torch.rand(5, 3, 6, 6) - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    with torch.no_grad():
        ref = model.double()(x.double())
    snn = onespike.convert(model, x, input_range=(low, high), progress=False)
    assert float((snn(x) - ref).abs().max()) < 1e-10


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(3, stride=1, padding=1),
                                  nn.AdaptiveAvgPool2d(2)])
def test_avg_pool_before_conv_becomes_a_spiking_layer(pool: nn.Module) -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(3), pool,
                          nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(2))
    x = torch.rand(6, 1, 8, 8)
    model(x)
    model = nn.Sequential(*list(model.children())[:-1], nn.Linear(model[-1].in_features, 2))
    randomize_bn(model, torch.Generator().manual_seed(4))
    model.eval()
    with torch.no_grad():
        ref = model.double()(x.double())
    snn = onespike.convert(model, x, progress=False)
    assert any(ly.synthetic for ly in snn.hidden_layers)
    sim = snn.simulate(x)
    assert float((sim.output - ref).abs().max()) < 1e-10 and sim.certificate.exact


def test_avg_pool_before_linear_is_folded() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(3),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(48, 2))
    randomize_bn(model, torch.Generator().manual_seed(5))
    model.eval()
    x = torch.rand(6, 1, 8, 8)
    snn = onespike.convert(model, x, progress=False)
    assert not any(ly.synthetic for ly in snn.layers)
    with torch.no_grad():
        ref = model.double()(x.double())
    assert float((snn(x) - ref).abs().max()) < 1e-10


def test_max_pool_before_relu_commutes() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 5, padding=2), nn.MaxPool2d(2), nn.BatchNorm2d(3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    randomize_bn(model, torch.Generator().manual_seed(6))
    model.eval()
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        ref = model.double()(x.double())
    snn = onespike.convert(model, x, progress=False)
    assert float((snn(x) - ref).abs().max()) < 1e-10


def test_scaling_step_keeps_function_and_bounds_S() -> None:
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1.0, 0.5, 0.0], [-5.0, -5.0, -2.0, -1.0],
                                       [0.1, 0.2, 0.1, 0.0]]))
        lin.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(3, 2)).eval()
    x = torch.rand(20, 4)
    snn = onespike.convert(model, x, progress=False)
    S = snn.hidden_layers[0].S
    assert float(S.max()) < 1
    assert S[0].item() == pytest.approx(0.99)  # 2.5 → scaled by 0.99/2.5
    assert S[1].item() == pytest.approx(-10.0)  # −13 → scaled by −10/−13
    assert S[2].item() == pytest.approx(0.4)  # untouched
    with torch.no_grad():
        ref = model.double()(x.double())
    assert float((snn(x) - ref).abs().max()) < 1e-12


def test_no_population_is_left_unread() -> None:
    """max pool over cat([avg pool of a ReLU output, conv pre-activation]) → ReLU: the fold
    first pools block by block (making a population for the average pool), then falls back to
    pooling after the ReLU; the population of the first attempt must not stay behind."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3, padding=1)
            self.b = nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(4 * 4 * 4, 2)

        def forward(self, x):
            h = torch.relu(self.a(x))
            z = torch.cat([nn.functional.avg_pool2d(h, 3, 1, 1), self.b(h)], 1)
            return self.fc(torch.relu(nn.functional.max_pool2d(z, 2)).flatten(1))

    torch.manual_seed(0)
    model = M().double().eval()
    x = torch.rand(8, 1, 8, 8, dtype=torch.float64)
    for neuron in ("alpha", "constant-slope"):
        snn = onespike.convert(model, x, neuron=neuron, progress=False)
        read = {e.source for p in snn.layers for e in p.edges}
        assert {p.name for p in snn.hidden_layers} <= read
        assert [p.name for p in snn.hidden_layers] == [f"layer{i + 1}" for i in
                                                        range(len(snn.hidden_layers))]
        with torch.no_grad():
            assert float((snn(x) - model(x)).abs().max()) < 1e-10


def test_flatten_into_a_linear_too_large_to_compose_is_the_linear_itself() -> None:
    """A max pool, a flatten and a Linear whose dense composition exceeds DENSE_LIMIT
    (25,088 × 512 here, as VGG-16's 25,088 × 4,096 classifier): the edge is the flatten route
    and the Linear's own weight — refused before as 'not one Linear/Conv'."""
    from onespike.conversion.fold import DENSE_LIMIT

    torch.manual_seed(0)
    first = nn.Linear(512 * 7 * 7, 512)
    assert first.in_features * first.out_features > DENSE_LIMIT
    model = nn.Sequential(nn.Conv2d(3, 512, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), first, nn.ReLU(), nn.Linear(512, 10)).double().eval()
    x = torch.rand(3, 3, 14, 14, dtype=torch.float64)
    snn = onespike.convert(model, x, progress=False)
    edge = snn.layers[1].edges[0]
    assert [type(r).__name__ for r in edge.routes] == ["MaxPoolRoute", "ReshapeRoute"]
    assert tuple(snn.layers[1].edge_affine(0).weight.shape) == (512, 25088)  # not composed
    with torch.no_grad():
        ref = model(x)
    out = snn(x)
    assert float((out - ref).abs().max()) <= 1e-9 * float(ref.abs().max())
