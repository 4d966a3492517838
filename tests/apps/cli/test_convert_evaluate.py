"""convert → info → evaluate round trips through the CLI (in-process, CliRunner)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.apps.cli.helpers import TINY

import onespike
from onespike.network.io import FORMAT_VERSION

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _assert_exact(d: dict) -> None:
    assert d["certificate"]["exact"] is True
    assert d["agreement"] == 1.0
    assert d["snn_accuracy"] == d["relu_accuracy"]


def test_help(cli) -> None:
    out = cli("--help")
    assert out.code == 0
    for name in ("demo", "convert", "evaluate", "info"):
        assert name in out.stdout
    for cmd, opts in {
        "demo": ["--out", "--json", "--neuron", "--no-plot"],
        "convert": ["--model", "--weights", "--calibration", "--calibration-samples", "--root",
                    "--input-range", "--normalize", "--zeta", "--neuron", "--dtype", "--out"],
        "evaluate": ["--snn", "--model", "--dataset", "--split", "--limit", "--batch-size",
                     "--engine", "--json"],
        "info": ["--json"],
    }.items():
        text = cli(cmd, "--help")
        assert text.code == 0
        for o in opts:
            assert o in text.stdout, (cmd, o)


def test_version(cli) -> None:
    out = cli("--version")
    assert out.code == 0 and onespike.__version__ in out.stdout


def test_round_trip(cli, tiny, tmp_path: Path) -> None:
    net = tmp_path / "tiny.onespike"
    out = cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
              "digits", "--calibration-samples", 500, "--out", net)
    assert out.code == 0, out
    assert net.is_file() and str(net) in out.stdout

    info = cli("info", net, "--json")
    assert info.code == 0, info
    d = info.json()
    assert d["format_version"] == FORMAT_VERSION and d["neuron"] == "alpha"
    assert [[e["kind"] for e in ly["edges"]] for ly in d["layers"]] == [["conv"], ["linear"]]
    assert [e["source"] for e in d["layers"][1]["edges"]] == ["layer1"]
    assert d["layers"][0]["edges"][0]["origin"] == "0" and d["layers"][1]["readout"] is True
    assert d["input_shape"] == [1, 8, 8] and d["output_shape"] == [10]
    assert d["meta"]["dataset"] == "digits"
    table = cli("info", net)
    assert table.code == 0, table
    assert "latency" in table.stdout and "maxpool2x2+reshape" in table.stdout

    # the dataset defaults to the one the network was calibrated on
    ev = cli("evaluate", "--snn", net, "--json")
    assert ev.code == 0, ev
    d = ev.json()
    assert d["samples"] == 450 and d["relu_source"].startswith("folded")
    _assert_exact(d)
    assert d["relu_accuracy"] > 0.8
    assert d["spikes_per_neuron"] == 1.0 and d["synaptic_events"] > 0

    # against the original model: the SNN must agree with the PyTorch model itself
    with_model = cli("evaluate", "--snn", net, "--model", TINY, "--weights", tiny.pt,
                     "--dataset", "digits", "--json")
    assert with_model.code == 0, with_model
    dm = with_model.json()
    assert dm["relu_source"] == "model"
    _assert_exact(dm)
    assert dm["max_abs_logit_diff"] < 1e-4

    text = cli("evaluate", "--snn", net, "--limit", 50, "--engine", "closed")
    assert text.code == 0, text
    for word in ("ReLU accuracy", "SNN accuracy (closed)", "agreement", "certificate",
                 "spikes per neuron", "synaptic events", "latency"):
        assert word in text.stdout


def test_info_shows_the_edges_of_a_dag(cli, tmp_path: Path) -> None:
    """A residual network: the readout is fed by two populations, one edge delayed."""

    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.b = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.fc = torch.nn.Linear(256, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            return self.fc(torch.flatten(torch.relu(self.b(h)) + h, 1))

    torch.manual_seed(0)
    net = tmp_path / "res.onespike"
    onespike.save(onespike.convert(Residual().eval(), torch.rand(20, 1, 8, 8),
                                   progress=False), net)
    out = cli("info", net)
    assert out.code == 0, out
    readout = next(ln for ln in out.stdout.splitlines() if ln.startswith("2"))
    assert "layer2, layer1 (+" in readout and "linear, linear" in readout
    assert "edges delayed" in out.stdout


def test_saved_file_matches_python_api(cli, tiny, tmp_path: Path) -> None:
    net = tmp_path / "api.onespike"
    assert cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
               tiny.calib_pt, "--out", net).code == 0
    direct = onespike.convert(tiny.model, torch.load(tiny.calib_pt), progress=False)
    loaded = onespike.load(net)
    x = torch.load(tiny.calib_pt)[:64]
    assert torch.equal(loaded(x), direct(x))


def test_evaluate_converts_a_model(cli, tiny) -> None:
    out = cli("evaluate", "--model", TINY, "--weights", tiny.safetensors, "--dataset",
              "digits", "--limit", 120, "--neuron", "constant-slope", "--json")
    assert out.code == 0, out
    d = out.json()
    assert d["samples"] == 120 and d["relu_source"] == "model"
    assert d["certificate"]["exact"] is True
    assert 0 < d["spikes_per_neuron"] < 1  # model B: zeros stay silent


@pytest.mark.parametrize("source", ["calib_pt", "calib_safetensors"])
def test_tensor_file_calibration(cli, tiny, tmp_path: Path, source: str) -> None:
    net = tmp_path / "t.onespike"
    out = cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
              getattr(tiny, source), "--dtype", "float32", "--zeta", "0.25", "--out", net,
              "--json")
    assert out.code == 0, out
    d = out.json()
    assert d["dtype"] == "float32" and d["zeta"] == 0.25 and d["meta"]["calibration_samples"] == 300
    # a tensor file records no dataset: evaluate needs --dataset
    ev = cli("evaluate", "--snn", net, "--dataset", "digits", "--limit", 60, "--json")
    assert ev.code == 0, ev


def test_normalize_and_input_range(cli, tiny, tmp_path: Path) -> None:
    net = tmp_path / "n.onespike"
    out = cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
              "digits", "--normalize", "0.5", "0.25", "--out", net)
    assert out.code == 0, out
    snn = onespike.load(net)
    assert float(snn.input_low.min()) == -2.0 and float(snn.input_high.max()) == 2.0
    assert snn.normalization == ([0.5], [0.25])  # the documented attribute, saved with it
    ev = cli("evaluate", "--snn", net, "--limit", 100, "--json")  # normalises the data again
    assert ev.code == 0, ev
    _assert_exact(ev.json())
    same = cli("evaluate", "--snn", net, "--limit", 50, "--normalize", "0.5", "0.25", "--json")
    assert same.code == 0, same
    other = cli("evaluate", "--snn", net, "--limit", 50, "--normalize", "0.4", "0.25")
    assert other.code != 0 and "disagrees" in other.stderr, other
    info = cli("info", net)
    assert "input normalisation: mean [0.5], std [0.25]" in info.stdout, info

    shifted = tmp_path / "s.onespike"  # a network for inputs in [2, 3]: digits in [0, 1] warn
    out = cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
              "digits", "--input-range", "-3", "1", "--out", shifted)
    assert out.code == 0, out
    ev = cli("evaluate", "--snn", shifted, "--dataset", "digits", "--limit", 20)
    assert ev.code == 0 and "warning: the" in ev.stderr and "input range" in ev.stderr, ev

    wide = tmp_path / "w.onespike"
    out = cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
              "digits", "--input-range", "-1", "2", "--out", wide)
    assert out.code == 0, out
    snn = onespike.load(wide)
    assert float(snn.input_low.min()) == -1.0 and float(snn.input_high.max()) == 2.0


def test_factory_object_and_file_path(cli, tiny, tmp_path: Path) -> None:
    out = cli("convert", "--model", "tests.apps.cli.factory_models:TINY_MODULE", "--weights",
              tiny.safetensors, "--calibration", "digits", "--out", tmp_path / "a.onespike")
    assert out.code == 0, out
    out = cli("convert", "--model", "tests/apps/cli/factory_models.py:tiny", "--weights",
              tiny.safetensors, "--calibration", "digits", "--out", tmp_path / "b.onespike")
    assert out.code == 0, out
    x = torch.rand(8, 1, 8, 8)
    a, b = onespike.load(tmp_path / "a.onespike"), onespike.load(tmp_path / "b.onespike")
    assert torch.equal(a(x), b(x))


def test_torchscript_and_export(cli, tiny, tmp_path: Path) -> None:
    ref = tmp_path / "ref.onespike"
    assert cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
               "digits", "--out", ref).code == 0
    scripted = tmp_path / "tiny_scripted.pt"
    torch.jit.save(torch.jit.script(tiny.model), scripted)
    exported = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(tiny.model, (torch.rand(2, 1, 8, 8),)), exported)
    x = torch.rand(16, 1, 8, 8)
    expect = onespike.load(ref)(x)
    for path in (scripted, exported):
        net = tmp_path / f"{path.suffix[1:]}.onespike"
        out = cli("convert", "--model", path, "--calibration", "digits", "--out", net)
        assert out.code == 0, out
        assert torch.equal(onespike.load(net)(x), expect)
