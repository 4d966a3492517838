"""Reproduction of the paper's central claim on real data: zero accuracy loss.

For each shipped Fashion-MNIST model (trained by ``scripts/train.py``) and each neuron model,
convert with training images as calibration data and compare the spiking network (event
engine: the true dynamics) with the float64 ReLU network on the test images.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from onespike.analysis.evaluation import evaluate
from onespike.conversion.convert import convert
from onespike.data import load_dataset
from onespike.models import load_pretrained

__all__ = ["FMNIST_MODELS", "ReproductionRow", "format_markdown", "reproduce_fmnist"]

FMNIST_MODELS = ("vgg_fmnist", "mlp_fmnist", "lenet5_fmnist", "resnet_fmnist", "densenet_fmnist")


@dataclass
class ReproductionRow:
    """One model × neuron model: accuracies on ``samples`` test images and the certificate."""

    model: str
    neuron: str
    samples: int
    calibration_samples: int
    relu_accuracy: float
    snn_accuracy: float
    agreement: float
    max_abs_logit_diff: float
    exact: bool
    early: int
    saturated: int
    checked_fraction: float
    spikes_per_neuron: float | None
    latency: float
    convert_seconds: float
    simulate_seconds: float


def reproduce_fmnist(
    models: tuple[str, ...] = FMNIST_MODELS,
    neurons: tuple[str, ...] = ("alpha", "constant-slope"),
    *,
    calibration_samples: int = 10_000,
    test_limit: int | None = None,
    progress: bool = True,
) -> list[ReproductionRow]:
    """Convert and evaluate every ``models`` × ``neurons`` pair (float64, zeta = 0.5)."""
    calib = load_dataset("fashion-mnist", "train", limit=calibration_samples)
    test = load_dataset("fashion-mnist", "test", limit=test_limit)
    rows: list[ReproductionRow] = []
    for name in models:
        model = load_pretrained(name).double()
        for neuron in neurons:
            t0 = time.perf_counter()
            snn = convert(model, calib.batches(500), neuron=neuron, progress=progress)
            t1 = time.perf_counter()
            ev = evaluate(snn, test.images, test.labels, model=model, engine="event",
                          batch_size=500, progress=progress)
            cert = ev.certificate
            assert ev.relu_accuracy is not None and ev.snn_accuracy is not None
            rows.append(ReproductionRow(
                model=name, neuron=neuron, samples=ev.samples,
                calibration_samples=int(snn.meta["calibration_samples"]),
                relu_accuracy=ev.relu_accuracy, snn_accuracy=ev.snn_accuracy,
                agreement=ev.agreement, max_abs_logit_diff=ev.max_abs_logit_diff,
                exact=cert.exact, early=sum(cert.early), saturated=sum(cert.saturated),
                checked_fraction=sum(cert.checked) / max(1, sum(cert.neurons)),
                spikes_per_neuron=(ev.stats.spikes_per_neuron if ev.stats is not None
                                   else None),
                latency=snn.latency, convert_seconds=t1 - t0,
                simulate_seconds=ev.snn_seconds,
            ))
    return rows


def format_markdown(rows: list[ReproductionRow]) -> str:
    """A markdown table of the rows."""
    head = ("| model | neuron | test images | ReLU acc. | SNN acc. | agreement | max logit diff "
            "| certificate | spikes/neuron | latency (τ) |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        cert = "exact" if r.exact else f"{r.early} early, {r.saturated} saturated"
        spikes = f"{r.spikes_per_neuron:.3f}" if r.spikes_per_neuron is not None else "–"
        lines.append(
            f"| {r.model} | {r.neuron} | {r.samples} | {100 * r.relu_accuracy:.2f} % | "
            f"{100 * r.snn_accuracy:.2f} % | {100 * r.agreement:.2f} % | "
            f"{r.max_abs_logit_diff:.1e} | {cert} | {spikes} | {r.latency:.2f} |"
        )
    return "\n".join(lines)


def rows_as_dicts(rows: list[ReproductionRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def _threads() -> int:
    return torch.get_num_threads()
