"""onespike.analysis.evaluation.evaluate: ReLU vs spiking network on labelled data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import onespike
from onespike.analysis.evaluation import evaluate


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(48, 4)).eval()
    x = torch.rand(40, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:5] = (y[:5] + 1) % 4  # five wrong labels: accuracy 35/40
    snn = onespike.convert(model, x, neuron="constant-slope", progress=False)
    return model, snn, x, y


def test_with_and_without_model(setup) -> None:
    model, snn, x, y = setup
    a = evaluate(snn, x, y, model=model, progress=False)
    b = evaluate(snn, x, y, progress=False)
    for ev in (a, b):
        assert ev.samples == 40 and ev.agreement == 1.0
        assert ev.relu_accuracy == ev.snn_accuracy == 35 / 40
        assert ev.certificate.exact
    assert a.relu_source == "model" and b.relu_source.startswith("folded")
    assert a.max_abs_logit_diff < 1e-5 and b.max_abs_logit_diff < 1e-12
    d = a.as_dict()
    assert 0 < d["spikes_per_neuron"] < 1 and d["synaptic_events"] > 0


def test_batches_merge_to_the_same_counts(setup) -> None:
    _, snn, x, y = setup
    one = evaluate(snn, x, y, batch_size=1000, progress=False)
    many = evaluate(snn, x, y, batch_size=7, engine="closed", progress=False)
    assert one.stats is not None and many.stats is not None
    assert many.stats.samples == 40
    assert many.stats.spikes == pytest.approx(one.stats.spikes, rel=1e-12)
    assert many.stats.events == pytest.approx(one.stats.events, rel=1e-12)
    assert many.certificate.neurons == one.certificate.neurons


def test_float64_model_and_unlabelled_data(setup) -> None:
    model, snn, x, _ = setup
    ev = evaluate(snn, x, None, model=model.double(), activity=False, progress=False)
    model.float()
    assert ev.relu_accuracy is None and ev.snn_accuracy is None and ev.stats is None
    assert ev.agreement == 1.0


def test_errors(setup) -> None:
    _, snn, x, y = setup
    with pytest.raises(ValueError, match=r"expects \(1, 8, 8\)"):
        evaluate(snn, torch.rand(3, 1, 9, 9), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(snn, x, y, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="no samples"):
        evaluate(snn, x[:0], y[:0], progress=False)


def _with_nan_readout(snn, rows: slice):
    """A copy of ``snn`` whose readout bias is NaN for the given output units."""
    import copy

    bad = copy.deepcopy(snn)
    with torch.no_grad():
        bad.readout.bias.reshape(-1)[rows] = float("nan")
    return bad


@pytest.mark.parametrize("with_model", [False, True])
def test_nan_outputs_are_never_hidden(setup, with_model: bool) -> None:
    """Every output NaN (the input_range=(0, inf) failure): no 100 % agreement, no
    max |logit difference| 0, not exact."""
    model, snn, x, y = setup
    bad = _with_nan_readout(snn, slice(None))
    ev = evaluate(bad, x, y, model=model if with_model else None, progress=False)
    assert math.isnan(ev.max_abs_logit_diff)
    assert ev.agreement == 0.0 and ev.snn_accuracy == 0.0
    assert ev.nonfinite_samples == 40 and not ev.exact
    d = ev.as_dict()
    assert d["exact"] is False and d["nonfinite_samples"] == 40
    assert math.isnan(d["max_abs_logit_diff"])


def test_one_nan_logit_shows(setup) -> None:
    model, snn, x, y = setup
    bad = _with_nan_readout(snn, slice(2, 3))
    ev = evaluate(bad, x, y, model=model, batch_size=7, progress=False)
    assert math.isnan(ev.max_abs_logit_diff) and not ev.exact
    assert ev.nonfinite_samples == 40 and ev.agreement < 1.0
    good = evaluate(snn, x, y, model=model, progress=False)
    assert good.exact and good.nonfinite_samples == 0


def test_nan_in_the_relu_model_shows(setup) -> None:
    model, snn, x, y = setup

    class NaNAfter(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            out = self.inner(v)
            out[-3:] = float("nan")  # three correctly labelled samples
            return out

    ev = evaluate(snn, x, y, model=NaNAfter(model), progress=False)
    assert math.isnan(ev.max_abs_logit_diff) and not ev.exact
    assert ev.nonfinite_samples == 3 and ev.agreement == 37 / 40
    assert ev.relu_accuracy == pytest.approx(32 / 40)


def test_clip_compares_with_the_model_on_the_clipped_inputs(setup) -> None:
    """With clip=True the original model sees the inputs the spiking network sees."""
    model, _, x, y = setup
    snn = onespike.convert(model, x.clamp(max=0.5), input_range=(0.0, 0.5),
                           neuron="constant-slope", clip=True, progress=False)
    ev = evaluate(snn, x, y, model=model, clip=True, progress=False)
    ref = evaluate(snn, x, y, clip=True, progress=False)
    assert ev.max_abs_logit_diff < 1e-5
    assert ev.max_abs_logit_diff <= 10 * ref.max_abs_logit_diff + 1e-9
    assert ev.agreement == 1.0 and ev.exact
