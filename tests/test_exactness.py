"""Property: any chain of supported layers converts exactly (both neuron models)."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.nets import random_cnn, random_mlp

import onespike

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _inputs(shape: tuple[int, ...], seed: int, n: int = 48):
    g = torch.Generator().manual_seed(seed)
    low = -torch.rand(shape[0], generator=g)
    high = low + 0.5 + torch.rand(shape[0], generator=g)
    view = (-1,) + (1,) * (len(shape) - 1)
    x = low.view(view) + (high - low).view(view) * torch.rand(n, *shape, generator=g)
    return x, low, high


def check_exact(model: torch.nn.Module, x: torch.Tensor, neuron: str, **kw) -> None:
    snn = onespike.convert(model, x, neuron=neuron, progress=False, **kw)
    with torch.no_grad():
        ref_logits = model.double()(x.double())
    model.float()
    sim = snn.simulate(x, engine="event")
    closed = snn.simulate(x, engine="closed")
    # logits: against the ORIGINAL PyTorch model (independent of folding and of the SNN)
    scale = max(1.0, float(ref_logits.abs().max()))
    assert sim.output.shape == ref_logits.shape
    assert float((sim.output - ref_logits).abs().max()) <= 1e-9 * scale
    assert torch.equal(sim.output.argmax(1), ref_logits.argmax(1))
    assert sim.certificate.exact, str(sim.certificate)
    assert closed.certificate.exact
    # hidden layers: decoded spike times against the folded ReLU network
    reference = snn.reference(x)
    acts = sim.activations()
    assert len(acts) == len(snn.hidden_layers) + 1
    for layer, a, r, c in zip(snn.hidden_layers, acts[1:], reference[:-1],
                              closed.activations()[1:]):
        tol = 1e-9 * max(1.0, layer.X)
        assert float((a - r).abs().max()) <= tol, layer.name
        assert float((c - r).abs().max()) <= tol
    # the input layer encodes x̂ = (x − p)/(q − p) as t = 1 − x̂
    xhat = snn.encode(x)
    assert torch.allclose(acts[0], xhat, atol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 10_000), dims=st.sampled_from([1, 2]),
       neuron=st.sampled_from(["alpha", "constant-slope"]))
def test_random_cnn_converts_exactly(seed: int, dims: int, neuron: str) -> None:
    model, shape = random_cnn(seed, dims)
    x, low, high = _inputs(shape, seed)
    check_exact(model, x, neuron, input_range=(low, high))


@SETTINGS
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 4),
       neuron=st.sampled_from(["alpha", "constant-slope"]))
def test_random_mlp_converts_exactly(seed: int, depth: int, neuron: str) -> None:
    g = torch.Generator().manual_seed(seed)
    widths = [int(w) for w in torch.randint(2, 24, (depth + 1,), generator=g)]
    model = random_mlp(seed, widths)
    x = torch.rand(64, widths[0], generator=g) * 2 - 1
    check_exact(model, x, neuron, input_range=(-1.0, 1.0))


def test_single_linear_readout_only() -> None:
    model = torch.nn.Linear(5, 3).eval()
    x = torch.rand(10, 5)
    check_exact(model, x, "alpha")


def test_model_b_is_silent_for_zero_activations() -> None:
    model = random_mlp(3, [6, 12, 12, 4])
    x = torch.rand(32, 6)
    snn = onespike.convert(model, x, neuron="constant-slope", progress=False)
    sim = snn.simulate(x)
    for t, r in zip(sim.spike_times[1:], snn.reference(x)[:-1]):
        assert torch.equal(torch.isfinite(t), r > 0)
    snn_a = onespike.convert(model, x, neuron="alpha", progress=False)
    assert all(bool(torch.isfinite(t).all()) for t in snn_a.simulate(x).spike_times)
