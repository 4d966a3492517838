"""The paper's claim on real Fashion-MNIST data, with the shipped trained models (runs in CI:
scripts/test.sh installs the Debian package with the data)."""

from __future__ import annotations

import pytest

from onespike.apps.reproduce import format_markdown, reproduce_fmnist


@pytest.mark.parametrize("model", ["vgg_fmnist", "lenet5_fmnist", "mlp_fmnist",
                                   "resnet_fmnist", "densenet_fmnist"])
def test_trained_fmnist_models_convert_without_accuracy_loss(model: str) -> None:
    rows = reproduce_fmnist((model,), calibration_samples=2000, test_limit=500, progress=False)
    assert len(rows) == 2
    for r in rows:
        assert r.samples == 500
        assert r.snn_accuracy == r.relu_accuracy
        assert r.agreement == 1.0
        assert r.max_abs_logit_diff < 1e-9
        assert r.exact, (r.early, r.saturated)
        assert r.relu_accuracy > 0.85
    a, b = rows
    assert a.spikes_per_neuron == pytest.approx(1.0)  # model A: every neuron fires once
    assert b.spikes_per_neuron is not None and b.spikes_per_neuron < 1.0
    assert "| " + model in format_markdown(rows)
