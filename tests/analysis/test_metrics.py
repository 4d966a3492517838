"""Spike, synaptic-event, MAC and energy counts against hand-computed small networks."""

from __future__ import annotations

import json

import pytest
import torch
from tests.helpers.nets import SmallResidual as _Residual
from torch import nn

import onespike
from onespike.analysis.metrics import E_ADD_PJ, E_MAC_PJ, Stats, measure


def _mlp() -> nn.Sequential:
    """2-3-2 with zero weights: input fan-outs (2, 1), hidden fan-outs (1, 0, 2), 3 + 3 MACs."""
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.5, -0.5], [0.0, 0.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.1, -0.2]))
        model[2].weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]]))
        model[2].bias.zero_()
    return model


X_MLP = torch.tensor([[0.5, 0.0], [0.2, 0.8]])
CALIB_MLP = torch.cat([X_MLP, torch.tensor([[1.0, 1.0], [1.0, 0.0]])])


def test_mlp_model_a_every_neuron_spikes_once() -> None:
    snn = onespike.convert(_mlp(), CALIB_MLP, neuron="alpha", progress=False)
    st = measure(snn, X_MLP)
    assert [ly.name for ly in st.layers] == ["input", "layer1"]
    assert [ly.target for ly in st.layers] == ["layer1", "readout"]
    assert [ly.neurons for ly in st.layers] == [2, 3]
    assert [ly.spikes for ly in st.layers] == [2.0, 3.0]
    assert [ly.spikes_per_neuron for ly in st.layers] == [1.0, 1.0]
    assert [ly.routed_spikes for ly in st.layers] == [2.0, 3.0]
    assert [ly.events for ly in st.layers] == [3.0, 3.0]  # (2 + 1), (1 + 0 + 2)
    assert [ly.macs for ly in st.layers] == [3, 3]
    assert st.spikes == 5.0 and st.neurons == 5 and st.spikes_per_neuron == 1.0
    assert st.events == 6.0 and st.macs == 6
    assert st.energy_snn_pj == pytest.approx(6 * 0.9)
    assert st.energy_ann_pj == pytest.approx(6 * 4.6)
    assert st.energy_ratio == pytest.approx(0.9 / 4.6)
    assert st.latency == snn.latency and st.samples == 2


def test_mlp_model_b_counts_only_nonzero_activations() -> None:
    snn = onespike.convert(_mlp(), CALIB_MLP, neuron="constant-slope", progress=False)
    st = measure(snn, X_MLP)
    # sample 1: x = (0.5, 0): 1 input spike (2 events); z = (0.5, 0.35, −0.2): h0, h1 spike
    #           (events 1 + 0)  →  spikes 3, events 3
    # sample 2: x = (0.2, 0.8): 2 input spikes (2 + 1 events); z = (0.2, −0.2, −0.2): h0
    #           (1 event)  →  spikes 3, events 4
    assert [ly.spikes for ly in st.layers] == [1.5, 1.5]
    assert [ly.events for ly in st.layers] == [2.5, 1.0]
    assert st.spikes == 3.0 and st.spikes_per_neuron == pytest.approx(0.6)
    assert st.events == 3.5 and st.macs == 6
    st2 = measure(snn, X_MLP, e_add_pj=1.0, e_mac_pj=2.0)
    assert st2.energy_snn_pj == 3.5 and st2.energy_ann_pj == 12.0


