"""Inputs arriving after t_min (jitter): the cheap late-input certificate agrees with the
exact first-crossing walk on every neuron."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.bf16 import bf16_anywhere
from tests.helpers.patching import patch_package
from torch import nn

import onespike
from onespike.simulation.engines import bounds, common
from onespike.simulation.engines.bounds.late import _fan_in_min


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=2, dilation=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding="same", groups=2), nn.ReLU(),
        nn.Conv2d(6, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3),
    ).eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("jitter", [0.005, 0.05, 0.3])
def test_late_certificate_matches_exact_walk(jitter: float, dtype: torch.dtype,
                                             monkeypatch) -> None:
    model = conv_net()
    x = torch.rand(24, 1, 8, 8)
    snn = onespike.convert(model, x, progress=False, dtype=dtype)
    x = x.to(dtype)
    pert = onespike.Perturbation(jitter=jitter, seed=3)
    fast = snn.simulate(x, perturbation=pert)
    assert sum(fast.certificate.checked) < sum(fast.certificate.neurons)  # the fast path works

    def never(layer, xs, bias=None, *, late_ok=False):  # every neuron takes the exact walk
        return torch.zeros((xs[0].shape[0], *layer.out_shape), dtype=torch.bool)

    monkeypatch.setattr(common, "certify_model_a", never)
    slow = snn.simulate(x, perturbation=pert)
    assert sum(slow.certificate.checked) == sum(slow.certificate.neurons)
    # the closed form and the walk of a proven neuron agree up to their roundings
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(fast.spike_times, slow.spike_times):
        assert torch.allclose(a, b, rtol=0, atol=tol)
    assert torch.allclose(fast.output, slow.output, rtol=0, atol=tol)
    assert fast.certificate.early == slow.certificate.early


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_certificates_leave_their_inputs_alone(dtype: torch.dtype, bf16: bool,
                                               monkeypatch) -> None:
    """The certificates read the edge inputs that the late-input check and the exact walk
    read after them: they never write into them (a float32 map's ``.to(float32)`` is the
    map itself, so an in-place clamp there would erase the late inputs)."""
    patch_package(monkeypatch, bounds, "BF16_DRIVE", bf16)
    bf16_anywhere(monkeypatch, bf16)
    model = conv_net()
    snn = onespike.convert(model, torch.rand(8, 1, 8, 8), progress=False, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    for layer in snn.hidden_layers:
        x = (torch.rand(3, *layer.in_shape, generator=g, dtype=torch.float64) - 0.3)
        x = (x * layer.B_in).to(dtype)
        before = x.clone()
        bounds.certify_drive(layer, [x])
        bounds.certify_model_a(layer, [x], late_ok=True)
        assert torch.equal(x, before), layer.name


def test_fan_in_min_matches_gathered_patches() -> None:
    model = conv_net()
    x = torch.rand(5, 1, 8, 8)
    snn = onespike.convert(model, x, progress=False)
    v = snn.encode(x)
    for layer in snn.hidden_layers:
        xin = layer.routed(v) - 0.3
        mins = _fan_in_min(layer, [xin])
        index = torch.arange(mins.numel())
        xs, _ = layer.affine.gather(xin, index, fill=float("inf"))
        assert torch.allclose(mins.reshape(-1), xs.amin(dim=1))
        v = layer.affine(layer.routed(v)).clamp_min(0)


def _near_threshold_case(dtype: torch.dtype, seed: int):
    """A float32/float64 Linear population with inputs partly late and biases set so that the
    late-input end values lie within a few float32 roundings of the certificate's limit."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2)).eval().to(dtype)
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(32, 64, generator=gen, dtype=dtype) * 0.05)
        model[0].bias.zero_()
    x = torch.rand(16, 64, generator=gen, dtype=dtype)
    snn = onespike.convert(model, x, progress=False, dtype=dtype)
    layer = snn.hidden_layers[0]
    xin = snn.encode(x)
    xin[:, :4] = -1e-6 * torch.rand(16, 4, generator=gen, dtype=dtype)  # four late inputs
    late = xin < 0
    with torch.no_grad():  # each neuron's largest z_A just above B (saturated by a hair)
        z_a = (xin.clamp_min(0) @ layer.weight.T).double() + layer.bias.double()
        target = layer.B * (1 + 1e-6)
        layer.bias.add_((target - z_a.amax(dim=0)).to(dtype))
    return layer, xin, late


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_certify_late_is_sound_near_the_threshold(dtype: torch.dtype, monkeypatch) -> None:
    """Whatever certify_late proves, the exact walk confirms (no crossing before t_min); with
    its rounding margin switched off (mutation) it claims neurons it cannot prove."""

    def unsound(layer, xin, late) -> int:
        ok = bounds.certify_late(layer, [xin], [late]).reshape(-1)
        z = layer.affine(xin).reshape(-1)  # late inputs count with x_j < 0
        idx = ok.nonzero().reshape(-1)
        exact = common.exact_values(layer, [xin.clamp(max=layer.B_in)], idx)
        return int((exact > layer.B).sum()) + int(((exact - z.clamp_min(0)[idx]).abs()
                                                     > 1e-6 * layer.B).sum())

    layer, xin, late = _near_threshold_case(dtype, 0)
    assert unsound(layer, xin, late) == 0
    patch_package(monkeypatch, bounds, "late_margin_scale", lambda: -1e10)  # mutation: margin < 0
    assert unsound(layer, xin, late) > 0  # the checker catches an unsound bound
