"""The clock-driven engine: hand-checked grid registration, O(dt) convergence to the event
engine, agreement of predictions, perturbations, chunking and option checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers.nets import random_mlp
from torch import nn

import onespike
from onespike.simulation.driver import run_simulation
from onespike.simulation.engines.clock import ClockEngine, clock_grids

NEURONS = ["alpha", "constant-slope"]


def _ceil_to_grid(t: float, lo: float, hi: float, steps: int) -> float:
    """First point of the grid lo + k·(hi − lo)/steps that is ≥ t (hand rule)."""
    k = math.ceil((t - lo) / (hi - lo) * steps - 1e-12)
    return lo + (hi - lo) * k / steps


@pytest.fixture(scope="module")
def mlp_data() -> tuple[nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return random_mlp(1, [6, 16, 12, 4]), torch.rand(120, 6, generator=g)


@pytest.mark.parametrize("neuron", NEURONS)
def test_registration_by_hand(neuron: str) -> None:
    """Tiny 2-2-1 network, 4 ticks per window: every registered spike time and the readout
    follow from 'first grid point at or after the exact crossing of the registered inputs'."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.7, 0.2], [-0.3, 0.55]]))
        model[0].bias.copy_(torch.tensor([0.05, 0.1]))
        model[2].weight.copy_(torch.tensor([[1.0, -2.0]]))
        model[2].bias.copy_(torch.tensor([0.3]))
    calib = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    snn = onespike.convert(model, calib, neuron=neuron, progress=False)
    x = torch.tensor([[0.3, 0.9]])
    steps = 4
    sim = snn.simulate(x, engine="clock", steps=steps)
    # input spikes t = 1 − x = (0.7, 0.1) registered on {0, .25, .5, .75, 1}
    assert sim.spike_times[0][0].tolist() == [0.75, 0.25]
    x_reg = torch.tensor([0.25, 0.75], dtype=torch.float64)
    ly = snn.layers[0]
    W, b = ly.weight, ly.bias
    z = W @ x_reg + b  # what the hidden neurons see (folded; model A: scaled)
    expect = []
    for i in range(2):
        t_star = ly.t_max - float(z[i])  # exact crossing for the registered inputs
        expect.append(_ceil_to_grid(t_star, ly.t_min, ly.t_max, steps)
                      if z[i] > 0 else (ly.t_max if neuron == "alpha" else math.inf))
    got = sim.spike_times[1][0].tolist()
    assert got == pytest.approx(expect, abs=1e-12)
    h = torch.tensor([ly.t_max - t if math.isfinite(t) else 0.0 for t in got],
                     dtype=torch.float64)
    ro = snn.readout
    out = ro.weight @ h + ro.bias
    assert float(sim.output[0, 0]) == pytest.approx(float(out[0]), abs=1e-12)
    assert sim.extras["steps"] == [steps, steps]
    assert sim.engine == "clock" and sim.certificate.exact


@pytest.mark.parametrize("neuron", NEURONS)
def test_error_shrinks_linearly_with_dt(mlp_data, neuron: str) -> None:
    model, x = mlp_data
    snn = onespike.convert(model, x, neuron=neuron, progress=False)
    ref = snn.simulate(x, engine="event").output
    steps = [8, 16, 32, 64, 128]
    errs = [float((snn.simulate(x, engine="clock", steps=k, record=False).output - ref)
                  .abs().max()) for k in steps]
    slope = np.polyfit(np.log([1.0 / k for k in steps]), np.log(errs), 1)[0]
    assert 0.8 <= slope <= 1.2, (slope, errs)
    assert errs[-1] < errs[0] / 8


@pytest.mark.parametrize("neuron", NEURONS)
def test_small_dt_agrees_with_event_engine(neuron: str) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16, 5)).eval()
    x = torch.rand(40, 1, 8, 8)
    snn = onespike.convert(model, x, neuron=neuron, progress=False)
    ev = snn.simulate(x, engine="event")
    dt = 2e-3
    ck = snn.simulate(x, engine="clock", dt=dt)
    assert max(ck.extras["dt"]) <= dt
    assert torch.equal(ck.predictions, ev.predictions)
    assert ck.certificate.exact and ev.certificate.exact
    # every decoded value is within one tick per layer crossed of the exact one
    for k, (a, e) in enumerate(zip(ck.activations(), ev.activations())):
        assert float((a - e).abs().max()) <= (k + 1) * dt * 4, k
    scale = float(ev.output.abs().max())
    assert float((ck.output - ev.output).abs().max()) <= 0.05 * scale


