"""Robustness sweeps on a small trained network (scikit-learn digits MLP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.helpers.nets import SmallResidual as _Residual
from torch import nn

import onespike
from onespike.analysis.robustness import (
    KNOBS,
    RobustnessResult,
    quantize_weights,
    rewindow,
    sweep,
)
from onespike.data import load_dataset


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test", limit=150)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.images), train.labels).backward()
        opt.step()
    return model.eval(), train.images, test.images, test.labels


@pytest.fixture(scope="module", params=["alpha", "constant-slope"])
def snn_data(request, digits_mlp):
    model, calib, x, y = digits_mlp
    snn = onespike.convert(model, calib, neuron=request.param, progress=False)
    return snn, x, y


def test_zero_perturbation_agrees_exactly(snn_data) -> None:
    snn, x, y = snn_data
    ref = snn.reference(x)[-1].argmax(1)
    ref_acc = float((ref == y).double().mean())
    assert ref_acc > 0.85  # the network did learn
    knobs = [("jitter", [0.0]), ("time_bits", [0]), ("weight_bits", [0]), ("zeta", [snn.zeta])]
    if snn.neuron == "alpha":
        knobs.append(("alpha_noise", [0.0]))
    for knob, values in knobs:
        res = sweep(snn, x, y, knob, values, seeds=3)
        p = res.points[0]
        assert p.agreement == [1.0], knob  # exactly, and run once (deterministic)
        assert p.accuracy == [ref_acc] and p.violations == [0]
        assert res.reference_accuracy == ref_acc


def test_jitter_degrades_agreement_and_seeds_differ(snn_data) -> None:
    snn, x, y = snn_data
    res = sweep(snn, x, y, "jitter", [0.0, 0.05, 0.6], seeds=3)
    agr = [p.agreement_mean for p in res.points]
    assert agr[0] == 1.0 >= agr[1] >= agr[2]
    assert agr[2] < 0.9
    big = res.points[2]
    assert big.seeds == [0, 1, 2] and len(set(big.agreement + big.accuracy)) > 1
    assert big.agreement_std > 0
    again = sweep(snn, x, y, "jitter", [0.6], seeds=[0, 1, 2])
    assert again.points[0].agreement == big.agreement  # reproducible per seed
    other = sweep(snn, x, y, "jitter", [0.6], seeds=[5])
    assert other.points[0].accuracy != big.accuracy[:1] or \
        other.points[0].agreement != big.agreement[:1]


def test_time_bits_and_alpha_noise(snn_data) -> None:
    snn, x, y = snn_data
    res = sweep(snn, x, y, "time_bits", [2, 10], seeds=3)
    assert [len(p.seeds) for p in res.points] == [1, 1]  # deterministic: one run
    assert res.points[0].agreement_mean <= res.points[1].agreement_mean
    assert res.points[1].agreement_mean >= 0.95
    if snn.neuron == "alpha":
        res = sweep(snn, x, y, "alpha_noise", [0.05, 1.0], seeds=2)
        assert res.points[0].agreement_mean >= res.points[1].agreement_mean
        assert len(res.points[1].seeds) == 2
    else:
        with pytest.raises(ValueError, match="alpha noise"):
            sweep(snn, x, y, "alpha_noise", [0.1])


def test_zeta_rewindows(snn_data) -> None:
    snn, x, y = snn_data
    same = rewindow(snn, snn.zeta)
    assert [ly.t_max for ly in same.layers] == [ly.t_max for ly in snn.layers]
    small = rewindow(snn, -0.6)
    assert small.latency < snn.latency and small.zeta == -0.6
    for a, b in zip(small.hidden_layers, snn.hidden_layers):
        assert a.B == pytest.approx(0.4 * a.X) and torch.equal(a.weight, b.weight)
    res = sweep(snn, x, y, "zeta", [-0.6, 0.5], seeds=2)
    assert res.points[0].violations[0] > 0 and res.points[1].violations == [0]
    with pytest.raises(ValueError, match="zeta"):
        rewindow(snn, -1.0)


def test_weight_quantization(snn_data) -> None:
    snn, x, y = snn_data
    q4 = quantize_weights(snn, 4)
    rescaled = q4.meta["weight_bits_rescaled_channels"]
    for ly, orig in zip(q4.layers, snn.layers):
        if snn.neuron == "constant-slope" or (ly.readout and rescaled == 0):
            assert torch.equal(ly.bias, orig.bias)
            levels = torch.unique(ly.weight)
            assert levels.numel() <= 2**4 - 1
            step = float(orig.weight.abs().max()) / 7
            assert torch.allclose(levels / step, torch.round(levels / step), atol=1e-9)
        elif not ly.readout:  # model A: S < 1 kept by rescaling some neurons (f ≤ 1)
            assert float(ly.S.max()) <= 0.99 + 1e-12
            f = ly.bias / orig.bias
            assert bool(((f <= 1 + 1e-12) & (f > 0)).all())
    if snn.neuron == "constant-slope":
        assert rescaled == 0
    # the spiking network of the quantised weights is exact for the quantised ReLU network
    sim = q4.simulate(x)
    ok = sim.certificate.sample_exact
    assert bool(ok.any())
    assert torch.allclose(sim.output[ok], q4.reference(x)[-1][ok], atol=1e-9)
    res = sweep(snn, x, y, "weight_bits", [2, 8], seeds=2)
    assert res.points[0].agreement_mean <= res.points[1].agreement_mean
    assert res.points[1].agreement_mean >= 0.95
    with pytest.raises(ValueError, match="bits"):
        quantize_weights(snn, 1)


def test_quantization_keeps_model_a_valid() -> None:
    """S = 0.6 + 0.35 = 0.95; at 2 bits both weights round to 0.6 (S = 1.2 ≥ 1): the neuron
    is rescaled by 0.99/1.2 and the readout by the inverse — the quantised ReLU function
    relu(0.6·x0 + 0.6·x1) is kept."""
    model = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.6, 0.35]]))
        model[0].bias.zero_()
        model[2].weight.fill_(1.0)
        model[2].bias.zero_()
    x = torch.rand(30, 2, generator=torch.Generator().manual_seed(1))
    snn = onespike.convert(model, x, neuron="alpha", progress=False)
    q = quantize_weights(snn, 2)
    assert q.meta["weight_bits_rescaled_channels"] == 1
    assert float(q.layers[0].S.max()) == pytest.approx(0.99)
    expect = (0.6 * x[:, :1].double() + 0.6 * x[:, 1:].double()).clamp_min(0)
    assert torch.allclose(q.simulate(x).output, expect, atol=1e-9)


def test_table_plot_and_dict(snn_data, tmp_path: Path) -> None:
    snn, x, y = snn_data
    res = sweep(snn, x[:60], y[:60], "jitter", [0.0, 0.1], seeds=2)
    assert isinstance(res, RobustnessResult) and res.values == [0.0, 0.1]
    table = res.format_table()
    assert "jitter" in table and "agreement" in table and "±" in table and "0.1" in table
    d = json.loads(json.dumps(res.as_dict()))
    assert d["knob"] == "jitter" and len(d["points"]) == 2 and d["samples"] == 60
    path = tmp_path / "rob.png"
    fig = res.plot(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert fig.axes[0].get_xlabel().startswith("spike-time jitter")
    bits = sweep(snn, x[:60], y[:60], "time_bits", [0, 3], seeds=1)
    fig = bits.plot(tmp_path / "bits.png")
    assert "off" in bits.format_table()
    assert (tmp_path / "bits.png").stat().st_size > 10_000
    # the default title (the longest knob name) fits inside the figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig.axes[0].title.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height


def test_bad_arguments(snn_data) -> None:
    snn, x, y = snn_data
    assert set(KNOBS) == {"zeta", "jitter", "alpha_noise", "time_bits", "weight_bits"}
    with pytest.raises(ValueError, match="knob"):
        sweep(snn, x, y, "noise", [0.1])
    with pytest.raises(ValueError, match="integers"):
        sweep(snn, x, y, "time_bits", [2.5])
    with pytest.raises(ValueError, match="labels"):
        sweep(snn, x, y[:3], "jitter", [0.1])
    res = sweep(snn, x[:20], None, "jitter", [0.0])
    assert res.points[0].agreement == [1.0]


@pytest.mark.parametrize("neuron", ["alpha", "constant-slope"])
def test_residual_sweeps_rewindow_and_quantize(neuron: str) -> None:
    torch.manual_seed(7)
    x = torch.rand(40, 2, 4, 4)
    snn = onespike.convert(_Residual().eval(), x, neuron=neuron, progress=False)
    y = snn.reference(x)[-1].argmax(1)
    res = sweep(snn, x, y, "jitter", [0.0, 0.3], seeds=2)
    assert res.points[0].agreement == [1.0] and res.points[0].violations == [0]
    assert len(res.points[1].seeds) == 2 and 0.0 <= res.points[1].agreement_mean <= 1.0
    # re-mapped windows follow the DAG: t_min = max over sources, delays recomputed
    same = rewindow(snn, snn.zeta)
    assert [(p.t_min, p.t_max, p.B_in) for p in same.layers] == \
        [(p.t_min, p.t_max, p.B_in) for p in snn.layers]
    assert [e.delay for p in same.layers for e in p.edges] == \
        [e.delay for p in snn.layers for e in p.edges]
    assert torch.equal(same.simulate(x).output, snn.simulate(x).output)
    small = rewindow(snn, -0.3)
    l1, l2 = small.population("layer1"), small.population("layer2")
    skip = next(e for e in l2.edges if e.source == "input")
    assert skip.delay == pytest.approx(l1.B) and l2.t_min == l1.t_max
    assert l2.B_in == max(1.0, l1.B) and small.latency < snn.latency
    assert sweep(snn, x, y, "zeta", [-0.3], seeds=1).points[0].seeds == [0]
    # weight quantisation per edge; the quantised network is exact for its ReLU network
    q = quantize_weights(snn, 6)
    for p, orig in zip(q.layers, snn.layers):
        assert len(p.edges) == len(orig.edges)
        assert [e.delay for e in p.edges] == [e.delay for e in orig.edges]
        if not p.readout and neuron == "alpha":
            assert float(p.S.max()) < 1
        if neuron == "constant-slope":  # no rescaling: every edge on its own grid
            for i in range(len(p.edges)):
                w, w0 = p.edge_weight(i), orig.edge_weight(i)
                step = float(w0.abs().max()) / 31
                assert torch.unique(w).numel() <= 63
                assert torch.allclose(w / step, torch.round(w / step), atol=1e-9)
    sim = q.simulate(x)
    ok = sim.certificate.sample_exact
    assert bool(ok.any())
    assert torch.allclose(sim.output[ok], q.reference(x)[-1][ok], atol=1e-9)
    res = sweep(snn, x, y, "weight_bits", [0, 6], seeds=1)
    assert res.points[0].agreement == [1.0] and res.points[1].agreement_mean > 0.5
