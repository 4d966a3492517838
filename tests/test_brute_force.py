"""Whole-network cross-check: the event engine against an independent time-stepped
simulation of the spiking network's ODEs (tiny dt), on networks with real early spikes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import onespike


def time_stepped(snn: onespike.SpikingNetwork, x: torch.Tensor, dt: float) -> list[np.ndarray]:
    """Euler-integrate dV/dt = alpha·H(t − t_start) + Σ_j J_ij H(t − t_j) layer by layer for
    dense (Linear) networks; model A. Returns spike times per layer (input first)."""
    xhat = snn.encode(x).numpy()
    times = [1.0 - xhat]
    t_in = times[0]
    for layer in snn.hidden_layers:
        J = layer.J.numpy()  # (out, in)
        alpha = layer.alpha.numpy()
        theta = layer.theta.numpy()
        n_steps = int(np.ceil((layer.t_max - layer.t_start) / dt))
        grid = layer.t_start + dt * np.arange(n_steps + 1)
        out = np.full((x.shape[0], J.shape[0]), layer.t_max)
        for b in range(x.shape[0]):
            arrived = (t_in[b][None, :] <= grid[:-1, None]).astype(float)  # (steps, in)
            current = alpha[None, :] + arrived @ J.T  # (steps, out)
            v = np.concatenate([np.zeros((1, J.shape[0])), np.cumsum(current * dt, axis=0)])
            for i in range(J.shape[0]):
                hit = np.nonzero(v[:, i] >= theta[i])[0]
                if hit.size:
                    k = hit[0]
                    if k == 0:
                        out[b, i] = grid[0]
                    else:  # interpolate inside the step
                        out[b, i] = grid[k - 1] + dt * (theta[i] - v[k - 1, i]) / (
                            v[k, i] - v[k - 1, i])
                    out[b, i] = min(out[b, i], layer.t_max)
        times.append(out)
        t_in = out
    return times


def adversarial_mlp(seed: int) -> nn.Sequential:
    """Each hidden neuron has one strong excitatory synapse (weight 1.5–2.5) and inhibitory
    others, plus a positive bias: when the strong input arrives late (value 0) and the others
    early, the neuron can cross its threshold before its window (design note §2)."""
    g = torch.Generator().manual_seed(seed)
    l1, l2, l3 = nn.Linear(5, 6), nn.Linear(6, 4), nn.Linear(4, 3)
    with torch.no_grad():
        for lin in (l1, l2):
            o, i = lin.weight.shape
            w = -torch.rand(o, i, generator=g) * 0.8
            strong = torch.randint(0, i, (o,), generator=g)
            w[torch.arange(o), strong] = 1.5 + torch.rand(o, generator=g)
            lin.weight.copy_(w)
            lin.bias.copy_(0.5 + torch.rand(o, generator=g))
        l3.weight.copy_(torch.randn(3, 4, generator=g))
        l3.bias.zero_()
    return nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(), l3).double().eval()


def sparse_inputs(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.rand(n, 5, generator=g, dtype=torch.float64)
    return x * (torch.rand(n, 5, generator=g, dtype=torch.float64) > 0.4)


@pytest.mark.parametrize("seed", range(4))
def test_event_engine_matches_time_stepped_simulation(seed: int) -> None:
    model = adversarial_mlp(seed)
    x = sparse_inputs(seed, 30)
    snn = onespike.convert(model, x, zeta=0.0, progress=False)
    sim = snn.simulate(x, engine="event")
    ref = time_stepped(snn, x, dt=2e-4)
    for t_event, t_ref in zip(sim.spike_times[1:], ref[1:]):
        np.testing.assert_allclose(t_event.numpy(), t_ref, atol=5e-3)
    # the certificate counts exactly the neurons that fire before their window
    for i, layer in enumerate(snn.hidden_layers):
        assert sim.certificate.early[i] == int((sim.spike_times[i + 1] < layer.t_min).sum())


def test_adversarial_networks_really_fire_early() -> None:
    """The cross-check above is not vacuous: these networks have early spikes that are not
    saturation, and the certificate reports them per sample."""
    early_only = 0
    for seed in range(4):
        model = adversarial_mlp(seed)
        x = sparse_inputs(seed, 30)
        snn = onespike.convert(model, x, zeta=0.0, progress=False)
        sim = snn.simulate(x)
        early_only += sum(sim.certificate.early) - sum(sim.certificate.saturated)
        if not sim.certificate.exact:
            assert not bool(sim.certificate.sample_exact.all())
    assert early_only > 0


def test_calibration_inputs_are_exact_against_time_stepping() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()
    calib = torch.rand(20, 4, dtype=torch.float64)
    snn = onespike.convert(model, calib, progress=False)
    sim = snn.simulate(calib[:5])
    ref = time_stepped(snn, calib[:5], dt=2e-4)
    np.testing.assert_allclose(sim.spike_times[1].numpy(), ref[1], atol=2e-3)
    assert sim.certificate.exact
