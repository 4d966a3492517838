"""Plots: PNG files are produced, and the numbers behind them are right (membrane potential
equals theta at the spike, readout potential equals the logits at t_min(N))."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from tests.helpers.nets import SmallResidual as _Residual
from torch import nn

import onespike
from onespike.analysis import plots

PNG = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, min_kb: float = 8.0) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG
    assert len(data) > min_kb * 1024


@pytest.fixture(scope="module", params=["alpha", "constant-slope"])
def net(request) -> tuple[onespike.SpikingNetwork, torch.Tensor, onespike.SimulationResult]:
    torch.manual_seed(11)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64, 12), nn.ReLU(),
                          nn.Linear(12, 5)).eval()
    x = torch.rand(24, 1, 8, 8)
    snn = onespike.convert(model, x, neuron=request.param, progress=False)
    return snn, x, snn.simulate(x)


def test_membrane_potential_reaches_theta_at_the_spike(net) -> None:
    snn, _, sim = net
    checked = 0
    for li, ly in enumerate(snn.hidden_layers):
        for s in range(3):
            t = sim.spike_times[li + 1][s].reshape(-1)
            inside = ((t > ly.t_min) & (t < ly.t_max)).nonzero().reshape(-1)[:40]
            for i in inside.tolist():
                ts = float(t[i])
                th = float(ly.theta.reshape(-1)[i])
                before = torch.linspace(ly.t_start, ts, 50, dtype=torch.float64)
                V = plots.membrane_potential(snn, sim, li, [i], before, sample=s)[0]
                assert float(V[-1]) == pytest.approx(th, abs=1e-9 * max(1.0, abs(th)))
                # first crossing: below theta before the spike
                assert bool((V[:-1] < th + 1e-9 * max(1.0, abs(th))).all())
                checked += 1
        # every neuron starts from rest
        V0 = plots.membrane_potential(snn, sim, ly.name, range(5),
                                      torch.tensor([ly.t_start], dtype=torch.float64))
        assert torch.equal(V0, torch.zeros_like(V0))
    assert checked > 20


def test_readout_potential_ends_at_the_logits(net) -> None:
    snn, _, sim = net
    ro = snn.readout
    t = torch.tensor([ro.t_start, ro.t_min], dtype=torch.float64)
    for s in range(4):
        V = plots.readout_potential(snn, sim, t, sample=s)
        assert torch.equal(V[:, 0], torch.zeros_like(V[:, 0]))
        assert torch.allclose(V[:, 1], sim.output[s], atol=1e-10, rtol=0)


def test_figures_are_written(net, tmp_path: Path) -> None:
    snn, x, sim = net
    figs = {
        "raster": plots.plot_raster(sim, tmp_path / "raster.png", sample=1),
        "trace": plots.plot_trace(snn, sim, 1, path=tmp_path / "trace.png"),
        "trace_x": plots.plot_trace(snn, x[:2], "layer1", neurons=[0, 3],
                                    path=tmp_path / "sub" / "trace_x.png"),
        "hist": plots.plot_histograms(sim, tmp_path / "hist.png", bins=20),
        "output": plots.plot_output(snn, sim, sample=2, class_names=list("abcde"),
                                    path=tmp_path / "output.png"),
    }
    for name, fig in figs.items():
        assert isinstance(fig, Figure)
        path = tmp_path / ("sub" if name == "trace_x" else "") / f"{name}.png"
        _check_png(path)
    ax = figs["raster"].axes
    assert len(ax) == len(sim.spike_times)
    assert ax[-1].get_xlabel() == "time [τ_c]"
    assert ax[1].get_title(loc="left").startswith("layer1")
    assert "readout" in figs["output"].axes[0].get_title()
    assert figs["hist"].axes[0].get_xlabel() == "time [τ_c]"
    assert figs["trace"].axes[0].get_ylabel().startswith("V")
    # no path: a figure, nothing written
    assert isinstance(plots.plot_raster(sim), Figure)


def test_plot_errors(net) -> None:
    snn, x, sim = net
    with pytest.raises(ValueError, match="record"):
        plots.plot_raster(snn.simulate(x, record=False))
    with pytest.raises(ValueError, match="no layer"):
        plots.membrane_potential(snn, sim, "nope", [0], torch.zeros(1))
    with pytest.raises(IndexError):
        plots.membrane_potential(snn, sim, 0, [10_000], torch.zeros(1))
    with pytest.raises(IndexError):
        plots.plot_output(snn, sim, sample=999)


@pytest.mark.parametrize("neuron", ["alpha", "constant-slope"])
def test_residual_trace_reaches_theta_on_the_skip_population(neuron: str, tmp_path: Path
                                                             ) -> None:
    torch.manual_seed(5)
    model = _Residual().eval()
    x = torch.rand(16, 2, 4, 4)
    snn = onespike.convert(model, x, neuron=neuron, progress=False)
    sim = snn.simulate(x[:4])
    ly = snn.population("layer2")  # fed by layer1 and, delayed, by the identity of the input
    skip = next(e for e in ly.edges if e.source == "input")
    assert skip.delay > 0 and len(ly.edges) == 2
    times = sim.spike_times[sim.layer_names.index("layer2")]
    checked = 0
    for s in range(4):
        t = times[s].reshape(-1)
        inside = ((t > ly.t_min) & (t < ly.t_max)).nonzero().reshape(-1)
        for i in inside.tolist():
            ts, th = float(t[i]), float(ly.theta.reshape(-1)[i])
            before = torch.linspace(ly.t_start, ts, 60, dtype=torch.float64)
            V = plots.membrane_potential(snn, sim, "layer2", [i], before, sample=s)[0]
            tol = 1e-9 * max(1.0, abs(th))
            assert float(V[-1]) == pytest.approx(th, abs=tol)
            assert bool((V[:-1] < th + tol).all())
            checked += 1
    assert checked >= 5
    t_ro = torch.tensor([snn.readout.t_min], dtype=torch.float64)
    V = plots.readout_potential(snn, sim, t_ro)
    assert torch.allclose(V[:, 0], sim.output[0], atol=1e-10, rtol=0)
    fig = plots.plot_raster(sim, tmp_path / "raster.png")
    assert len(fig.axes) == 3 and fig.axes[2].get_title(loc="left").startswith("layer2")
    plots.plot_trace(snn, sim, "layer2", path=tmp_path / "trace.png")
    plots.plot_histograms(sim, tmp_path / "hist.png")
    for name in ("raster", "trace", "hist"):
        _check_png(tmp_path / f"{name}.png", min_kb=4.0)
