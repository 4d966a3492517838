"""The exact first-crossing computation against hand-computed cases and a brute-force,
time-stepped simulation of the same neuron."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import onespike
from onespike.simulation.engines import first_crossing


def brute_force_spike(alpha: float, J: np.ndarray, t_in: np.ndarray, theta: float,
                      t_start: float, t_max: float, dt: float) -> float:
    """Euler integration of dV/dt = alpha + Σ_j J_j H(t − t_j) from V(t_start) = 0; the first
    grid time with V ≥ theta, else t_max (forced spike)."""
    t = t_start
    v = 0.0
    if v >= theta:
        return t
    steps = int(np.ceil((t_max - t_start) / dt))
    for _ in range(steps):
        current = alpha + float(J[t_in <= t].sum())
        v_next = v + dt * current
        if v_next >= theta:  # linear interpolation inside the step
            return t + dt * (theta - v) / (v_next - v)
        v, t = v_next, t + dt
    return t_max


def early_network() -> nn.Sequential:
    """Hidden neuron z = −x1 + 1.5·x2 + 1.4 (S = 0.5), readout = identity."""
    lin = nn.Linear(2, 1, dtype=torch.float64)
    out = nn.Linear(1, 1, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-1.0, 1.5]]))
        lin.bias.fill_(1.4)
        out.weight.fill_(1.0)
        out.bias.zero_()
    return nn.Sequential(lin, nn.ReLU(), out).eval()


def test_hand_built_early_spike_matches_brute_force() -> None:
    model = early_network()
    # calibration: z = 2/3 → X = 2/3, B = (1 + 0.5)·2/3 = 1 exactly
    calib = torch.tensor([[0.7333333333333333, 0.0]], dtype=torch.float64)
    snn = onespike.convert(model, calib, progress=False)
    layer = snn.hidden_layers[0]
    assert layer.B == pytest.approx(1.0, rel=1e-9)
    x = torch.tensor([[0.6, 0.0]], dtype=torch.float64)  # z = 0.8 < B: not saturated
    sim = snn.simulate(x, engine="event")
    t_event = float(sim.spike_times[1][0, 0])
    # hand computation (see design note §2): V(t) = t − 2(t − 0.4)⁺ + 3(t − 1)⁺, theta = 0.2
    assert float(layer.theta[0]) == pytest.approx(0.2)
    assert t_event == pytest.approx(0.2, abs=1e-12)
    J = (layer.G[0] * layer.weight[0]).numpy()
    t_in = (1.0 - x[0]).numpy()
    t_bf = brute_force_spike(1.0, J, t_in, float(layer.theta[0]), layer.t_start,
                             layer.t_max, 1e-5)
    assert t_event == pytest.approx(t_bf, abs=2e-5)
    assert t_event < layer.t_min  # an early spike
    cert = sim.certificate
    assert not cert.exact and cert.early == [1] and cert.saturated == [0]
    assert not bool(cert.sample_exact[0])
    # the decoded value deviates from the ReLU network: 1.8 instead of 0.8
    assert float(sim.activations()[1][0, 0]) == pytest.approx(1.8)
    assert float(snn.reference(x)[0][0, 0]) == pytest.approx(0.8)
    # the closed engine shows the ReLU value but its certificate reports the violation
    closed = snn.simulate(x, engine="closed")
    assert float(closed.activations()[1][0, 0]) == pytest.approx(0.8)
    assert closed.certificate.early == [1]
    # model B on the same network equals the ReLU network
    snn_b = onespike.convert(model, calib, neuron="constant-slope", progress=False)
    sim_b = snn_b.simulate(x)
    assert sim_b.certificate.exact
    assert float(sim_b.activations()[1][0, 0]) == pytest.approx(0.8, abs=1e-12)
    assert float(sim_b.output[0, 0]) == pytest.approx(float(model(x).detach()[0, 0]), abs=1e-12)


def test_theta_non_positive_fires_at_start() -> None:
    model = early_network()
    with torch.no_grad():
        model[0].bias.fill_(1.75)
    # z = 0.75 → B = 1.125, theta = 1 + 2(1.125 − 1.75) = −0.25 ≤ 0
    calib = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    snn = onespike.convert(model, calib, progress=False)
    layer = snn.hidden_layers[0]
    assert float(layer.theta[0]) < 0
    sim = snn.simulate(torch.tensor([[0.9, 0.3]], dtype=torch.float64))
    assert float(sim.spike_times[1][0, 0]) == pytest.approx(layer.t_start)


@pytest.mark.parametrize("seed", range(6))
def test_first_crossing_random_neurons_vs_brute_force(seed: int) -> None:
    """Random neurons with strong, unbalanced inputs (many early spikes)."""
    g = torch.Generator().manual_seed(seed)
    m, k = 12, 7
    B_in, B_out = 1.3, 0.9
    xs = torch.rand(m, k, generator=g, dtype=torch.float64) * B_in
    ws = (torch.rand(m, k, generator=g, dtype=torch.float64) - 0.5) * 2.0
    ws = ws - (ws.sum(1, keepdim=True) - 0.5) / k  # S = 0.5 for every neuron
    b = (torch.rand(m, generator=g, dtype=torch.float64) - 0.3) * 2.0
    u = first_crossing(xs, ws, b, B_in, B_out)
    t_min = 10.0
    for i in range(m):
        S = float(ws[i].sum())
        G = 1.0 / (1.0 - S)
        theta = B_in + G * (B_out - float(b[i]))
        t_in = (t_min - xs[i]).numpy()
        t_bf = brute_force_spike(1.0, (G * ws[i]).numpy(), t_in, theta, t_min - B_in,
                                 t_min + B_out, 2e-5)
        assert t_min - float(u[i]) == pytest.approx(t_bf, abs=1e-4)


def test_first_crossing_hand_computed_segments() -> None:
    # one input x=0.5, w=0.5 (S = 0.5), b = 0.6, B_out = 1, B_in = 1:
    # f(u) = 0.6 + 0.5(0.5 − u)⁺ − 0.5u − 1: u∈[0.5,1]: −0.4 − 0.5u < 0;
    # u < 0.5: −0.15 − u → root u = −0.15 (= z − B with z = 0.85) → in own window
    u = first_crossing(torch.tensor([[0.5]], dtype=torch.float64),
                       torch.tensor([[0.5]], dtype=torch.float64),
                       torch.tensor([0.6], dtype=torch.float64), 1.0, 1.0)
    assert float(u[0]) == pytest.approx(-0.15)
    # negative z: forced at t_max (u = −B_out)
    u = first_crossing(torch.tensor([[0.5]], dtype=torch.float64),
                       torch.tensor([[0.5]], dtype=torch.float64),
                       torch.tensor([-0.6], dtype=torch.float64), 1.0, 1.0)
    assert float(u[0]) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", range(8))
def test_closed_after_marks_exactly_the_closed_form_crossings(seed: int) -> None:
    """``closed_after`` (late inputs possible) returns NaN exactly where the crossing comes
    after ``t_min`` once every input with a non-zero weight has arrived, or is forced at
    ``t_max`` with all of them arrived by then — there the closed form ``(z − B)/(S + leak)``
    (clipped at ``t_max``) is the walk's value — and the walk's own value elsewhere. For a
    neuron without late inputs it is the ``early_only`` walk's answer, bit for bit."""
    from onespike.simulation.engines.crossing import first_crossing_sorted

    g = torch.Generator().manual_seed(seed)
    m, k = 400, 6
    B_in, B_out = 1.0, 0.8
    xs = (torch.rand(m, k, generator=g, dtype=torch.float64) * 2.6 - 1.6).clamp(max=B_in)
    xs[: m // 2] = xs[: m // 2].abs().clamp(max=B_in)  # half of them: no late input at all
    ws = (torch.rand(m, k, generator=g, dtype=torch.float64) - 0.45) * 0.5
    ws[torch.rand(m, k, generator=g) < 0.2] = 0.0  # zero weights: arrivals that do not count
    b = (torch.rand(m, generator=g, dtype=torch.float64) - 0.2) * 1.2
    S = ws.sum(1)
    leak = (1.0 - S) * (1.0 + 0.3 * torch.randn(m, generator=g, dtype=torch.float64))
    order = torch.argsort(xs, dim=1, descending=True)
    x_s, w_s = torch.gather(xs, 1, order), torch.gather(ws, 1, order)
    walk = first_crossing_sorted(x_s, w_s, b, B_in, B_out, leak)
    marked = first_crossing_sorted(x_s, w_s, b, B_in, B_out, leak, closed_after=True)
    nan = torch.isnan(marked)
    assert torch.equal(marked[~nan], walk[~nan])
    # where marked: the crossing is after t_min (or forced) and after every counted arrival
    late_arrival = torch.where(ws != 0, xs, torch.full_like(xs, float("inf"))).amin(1)
    assert bool((walk[nan] < 0).all())
    assert bool((walk[nan] <= late_arrival[nan] + 1e-12).all())
    slope = S + leak
    z = b + (ws * xs).sum(1)
    closed = torch.where(slope > 0, (B_out + (z - B_out) / slope.where(slope > 0, 1.0))
                         .clamp_min(0), 0.0) - B_out
    assert torch.allclose(closed[nan], walk[nan], atol=1e-12, rtol=0)
    # ... and every such crossing is marked (the rest of the neurons cross before t_min, or
    # before a late input has arrived, or are forced with an input arriving after t_max)
    after = (walk < 0) & (walk < late_arrival - 1e-9) & (late_arrival >= -B_out)
    assert bool(nan[after & (slope > 1e-9)].all())
    assert 20 < int(nan.sum()) < m - 20  # both kinds are really there
    # without late inputs: the early_only walk's answer (inputs x ≤ 0 left out of it)
    clean = (xs >= 0).all(1)  # no input after t_min, whatever its weight
    early = first_crossing_sorted(x_s[clean], w_s[clean], b[clean], B_in, B_out, leak[clean],
                                  early_only=True)
    assert torch.equal(torch.isnan(early), nan[clean])
    assert torch.equal(early[~torch.isnan(early)], marked[clean][~nan[clean]])
