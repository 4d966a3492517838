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


def early_network(seed: int) -> tuple[onespike.SpikingNetwork, torch.Tensor]:
    """:func:`adversarial_mlp` converted on its inputs, then the first layer's biases moved
    so that, on the first sample, its neurons' brute-force ``max f`` sits ±5 % of B from
    the threshold: half of them fire before their window — most by saturation (``z > B``),
    a few (seeds 2 and 3) with ``z < B``, the crossing at ``u > 0``. (A network converted with
    ``zeta = 0`` rarely fires early on its own calibration data: B is the data's maximum.)"""
    from tests.simulation.engines.bounds.test_bounds import brute_max_f, move_to_threshold

    x = sparse_inputs(seed, 30)
    snn = onespike.convert(adversarial_mlp(seed), x, zeta=0.0, progress=False)
    layer = snn.hidden_layers[0]
    xin = snn.simulate(x, engine="closed").activations()[0]
    with torch.no_grad():
        before = layer.bias.clone()
        move_to_threshold(layer, brute_max_f(layer, layer.routed(xin))[0], 0.05,
                          torch.Generator().manual_seed(seed), torch.float64)
        # the neurons themselves: theta = alpha·B_in + G·(B − b)
        layer.theta.sub_(layer.G * (layer.bias - before))
    return snn, x


@pytest.mark.parametrize("seed", range(4))
def test_event_engine_matches_time_stepped_simulation(seed: int) -> None:
    snn, x = early_network(seed)
    sim = snn.simulate(x, engine="event")
    ref = time_stepped(snn, x, dt=2e-4)
    for t_event, t_ref in zip(sim.spike_times[1:], ref[1:]):
        np.testing.assert_allclose(t_event.numpy(), t_ref, atol=5e-3)
    # the certificate counts exactly the neurons that fire before their window (value
    # t_max − t > B), up to spikes within a few ulps of t_min: a spike time is stored as
    # t_max − value, which may round across t_min (e.g. z = B exactly, the calibrated
    # maximum with zeta = 0, lands an ulp before t_min on some backends)
    for i, layer in enumerate(snn.hidden_layers):
        tol = 8 * torch.finfo(torch.float64).eps * layer.t_max
        t = sim.spike_times[i + 1]
        surely, maybe = int((t < layer.t_min - tol).sum()), int((t < layer.t_min + tol).sum())
        assert surely <= sim.certificate.early[i] <= maybe


def test_adversarial_networks_really_fire_early() -> None:
    """The cross-check above is not vacuous: these networks have early spikes that are not
    saturation, and the certificate reports them per sample."""
    early_only = 0
    for seed in range(4):
        snn, x = early_network(seed)
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


# -- DAGs: a delayed skip edge ------------------------------------------------------------------
def dense_matrix(pop, i: int) -> np.ndarray:
    """W of edge ``i`` as a dense (out, in) matrix, from its affine map on a one-hot basis."""
    aff = pop.edge_affine(i)
    n_in = int(np.prod(pop.edges[i].in_shape))
    eye = torch.eye(n_in, dtype=pop.bias.dtype).reshape(n_in, *pop.edges[i].in_shape)
    return aff.linear(eye).reshape(n_in, -1).T.numpy()


def brute_force_dag(snn: onespike.SpikingNetwork, x: torch.Tensor, dt: float
                    ) -> dict[str, np.ndarray]:
    """Euler-integrate model A on a DAG using only the population parameters: per edge the
    weights (``edge_affine``), routes (applied to values ``t_max(s) − t``) and delay ``d``;
    ``dV/dt = alpha·H(t − t_start) + Σ_e Σ_j G_i W^e_ij H(t − t_j − d_e)``, threshold
    ``theta``. Returns spike times (flattened) per population name."""
    times: dict[str, np.ndarray] = {"input": (1.0 - snn.encode(x)).reshape(len(x), -1).numpy()}
    t_max_of = {"input": 1.0}
    shape_of = {"input": snn.input_shape}
    for pop in snn.hidden_layers:
        n_out = pop.num_neurons
        G = pop.G.reshape(-1).numpy()
        alpha = pop.alpha.reshape(-1).numpy()
        theta = pop.theta.reshape(-1).numpy()
        arrivals, weights = [], []
        for i, e in enumerate(pop.edges):
            ts = t_max_of[e.source]
            v = ts - torch.from_numpy(times[e.source]).reshape(len(x), *shape_of[e.source])
            routed = ts - pop.route(i, v).reshape(len(x), -1).numpy()
            arrivals.append(routed + e.delay)
            weights.append(G[:, None] * dense_matrix(pop, i))
        t_arr = np.concatenate(arrivals, axis=1)
        J = np.concatenate(weights, axis=1)
        grid = pop.t_start + dt * np.arange(int(np.ceil((pop.t_max - pop.t_start) / dt)) + 1)
        out = np.full((len(x), n_out), pop.t_max)
        for b in range(len(x)):
            arrived = (t_arr[b][None, :] <= grid[:-1, None]).astype(float)
            current = alpha[None, :] + arrived @ J.T
            v = np.concatenate([np.zeros((1, n_out)), np.cumsum(current * dt, axis=0)])
            for k_out in range(n_out):
                hit = np.nonzero(v[:, k_out] >= theta[k_out])[0]
                if hit.size:
                    k = hit[0]
                    t = grid[0] if k == 0 else grid[k - 1] + dt * (
                        theta[k_out] - v[k - 1, k_out]) / (v[k, k_out] - v[k - 1, k_out])
                    out[b, k_out] = min(t, pop.t_max)
        times[pop.name] = out
        t_max_of[pop.name] = pop.t_max
        shape_of[pop.name] = pop.out_shape
    return times


