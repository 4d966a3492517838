"""A third-party NIR consumer (Norse, norse.torch.from_nir) runs the discrete-time export of
a small network on its grid and agrees with the ReLU network (≥ 99 % at the finest dt)."""

from __future__ import annotations

import pytest
import torch

import onespike
from onespike.data import load_dataset
from onespike.export import NirExportError, encode_input
from onespike.export.nir_discrete import export_nir_discrete, run_norse
from onespike.models import load_pretrained

pytest.importorskip("nir")
pytest.importorskip("norse.torch")


@pytest.mark.slow
def test_norse_agreement_at_fine_dt() -> None:
    data = load_dataset("fashion-mnist", "test", limit=56)
    model = load_pretrained("mlp_fmnist")
    snn = onespike.convert(model, data.images[:32], input_range=(0.0, 1.0), neuron="alpha")
    x = data.images[32:56]
    with torch.no_grad():
        relu = model(x).argmax(1)
    # readout window: 1.5 x the largest logit on the calibration images
    window = 1.5 * float(snn.reference(data.images[:32])[-1].max())
    dt = 0.02
    exp = export_nir_discrete(snn, dt, readout_window=window)
    first, hidden, _ = run_norse(exp, encode_input(snn, x).reshape(x.shape[0], -1).float(), dt)
    assert float((first.argmin(1) == relu).float().mean()) >= 0.99
    assert float(hidden.max()) == 1.0  # single spike per hidden neuron


def test_discrete_variant_refuses_model_b_and_convolutions() -> None:
    data = load_dataset("digits", "test", limit=16)
    cnn = onespike.convert(load_pretrained("digits_cnn"), data.images, input_range=(0.0, 1.0))
    with pytest.raises(NirExportError, match="fully connected"):
        export_nir_discrete(cnn, 0.01)
    mlp = onespike.convert(load_pretrained("mlp_fmnist"), torch.rand(8, 1, 28, 28),
                           input_range=(0.0, 1.0), neuron="constant-slope")
    with pytest.raises(NirExportError, match="constant-slope"):
        export_nir_discrete(mlp, 0.01)