@pytest.mark.parametrize("neuron", NEURONS)
def test_perturbations_follow_the_event_engine(mlp_data, neuron: str) -> None:
    model, x = mlp_data
    snn = onespike.convert(model, x, neuron=neuron, progress=False)
    p = onespike.Perturbation(jitter=0.05, time_bits=8, seed=4)
    ev = snn.simulate(x, perturbation=p).output
    ck = snn.simulate(x, engine="clock", steps=2048, perturbation=p).output
    clean = snn.simulate(x).output
    # same random draws: the clock converges to the perturbed event run, not the clean one
    # (mean error: a near-threshold model-B neuron may be silent on one and fire, jittered, on
    # the other; a time-bit level may flip)
    err = float((ck - ev).abs().mean())
    assert err <= 0.1 * float((ev - clean).abs().mean())
    assert err <= 0.005
    if neuron == "alpha":
        pa = onespike.Perturbation(alpha_noise=0.1, seed=1)
        ev = snn.simulate(x, perturbation=pa).output
        ck = snn.simulate(x, engine="clock", steps=2048, perturbation=pa).output
        assert float((ck - ev).abs().mean()) <= 0.005
        assert float((ck - ev).abs().mean()) <= 0.1 * float((ev - clean).abs().mean())
    else:
        with pytest.raises(ValueError, match="alpha noise"):
            snn.simulate(x, engine="clock", perturbation=onespike.Perturbation(alpha_noise=0.1))


def test_certificate_counts_saturation_and_early_spikes(mlp_data) -> None:
    model, x = mlp_data
    for neuron in NEURONS:
        snn = onespike.convert(model, x, neuron=neuron, zeta=-0.5, progress=False)
        ck = snn.simulate(x, engine="clock", steps=64)
        ev = snn.simulate(x, engine="event")
        assert sum(ck.certificate.saturated) > 0 and not ck.certificate.exact
        assert ck.certificate.neurons == ev.certificate.neurons
        if neuron == "alpha":  # a saturated model-A neuron fires before its window
            assert sum(ck.certificate.early) > 0
        assert not bool(ck.certificate.sample_exact.all())


def test_chunks_record_and_options(mlp_data) -> None:
    model, x = mlp_data
    snn = onespike.convert(model, x, progress=False)
    full = snn.simulate(x, engine="clock", steps=16)
    chunked = snn.simulate(x, engine="clock", steps=16, chunk_size=7)
    assert torch.equal(full.output, chunked.output)
    for a, b in zip(full.spike_times, chunked.spike_times):
        assert torch.equal(a, b)
    # tiny time blocks (network.simulate keeps max_memory for the driver: build the engine)
    eng = ClockEngine(snn, steps=16, max_memory=1 << 14)
    small = run_simulation(snn, snn.encode(x), eng, record=False, chunk_size=None,
                           max_memory=None, progress=False, perturbation=None)
    assert torch.allclose(full.output, small.output, atol=1e-12, rtol=0)
    bare = snn.simulate(x, engine="clock", steps=16, record=False)
    assert bare.spike_times == [] and torch.equal(bare.output, full.output)
    grids = clock_grids(snn, dt=0.1)
    assert grids[0].numel() == 11 and all(float(g.diff().max()) <= 0.1 + 1e-12 for g in grids)
    for g, ly in zip(grids[1:], snn.hidden_layers):
        assert float(g[0]) == ly.t_min and float(g[-1]) == ly.t_max
    with pytest.raises(ValueError, match="either"):
        snn.simulate(x, engine="clock", steps=4, dt=0.1)
    with pytest.raises(ValueError, match="steps"):
        snn.simulate(x, engine="clock", steps=0)
    with pytest.raises(ValueError, match="dt"):
        snn.simulate(x, engine="clock", dt=-1.0)
    with pytest.raises(TypeError, match="unexpected"):
        snn.simulate(x, engine="clock", stepz=4)


