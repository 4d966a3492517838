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
    ``world_size`` is the number of processes that evaluated the data and ``shard_sizes``
    the samples each evaluated (rank order); ``snn_seconds`` is summed over them.
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
    world_size: int = 1
    shard_sizes: list[int] | None = None

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
            "world_size": self.world_size,
            "shard_sizes": (list(self.shard_sizes) if self.shard_sizes is not None
                            else [self.samples]),
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
    images: Any,
    labels: Tensor | None = None,
    *,
    model: nn.Module | None = None,
    engine: str = "event",
    batch_size: int = 256,
    clip: bool = False,
    activity: bool = True,
    progress: bool = True,
    workers: int = 0,
) -> Evaluation:
    """Run ``snn`` (with ``engine``) and the ReLU network on ``images``.

    Args:
        snn: the spiking network.
        images: the data: model inputs ``(N, *snn.input_shape)`` (with ``labels``), an
            in-memory :class:`~onespike.data.Dataset`, a map-style ``torch.utils.data.Dataset``
            of ``(input, label)`` items (e.g. ``load_dataset(..., stream=True)``: read one batch
            at a time, so memory does not grow with the number of samples), a ``DataLoader``,
            or an iterable of ``(input, label)`` batches.
        labels: class labels ``(N,)`` for a tensor of inputs (−1 or None: unlabelled,
            accuracies are None; a dataset brings its own).
        model: the original ReLU model, run in the spiking network's dtype and device (on a
            copy) on the inputs the spiking network sees (clipped to its input range, see
            :func:`model_inputs`); without it the folded ReLU network inside ``snn``
            (:meth:`SpikingNetwork.reference`) gives the ReLU logits.
        engine: ``"event"`` (exact dynamics) or ``"closed"``.
        batch_size: samples per batch (for a dataset: per loaded batch).
        clip: clip inputs to the network's input range instead of raising
            :class:`~onespike.InputRangeError`.
        activity: also count spikes and synaptic events (:func:`onespike.analysis.metrics.measure`).
        progress: show a progress bar (samples/s and ETA; rank 0 only).
        workers: loader worker processes for a map-style dataset (0: this process).

    With an initialised ``torch.distributed`` process group of several processes, every rank
    calls ``evaluate`` with the same arguments: each evaluates its contiguous shard of whole
    batches (the batches of a one-process run, split in rank order; no collective inside
    the loop) and the counts are reduced, so that every rank returns the
    single-process result (same counts, certificate and accuracies; ``snn_seconds`` is the
    sum over the ranks) with ``world_size`` and ``shard_sizes`` recorded. A failure on any
    rank raises :class:`~onespike.DistributedError` on all; see :mod:`onespike.distributed`.
    Results do not depend on the number of processes: counts are integers, the logit
    difference a float64 maximum, and every batch is the one-process one. Only the
    certificate's ``checked`` counts depend on ``batch_size`` (the grid bound takes its
    points from the batch); accuracies, agreement, violations and activity do not.
    """
    from onespike._version import __version__
    from onespike.data.batching import first_inputs, shard_batches
    from onespike.distributed import Coordinator, model_fingerprint

    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {batch_size}")
    coord = Coordinator("evaluate")
    shard = shard_batches(images, labels, batch_size=batch_size, workers=workers,
                          rank=coord.rank, world_size=coord.world_size, what="the data")
    if shard.total == 0:
        raise ArgumentError("no samples to evaluate")
    head = first_inputs(images, 1)
    if head is not None:
        check_input_shape(snn, tuple(head.shape[1:]), "the data")
    coord.check_same({
        "onespike": __version__, "torch": torch.__version__,
        "network": model_fingerprint(snn) + f"/{snn.neuron}/{snn.zeta}/{snn.dtype}",
        "model": None if model is None else model_fingerprint(model),
        "samples": shard.total, "engine": engine, "clip": clip, "activity": activity,
    })
    if model is not None:
        # the ReLU network in the spiking network's precision (a copy: the user's model is
        # left as it is), so that the comparison measures the mapping, not float32 rounding
        model = copy.deepcopy(model).eval().to(device=snn.device, dtype=snn.dtype)
    tally = _Tally()
    show = (progress and coord.rank == 0
            and not (shard.size is not None and shard.size <= batch_size))
    bar = tqdm(total=shard.size, desc=f"evaluating ({engine})", unit="sample",
               unit_scale=True, leave=False, disable=not show)
    with coord.loop(bar):
        for x, y in shard.batches:
            coord.poll()
            tally.add(snn, x, y, model, engine, clip, activity)
            bar.update(int(x.shape[0]))
    parts = coord.gather(tally)
    return _combine(parts, engine, model is not None)


