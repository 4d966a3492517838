"""NIR export: the graph's dynamics (simulated by the independent event-driven interpreter)
equal the event engine's, spike for spike, on shipped and DAG models, both neuron models;
files round-trip through nir.write/nir.read and nir.write_data/nir.read_data; refusals."""

from __future__ import annotations

import sys

import pytest
import torch
from tests.helpers.dag_nets import cifar_option_a, resnet_basic
from tests.helpers.nets import SmallResidual

import onespike
from onespike.data import load_dataset
from onespike.export import (
    NirExportError,
    NirNotInstalledError,
    clock_spikes,
    encode_input,
    export_nir,
    export_nir_data,
    read_nir_data,
    simulate_nir,
)
from onespike.models import load_pretrained

nir = pytest.importorskip("nir")

NEURONS = ["alpha", "constant-slope"]
TOL = 1e-9


def _convert(model: torch.nn.Module, calib: torch.Tensor, neuron: str) -> onespike.SpikingNetwork:
    return onespike.convert(model, calib, input_range=(0.0, 1.0), neuron=neuron,
                            dtype=torch.float64)


def _run(snn: onespike.SpikingNetwork, graph, x: torch.Tensor):
    inputs = {"input": encode_input(snn, x), **clock_spikes(graph, x.shape[0])}
    return simulate_nir(graph, inputs)


def _check(snn: onespike.SpikingNetwork, graph, x: torch.Tensor, model: torch.nn.Module
           ) -> dict[str, float]:
    """Spike times of every population and the logits agree within TOL; returns the errors."""
    ref = snn.simulate(x, engine="event")
    assert ref.certificate.exact
    run = _run(snn, graph, x)
    assert sum(run.repeated.values()) == 0
    worst = 0.0
    for name, times in zip(ref.layer_names, ref.spike_times):
        got = run.spikes[name]
        assert torch.equal(torch.isfinite(got), torch.isfinite(times)), name
        fin = torch.isfinite(times)
        if bool(fin.any()):
            worst = max(worst, float((got[fin] - times[fin]).abs().max()))
    assert worst < TOL
    out_err = float((run.output.reshape(ref.output.shape) - ref.output).abs().max())
    assert out_err < TOL
    with torch.no_grad():
        logits = model.double()(x.clamp(0, 1))
    relu_err = float((run.output.reshape(logits.shape) - logits).abs().max())
    assert relu_err < TOL
    return {"spikes": worst, "output": out_err, "relu": relu_err}


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", "test", limit=56)
    return data.images[:32].double(), data.images[32:56].double()


@pytest.fixture(scope="module")
def fmnist():
    data = load_dataset("fashion-mnist", "test", limit=48)
    return data.images[:32].double(), data.images[32:48].double()


@pytest.mark.parametrize("neuron", NEURONS)
def test_digits_cnn_spikes_and_logits(neuron: str, digits, tmp_path) -> None:
    calib, x = digits
    model = load_pretrained("digits_cnn")
    snn = _convert(model, calib, neuron)
    path = tmp_path / "digits.nir"
    export_nir(snn, path)
    graph = nir.read(str(path))
    assert graph.metadata["onespike.neuron"] == neuron
    assert int(graph.metadata["onespike.encoding_version"]) == 1
    _check(snn, graph, x, model)


@pytest.mark.parametrize("neuron", NEURONS)
def test_fashion_mnist_mlp_spikes_and_logits(neuron: str, fmnist) -> None:
    calib, x = fmnist
    model = load_pretrained("mlp_fmnist")
    snn = _convert(model, calib, neuron)
    _check(snn, export_nir(snn), x, model)


