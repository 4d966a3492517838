"""Cost of a spiking simulation: spikes, synaptic events, ANN MACs, energy, latency.

Counting rules (docs/method.md §9), per sample, for every *spiking* layer ``m`` (the input layer
and each hidden layer; the readout does not spike):

* **spikes**: neurons of ``m`` with a finite spike time. Model A: exactly one per neuron;
  model B: the non-zero activations (a silent neuron has ``t = inf``).
* **consumer edges**: the network is a DAG; the spikes of ``m`` reach every edge ``e`` whose
  source is ``m`` (a chain has exactly one, into the next layer).
* **routed spikes**: spikes that leave the routing of each consumer edge (summed over the
  edges) — a max-pool unit forwards only the *first* spike of its pooling window (the last
  one for a sign-flipped pool channel), so a pooled-away spike is counted as a spike of ``m``
  but generates no synaptic event; reshapes and slices forward every spike they keep. Pool
  units are routing, not neurons: their spikes are reported here and not added to the spike
  totals.
* **synaptic events**: ``Σ_e Σ_p [routed spike at p on e] · fanout_e(p)``, with
  ``fanout_e(p)`` the number of non-zero synapses of edge ``e`` from routed position ``p``
  (:meth:`~onespike.simulation.affine.Affine.fan_out_counts`: zero weights and zero padding
  excluded).
  Each event is one addition (of ``J_ij`` to a slope).
* **MACs**: the multiply-accumulates of the (folded) ReLU network's ``W x`` over the consumer
  edges of ``m`` for one sample (:meth:`~onespike.simulation.affine.Affine.macs`, zero weights and
  padding excluded). Summed over all layers: every edge of the network once.
* **delays**: per layer the number of its consumer edges with a delay ``d > 0`` and the
  largest delay (``tau_c``); totals over every edge of the network.
* **energy** (estimate): ``E_SNN = events · E_add`` and ``E_ANN = MACs · E_mac`` with
  ``E_add = 0.9 pJ`` and ``E_mac = 4.6 pJ`` by default (32-bit float, 45 nm: M. Horowitz,
  "Computing's energy problem", ISSCC 2014). Memory traffic is not modelled.
* **latency**: the readout's ``t_min`` (the longest path of windows through the DAG;
  ``1 + Σ_hidden B_n`` for a chain) in units of ``tau_c``.

All per-layer and total numbers are means over the simulated samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from onespike.errors import ArgumentError
from onespike.network.population import Population
from onespike.network.snn import SpikingNetwork
from onespike.simulation.driver import SimulationResult

__all__ = ["E_ADD_PJ", "E_MAC_PJ", "LayerStats", "Stats", "measure"]

#: Energy of one 32-bit float addition, picojoules (Horowitz, ISSCC 2014, 45 nm).
E_ADD_PJ = 0.9
#: Energy of one 32-bit float multiply-accumulate (4.6 pJ: multiply 3.7 + add 0.9).
E_MAC_PJ = 4.6


@dataclass(frozen=True)
class LayerStats:
    """Costs of one spiking layer's spikes (means per sample).

    ``events`` and ``macs`` belong to the synapses from this layer into its consumers
    ``target`` (comma-separated population names, in topological order); ``edges`` is the
    number of consumer edges, ``delayed_edges`` those with a delay and ``max_delay`` the
    largest delay (``tau_c``, 0 without delays).
    """

    name: str
    window: tuple[float, float]
    neurons: int
    spikes: float
    spikes_per_neuron: float
    routed_spikes: float
    target: str
    events: float
    macs: int
    edges: int = 1
    delayed_edges: int = 0
    max_delay: float = 0.0
    #: Integer totals over the samples (spikes, routed spikes, synaptic events): the means
    #: above are ``total / samples``, so merged stats do not depend on how the samples were
    #: split into batches or processes. Not part of :meth:`Stats.as_dict`.
    spike_total: int = field(default=0, repr=False)
    routed_total: int = field(default=0, repr=False)
    event_total: int = field(default=0, repr=False)


@dataclass(frozen=True)
class Stats:
    """Result of :func:`measure`: one :class:`LayerStats` per spiking layer and totals.

    Totals: ``spikes`` / ``neurons`` / ``spikes_per_neuron`` over input and hidden neurons,
    ``events`` (synaptic events), ``macs`` (ANN), ``energy_snn_pj = events · e_add_pj``,
    ``energy_ann_pj = macs · e_mac_pj``, ``latency`` (tau_c), ``edges`` /
    ``delayed_edges`` / ``max_delay`` over every edge of the network.
    """

    layers: list[LayerStats]
    samples: int
    neuron: str
    engine: str
    latency: float
    e_add_pj: float = E_ADD_PJ
    e_mac_pj: float = E_MAC_PJ

    @property
    def neurons(self) -> int:
        return sum(ly.neurons for ly in self.layers)

    @property
    def spikes(self) -> float:
        return float(sum(ly.spikes for ly in self.layers))

    @property
    def spikes_per_neuron(self) -> float:
        return self.spikes / self.neurons if self.neurons else 0.0

    @property
    def events(self) -> float:
        return float(sum(ly.events for ly in self.layers))

    @property
    def macs(self) -> int:
        return sum(ly.macs for ly in self.layers)

    @property
    def edges(self) -> int:
        return sum(ly.edges for ly in self.layers)

    @property
    def delayed_edges(self) -> int:
        return sum(ly.delayed_edges for ly in self.layers)

    @property
    def max_delay(self) -> float:
        return max((ly.max_delay for ly in self.layers), default=0.0)

    @property
    def energy_snn_pj(self) -> float:
        return self.events * self.e_add_pj

    @property
    def energy_ann_pj(self) -> float:
        return self.macs * self.e_mac_pj

    @property
    def energy_ratio(self) -> float:
        """``E_SNN / E_ANN`` (below 1: the spiking network is estimated to be cheaper)."""
        return self.energy_snn_pj / self.energy_ann_pj if self.energy_ann_pj else float("nan")

    @classmethod
    def merge(cls, parts: Sequence[Stats]) -> Stats:
        """Combine the stats of several batches (or processes) of the same network: the
        integer totals are added and the means recomputed from them, so the result is the
        same however the samples were split."""
        if not parts:
            raise ArgumentError("nothing to merge")
        total = sum(p.samples for p in parts)
        layers = [_layer_from_totals(first, total,
                                     sum(p.layers[i].spike_total for p in parts),
                                     sum(p.layers[i].routed_total for p in parts),
                                     sum(p.layers[i].event_total for p in parts))
                  for i, first in enumerate(parts[0].layers)]
        return replace(parts[0], layers=layers, samples=total)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary (per-layer rows and totals)."""
        return {
            "samples": self.samples,
            "neuron": self.neuron,
            "engine": self.engine,
            "latency": self.latency,
            "e_add_pj": self.e_add_pj,
            "e_mac_pj": self.e_mac_pj,
            "layers": [
                {**{k: v for k, v in asdict(ly).items() if not k.endswith("_total")},
                 "window": list(ly.window)} for ly in self.layers
            ],
            "totals": {
                "neurons": self.neurons,
                "spikes": self.spikes,
                "spikes_per_neuron": self.spikes_per_neuron,
                "events": self.events,
                "macs": self.macs,
                "edges": self.edges,
                "delayed_edges": self.delayed_edges,
                "max_delay": self.max_delay,
                "energy_snn_pj": self.energy_snn_pj,
                "energy_ann_pj": self.energy_ann_pj,
                "energy_ratio": self.energy_ratio,
            },
        }

    def format_table(self) -> str:
        """A plain-text table: one row per spiking layer, a total row, energy and latency."""
        head = ("layer", "window [τ_c]", "neurons", "spikes", "spk/neuron", "routed",
                "→ layer", "syn. events", "delayed", "max delay", "ANN MACs")
        rows = [head]
        for ly in self.layers:
            rows.append((
                ly.name, f"[{ly.window[0]:.3g}, {ly.window[1]:.3g}]", f"{ly.neurons:,}",
                f"{ly.spikes:,.1f}", f"{ly.spikes_per_neuron:.3f}", f"{ly.routed_spikes:,.1f}",
                ly.target, f"{ly.events:,.1f}", f"{ly.delayed_edges}/{ly.edges}",
                f"{ly.max_delay:.3g}", f"{ly.macs:,}",
            ))
        rows.append(("total", "", f"{self.neurons:,}", f"{self.spikes:,.1f}",
                     f"{self.spikes_per_neuron:.3f}", "", "", f"{self.events:,.1f}",
                     f"{self.delayed_edges}/{self.edges}", f"{self.max_delay:.3g}",
                     f"{self.macs:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = []
        for k, r in enumerate(rows):
            cells = [c.ljust(w) if i in (0, 1, 6) else c.rjust(w)
                     for i, (c, w) in enumerate(zip(r, widths))]
            lines.append("  ".join(cells).rstrip())
            if k == 0 or k == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(
            f"energy per sample: SNN {_fmt_energy(self.energy_snn_pj)} "
            f"({self.events:,.0f} events × {self.e_add_pj:g} pJ) vs ANN "
            f"{_fmt_energy(self.energy_ann_pj)} ({self.macs:,} MACs × {self.e_mac_pj:g} pJ), "
            f"ratio {self.energy_ratio:.3f}"
        )
        lines.append(f"latency: {self.latency:.4g} τ_c   delayed edges: "
                     f"{self.delayed_edges} of {self.edges} (max delay {self.max_delay:.4g} "
                     f"τ_c)   neuron model: {self.neuron}   "
                     f"samples: {self.samples}   engine: {self.engine}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()


def _layer_from_totals(layer: LayerStats, samples: int, spikes: int, routed: int,
                       events: int) -> LayerStats:
    """``layer`` with its means computed from integer totals over ``samples`` samples."""
    mean_spikes = spikes / samples if samples else 0.0
    return replace(layer, spikes=mean_spikes,
                   spikes_per_neuron=mean_spikes / layer.neurons if layer.neurons else 0.0,
                   routed_spikes=routed / samples if samples else 0.0,
                   events=events / samples if samples else 0.0,
                   spike_total=spikes, routed_total=routed, event_total=events)


def _fmt_energy(pj: float) -> str:
    for unit, f in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= f:
            return f"{pj / f:.3g} {unit}"
    return f"{pj:.3g} pJ"


def measure(
    snn: SpikingNetwork,
    x_or_sim: Tensor | SimulationResult | Any,
    *,
    engine: str = "event",
    batch_size: int = 256,
    workers: int = 0,
    e_add_pj: float = E_ADD_PJ,
    e_mac_pj: float = E_MAC_PJ,
    **simulate_options: Any,
) -> Stats:
    """Count spikes, synaptic events and ANN MACs of ``snn`` (see the module docstring).

    Args:
        snn: the spiking network.
        x_or_sim: a batch of inputs (simulated with ``engine`` and ``record=True``), a
            :class:`~onespike.SimulationResult` of ``snn`` with recorded spike times (any
            engine, perturbed or not), or a dataset / ``DataLoader`` / iterable of batches
            (streamed ``batch_size`` samples at a time, ``workers`` loader processes; the
            per-batch stats are merged exactly).
        engine: engine used when ``x_or_sim`` is a tensor.
        e_add_pj, e_mac_pj: energy per addition (SNN) and per MAC (ANN), picojoules.
        simulate_options: passed to :meth:`SpikingNetwork.simulate` (e.g. ``clip=True``,
            ``steps=`` for the clock engine).
    """
    if not isinstance(x_or_sim, (Tensor, SimulationResult)):
        from onespike.data.batching import shard_batches

        shard = shard_batches(x_or_sim, batch_size=batch_size, workers=workers)
        parts = [measure(snn, x, engine=engine, e_add_pj=e_add_pj, e_mac_pj=e_mac_pj,
                         **simulate_options) for x, _ in shard.batches]
        if not parts:
            raise ArgumentError("no samples to measure")
        return Stats.merge(parts)
    if isinstance(x_or_sim, SimulationResult):
        sim = x_or_sim
        if not sim.spike_times:
            raise ArgumentError("the simulation did not record spike times; simulate with "
                                "record=True (the default)")
    else:
        sim = snn.simulate(x_or_sim, engine=engine, record=True, **simulate_options)
    hidden = snn.hidden_layers
    if len(sim.spike_times) != len(hidden) + 1:
        raise ArgumentError(f"the simulation has {len(sim.spike_times)} recorded layers; this "
                            f"network has {len(hidden) + 1} spiking layers (input + hidden)")
    names = sim.layer_names or ["input"] + [p.name for p in hidden]
    consumers: dict[str, list[tuple[Population, int]]] = {nm: [] for nm in names}
    for pop in snn.layers:
        for i, e in enumerate(pop.edges):
            consumers.setdefault(e.source, []).append((pop, i))
    n = int(sim.spike_times[0].shape[0])
    rows: list[LayerStats] = []
    with torch.no_grad():
        for times, window, name in zip(sim.spike_times, sim.windows, names):
            neurons = int(times[0].numel()) if n else 0
            fired = torch.isfinite(times)
            t_max = window[1]
            v = torch.where(fired, t_max - times,
                            torch.full_like(times, float("-inf")))
            ev = 0
            routed_total = 0
            macs = 0
            delays: list[float] = []
            targets: list[str] = []
            for pop, i in consumers.get(name, []):
                routed = torch.isfinite(pop.route(i, v))
                aff = pop.edge_affine(i)
                fan_out = aff.fan_out_counts().to(device=routed.device)
                fan_out = fan_out.round().to(torch.int64)  # counts: exact integer sums
                ev += int((routed.to(torch.int64) * fan_out).sum())
                routed_total += int(routed.sum())
                macs += aff.macs()
                delays.append(float(pop.edges[i].delay))
                if pop.name not in targets:
                    targets.append(pop.name)
            rows.append(_layer_from_totals(LayerStats(
                name=name,
                window=(float(window[0]), float(window[1])),
                neurons=neurons,
                spikes=0.0,
                spikes_per_neuron=0.0,
                routed_spikes=0.0,
                target=", ".join(targets),
                events=0.0,
                macs=macs,
                edges=len(delays),
                delayed_edges=sum(1 for d in delays if d > 0),
                max_delay=max(delays, default=0.0),
            ), n, int(fired.sum()), routed_total, ev))
    return Stats(rows, n, snn.neuron, sim.engine, float(snn.latency), float(e_add_pj),
                 float(e_mac_pj))
