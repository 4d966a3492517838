"""Inputs arriving after t_min (jitter): the cheap late-input certificate agrees with the
exact first-crossing walk on every neuron."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import onespike
from onespike.engines import bounds, common


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=2, dilation=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding="same", groups=2), nn.ReLU(),
        nn.Conv2d(6, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3),
    ).eval()


@pytest.mark.parametrize("jitter", [0.005, 0.05, 0.3])
def test_late_certificate_matches_exact_walk(jitter: float, monkeypatch) -> None:
    model = conv_net()
    x = torch.rand(24, 1, 8, 8)
    snn = onespike.convert(model, x, progress=False)
    pert = onespike.Perturbation(jitter=jitter, seed=3)
    fast = snn.simulate(x, perturbation=pert)
    assert sum(fast.certificate.checked) < sum(fast.certificate.neurons)  # the fast path works

    def never(layer, x, bias=None, *, late_ok=False):  # every neuron takes the exact walk
        return torch.zeros((x.shape[0], *layer.out_shape), dtype=torch.bool)

    monkeypatch.setattr(common, "certify_model_a", never)
    slow = snn.simulate(x, perturbation=pert)
    assert sum(slow.certificate.checked) == sum(slow.certificate.neurons)
    for a, b in zip(fast.spike_times, slow.spike_times):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert torch.allclose(fast.output, slow.output, rtol=0, atol=1e-12)
    assert fast.certificate.early == slow.certificate.early


def test_fan_in_min_matches_gathered_patches() -> None:
    model = conv_net()
    x = torch.rand(5, 1, 8, 8)
    snn = onespike.convert(model, x, progress=False)
    v = snn.encode(x)
    for layer in snn.hidden_layers:
        xin = layer.routed(v) - 0.3
        mins = bounds._fan_in_min(layer, xin)
        index = torch.arange(mins.numel())
        xs, _ = layer.affine.gather(xin, index, fill=float("inf"))
        assert torch.allclose(mins.reshape(-1), xs.amin(dim=1))
        v = layer.affine(layer.routed(v)).clamp_min(0)
