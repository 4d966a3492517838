"""Figures of a spiking simulation: rasters, membrane traces, spike-time histograms, readout.

Every function returns a :class:`matplotlib.figure.Figure` (built without ``pyplot``, so no
global state and no display is needed) and writes a PNG when ``path`` is given. Time is in
units of the neuron time constant ``tau_c``.

Membrane potentials are reconstructed exactly from the piecewise-linear dynamics (the
unperturbed model; ``s_j`` are the input spike times of the sample over every incoming edge
of the population, routed and delayed (``s_j = t_source + d_e``), an input arriving before
``t_start = t_min − B_in`` counts from ``t_start``, a silent input never; the formulas are the
neuron model's :meth:`~onespike.simulation.neurons.NeuronModel.membrane`):

    model A (hidden):  V_i(t) = alpha_i (t − t_start)⁺ + Σ_j J_ij (t − s_j)⁺,   J = G·W
    model B (hidden):  V_i(t) = Σ_j W_ij (min(t, t_min(n)) − s_j)⁺ + (t − t_min(n))⁺
    readout:           V_i(t) = alpha_i (t − t_start)⁺ + Σ_j W_ij (t − s_j)⁺,  alpha = b / B_in

A hidden neuron spikes when ``V_i`` first reaches ``theta_i``; the readout's potential at
``t_min(N)`` is the logits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

import matplotlib
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import Tensor

from onespike.errors import ArgumentError, OutOfRangeError
from onespike.network.population import Population
from onespike.network.snn import SpikingNetwork
from onespike.simulation.driver import SimulationResult
from onespike.simulation.neurons import get_neuron

__all__ = [
    "membrane_potential",
    "plot_histograms",
    "plot_output",
    "plot_raster",
    "plot_trace",
    "readout_potential",
    "save_figure",
]

_TIME = "time [τ_c]"
# tab10 is registered as a ListedColormap whose colors are a tuple of RGB triples
_COLORS = cast(Sequence[tuple[float, float, float]],
               cast(ListedColormap, matplotlib.colormaps["tab10"]).colors)


def _np(t: Tensor) -> Any:
    """A NumPy copy for matplotlib, from any device."""
    return t.detach().cpu().numpy()


def save_figure(fig: Figure, path: str | os.PathLike[str] | None, dpi: int = 120) -> Figure:
    """Write ``fig`` as PNG to ``path`` (parent folders created); returns ``fig``."""
    if path is not None:
        folder = os.path.dirname(os.fspath(path))
        if folder:
            os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")
    return fig


def _sim_of(snn: SpikingNetwork, x_or_sim: Tensor | SimulationResult,
            sample: int) -> tuple[SimulationResult, int]:
    """A recorded simulation and the sample index in it (simulating one sample if given x)."""
    if isinstance(x_or_sim, SimulationResult):
        if not x_or_sim.spike_times:
            raise ArgumentError("the simulation did not record spike times (use record=True)")
        n = int(x_or_sim.spike_times[0].shape[0])
        if not -n <= sample < n:
            raise OutOfRangeError(f"sample {sample} out of range for {n} simulated samples")
        return x_or_sim, sample
    x = x_or_sim
    if x.dim() == len(snn.input_shape):
        x = x[None]
    if not -x.shape[0] <= sample < x.shape[0]:
        raise OutOfRangeError(f"sample {sample} out of range for a batch of {x.shape[0]}")
    return snn.simulate(x[sample : sample + 1], engine="event", record=True), 0


def _layer_index(snn: SpikingNetwork, layer: int | str) -> int:
    names = [ly.name for ly in snn.layers]
    if isinstance(layer, str):
        if layer not in names:
            raise ArgumentError(f"no layer {layer!r}; layers: {', '.join(names)}")
        return names.index(layer)
    idx = int(layer)
    if not -len(names) <= idx < len(names):
        raise OutOfRangeError(f"layer {layer} out of range ({len(names)} layers: "
                              f"{', '.join(names)})")
    return idx % len(names)


def membrane_potential(
    snn: SpikingNetwork,
    sim: SimulationResult,
    layer: int | str,
    neurons: Sequence[int] | Tensor,
    t: Tensor,
    *,
    sample: int = 0,
) -> Tensor:
    """Exact membrane potential ``V_i(t)`` of ``neurons`` (flat indices into the layer's
    output shape) of ``snn.layers[layer]`` (index or name; the readout too) at times ``t``
    (1-D), given the recorded input spikes of ``sample`` in ``sim``. Shape (len(neurons),
    len(t)). See the module docstring for the formulas; the trajectory is the free one
    (it is not stopped at the spike)."""
    idx = _layer_index(snn, layer)
    ly: Population = snn.layers[idx]
    if not sim.spike_times:
        raise ArgumentError("the simulation did not record spike times (use record=True)")
    names = list(sim.layer_names)
    index = torch.as_tensor(neurons, dtype=torch.long).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= ly.num_neurons):
        raise OutOfRangeError(f"neuron indices must be in [0, {ly.num_neurons}) for {ly.name}")
    arrivals = []
    for i, e in enumerate(ly.edges):
        if e.source not in names:
            raise ArgumentError(f"the simulation has no spikes of {e.source!r} (source of "
                                f"{ly.name}); layers recorded: {', '.join(names)}")
        s = sim.spike_times[names.index(e.source)][sample : sample + 1].to(snn.dtype)
        # routing commutes with time shifts (first spike of a pool window), then the delay
        s_in = -ly.route(i, -s) + e.delay
        arrivals.append(s_in.clamp_min(ly.t_start))
    index = index.to(arrivals[0].device)
    # times and weights over all edges (M, K); padding and silent inputs never arrive
    xs, ws = ly.synapses.gather(arrivals, index, fill=float("inf"))
    t = torch.as_tensor(t, dtype=snn.dtype, device=xs.device).reshape(-1)
    model = get_neuron("alpha") if ly.readout else ly.model  # readout: model A's integrator
    tt = model.synaptic_time(ly, t)
    ramps = (tt[None, None, :] - xs[:, :, None]).clamp_min(0)  # (M, K, T); inf → 0
    syn = (ws[:, :, None] * ramps).sum(dim=1)
    return model.membrane(ly, t, syn, index)


def readout_potential(snn: SpikingNetwork, sim: SimulationResult, t: Tensor, *,
                      sample: int = 0) -> Tensor:
    """Readout potentials (num_outputs, len(t)) for ``t ≤ t_min(N)``; at ``t_min(N)`` they
    equal the logits (before any output route)."""
    ly = snn.readout
    return membrane_potential(snn, sim, len(snn.layers) - 1, range(ly.num_neurons), t,
                              sample=sample)


def _shade_windows(ax: object, windows: Sequence[tuple[float, float]], own: int | None) -> None:
    for k, (lo, hi) in enumerate(windows):
        color = _COLORS[k % len(_COLORS)]
        ax.axvspan(lo, hi, color=color, alpha=0.18 if k == own else 0.05, lw=0)  # type: ignore[attr-defined]


def plot_raster(
    sim: SimulationResult,
    path: str | os.PathLike[str] | None = None,
    *,
    sample: int = 0,
    max_neurons: int | None = 4000,
    title: str | None = None,
) -> Figure:
    """Spike raster of one sample: one panel per layer (input, hidden…), spike time on x,
    neuron index (flat) on y, every layer's window shaded (its own darker). Layers with more
    than ``max_neurons`` neurons show an evenly spaced subset (stated in the panel title)."""
    if not sim.spike_times:
        raise ArgumentError("the simulation did not record spike times (use record=True)")
    n_layers = len(sim.spike_times)
    fig = Figure(figsize=(9, 1.2 + 1.5 * n_layers), layout="constrained")
    axes = fig.subplots(n_layers, 1, sharex=True, squeeze=False)[:, 0]
    t_end = max(hi for _, hi in sim.windows)
    for k, (ax, times, name, window) in enumerate(
        zip(axes, sim.spike_times, sim.layer_names, sim.windows)
    ):
        tt = times[sample].reshape(-1).detach().cpu().double()
        idx = torch.arange(tt.numel())
        shown = ""
        if max_neurons is not None and tt.numel() > max_neurons:
            idx = torch.linspace(0, tt.numel() - 1, max_neurons).round().long().unique()
            shown = f", {idx.numel()} of {tt.numel()} neurons shown"
        sel = tt[idx]
        fired = torch.isfinite(sel)
        _shade_windows(ax, sim.windows, k)
        ax.scatter(_np(sel[fired]), _np(idx[fired]), s=4 if idx.numel() > 200 else 12,
                   color=_COLORS[k % len(_COLORS)], marker="|" if idx.numel() <= 200 else ".",
                   linewidths=1.0)
        silent = int((~torch.isfinite(tt)).sum())
        extra = f", {silent} silent" if silent else ""
        ax.set_title(f"{name}: window [{window[0]:.3g}, {window[1]:.3g}] τ_c, "
                     f"{int(torch.isfinite(tt).sum())} spikes{extra}{shown}", fontsize=9,
                     loc="left")
        ax.set_ylabel("neuron")
        ax.set_ylim(-0.5, max(tt.numel() - 0.5, 0.5))
        ax.set_xlim(0, t_end * 1.02)
    axes[-1].set_xlabel(_TIME)
    fig.suptitle(title or f"Spike raster, sample {sample} ({sim.engine} engine, "
                 f"neuron {sim.neuron})")
    return save_figure(fig, path)


def _own_times(sim: SimulationResult, name: str) -> Tensor:
    """Recorded spike times of population ``name`` (looked up in ``sim.layer_names``)."""
    if name not in sim.layer_names:
        raise ArgumentError(f"the simulation has no spikes of {name!r}; layers recorded: "
                            f"{', '.join(sim.layer_names)}")
    return sim.spike_times[sim.layer_names.index(name)]


def _default_neurons(snn: SpikingNetwork, sim: SimulationResult, idx: int, sample: int,
                     count: int = 4) -> list[int]:
    """A few neurons of the layer that fire inside their window, at spread-out times."""
    ly = snn.layers[idx]
    if ly.readout:
        return list(range(min(count, ly.num_neurons)))
    t = _own_times(sim, ly.name)[sample].reshape(-1)
    inside = ((t >= ly.t_min) & (t < ly.t_max)).nonzero().reshape(-1)
    if inside.numel() == 0:
        return list(range(min(count, ly.num_neurons)))
    order = inside[torch.argsort(t[inside])]
    pick = torch.linspace(0, order.numel() - 1, min(count, order.numel())).round().long()
    return [int(i) for i in order[pick].unique()]


def plot_trace(
    snn: SpikingNetwork,
    x_or_sim: Tensor | SimulationResult,
    layer: int | str = 0,
    *,
    neurons: Sequence[int] | None = None,
    sample: int = 0,
    points: int = 600,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Membrane potential traces of ``neurons`` of ``snn.layers[layer]`` (a hidden layer or
    the readout) for one sample: ``V(t)`` from ``t_start`` to ``t_max``, threshold ``theta``
    (dashed), window boundaries, and the spike (marker at ``(t_spike, theta)``). After its
    spike a neuron stays quiet, so the trace is drawn solid up to the spike and dotted after.
    ``x_or_sim``: inputs (one sample is simulated with the event engine) or a recorded
    simulation. Default neurons: up to 4 that fire inside their window at spread-out times.
    """
    sim, sample = _sim_of(snn, x_or_sim, sample)
    idx = _layer_index(snn, layer)
    ly = snn.layers[idx]
    if ly.readout:
        return plot_output(snn, sim, sample=sample, path=path)
    chosen = list(neurons) if neurons is not None else _default_neurons(snn, sim, idx, sample)
    t = torch.linspace(ly.t_start, ly.t_max, points, dtype=snn.dtype)
    V = membrane_potential(snn, sim, idx, chosen, t, sample=sample)
    spikes = _own_times(sim, ly.name)[sample].reshape(-1)
    theta = ly.theta.reshape(-1)
    fig = Figure(figsize=(8, 1.0 + 2.0 * max(1, len(chosen))), layout="constrained")
    axes = fig.subplots(max(1, len(chosen)), 1, sharex=True, squeeze=False)[:, 0]
    for c, (ax, i, v) in enumerate(zip(axes, chosen, V)):
        color = _COLORS[c % len(_COLORS)]
        ts = float(spikes[i])
        th = float(theta[i])
        ax.axvspan(ly.t_start, ly.t_min, color="0.85", alpha=0.5, lw=0)
        ax.axvspan(ly.t_min, ly.t_max, color="tab:orange", alpha=0.12, lw=0)
        for tb in (ly.t_start, ly.t_min, ly.t_max):
            ax.axvline(tb, color="0.4", lw=0.8)
        fired = ts < float("inf")
        before = t <= ts if fired else torch.ones_like(t, dtype=torch.bool)
        ax.plot(_np(t[before]), _np(v[before]), color=color, lw=1.6, label="V(t)")
        if bool((~before).any()):
            ax.plot(_np(t[~before]), _np(v[~before]), color=color, lw=0.8, ls=":",
                    label="after the spike")
        ax.axhline(th, color="k", lw=0.8, ls="--", label=f"θ = {th:.4g}")
        if fired:
            ax.plot([ts], [th], marker="*", ms=12, color=color, mec="k", mew=0.5,
                    label=f"spike t = {ts:.4g}")
        value = f"value {ly.t_max - ts:.4g}" if fired else "silent"
        ax.set_title(f"{ly.name} neuron {i}: {value}", fontsize=9, loc="left")
        ax.set_ylabel("V [a.u.]")
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel(_TIME)
    fig.suptitle(f"{ly.name}: membrane potentials (neuron model {ly.neuron}), sample {sample}\n"
                 f"grey = input window, orange = own window [{ly.t_min:.3g}, {ly.t_max:.3g}]",
                 fontsize=10)
    return save_figure(fig, path)