@pytest.mark.parametrize("neuron", NEURONS)
def test_residual_with_delays(neuron: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = SmallResidual().eval()
    calib = torch.rand(64, 2, 4, 4, dtype=torch.float64)
    snn = _convert(model.double(), calib, neuron)
    assert any(e.delay > 0 for p in snn.populations for e in p.edges)
    path = tmp_path / "res.nir"
    graph = export_nir(snn, path)
    assert any(isinstance(n, nir.Delay) for n in graph.nodes.values())
    _check(snn, nir.read(str(path)), torch.rand(24, 2, 4, 4, dtype=torch.float64), model)


@pytest.mark.parametrize("neuron", NEURONS)
def test_resnet_with_max_pool_projection_and_delays(neuron: str) -> None:
    model, shape = resnet_basic()
    calib = torch.rand(64, *shape, dtype=torch.float64)
    snn = _convert(model.double(), calib, neuron)
    graph = export_nir(snn)
    assert any(isinstance(n, nir.SumPool2d) for n in graph.nodes.values())
    _check(snn, graph, torch.rand(8, *shape, dtype=torch.float64), model)


def test_shipped_resnet_fmnist(fmnist) -> None:
    calib, x = fmnist
    model = load_pretrained("resnet_fmnist")
    snn = _convert(model, calib, "alpha")
    _check(snn, export_nir(snn), x[:4], model)


def test_graph_structure_and_metadata(digits) -> None:
    calib, _ = digits
    snn = _convert(load_pretrained("digits_cnn"), calib, "alpha")
    g = export_nir(snn)
    assert set(g.inputs) >= {"input", "clock2d"}
    assert "output" in g.outputs
    for p in snn.hidden_layers:
        assert isinstance(g.nodes[p.name], nir.IF)
        assert isinstance(g.nodes[f"{p.name}_syn"], nir.I)
    times = list(g.metadata["onespike.clock_times"])
    assert times == sorted(set(times)) or len(set(times)) == len(times)
    assert float(g.metadata["onespike.readout_time"]) == pytest.approx(snn.latency)


def test_recorded_data_round_trip(digits, tmp_path) -> None:
    calib, x = digits
    snn = _convert(load_pretrained("digits_cnn"), calib, "constant-slope")
    path = tmp_path / "ref.h5"
    export_nir_data(snn, x[:6], path)
    data = nir.read_data(str(path))
    assert isinstance(data.nodes["input"].observables["spikes"], nir.EventData)
    assert isinstance(data.nodes["readout"].observables["potential"], nir.ValuedEventData)
    back = read_nir_data(path)
    ref = snn.simulate(x[:6], engine="event")
    for name, times in zip(ref.layer_names, ref.spike_times):
        assert torch.equal(back[name], times.reshape(times.shape[0], -1).to(torch.float64))
    assert torch.equal(back["readout"], ref.output.reshape(6, -1).to(torch.float64))


def test_refuses_slice_routes() -> None:
    model, shape = cifar_option_a()
    snn = _convert(model.double(), torch.rand(32, *shape, dtype=torch.float64), "alpha")
    with pytest.raises(NirExportError, match="slice route"):
        export_nir(snn)


def test_refuses_asymmetric_padding() -> None:
    torch.manual_seed(0)
    snn = _convert(SmallResidual().double().eval(), torch.rand(16, 2, 4, 4,
                                                              dtype=torch.float64), "alpha")
    e = snn.populations[0].edges[0]
    e.pad = (0, 2, 1, 1)
    with pytest.raises(NirExportError, match="asymmetric padding"):
        export_nir(snn)


def test_missing_nir_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nir", None)
    torch.manual_seed(0)
    snn = _convert(SmallResidual().double().eval(), torch.rand(8, 2, 4, 4,
                                                              dtype=torch.float64), "alpha")
    with pytest.raises(NirNotInstalledError, match=r"pip install 'onespike\[nir\]'") as info:
        export_nir(snn)
    assert isinstance(info.value, onespike.OnespikeError)


def test_cli_export(tmp_path, digits) -> None:
    from click.testing import CliRunner

    from onespike.apps.cli import main

    calib, _ = digits
    snn = _convert(load_pretrained("digits_cnn"), calib, "alpha")
    snn.meta["dataset"] = "digits"
    src = tmp_path / "net.onespike"
    onespike.save(snn, src)
    out, data = tmp_path / "net.nir", tmp_path / "ref.h5"
    res = CliRunner().invoke(main, ["export", "--snn", str(src), "--format", "nir", "--out",
                                    str(out), "--data-out", str(data), "--limit", "3"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output
    g = nir.read(str(out))
    assert g.metadata["onespike.neuron"] == "alpha"
    assert read_nir_data(data)["input"].shape[0] == 3
    res = CliRunner().invoke(main, ["export", "--snn", str(tmp_path / "missing.onespike"),
                                    "--out", str(out)])
    assert res.exit_code != 0
    res = CliRunner().invoke(main, ["export", "--snn", str(src), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.output
    assert "NIR" in CliRunner().invoke(main, ["export", "--help"]).output
