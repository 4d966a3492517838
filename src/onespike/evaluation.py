"""Compare a spiking network with its ReLU network on a labelled data set.

:func:`evaluate` runs both on the same inputs, batch by batch, and reports the accuracy of
each, how often their predictions agree, the largest logit difference, the merged exactness
certificate and (optionally) the spike / synaptic-event counts of :func:`onespike.metrics.measure`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .certificate import Certificate
from .metrics import Stats, measure
from .network import SpikingNetwork

__all__ = ["Evaluation", "check_input_shape", "evaluate"]

RELU_FROM_MODEL = "model"
RELU_FROM_SNN = "folded ReLU network (snn.reference)"


@dataclass
class Evaluation:
    """Result of :func:`evaluate`. Accuracies are None for unlabelled data (labels −1).

    ``relu_source`` says where the ReLU logits came from: the original ``model``, or the
    folded ReLU network stored in the spiking network (:meth:`SpikingNetwork.reference`).
    ``max_abs_logit_diff`` compares the readout potentials with those logits.
    """

    samples: int
    relu_accuracy: float | None
    snn_accuracy: float | None
    agreement: float
    max_abs_logit_diff: float
    relu_source: str
    engine: str
    certificate: Certificate
    stats: Stats | None
    snn_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        out: dict[str, Any] = {
            "samples": self.samples,
            "relu_accuracy": self.relu_accuracy,
            "snn_accuracy": self.snn_accuracy,
            "agreement": self.agreement,
            "max_abs_logit_diff": self.max_abs_logit_diff,
            "relu_source": self.relu_source,
            "engine": self.engine,
            "snn_seconds": self.snn_seconds,
            "certificate": self.certificate.as_dict(),
        }
        if self.stats is not None:
            totals = self.stats.as_dict()["totals"]
            out["spikes_per_neuron"] = totals["spikes_per_neuron"]
            out["synaptic_events"] = totals["events"]
            out["ann_macs"] = totals["macs"]
            out["activity"] = self.stats.as_dict()
        return out


def check_input_shape(snn: SpikingNetwork, shape: tuple[int, ...], what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if samples of ``shape`` do not fit ``snn``."""
    if tuple(shape) != tuple(snn.input_shape):
        raise ValueError(
            f"{what} has samples of shape {tuple(shape)} but the network expects "
            f"{tuple(snn.input_shape)}; use the data set the model was built for"
        )


def evaluate(
    snn: SpikingNetwork,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    model: nn.Module | None = None,
    engine: str = "event",
    batch_size: int = 256,
    clip: bool = False,
    activity: bool = True,
    progress: bool = True,
) -> Evaluation:
    """Run ``snn`` (with ``engine``) and the ReLU network on ``images``.

    Args:
        snn: the spiking network.
        images: model inputs, shape ``(N, *snn.input_shape)``.
        labels: class labels ``(N,)`` (−1 or None: unlabelled, accuracies are None).
        model: the original ReLU model, run in the spiking network's dtype and device (on a
            copy); without it the folded ReLU network inside ``snn``
            (:meth:`SpikingNetwork.reference`) gives the ReLU logits.
        engine: ``"event"`` (exact dynamics) or ``"closed"``.
        batch_size: samples per batch.
        clip: clip inputs to the network's input range instead of raising
            :class:`~onespike.InputRangeError`.
        activity: also count spikes and synaptic events (:func:`onespike.metrics.measure`).
        progress: show a progress bar.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_input_shape(snn, tuple(images.shape[1:]), "the data")
    n = int(images.shape[0])
    if n == 0:
        raise ValueError("no samples to evaluate")
    model_dtype = None
    if model is not None:
        # the ReLU network in the spiking network's precision (a copy: the user's model is
        # left as it is), so that the comparison measures the mapping, not float32 rounding
        model = copy.deepcopy(model).eval().to(device=snn.device, dtype=snn.dtype)
        model_dtype = snn.dtype
    correct_relu = correct_snn = agree = 0
    labelled = labels is not None and bool((labels >= 0).all())
    max_diff = 0.0
    certs: list[Certificate] = []
    stats: list[Stats] = []
    seconds = 0.0
    starts = range(0, n, batch_size)
    for s in tqdm(starts, desc=f"evaluating ({engine})", unit="batch", leave=False,
                  disable=not progress or len(starts) < 2):
        x = images[s : s + batch_size]
        with torch.no_grad():
            if model is not None:
                xm = x.to(model_dtype) if model_dtype is not None else x
                relu = model(xm).reshape(x.shape[0], -1)
            else:
                relu = snn.reference(x, clip=clip)[-1].reshape(x.shape[0], -1)
        t0 = time.perf_counter()
        sim = snn.simulate(x, engine, clip=clip, record=activity)
        seconds += time.perf_counter() - t0
        out = sim.output.reshape(x.shape[0], -1)
        pred_relu, pred_snn = relu.argmax(1), out.argmax(1)
        agree += int((pred_relu == pred_snn).sum())
        diff = (relu.to(out.dtype) - out).abs()
        max_diff = max(max_diff, float(diff.max()) if diff.numel() else 0.0)
        if labelled:
            assert labels is not None
            y = labels[s : s + batch_size].to(pred_snn.device)
            correct_relu += int((pred_relu.to(y.device) == y).sum())
            correct_snn += int((pred_snn == y).sum())
        certs.append(sim.certificate)
        if activity:
            stats.append(measure(snn, sim))
    return Evaluation(
        samples=n,
        relu_accuracy=correct_relu / n if labelled else None,
        snn_accuracy=correct_snn / n if labelled else None,
        agreement=agree / n,
        max_abs_logit_diff=max_diff,
        relu_source=RELU_FROM_MODEL if model is not None else RELU_FROM_SNN,
        engine=engine,
        certificate=Certificate.merge(certs),
        stats=Stats.merge(stats) if stats else None,
        snn_seconds=seconds,
    )
