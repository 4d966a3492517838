"""Rebuilding convertible modules from torch.export programs and scripted TorchScript."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import onespike
from onespike.apps.rebuild import RebuildError, from_exported, from_torchscript
from onespike.models import lenet5_fmnist

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Nested(nn.Module):
    """A custom container (not a Sequential) with a view in forward and BN after ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.BatchNorm2d(3), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Linear(3 * 2 * 2, 8), nn.ReLU(), nn.Dropout(0.2),
                                  nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(x.view(x.size(0), -1))


def _randomize(model: nn.Module) -> nn.Module:
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.mark.parametrize("make,shape", [(lenet5_fmnist, (1, 28, 28)), (Nested, (1, 8, 8))])
def test_exported_program_rebuilds_exactly(make, shape, tmp_path: Path) -> None:
    model = _randomize(make())
    x = torch.rand(12, *shape)
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (x[:2],)), path)
    rebuilt = from_exported(str(path))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    a = onespike.convert(model, x, progress=False)
    b = onespike.convert(rebuilt, x, progress=False)
    assert torch.equal(a(x), b(x))
    assert [ly.source for ly in a.layers] == [ly.source for ly in b.layers]


def test_exported_unsupported_op_is_reported(tmp_path: Path) -> None:
    class Sig(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 5), nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.sigmoid(self.fc1(x)))

    path = tmp_path / "sig.pt2"
    torch.export.save(torch.export.export(Sig().eval(), (torch.rand(2, 4),)), path)
    with pytest.raises(onespike.UnsupportedOperationError, match="sigmoid"):
        onespike.convert(from_exported(str(path)), torch.rand(3, 4), progress=False)


def test_scripted_sequential_rebuilds_exactly(tmp_path: Path) -> None:
    model = _randomize(lenet5_fmnist())
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(model), path)
    rebuilt = from_torchscript(str(path))
    assert isinstance(rebuilt, nn.Sequential)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_refusals(tmp_path: Path) -> None:
    scripted = tmp_path / "nested.pt"
    torch.jit.save(torch.jit.script(Nested().eval()), scripted)
    with pytest.raises(RebuildError, match="Nested"):
        from_torchscript(str(scripted))
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not an archive")
    with pytest.raises(RebuildError, match=r"not a torch\.export program"):
        from_exported(str(junk))
    with pytest.raises(RebuildError, match="not a loadable TorchScript"):
        from_torchscript(str(junk))
