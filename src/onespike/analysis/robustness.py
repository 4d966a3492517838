"""Robustness sweeps of a converted network (docs/method.md §10).

One knob is varied at a time; for every value the spiking network is simulated with several
seeds and compared with the labels (accuracy) and with the ReLU network it was converted from
(agreement: fraction of samples whose predicted class is the ReLU network's; the reference is
the *unperturbed, unquantised* folded ReLU network, :meth:`SpikingNetwork.reference`).
Perturbations act inside the dynamics (:class:`~onespike.Perturbation`), never on the logits.

Knobs (:data:`KNOBS`):

* ``zeta``: window margin ``B_n = (1 + zeta)·X_n`` — the windows are re-mapped from the
  calibrated maxima ``X_n`` stored in the network (:func:`rewindow`; equivalent to converting
  again with that ``zeta``). Negative values shrink the windows: large activations saturate.
* ``jitter``: Gaussian noise of this standard deviation (``tau_c``) on every spike time.
* ``alpha_noise``: model A only, every hidden neuron's ``alpha`` multiplied by a fixed
  ``1 + sigma·N(0, 1)`` (``theta`` and ``J`` keep ``alpha = 1``).
* ``time_bits``: every spike time rounded to ``2**bits`` levels per window (0 = off).
* ``weight_bits``: the folded weights of every edge (into hidden and readout populations)
  quantised symmetrically per edge to integers in ``[−(2^(bits−1) − 1), 2^(bits−1) − 1]``
  times the edge's step ``max|W| / (2^(bits−1) − 1)`` (round to nearest; biases, hence
  thresholds, stay in full precision; 0 = off), then mapped with the original windows
  (:func:`quantize_weights`).

``base`` adds a fixed perturbation to every run (e.g. the ``zeta`` sweep under jitter).
Deterministic runs (no jitter and no alpha noise) are simulated once, whatever the number of seeds.
Means and standard deviations (``ddof = 1``; 0 for a single run) are over seeds.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from onespike.conversion.mapping import window_sizes
from onespike.conversion.scale import S_MAX
from onespike.errors import ArgumentError
from onespike.network.population import Population
from onespike.network.snn import SpikingNetwork
from onespike.simulation.affine import Affine
from onespike.simulation.neurons import get_neuron
from onespike.simulation.perturb import Perturbation
from onespike.simulation.synapses import Synapses

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "KNOBS",
    "RobustnessPoint",
    "RobustnessResult",
    "network_for",
    "quantize_weights",
    "rewindow",
    "sweep",
]

#: Knobs :func:`sweep` can vary.
KNOBS = ("zeta", "jitter", "alpha_noise", "time_bits", "weight_bits")
_BITS = ("time_bits", "weight_bits")
_LABELS = {
    "zeta": "window margin ζ",
    "jitter": "spike-time jitter σ [τ_c]",
    "alpha_noise": "α noise σ (relative)",
    "time_bits": "spike-time resolution [bits per window]",
    "weight_bits": "weight resolution [bits]",
}


# -- re-mapped networks ------------------------------------------------------------------------
#: Per population: one Affine per edge (the edges' weights; every Affine carries the bias).
_EdgeAffines = list[list[Affine]]


def _rebuild(snn: SpikingNetwork, affines: _EdgeAffines, sizes: dict[str, float],
             zeta: float, meta: dict[str, Any]) -> SpikingNetwork:
    """Populations for ``affines`` (per population of ``snn``, one per edge; the bias is the
    first's) with hidden windows ``sizes`` (``B`` per hidden population), the windows mapped
    over the DAG as :func:`onespike.conversion.mapping.build_layers` does: ``t_min = max_s
    t_max(s)``,
    ``B_in = max_s B_s``, edge delays ``d = t_min − t_max(s)``."""
    windows: dict[str, tuple[float, float]] = {"input": (0.0, 1.0)}
    layers: list[Population] = []
    for pop, affs in zip(snn.layers, affines):
        t_min = max(windows[e.source][1] for e in pop.edges)
        B_in = max(windows[e.source][1] - windows[e.source][0] for e in pop.edges)
        t_max = t_min if pop.readout else t_min + sizes[pop.name]
        edges = [dataclasses.replace(e, routes=pop.edge_routes(i),
                                     delay=t_min - windows[e.source][1])
                 for i, e in enumerate(pop.edges)]
        layers.append(Population(
            name=pop.name, source=pop.source, edges=edges, weights=[a.weight for a in affs],
            bias=affs[0].bias, neuron=snn.neuron, readout=pop.readout, t_min=t_min,
            t_max=t_max, B_in=B_in, X=0.0 if pop.readout else pop.X, role=pop.role,
        ))
        windows[pop.name] = (t_min, t_max)
    return SpikingNetwork(layers, input_shape=snn.input_shape, input_low=snn.input_low,
                          input_high=snn.input_high, output_routes=snn.output_routes,
                          neuron=snn.neuron, zeta=zeta, meta={**snn.meta, **meta})


def _affines(snn: SpikingNetwork) -> _EdgeAffines:
    """Copies of every edge's affine map (weights and bias cloned), per population."""
    out = []
    for pop in snn.layers:
        affs = []
        for i in range(len(pop.edges)):
            a = pop.edge_affine(i)
            affs.append(dataclasses.replace(a, weight=a.weight.clone(), bias=a.bias.clone()))
        out.append(affs)
    return out


def rewindow(snn: SpikingNetwork, zeta: float) -> SpikingNetwork:
    """The same network with windows ``B_n = (1 + zeta)·X_n`` (``X_n``: the calibrated maxima
    stored in each population), re-mapped over the DAG (start times and edge delays follow)
    — what converting again with ``zeta`` gives. ``zeta > −1``."""
    hidden = snn.hidden_layers
    sizes = window_sizes([ly.X for ly in hidden], zeta)
    return _rebuild(snn, _affines(snn), {ly.name: B for ly, B in zip(hidden, sizes)}, zeta,
                    {"rewindowed_zeta": zeta})


def quantize_weights(snn: SpikingNetwork, bits: int) -> SpikingNetwork:
    """The network with every edge's folded weights quantised to ``bits`` bits.

    Per edge ``e`` (a chain layer has one): ``q = 2^(bits−1) − 1``, ``step_e = max|W_e| / q``,
    ``W'_e = step_e · round(W_e / step_e)`` (``2q + 1`` symmetric levels, zero kept exactly);
    biases unchanged; the windows of ``snn`` are kept. Model A needs ``S_i = Σ_j W'_ij < 1``
    (over all edges): a hidden channel whose quantised ``S`` exceeds 0.99 is rescaled as in
    the conversion's scaling step (incoming weights on every edge and bias ×f, the weights
    from it on every consumer edge ×1/f, ``f = 0.99 / S``) — this does not change the
    quantised ReLU network's function, but those weights are then ``f``-multiples of the
    grid. ``bits ≥ 2``.
    """
    if not isinstance(bits, int) or bits < 2:
        raise ArgumentError(f"weight bits must be an integer >= 2, got {bits!r}")
    q = 2 ** (bits - 1) - 1
    affines = _affines(snn)
    for affs in affines:
        for a in affs:
            m = float(a.weight.abs().max()) if a.weight.numel() else 0.0
            if m > 0:
                step = m / q
                a.weight = torch.round(a.weight / step) * step
    rescaled = 0
    if get_neuron(snn.neuron).needs_scaling:
        pops = list(snn.layers)
        for n, pop in enumerate(pops):
            if pop.readout:
                continue
            affs = affines[n]
            s = Synapses(affs).fan_in_sum()
            s_ch = s.reshape(s.shape[0], -1).amax(dim=1)
            f = torch.where(s_ch > S_MAX, S_MAX / s_ch, torch.ones_like(s_ch))
            if bool((f == 1).all()):
                continue
            rescaled += int((f != 1).sum())
            for a in affs:
                a.scale_output(f)
            out_shape = tuple(affs[0].out_shape)
            fmap = f.reshape((-1,) + (1,) * (len(out_shape) - 1)).expand(out_shape)[None]
            for m, nxt in enumerate(pops):
                for i, e in enumerate(nxt.edges):
                    if e.source == pop.name:
                        routed = nxt.route(i, fmap.contiguous())
                        affines[m][i].scale_input(1.0 / routed[0])
    sizes = {ly.name: ly.B for ly in snn.hidden_layers}
    return _rebuild(snn, affines, sizes, snn.zeta,
                    {"weight_bits": bits, "weight_bits_rescaled_channels": rescaled})


def network_for(snn: SpikingNetwork, knob: str, value: float, seed: int = 0,
                base: Perturbation | None = None) -> tuple[SpikingNetwork, Perturbation | None]:
    """The network and perturbation that realise ``knob = value`` (with ``base`` added)."""
    if knob not in KNOBS:
        raise ArgumentError(f"knob must be one of {KNOBS}, got {knob!r}")
    p = base if base is not None else Perturbation()
    p = dataclasses.replace(p, seed=seed)
    net = snn
    if knob == "zeta":
        net = rewindow(snn, float(value))
    elif knob == "jitter":
        p = dataclasses.replace(p, jitter=float(value))
    elif knob == "alpha_noise":
        if not snn.readout.model.has_alpha and value:
            raise ArgumentError("alpha noise applies to model A (neuron='alpha') only")
        p = dataclasses.replace(p, alpha_noise=float(value))
    elif knob == "time_bits":
        bits = _bits(value, knob)
        p = dataclasses.replace(p, time_bits=bits if bits else None)
    else:
        bits = _bits(value, knob)
        if bits:
            net = quantize_weights(snn, bits)
    return net, (p if p.active else None)


def _bits(value: float, knob: str) -> int:
    if value != int(value) or value < 0:
        raise ArgumentError(f"{knob} values must be non-negative integers (0 = off), got {value}")
    return int(value)


# -- results -----------------------------------------------------------------------------------
def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


@dataclass(frozen=True)
class RobustnessPoint:
    """Runs of one knob value: per-seed accuracy, agreement and certificate violations."""

    value: float
    seeds: list[int]
    accuracy: list[float]
    agreement: list[float]
    violations: list[int]

    @property
    def accuracy_mean(self) -> float:
        return _mean_std(self.accuracy)[0]

    @property
    def accuracy_std(self) -> float:
        return _mean_std(self.accuracy)[1]

    @property
    def agreement_mean(self) -> float:
        return _mean_std(self.agreement)[0]

    @property
    def agreement_std(self) -> float:
        return _mean_std(self.agreement)[1]


@dataclass(frozen=True)
class RobustnessResult:
    """Result of :func:`sweep`."""

    knob: str
    points: list[RobustnessPoint]
    samples: int
    neuron: str
    engine: str
    reference_accuracy: float
    base: Perturbation | None = None

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        return {
            "knob": self.knob,
            "samples": self.samples,
            "neuron": self.neuron,
            "engine": self.engine,
            "reference_accuracy": self.reference_accuracy,
            "base": dataclasses.asdict(self.base) if self.base is not None else None,
            "points": [
                {"value": p.value, "seeds": p.seeds, "accuracy": p.accuracy,
                 "agreement": p.agreement, "violations": p.violations,
                 "accuracy_mean": p.accuracy_mean, "accuracy_std": p.accuracy_std,
                 "agreement_mean": p.agreement_mean, "agreement_std": p.agreement_std}
                for p in self.points
            ],
        }

    def format_table(self) -> str:
        """Plain-text table: value, runs, accuracy and agreement (mean ± std), violations."""
        head = (self.knob, "runs", "accuracy", "agreement w/ ReLU", "violations/run")
        rows = [head]
        for p in self.points:
            v = _fmt_value(self.knob, p.value)
            rows.append((
                v, str(len(p.seeds)),
                f"{100 * p.accuracy_mean:6.2f} ± {100 * p.accuracy_std:.2f} %",
                f"{100 * p.agreement_mean:6.2f} ± {100 * p.agreement_std:.2f} %",
                f"{sum(p.violations) / len(p.violations):,.1f}",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = []
        for k, r in enumerate(rows):
            lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        extra = f", base {self.base}" if self.base is not None else ""
        lines.append(f"ReLU network accuracy {100 * self.reference_accuracy:.2f} % on "
                     f"{self.samples} samples; neuron {self.neuron}, {self.engine} engine{extra}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()

    def default_title(self) -> str:
        """Two lines (one is cut off at the figure's edge for the longer knob names)."""
        runs = max((len(p.seeds) for p in self.points), default=1)
        seeds = "deterministic, 1 run" if runs == 1 else f"up to {runs} seeds"
        return (f"Robustness to {_LABELS[self.knob]}\n(neuron {self.neuron}, {self.engine} "
                f"engine, {self.samples} samples, {seeds})")

    def plot(self, path: str | os.PathLike[str] | None = None, *,
             title: str | None = None) -> Figure:
        """Accuracy and agreement (mean ± std error bars) against the knob; the ReLU network's
        accuracy dashed. Bits knobs use one tick per value (0 shown as "off")."""
        from matplotlib.figure import Figure

        from onespike.analysis.plots import save_figure

        fig = Figure(figsize=(7, 4.2), layout="constrained")
        ax = fig.subplots()
        bits = self.knob in _BITS
        xs = list(range(len(self.points))) if bits else self.values
        acc = [100 * p.accuracy_mean for p in self.points]
        acc_e = [100 * p.accuracy_std for p in self.points]
        agr = [100 * p.agreement_mean for p in self.points]
        agr_e = [100 * p.agreement_std for p in self.points]
        ax.errorbar(xs, acc, yerr=acc_e, marker="o", capsize=4, label="accuracy (SNN)")
        ax.errorbar(xs, agr, yerr=agr_e, marker="s", capsize=4,
                    label="agreement with the ReLU network")
        ax.axhline(100 * self.reference_accuracy, color="0.3", ls="--", lw=1,
                   label=f"ReLU network accuracy {100 * self.reference_accuracy:.2f} %")
        if bits:
            ax.set_xticks(xs, [_fmt_value(self.knob, v) for v in self.values])
        ax.set_xlabel(_LABELS[self.knob])
        ax.set_ylabel("% of samples")
        ax.set_title(title or self.default_title(), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return save_figure(fig, path)


def _fmt_value(knob: str, value: float) -> str:
    if knob in _BITS:
        return "off" if value == 0 else str(int(value))
    return f"{value:g}"


# -- the sweep ---------------------------------------------------------------------------------
def _collect(data: Any, labels: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """A dataset / DataLoader / iterable of batches read into ``(inputs, labels or None)``."""
    from onespike.data.batching import shard_batches

    xs: list[Tensor] = []
    ys: list[Tensor] = []
    unlabelled = False
    for xb, yb in shard_batches(data, labels, what="sweep data").batches:
        xs.append(xb)
        if yb is None:
            unlabelled = True
        else:
            ys.append(yb.reshape(-1))
    if not xs:
        raise ArgumentError("no samples to sweep")
    y = None if unlabelled or not ys else torch.cat(ys)
    if y is not None and bool((y < 0).any()):
        y = None
    return torch.cat(xs), y



def sweep(
    snn: SpikingNetwork,
    x: Tensor | Any,
    labels: Tensor | None,
    knob: str,
    values: Sequence[float],
    *,
    seeds: int | Sequence[int] = 3,
    base: Perturbation | None = None,
    engine: str = "event",
    clip: bool = False,
    chunk_size: int | None = None,
    progress: bool = False,
    **engine_options: Any,
) -> RobustnessResult:
    """Sweep ``knob`` over ``values``; for each, simulate ``snn`` on ``x`` with every seed.

    Args:
        snn: the converted network.
        x: inputs (a batch); ``labels`` their classes (None: accuracy is reported as NaN).
            A dataset, a ``DataLoader`` or an iterable of ``(input, label)`` batches works
            too (pass ``labels=None``): it is read once into a batch (every run of the sweep
            simulates the same samples), its labels taken from it.
        knob: one of :data:`KNOBS`.
        values: knob values (bits knobs: integers, 0 = off; zeta > −1).
        seeds: number of seeds (0 … n−1) or the seeds themselves.
        base: a perturbation added to every run (its seed is replaced by each run's seed).
        engine: ``"event"`` (default) or ``"clock"`` (``engine_options``: ``steps=``/``dt=``).
        clip: clip inputs to the network's input range.
        chunk_size: samples per simulated chunk.
        progress: show a progress bar over runs.

    Returns:
        A :class:`RobustnessResult` (``format_table()``, ``plot(path)``, ``as_dict()``).
    """
    if knob not in KNOBS:
        raise ArgumentError(f"knob must be one of {KNOBS}, got {knob!r}")
    if not len(values):
        raise ArgumentError("give at least one knob value")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ArgumentError("give at least one seed")
    if engine not in ("event", "clock"):
        raise ArgumentError(f"engine must be 'event' or 'clock' for perturbed runs, got {engine!r}")
    if not isinstance(x, Tensor):
        x, labels = _collect(x, labels)
    with torch.no_grad():
        ref = snn.reference(x, clip=clip)[-1]
    ref_pred = ref.reshape(ref.shape[0], -1).argmax(dim=1)
    y = None if labels is None else torch.as_tensor(labels).to(ref_pred.device).reshape(-1)
    n = int(ref_pred.shape[0])
    if y is not None and y.shape[0] != n:
        raise ArgumentError(f"{y.shape[0]} labels for {n} samples")

    def acc(pred: Tensor) -> float:
        return float((pred == y).double().mean()) if y is not None and n else float("nan")

    jobs = [(v, s) for v in values for s in seed_list]
    bar = tqdm(total=len(jobs), desc=f"sweeping {knob}", unit="run", disable=not progress,
               leave=False)
    points: list[RobustnessPoint] = []
    for v in values:
        accs: list[float] = []
        agrs: list[float] = []
        viols: list[int] = []
        used: list[int] = []
        for s in seed_list:
            net, pert = network_for(snn, knob, v, s, base)
            random = pert is not None and (pert.jitter > 0 or pert.alpha_noise > 0)
            if not random and used:  # deterministic: one run is enough
                bar.update(1)
                continue
            sim = net.simulate(x, engine=engine, clip=clip, record=False, perturbation=pert,
                               chunk_size=chunk_size, **engine_options)
            pred = sim.predictions
            accs.append(acc(pred))
            agrs.append(float((pred == ref_pred).double().mean()) if n else float("nan"))
            viols.append(sim.certificate.violations)
            used.append(s)
            bar.update(1)
        points.append(RobustnessPoint(float(v), used, accs, agrs, viols))
    bar.close()
    active_base = base if base is not None and base.active else None
    return RobustnessResult(knob, points, n, snn.neuron, engine, acc(ref_pred), active_base)