def _cnn() -> nn.Sequential:
    """conv3x3 (1→2, padding 1, no bias) on 4×4; channel 1's centre tap is zero;
    ReLU; maxpool 2; flatten; linear 8→2 with zeros (column fan-outs 1,1,1,0,2,0,1,1)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2)).eval()
    with torch.no_grad():
        k = torch.full((2, 1, 3, 3), 0.1)
        k[1, 0, 1, 1] = 0.0
        model[0].weight.copy_(k)
        model[4].weight.copy_(torch.tensor([[1.0, 0, 0.3, 0, 0.5, 0, 0, 0.2],
                                            [0, 0.4, 0, 0, -0.5, 0, 0.1, 0]]))
        model[4].bias.copy_(torch.tensor([0.1, -0.1]))
    return model


def _calib_cnn() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(20, 1, 4, 4, generator=g)


def test_cnn_model_a_padding_and_pool() -> None:
    snn = onespike.convert(_cnn(), _calib_cnn(), neuron="alpha", progress=False)
    x = _calib_cnn()[:3]
    for sim in (snn.simulate(x), snn.simulate(x, engine="clock", steps=8)):
        st = measure(snn, sim)
        # conv fan-out per input pixel: corners 4 + 3, edges 6 + 5, interior 9 + 8
        # → 4·7 + 8·11 + 4·17 = 184 = conv MACs (100 + 84)
        assert [ly.neurons for ly in st.layers] == [16, 32]
        assert [ly.spikes for ly in st.layers] == [16.0, 32.0]
        assert [ly.routed_spikes for ly in st.layers] == [16.0, 8.0]  # 8 pool units
        assert [ly.events for ly in st.layers] == [184.0, 7.0]
        assert [ly.macs for ly in st.layers] == [184, 7]
        assert st.spikes_per_neuron == 1.0 and st.events == 191.0 and st.macs == 191


def test_cnn_model_b_single_pixel() -> None:
    snn = onespike.convert(_cnn(), _calib_cnn(), neuron="constant-slope", progress=False)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0
    st = measure(snn, x)
    # 1 input spike → 4 (channel 0) + 3 (channel 1, centre tap zero) events; those 7 conv
    # neurons spike; 2 pool units (top-left of each channel) forward one spike each to
    # linear features 0 (fan-out 1) and 4 (fan-out 2)
    assert [ly.spikes for ly in st.layers] == [1.0, 7.0]
    assert [ly.routed_spikes for ly in st.layers] == [1.0, 2.0]
    assert [ly.events for ly in st.layers] == [7.0, 3.0]
    assert st.spikes == 8.0 and st.neurons == 48
    assert st.spikes_per_neuron == pytest.approx(8 / 48)
    assert st.events == 10.0 and st.macs == 191


def test_table_dict_merge_and_errors() -> None:
    snn = onespike.convert(_mlp(), CALIB_MLP, neuron="constant-slope", progress=False)
    st = measure(snn, X_MLP)
    assert (st.e_add_pj, st.e_mac_pj) == (E_ADD_PJ, E_MAC_PJ) == (0.9, 4.6)
    table = st.format_table()
    for word in ("input", "layer1", "readout", "total", "pJ", "latency"):
        assert word in table
    d = json.loads(json.dumps(st.as_dict()))
    assert d["totals"]["events"] == 3.5 and d["totals"]["macs"] == 6
    assert len(d["layers"]) == 2
    parts = [measure(snn, X_MLP[:1]), measure(snn, X_MLP[1:])]
    merged = Stats.merge(parts)
    assert merged.samples == 2 and merged.events == st.events and merged.spikes == st.spikes
    with pytest.raises(ValueError, match="record"):
        measure(snn, snn.simulate(X_MLP, record=False))


def _residual() -> nn.Module:
    torch.manual_seed(3)
    model = _Residual().eval()
    with torch.no_grad():  # zero taps and synapses: they must not count
        model.conv1.weight[0, 1, 1, :] = 0.0
        model.conv2.weight[1, 0, :, 2] = 0.0
        model.fc.weight[:, ::5] = 0.0
    return model


def _brute_events(pop: onespike.Population, i: int, spiked: torch.Tensor) -> int:
    """Events of edge ``i`` of ``pop`` for one sample's spike mask of its source, by loops
    over every synapse (routes: reshapes only)."""
    e = pop.edges[i]
    w = pop.edge_weight(i)
    s = spiked.reshape(e.in_shape)
    if e.kind == "linear":
        s = s.reshape(-1)
        return sum(int(w[o, j] != 0) for o in range(w.shape[0]) for j in range(w.shape[1])
                   if bool(s[j]))
    assert e.dims == 2
    _, h_out, w_out = pop.out_shape
    per_group = w.shape[0] // e.groups  # output channels per group (identity: depthwise)
    count = 0
    for co in range(w.shape[0]):
        for y in range(h_out):
            for x in range(w_out):
                for ci in range(w.shape[1]):
                    for ky in range(w.shape[2]):
                        for kx in range(w.shape[3]):
                            iy = y * e.stride[0] + ky * e.dilation[0] - e.pad[0]
                            ix = x * e.stride[1] + kx * e.dilation[1] - e.pad[2]
                            if not (0 <= iy < e.in_shape[1] and 0 <= ix < e.in_shape[2]):
                                continue
                            c = (co // per_group) * w.shape[1] + ci
                            if w[co, ci, ky, kx] != 0 and bool(s[c, iy, ix]):
                                count += 1
    return count


@pytest.mark.parametrize("neuron", ["alpha", "constant-slope"])
def test_residual_events_delays_and_macs_brute_force(neuron: str) -> None:
    g = torch.Generator().manual_seed(1)
    calib = torch.rand(24, 2, 4, 4, generator=g)
    snn = onespike.convert(_residual(), calib, neuron=neuron, progress=False)
    skip = snn.population("layer2")
    assert sorted(e.source for e in skip.edges) == ["input", "layer1"]
    x = calib[:3].clone()
    x[0, :, :2] = 0.0  # silent inputs for model B
    sim = snn.simulate(x)
    st = measure(snn, sim)
    assert [ly.name for ly in st.layers] == ["input", "layer1", "layer2"]
    assert st.layers[0].target == "layer1, layer2"
    names = sim.layer_names
    expected = {nm: 0 for nm in names}
    macs = {nm: 0 for nm in names}
    for pop in snn.layers:
        for i, e in enumerate(pop.edges):
            spiked = torch.isfinite(sim.spike_times[names.index(e.source)])
            for b in range(x.shape[0]):
                expected[e.source] += _brute_events(pop, i, spiked[b])
            macs[e.source] += _brute_events(pop, i, torch.ones(e.in_shape, dtype=torch.bool))
    for ly in st.layers:
        assert ly.events == pytest.approx(expected[ly.name] / x.shape[0]), ly.name
        assert ly.macs == macs[ly.name], ly.name
    assert st.macs == snn.summary()["synapses"]
    if neuron == "constant-slope":
        assert st.layers[1].spikes < st.layers[1].neurons  # really sparse
    # delays: the skip edge input → layer2 waits for layer1's window
    d = next(e.delay for e in skip.edges if e.source == "input")
    assert d == pytest.approx(snn.population("layer1").B) and d > 0
    assert (st.layers[0].edges, st.layers[0].delayed_edges) == (2, 1)
    assert st.layers[0].max_delay == d
    assert [ly.delayed_edges for ly in st.layers[1:]] == [0, 0]
    assert (st.edges, st.delayed_edges, st.max_delay) == (4, 1, d)
    assert st.max_delay == snn.summary()["max_delay"]
    assert st.latency == snn.readout.t_min
    tot = json.loads(json.dumps(st.as_dict()))["totals"]
    assert (tot["delayed_edges"], tot["max_delay"], tot["edges"]) == (1, d, 4)
    assert "delayed" in st.format_table() and "max delay" in st.format_table()
