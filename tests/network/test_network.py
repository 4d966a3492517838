"""The public API of SpikingNetwork: shapes, parameters, bad inputs, calibration forms."""

from __future__ import annotations

import warnings

import pytest
import torch
from tests.helpers.nets import random_mlp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import onespike
from onespike import CalibrationError, InputRangeError


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10)).eval()


def test_api_shapes_parameters_and_latency() -> None:
    model = small_cnn()
    x = torch.rand(12, 1, 8, 8)
    snn = onespike.convert(model, x, progress=False)
    assert isinstance(snn, nn.Module) and isinstance(snn, onespike.SpikingNetwork)
    out = snn(x)
    assert out.shape == model(x).shape and out.dtype == torch.float64
    sim = snn.simulate(x, engine="event")
    assert len(sim.spike_times) == 2 and sim.spike_times[1].shape == (12, 4, 8, 8)
    hidden = snn.hidden_layers[0]
    for name in ("t_min", "t_max", "B", "theta", "alpha", "J", "G", "S"):
        assert getattr(hidden, name) is not None
    assert hidden.J.shape == (4, 8, 8, 1, 3, 3)
    assert snn.readout.J.shape == (10, 64)
    assert hidden.t_min == 1.0 and hidden.B == pytest.approx(1.5 * hidden.X)
    assert snn.latency == pytest.approx(1.0 + hidden.B)
    assert sim.certificate.exact and sim.certificate.early == [0]
    assert sim.certificate.saturated == [0]
    s = snn.summary()
    assert s["latency"] == snn.latency and len(s["layers"]) == 2


def test_training_mode_converts_eval_behaviour_with_warning() -> None:
    model = small_cnn().train()
    x = torch.rand(8, 1, 8, 8)
    with pytest.warns(UserWarning, match="training mode"):
        snn = onespike.convert(model, x, progress=False)
    assert model.training  # the user's model is left as it was
    with torch.no_grad():
        ref = model.eval().double()(x.double())
    assert float((snn(x) - ref).abs().max()) < 1e-10


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_inf_inputs_are_rejected(bad: float) -> None:
    model = small_cnn()
    snn = onespike.convert(model, torch.rand(4, 1, 8, 8), progress=False)
    x = torch.rand(3, 1, 8, 8)
    x[1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match=r"input contains 1 NaN/inf value.*\(1, 0, 2, 3\)"):
        snn(x)
    with pytest.raises(ValueError, match="calibration batch contains"):
        onespike.convert(model, x, progress=False)


def test_inputs_outside_range_error_or_clip() -> None:
    model = small_cnn()
    snn = onespike.convert(model, torch.rand(4, 1, 8, 8), progress=False)
    x = torch.rand(3, 1, 8, 8)
    x[0, 0, 0, 0] = 1.7
    x[2, 0, 1, 1] = -0.2
    with pytest.raises(InputRangeError, match=r"\[-0.2, 1.7\]") as info:
        snn(x)
    assert "clip=True" in str(info.value)
    clipped = snn(x, clip=True)
    with torch.no_grad():
        ref = model.double()(x.clamp(0, 1).double())
    assert float((clipped - ref).abs().max()) < 1e-10


def test_wrong_input_shape() -> None:
    snn = onespike.convert(small_cnn(), torch.rand(4, 1, 8, 8), progress=False)
    with pytest.raises(ValueError, match=r"expects \(batch, 1, 8, 8\)"):
        snn(torch.rand(2, 1, 9, 9))


def test_calibration_errors() -> None:
    model = small_cnn()
    with pytest.raises(CalibrationError, match="empty"):
        onespike.convert(model, [], progress=False)
    with pytest.raises(CalibrationError, match=r"empty|at least one"):
        onespike.convert(model, torch.rand(0, 1, 8, 8), progress=False)
    with pytest.raises(CalibrationError, match=r"rejects inputs of shape \(2, 3, 8, 8\)"):
        onespike.convert(model, torch.rand(4, 3, 8, 8), progress=False)
    with pytest.raises(CalibrationError, match="not a tensor"):
        onespike.convert(model, [("a", 1)], progress=False)


def test_calibration_from_dataloader_and_label_batches() -> None:
    model = small_cnn()
    x = torch.rand(40, 1, 8, 8)
    y = torch.randint(0, 10, (40,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    a = onespike.convert(model, loader, progress=False)
    b = onespike.convert(model, x, progress=False)
    c = onespike.convert(model, [x[:20], x[20:]], progress=False)
    assert a.hidden_layers[0].X == b.hidden_layers[0].X == c.hidden_layers[0].X
    assert a.meta["calibration_samples"] == 40


def test_invalid_arguments() -> None:
    model = small_cnn()
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="neuron"):
        onespike.convert(model, x, neuron="lif", progress=False)
    with pytest.raises(ValueError, match="zeta"):
        onespike.convert(model, x, zeta=-1.0, progress=False)
    with pytest.raises(ValueError, match="high > low"):
        onespike.convert(model, x, input_range=(1.0, 0.0), progress=False)
    with pytest.raises(ValueError, match="engine"):
        onespike.convert(model, x, progress=False).simulate(x, engine="magic")


def test_float32_and_chunking_are_consistent() -> None:
    model = random_mlp(0, [10, 30, 30, 5])
    x = torch.rand(50, 10)
    snn64 = onespike.convert(model, x, progress=False)
    snn32 = onespike.convert(model, x, dtype=torch.float32, progress=False)
    assert snn32(x).dtype == torch.float32
    assert torch.equal(snn32(x).argmax(1), snn64(x).argmax(1))
    full = snn64.simulate(x)
    chunked = snn64.simulate(x, chunk_size=7)
    # BLAS may block a GEMM differently per batch size: equal up to rounding
    assert torch.allclose(full.output, chunked.output, rtol=0, atol=1e-13)
    for a, b in zip(full.spike_times, chunked.spike_times):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)
    assert chunked.certificate.neurons == full.certificate.neurons


def test_network_moves_with_to() -> None:
    snn = onespike.convert(small_cnn(), torch.rand(4, 1, 8, 8), progress=False)
    snn32 = snn.to(torch.float32)
    assert snn32.dtype == torch.float32 and snn32.readout.weight.dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert snn32(torch.rand(2, 1, 8, 8)).dtype == torch.float32


def test_output_route_signs_move_with_the_network() -> None:
    """A signed max-pool output route's signs (no buffer: a route is no module) follow
    ``to``/``double``, as the populations' own route signs (buffers) do."""
    from onespike.simulation.routing import MaxPoolRoute

    snn = onespike.convert(small_cnn(), torch.rand(4, 1, 8, 8), progress=False)
    sign = torch.tensor([1.0, -1.0] * 5, dtype=torch.float32)
    route = MaxPoolRoute(1, (1,), (1,), (0,), (1,), False, (10, 1), (10, 1), sign=sign)
    snn.output_routes.append(route)
    snn.double()
    assert route.sign is not None and route.sign.dtype == torch.float64
    assert torch.equal(route.sign, sign.double())
    snn.to("meta")
    assert route.sign.device.type == "meta" and snn.device.type == "meta"