class _Residual(nn.Module):
    """Stem conv-relu, then a basic block (conv-bn-relu, conv-bn, + identity, relu), average
    pool, linear: the identity reaches the block's output through a delayed skip edge."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.c1, self.b1 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.c2, self.b2 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(h)))))
        return self.fc(torch.flatten(self.pool(torch.relu(y + h)), 1))


@pytest.fixture(scope="module")
def residual_data() -> tuple[nn.Module, torch.Tensor]:
    from tests.helpers.nets import randomize_bn

    torch.manual_seed(0)
    model = _Residual().double().eval()
    randomize_bn(model, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    return model, torch.rand(30, 1, 6, 6, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("neuron", NEURONS)
def test_residual_network_converges_and_registers_delayed_spikes(residual_data,
                                                                 neuron: str) -> None:
    model, x = residual_data
    snn = onespike.convert(model, x, neuron=neuron, progress=False)
    ref = snn.simulate(x, engine="event")
    assert ref.certificate.exact
    steps = [16, 32, 64, 128]
    errs = []
    for k in steps:
        ck = snn.simulate(x, engine="clock", steps=k, record=False)
        assert ck.certificate.exact
        errs.append(float((ck.output - ref.output).abs().max()))
    slope = np.polyfit(np.log([1.0 / k for k in steps]), np.log(errs), 1)[0]
    assert 0.8 <= slope <= 1.2, (slope, errs)
    assert errs[-1] < errs[0] / 5

    # the population fed by the delayed skip edge
    pop, j = next((p, i) for p in snn.hidden_layers for i, e in enumerate(p.edges)
                  if e.delay > 0)
    e = pop.edges[j]
    src = snn.population(e.source)
    k = 32
    eng = ClockEngine(snn, steps=k)
    sim = snn.simulate(x, engine="clock", steps=k)
    t_src = sim.spike_times[sim.layer_names.index(e.source)]
    grid = eng.grid(pop)
    # its grid: the widest source's window grid shifted by the delay, then its own window
    assert pop.B_in == src.B and float(grid[0]) == pytest.approx(pop.t_start, abs=1e-12)
    window_src = sim.extras["grid"][sim.layer_names.index(e.source)]
    assert torch.allclose(grid[: k + 1], window_src + e.delay, atol=1e-12, rtol=0)
    assert float(grid[k]) == pop.t_min and float(grid[-1]) == pop.t_max
    # source spikes at t arrive at t + delay: on the grid (the source's grid shifted), so
    # they register exactly there
    arrival = -pop.route(j, -t_src) + e.delay
    reg = eng.edge_input(pop, j, -t_src, (src.t_min, src.t_max))
    fin = torch.isfinite(arrival)
    assert torch.equal(torch.isfinite(reg), fin)
    assert torch.allclose(reg[fin], arrival[fin], atol=1e-12, rtol=0)
    # hand rule: the first grid point ≥ the arrival
    a = arrival[fin]
    hand = torch.where(grid[None, :] >= a[:, None] - 1e-12, grid[None, :],
                       torch.full_like(grid, math.inf)[None, :]).min(dim=1).values
    assert torch.equal(reg[fin], hand)
    # its own spikes are registered on its own window's grid points
    t_pop = sim.spike_times[sim.layer_names.index(pop.name)]
    own = grid[k:]
    tf = t_pop[torch.isfinite(t_pop)]
    assert bool((tf[:, None] == own[None, :]).any(dim=1).all())
    if neuron == "alpha":
        assert bool(torch.isfinite(t_pop).all())
    # and converge to the event engine's spike times (one tick per population crossed)
    t_ev = ref.spike_times[ref.layer_names.index(pop.name)]
    both = torch.isfinite(t_pop) & torch.isfinite(t_ev)
    depth = ref.layer_names.index(pop.name)
    tick = max(float(g.diff().max()) for g in sim.extras["grid"])
    assert float((t_pop[both] - t_ev[both]).abs().max()) <= (depth + 1) * tick * 4


V1 = Path(__file__).resolve().parents[2] / "fixtures" / "v1"


@pytest.mark.parametrize("tag", ["cnn_A", "cnn_B", "mlp_A", "mlp_B"])
def test_v1_fixtures_clock_output_bit_for_bit(tag: str) -> None:
    from safetensors.torch import load_file

    try:
        snn = onespike.load(V1 / f"{tag}.onespike")
    except Exception as exc:  # the v1 reader may not be ported yet
        pytest.skip(f"onespike.load cannot read the v1 fixture yet: {exc}")
    expected = load_file(str(V1 / f"{tag}.expected.safetensors"))
    out = snn.simulate(expected["input"], engine="clock").output
    assert torch.equal(out, expected["output_clock"])