class _Tally:
    """One rank's counts (integers), float64 maximum and merged certificate / stats."""

    def __init__(self) -> None:
        self.samples = self.correct_relu = self.correct_snn = self.agree = 0
        self.nonfinite = self.exact = self.unlabelled = 0
        self.max_diff = 0.0
        self.seconds = 0.0
        self.certs: list[Certificate] = []
        self.stats: list[Stats] = []

    def add(self, snn: SpikingNetwork, x: Tensor, y: Tensor | None, model: nn.Module | None,
            engine: str, clip: bool, activity: bool) -> None:
        b = int(x.shape[0])
        if b == 0:
            return
        with torch.no_grad():
            if model is not None:
                relu = model(model_inputs(snn, x)).reshape(b, -1)
            else:
                relu = snn.reference(x, clip=clip)[-1].reshape(b, -1)
        t0 = time.perf_counter()
        sim = snn.simulate(x, engine, clip=clip, record=activity)
        self.seconds += time.perf_counter() - t0
        out = sim.output.reshape(b, -1)
        relu = relu.to(out.dtype)
        # a sample with a NaN/inf anywhere has no meaningful prediction: it counts as wrong
        finite = torch.isfinite(out).all(1) & torch.isfinite(relu).all(1)
        for t in sim.spike_times[1:] if activity else ():
            finite &= ~torch.isnan(t.reshape(b, -1)).any(1).to(finite.device)
        self.samples += b
        self.nonfinite += int((~finite).sum())
        self.exact += int((sim.certificate.sample_exact.reshape(-1).to(finite.device)
                           & finite).sum())
        pred_relu, pred_snn = relu.argmax(1), out.argmax(1)
        self.agree += int(((pred_relu == pred_snn) & finite).sum())
        diff = (relu - out).abs()
        if diff.numel():
            self.max_diff = _nan_max(self.max_diff, float(diff.max()))  # max propagates NaN
        if y is None:
            self.unlabelled += b
        else:
            y = y.reshape(-1).to(pred_snn.device)
            known = y >= 0
            self.unlabelled += int((~known).sum())
            self.correct_relu += int(((pred_relu == y) & finite & known).sum())
            self.correct_snn += int(((pred_snn == y) & finite & known).sum())
        self.certs.append(sim.certificate)
        if activity:
            self.stats.append(measure(snn, sim))
        if len(self.certs) >= 32:  # merged as we go: memory stays flat over the batches
            self.certs = [Certificate.merge(self.certs)]
            self.stats = [Stats.merge(self.stats)] if self.stats else []

    def __getstate__(self) -> dict[str, Any]:
        # what a rank sends: the merged certificate and stats, not one per batch
        state = dict(self.__dict__)
        state["certs"] = [Certificate.merge(self.certs)] if self.certs else []
        state["stats"] = [Stats.merge(self.stats)] if self.stats else []
        return state


def _combine(parts: list[_Tally], engine: str, with_model: bool) -> Evaluation:
    """The result of all ranks' tallies (in rank order): sums, NaN-aware max, merges."""
    n = sum(p.samples for p in parts)
    if n == 0:
        raise ArgumentError("no samples to evaluate")
    total = {k: sum(getattr(p, k) for p in parts)
             for k in ("correct_relu", "correct_snn", "agree", "nonfinite", "exact",
                       "unlabelled")}
    max_diff = 0.0
    for p in parts:
        max_diff = _nan_max(max_diff, p.max_diff)
    if total["nonfinite"] and math.isfinite(max_diff):
        max_diff = math.nan  # NaN spike times with finite logits: no exact comparison
    labelled = total["unlabelled"] == 0
    certs = [c for p in parts for c in p.certs]
    stats = [s for p in parts for s in p.stats]
    return Evaluation(
        samples=n,
        relu_accuracy=total["correct_relu"] / n if labelled else None,
        snn_accuracy=total["correct_snn"] / n if labelled else None,
        agreement=total["agree"] / n,
        max_abs_logit_diff=max_diff,
        relu_source=RELU_FROM_MODEL if with_model else RELU_FROM_SNN,
        engine=engine,
        certificate=Certificate.merge(certs),
        stats=Stats.merge(stats) if stats else None,
        snn_seconds=sum(p.seconds for p in parts),
        nonfinite_samples=total["nonfinite"],
        samples_exact=total["exact"],
        world_size=len(parts),
        shard_sizes=[p.samples for p in parts],
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