def plot_histograms(
    sim: SimulationResult,
    path: str | os.PathLike[str] | None = None,
    *,
    bins: int = 50,
    log: bool = True,
    title: str | None = None,
) -> Figure:
    """Per-layer histograms of the spike times of every neuron over all simulated samples
    (silent neurons are counted in the panel title), each layer's window shaded. ``log``:
    logarithmic counts (model A's zero activations pile up at ``t_max``)."""
    if not sim.spike_times:
        raise ArgumentError("the simulation did not record spike times (use record=True)")
    n_layers = len(sim.spike_times)
    cols = min(3, n_layers)
    rows = (n_layers + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for k, (times, name, (lo, hi)) in enumerate(
        zip(sim.spike_times, sim.layer_names, sim.windows)
    ):
        ax = axes[k]
        tt = times.reshape(-1).detach().cpu().double()
        fin = tt[torch.isfinite(tt)]
        ax.axvspan(lo, hi, color=_COLORS[k % len(_COLORS)], alpha=0.15, lw=0)
        if fin.numel():
            ax.hist(_np(fin), bins=bins, color=_COLORS[k % len(_COLORS)], log=log)
        silent = tt.numel() - fin.numel()
        ax.set_title(f"{name} [{lo:.3g}, {hi:.3g}]" + (f", {silent} silent" if silent else ""),
                     fontsize=9)
        ax.set_xlabel(_TIME)
        ax.set_ylabel("spikes (log scale)" if log else "spikes")
    for ax in axes[n_layers:]:
        ax.set_visible(False)
    samples = int(sim.spike_times[0].shape[0])
    fig.suptitle(title or f"Spike-time histograms over {samples} samples "
                 f"({sim.engine} engine, neuron {sim.neuron})")
    return save_figure(fig, path)


def plot_output(
    snn: SpikingNetwork,
    x_or_sim: Tensor | SimulationResult,
    *,
    sample: int = 0,
    class_names: Sequence[str] | None = None,
    points: int = 400,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Readout potentials of one sample over the last hidden window, ending at the logits at
    ``t_min(N)`` (marked), the predicted class drawn thick."""
    sim, sample = _sim_of(snn, x_or_sim, sample)
    ly = snn.readout
    t = torch.linspace(ly.t_start, ly.t_min, points, dtype=snn.dtype)
    V = readout_potential(snn, sim, t, sample=sample)
    logits = V[:, -1]
    pred = int(torch.argmax(logits))
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, v in enumerate(V):
        name = class_names[i] if class_names is not None and i < len(class_names) else str(i)
        ax.plot(_np(t), _np(v), lw=2.4 if i == pred else 1.0,
                color=_COLORS[i % len(_COLORS)], label=f"{name}: {float(logits[i]):.3g}")
    ax.scatter(_np(torch.full((len(logits),), ly.t_min)), _np(logits), color="k",
               s=12, zorder=3)
    ax.axvline(ly.t_min, color="0.3", lw=0.8)
    ax.set_xlabel(_TIME)
    ax.set_ylabel("readout potential (→ logit)")
    pname = (class_names[pred] if class_names is not None and pred < len(class_names)
             else str(pred))
    ax.set_title(f"{ly.name}: potentials over [{ly.t_start:.3g}, {ly.t_min:.3g}] τ_c, "
                 f"sample {sample}, predicted {pname}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncol=2, title="logits")
    return save_figure(fig, path)
