"""Compare a spiking network with its ReLU network on a labelled data set.

:func:`evaluate` runs both on the same inputs, batch by batch, and reports the accuracy of
each, how often their predictions agree, the largest logit difference, the merged exactness
certificate and (optionally) the spike / synaptic-event counts of
:func:`onespike.analysis.metrics.measure`.

No metric hides a NaN or an infinity: a sample whose logits (spiking or ReLU) or recorded spike
times are NaN/inf counts as a wrong prediction and a disagreement, ``max_abs_logit_diff``
becomes NaN (or inf), ``nonfinite_samples`` counts such samples and :attr:`Evaluation.exact` is
False.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from onespike.analysis.metrics import Stats, measure
from onespike.errors import ArgumentError
from onespike.network.snn import SpikingNetwork
from onespike.simulation.certificate import Certificate

__all__ = ["Evaluation", "check_input_shape", "evaluate", "model_inputs"]

RELU_FROM_MODEL = "model"
RELU_FROM_SNN = "folded ReLU network (snn.reference)"


@dataclass
class Evaluation:
    """Result of :func:`evaluate`. Accuracies are None for unlabelled data (labels −1).

    ``relu_source`` says where the ReLU logits came from: the original ``model``, or the
    folded ReLU network stored in the spiking network (:meth:`SpikingNetwork.reference`).
    ``max_abs_logit_diff`` compares the readout potentials with those logits; it is NaN (or
    inf) when any logit is. ``nonfinite_samples`` counts the samples whose logits (either
    network) or recorded spike times hold a NaN/inf: they count as wrong and as disagreeing;
    ``samples_exact`` counts the samples the certificate proves exact and that are finite.
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
    nonfinite_samples: int = 0
    samples_exact: int | None = None

    @property
    def exact(self) -> bool:
        """The certificate says exact and no logit or spike time is NaN/inf."""
        return (self.certificate.exact and self.nonfinite_samples == 0
                and math.isfinite(self.max_abs_logit_diff))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        out: dict[str, Any] = {
            "samples": self.samples,
            "exact": self.exact,
            "nonfinite_samples": self.nonfinite_samples,
            "samples_exact": self.samples_exact,
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
        raise ArgumentError(
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
            copy) on the inputs the spiking network sees (clipped to its input range, see
            :func:`model_inputs`); without it the folded ReLU network inside ``snn``
            (:meth:`SpikingNetwork.reference`) gives the ReLU logits.
        engine: ``"event"`` (exact dynamics) or ``"closed"``.
        batch_size: samples per batch.
        clip: clip inputs to the network's input range instead of raising
            :class:`~onespike.InputRangeError`.
        activity: also count spikes and synaptic events (:func:`onespike.analysis.metrics.measure`).
        progress: show a progress bar.
    """
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
    check_input_shape(snn, tuple(images.shape[1:]), "the data")
    n = int(images.shape[0])
    if n == 0:
        raise ArgumentError("no samples to evaluate")
    if model is not None:
        # the ReLU network in the spiking network's precision (a copy: the user's model is
        # left as it is), so that the comparison measures the mapping, not float32 rounding
        model = copy.deepcopy(model).eval().to(device=snn.device, dtype=snn.dtype)
    correct_relu = correct_snn = agree = nonfinite = exact = 0
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
                relu = model(model_inputs(snn, x)).reshape(x.shape[0], -1)
            else:
                relu = snn.reference(x, clip=clip)[-1].reshape(x.shape[0], -1)
        t0 = time.perf_counter()
        sim = snn.simulate(x, engine, clip=clip, record=activity)
        seconds += time.perf_counter() - t0
        out = sim.output.reshape(x.shape[0], -1)
        relu = relu.to(out.dtype)
        # a sample with a NaN/inf anywhere has no meaningful prediction: it counts as wrong
        finite = torch.isfinite(out).all(1) & torch.isfinite(relu).all(1)
        for t in sim.spike_times[1:] if activity else ():
            finite &= ~torch.isnan(t.reshape(x.shape[0], -1)).any(1).to(finite.device)
        nonfinite += int((~finite).sum())
        exact += int((sim.certificate.sample_exact.reshape(-1).to(finite.device) & finite).sum())
        pred_relu, pred_snn = relu.argmax(1), out.argmax(1)
        agree += int(((pred_relu == pred_snn) & finite).sum())
        diff = (relu - out).abs()
        if diff.numel():
            max_diff = _nan_max(max_diff, float(diff.max()))  # torch's max propagates NaN
        if labelled:
            assert labels is not None
            y = labels[s : s + batch_size].to(pred_snn.device)
            correct_relu += int(((pred_relu == y) & finite).sum())
            correct_snn += int(((pred_snn == y) & finite).sum())
        certs.append(sim.certificate)
        if activity:
            stats.append(measure(snn, sim))
    if nonfinite and math.isfinite(max_diff):
        max_diff = math.nan  # NaN spike times with finite logits: no exact comparison
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
        nonfinite_samples=nonfinite,
        samples_exact=exact,
    )


def _nan_max(a: float, b: float) -> float:
    """``max(a, b)`` that keeps a NaN (the builtin returns ``a`` for ``max(a, nan)``)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def model_inputs(snn: SpikingNetwork, x: Tensor) -> Tensor:
    """``x`` as the spiking network sees it, for the original model: in the network's dtype
    and device and clipped to its input range. The network clips with ``clip=True`` (and
    values within rounding of the range otherwise), so the ReLU model is compared on the
    same inputs."""
    x = x.to(device=snn.device, dtype=snn.dtype)
    return torch.minimum(torch.maximum(x, snn.input_low), snn.input_high)
