"""Every unsupported operation is refused up front, naming the operation and where it sits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import onespike
from onespike import UnsupportedModelError, UnsupportedOperationError


class NoCalibration:
    """Calibration data that fails the test if conversion touches it."""

    def __iter__(self):
        raise AssertionError("calibration data was read before the model was validated")


def refuse(model: nn.Module, *fragments: str) -> None:
    with pytest.raises(UnsupportedOperationError) as info:
        onespike.convert(model.eval(), NoCalibration(), progress=False)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, msg


@pytest.mark.parametrize(
    ("act", "name"),
    [(nn.Sigmoid(), "Sigmoid"), (nn.Tanh(), "Tanh"), (nn.GELU(), "GELU"),
     (nn.LeakyReLU(), "LeakyReLU"), (nn.ELU(), "ELU"), (nn.SiLU(), "SiLU"),
     (nn.Hardtanh(), "Hardtanh")],
)
def test_unsupported_activation_modules(act: nn.Module, name: str) -> None:
    refuse(nn.Sequential(nn.Linear(4, 4), act, nn.Linear(4, 2)), name, "'1'")


def test_layernorm_names_module_path() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), nn.ReLU(),
                          nn.Linear(4, 2))
    refuse(model, "LayerNorm", "0.1")


def test_attention_refused() -> None:
    class Att(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.att = nn.MultiheadAttention(4, 1, batch_first=True)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            y, _ = self.att(x, x, x)
            return self.out(y.flatten(1))

    refuse(Att(), "MultiheadAttention", "att")


def test_functional_sigmoid_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.sigmoid(self.a(x)))

    refuse(M(), "torch.sigmoid", "graph node")


def test_data_dependent_control_flow_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:
                return self.a(x)
            return -self.a(x)

    refuse(M(), "untraceable", "control flow")


def test_readout_followed_by_relu_refused() -> None:
    refuse(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU()),
           "ReLU", "'3'", "readout")


def test_readout_not_linear_or_conv() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)).eval()
    with pytest.raises(UnsupportedModelError, match="not produced by a Linear/Conv readout"):
        onespike.convert(model, torch.rand(4, 1, 8, 8), progress=False)


def test_readout_followed_by_pool_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3),
                          nn.MaxPool2d(2)).eval()
    with pytest.raises(UnsupportedModelError, match="followed by pooling"):
        onespike.convert(model, torch.rand(4, 1, 8, 8), progress=False)


def test_conv_transpose_refused() -> None:
    refuse(nn.Sequential(nn.ConvTranspose2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(200, 2)), "ConvTranspose2d", "0")


def test_functional_linear_with_free_parameters_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 4))

        def forward(self, x):
            return F.linear(x, self.w)

    refuse(M(), "parameter access", "w")


def test_circular_padding_refused() -> None:
    refuse(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                         nn.Flatten(), nn.Linear(128, 2)), "circular")


def test_tuple_output_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 2)

        def forward(self, x):
            return self.a(x), x

    refuse(M(), "structured output")


def test_supported_functional_forms() -> None:
    """F.relu, torch.relu, Tensor.relu, torch.flatten, view(x.size(0), -1), reshape."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(1, 3, 3, padding=1)
            self.c2 = nn.Conv2d(3, 4, 3, padding=1)
            self.c3 = nn.Conv2d(4, 4, 1)
            self.l1 = nn.Linear(64, 8)
            self.l2 = nn.Linear(8, 8)
            self.l3 = nn.Linear(8, 3)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c1(x)), 2)
            x = torch.relu(self.c2(x))
            x = self.c3(x).relu()
            x = x.view(x.size(0), -1)
            x = F.relu(self.l1(x))
            x = torch.flatten(F.dropout(x, 0.5, training=self.training), 1)
            x = self.l2(x).reshape(x.shape[0], -1).relu()
            return self.l3(x)

    model = M().eval()
    x = torch.rand(16, 1, 8, 8)
    snn = onespike.convert(model, x, progress=False)
    with torch.no_grad():
        ref = model.double()(x.double())
    out = snn(x)
    assert float((out - ref).abs().max()) < 1e-10
    assert len(snn.hidden_layers) == 5


# -- formerly refused, now supported: positive conversions checked against the model ----------
def convert_and_check(model: nn.Module, x: torch.Tensor, neuron: str = "alpha"
                      ) -> onespike.SpikingNetwork:
    model = model.double().eval()
    x = x.double()
    snn = onespike.convert(model, x, neuron=neuron, progress=False)
    with torch.no_grad():
        ref = model(x)
    for engine in ("event", "closed"):
        sim = snn.simulate(x, engine=engine)
        assert sim.output.shape == ref.shape
        scale = max(1.0, float(ref.abs().max()))
        assert float((sim.output - ref).abs().max()) <= 1e-9 * scale, engine
        assert sim.certificate.exact, str(sim.certificate)
    return snn


