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
     (nn.LeakyReLU(), "LeakyReLU"), (nn.ReLU6(), "ReLU6"), (nn.ELU(), "ELU")],
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


def test_residual_add_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            return self.b(F.relu(self.a(x)) + x)

    refuse(M(), "add", "residual")


def test_concatenation_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(8, 2)

        def forward(self, x):
            return self.b(torch.cat([F.relu(self.a(x)), x], dim=1))

    refuse(M(), "cat", "concatenation")


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


def test_two_linears_without_relu_refused() -> None:
    refuse(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), "Linear", "'1'", "no ReLU")


def test_circular_padding_refused() -> None:
    refuse(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                         nn.Flatten(), nn.Linear(128, 2)), "circular")


def test_branching_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            y = F.relu(self.a(x))
            return self.b(y) * 2

    refuse(M(), "mul")


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