class SkipNet(nn.Module):
    """``h1 = ReLU(L1 x)``, ``h2 = ReLU(L2 h1)``, ``y = ReLU(A h2 + S x + b)`` (the skip from
    the input is delayed by the windows of h1 and h2), readout ``L3 y``. With ``early``: each
    neuron of ``y`` has one strong excitatory synapse from ``h2`` (short path, early spikes for
    large values) and inhibitory synapses from the delayed skip, plus a positive bias."""

    def __init__(self, seed: int, early: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1, self.l2 = nn.Linear(5, 6), nn.Linear(6, 4)
        self.a, self.s = nn.Linear(4, 4), nn.Linear(5, 4, bias=False)
        self.l3 = nn.Linear(4, 3)
        with torch.no_grad():
            for lin in (self.l1, self.l2, self.a, self.s, self.l3):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.7)
                if lin.bias is not None:
                    lin.bias.copy_(torch.rand(lin.bias.shape, generator=g) * 0.4)
            if early:
                o, i = self.a.weight.shape
                w = torch.zeros(o, i)
                w[torch.arange(o), torch.randint(0, i, (o,), generator=g)] = (
                    1.5 + torch.rand(o, generator=g))
                self.a.weight.copy_(w)
                self.s.weight.copy_(-0.3 - 0.5 * torch.rand(self.s.weight.shape, generator=g))
                self.a.bias.copy_(0.5 + torch.rand(o, generator=g))

    def forward(self, x):
        h2 = torch.relu(self.l2(torch.relu(self.l1(x))))
        return self.l3(torch.relu(self.a(h2) + self.s(x)))


def skip_inputs(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(200 + seed)
    x = torch.rand(n, 5, generator=g, dtype=torch.float64)
    return x * (torch.rand(n, 5, generator=g, dtype=torch.float64) > 0.3)


def _compare(snn: onespike.SpikingNetwork, x: torch.Tensor, dt: float = 2e-4):
    sim = snn.simulate(x, engine="event")
    ref = brute_force_dag(snn, x, dt)
    for pop, t_event in zip(snn.hidden_layers, sim.spike_times[1:]):
        np.testing.assert_allclose(t_event.reshape(len(x), -1).numpy(), ref[pop.name],
                                   atol=5e-3, err_msg=pop.name)
    for i, pop in enumerate(snn.hidden_layers):  # early = spikes before t_min (up to ulps)
        t = sim.spike_times[i + 1]
        assert int((t < pop.t_min - 1e-9).sum()) <= sim.certificate.early[i], pop.name
        assert sim.certificate.early[i] <= int((t < pop.t_min + 1e-9).sum()), pop.name
    return sim, ref


@pytest.mark.parametrize("seed", range(3))
def test_dag_with_delayed_skip_matches_brute_force(seed: int) -> None:
    model = SkipNet(seed, early=False).double().eval()
    x = skip_inputs(seed, 20)
    snn = onespike.convert(model, x, progress=False)
    assert snn.summary()["max_delay"] > 0
    skip = [e for e in snn.edges() if e["source"] == "input" and e["delay"] > 0]
    assert skip, snn.edges()
    sim, _ = _compare(snn, x)
    assert sim.certificate.exact
    with torch.no_grad():
        assert float((sim.output - model(x)).abs().max()) <= 1e-9 * max(
            1.0, float(model(x).abs().max()))


def test_dag_early_spike_through_short_path_matches_brute_force() -> None:
    """Excitation arrives early through the short path, inhibition late through the delayed
    skip: neurons cross their threshold before their window; the event engine reports it and
    its (early) spike times match the brute-force integration."""
    early_total = 0
    for seed in range(6):
        model = SkipNet(seed, early=True).double().eval()
        x = skip_inputs(seed, 20)
        snn = onespike.convert(model, x, zeta=0.0, progress=False)
        assert any(e["source"] == "input" and e["delay"] > 0 for e in snn.edges())
        sim, ref = _compare(snn, x)
        target = snn.hidden_layers[-1]
        i = len(snn.hidden_layers) - 1
        early = sim.spike_times[i + 1].reshape(len(x), -1) < target.t_min
        if bool(early.any()):
            # the brute force also fires before the window for those neurons
            assert bool((ref[target.name][early.numpy()] < target.t_min + 5e-3).all())
            assert not sim.certificate.exact
            assert not bool(sim.certificate.sample_exact.all())
        early_total += sim.certificate.early[i]
    assert early_total > 0