class Linears(nn.Module):
    def __init__(self, a: int = 4, b: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(4, a)
        self.b = nn.Linear(b, 2)


@pytest.mark.parametrize("neuron", ["alpha", "constant-slope"])
def test_relu6_module_converts(neuron: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU6(), nn.Linear(6, 2))
    with torch.no_grad():
        model[0].weight.mul_(8)  # drive some values above 6
        model[0].bias.fill_(3.0)
    x = torch.rand(32, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert bool((model[0](x) > 6).any())
    snn = convert_and_check(model, x, neuron)
    roles = [p.role for p in snn.hidden_layers]
    assert "clip" in roles  # ReLU(z) − ReLU(z − 6)


def test_residual_add_converts() -> None:
    class M(Linears):
        def forward(self, x):
            return self.b(F.relu(self.a(x)) + x)

    x = torch.rand(32, 4, generator=torch.Generator().manual_seed(1))
    convert_and_check(M(), x)
    convert_and_check(M(), x, "constant-slope")


def test_concatenation_converts() -> None:
    class M(Linears):
        def __init__(self) -> None:
            super().__init__(4, 8)

        def forward(self, x):
            return self.b(torch.cat([F.relu(self.a(x)), x], dim=1))

    x = torch.rand(32, 4, generator=torch.Generator().manual_seed(1))
    convert_and_check(M(), x)
    convert_and_check(M(), x, "constant-slope")


def test_two_linears_without_relu_convert() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    x = torch.rand(32, 4, generator=torch.Generator().manual_seed(1))
    snn = convert_and_check(model, x)
    assert len(snn.hidden_layers) == 0  # composed into one readout map


def test_constant_scaling_after_readout_converts() -> None:
    class M(Linears):
        def forward(self, x):
            y = F.relu(self.a(x))
            return self.b(y) * 2

    x = torch.rand(32, 4, generator=torch.Generator().manual_seed(1))
    convert_and_check(M(), x)


# -- still refused, naming the node -------------------------------------------------------------
def test_product_of_two_tensors_refused() -> None:
    class M(Linears):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Linear(4, 4)

        def forward(self, x):
            return self.b(F.relu(self.a(x)) * F.relu(self.c(x)))

    refuse(M(), "operator.mul", "'mul (graph node)'", "two tensors")


@pytest.mark.parametrize("op", ["torch.matmul", "operator.matmul"])
def test_matmul_refused(op: str) -> None:
    class M(Linears):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Linear(4, 4)

        def forward(self, x):
            u = F.relu(self.a(x)).view(-1, 2, 2)
            v = F.relu(self.c(x)).view(-1, 2, 2)
            w = torch.matmul(u, v) if op == "torch.matmul" else u @ v
            return self.b(w.flatten(1))

    refuse(M(), op, "'matmul (graph node)'", "Products of two tensors")


def test_scaled_dot_product_attention_refused() -> None:
    class M(Linears):
        def forward(self, x):
            q = self.a(x).view(-1, 1, 2, 2)
            return self.b(F.scaled_dot_product_attention(q, q, q).flatten(1))

    refuse(M(), "torch.scaled_dot_product_attention", "'scaled_dot_product_attention",
           "attention")


@pytest.mark.parametrize(("fn", "name"), [(torch.sigmoid, "torch.sigmoid"),
                                          (F.gelu, "gelu"), (torch.tanh, "torch.tanh")])
def test_functional_activations_refused(fn, name: str) -> None:
    class M(Linears):
        def forward(self, x):
            return self.b(fn(self.a(x)))

    refuse(M(), name, "graph node")


@pytest.mark.parametrize("method", [False, True])
def test_clamp_with_negative_lower_bound_refused(method: bool) -> None:
    class M(Linears):
        def forward(self, x):
            y = self.a(x)
            return self.b(y.clamp(-1.0, 1.0) if method else torch.clamp(y, -1, 1))

    refuse(M(), "Tensor.clamp" if method else "torch.clamp", "'clamp (graph node)'",
           "lower bound is -1")


def test_reflect_padding_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3)
            self.b = nn.Linear(32, 2)

        def forward(self, x):
            y = F.pad(x, (1, 1, 1, 1), mode="reflect")
            return self.b(F.relu(self.a(y)).flatten(1))

    refuse(M(), "F.pad", "'pad (graph node)'", "reflect")


def test_integer_indexing_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3)
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            return self.b(F.relu(self.a(x))[:, 0].flatten(1))

    refuse(M(), "indexing", "'getitem (graph node)'", "not a slice")


def test_data_dependent_control_flow_in_submodule_refused() -> None:
    class Gate(nn.Module):
        def forward(self, x):
            return x if x.mean() > 0 else -x

    refuse(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), Gate(), nn.Linear(4, 2)),
           "untraceable", "control flow")
