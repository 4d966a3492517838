"""Every zoo model (residual, branching, concatenating, clipped) converts exactly: logits
against the PyTorch model, every population against the folded reference, certificate, both
neuron models and both exact engines; delays are visible on the edges."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.dag_nets import ZOO
from tests.helpers.nets import randomize_bn
from torch import nn

import onespike
from onespike import UnsupportedOperationError

NEURONS = ["alpha", "constant-slope"]
RESIDUAL = [n for n in ZOO if "block" in n or "resnet" in n or n in
            ("bottleneck_identity", "bottleneck_downsample", "inverted_residual",
             "mobilenet_v2", "relu6_module", "relu6_functional", "hardtanh", "clamp",
             "clamp_method", "cifar_option_a", "cifar_option_a_sequential")]

ZOO_PARAMS = list(ZOO)


class WithHead(nn.Module):
    """A feature-map model (ending with a ReLU) plus a 1×1 convolution readout."""

    def __init__(self, body: nn.Module, channels: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Conv2d(channels, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def zoo_model(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    model, shape = ZOO[name]()
    with torch.no_grad():
        randomize_bn(model, torch.Generator().manual_seed(seed + 1))
        if name == "basic_block_identity":  # outputs a feature map after a ReLU
            c = model(torch.zeros(1, *shape, dtype=torch.float64)).shape[1]
            model = WithHead(model, c).double().eval()
    return model.double().eval(), shape


def calibration(shape: tuple[int, ...], n: int = 32, seed: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64)


def check_network(model: nn.Module, snn: onespike.SpikingNetwork, x: torch.Tensor) -> None:
    """Exactness of the event and closed engines on ``x`` (the calibration inputs)."""
    with torch.no_grad():
        ref_logits = model(x)
    reference = snn.reference(x)
    assert len(reference) == len(snn.hidden_layers) + 1
    scale = max(1.0, float(ref_logits.abs().max()))
    for engine in ("event", "closed"):
        sim = snn.simulate(x, engine=engine)
        out = sim.output
        assert out.shape == ref_logits.shape, engine
        err = float((out - ref_logits).abs().max())
        assert err <= 1e-9 * scale, (engine, err, scale)
        flat_out, flat_ref = out.reshape(len(x), -1), ref_logits.reshape(len(x), -1)
        assert torch.equal(flat_out.argmax(1), flat_ref.argmax(1)), engine
        cert = sim.certificate
        assert len(cert.layers) == len(snn.hidden_layers)
        if engine == "event":
            # the certificate's early count is the number of spikes before their window
            for i, pop in enumerate(snn.hidden_layers):
                assert cert.early[i] == int((sim.spike_times[i + 1] < pop.t_min).sum()), (
                    pop.name)
            if not cert.exact:  # would be an early spike (model A) reported by the engine
                assert snn.neuron == "alpha" and sum(cert.early) > 0, str(cert)
                assert not bool(cert.sample_exact.all())
        assert cert.exact, f"{engine}: {cert}"
        assert bool(cert.sample_exact.all())
        acts = sim.activations()
        assert len(acts) == len(snn.hidden_layers) + 1
        assert torch.allclose(acts[0], snn.encode(x), atol=1e-12)
        for pop, a, r in zip(snn.hidden_layers, acts[1:], reference[:-1]):
            assert a.shape == r.shape, pop.name
            tol = 1e-9 * max(1.0, float(r.abs().max()), pop.X)
            assert float((a - r).abs().max()) <= tol, (engine, pop.name)
    # the folded reference's logits are the model's
    assert float((reference[-1] - ref_logits).abs().max()) <= 1e-9 * scale


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_zoo_converts_exactly(name: str, neuron: str) -> None:
    model, shape = zoo_model(name)
    x = calibration(shape)
    snn = onespike.convert(model, x, neuron=neuron, dtype=torch.float64, progress=False)
    assert snn.neuron == neuron
    check_network(model, snn, x)
    assert snn.latency == snn.readout.t_min
    assert snn.summary()["latency"] == snn.latency


@pytest.mark.parametrize("name", RESIDUAL)
def test_residual_models_have_delays(name: str) -> None:
    model, shape = zoo_model(name)
    x = calibration(shape)
    snn = onespike.convert(model, x, progress=False)
    summary = snn.summary()
    assert summary["max_delay"] > 0
    assert summary["delayed_edges"] >= 1
    edges = snn.edges()
    assert len(edges) == summary["edges"] == sum(len(p.edges) for p in snn.populations)
    names = {"input"} | {p.name for p in snn.populations}
    for e in edges:
        assert {"source", "target", "delay", "kind", "synapses"} <= set(e)
        assert e["source"] in names and e["target"] in names
        assert e["delay"] >= 0
    assert max(e["delay"] for e in edges) == summary["max_delay"]
    # delays are the window offsets d = t_min(target) − t_max(source)
    t_max = {"input": 1.0} | {p.name: p.t_max for p in snn.hidden_layers}
    for p in snn.populations:
        for e in p.edges:
            assert e.delay == pytest.approx(p.t_min - t_max[e.source], abs=1e-12)
    # some population reads two sources (the skip and the branch)
    assert any(len(set(p.sources)) > 1 for p in snn.populations)


def test_feature_map_output_after_relu_is_refused() -> None:
    """``basic_block_identity`` outputs the ReLU feature map: the readout must be a
    Linear/Conv, so conversion refuses it naming the final ReLU."""
    torch.manual_seed(0)
    model, shape = ZOO["basic_block_identity"]()
    with pytest.raises(UnsupportedOperationError, match=r"body\.1\.relu"):
        onespike.convert(model, calibration(shape), progress=False)


def test_chain_latency_is_one_plus_windows() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(),
                          nn.Linear(5, 3)).double().eval()
    snn = onespike.convert(model, calibration((4,)), progress=False)
    assert snn.latency == snn.readout.t_min
    assert snn.latency == pytest.approx(1 + sum(p.B for p in snn.hidden_layers))
    assert snn.summary()["max_delay"] == 0.0
    assert all(e["delay"] == 0.0 for e in snn.edges())
