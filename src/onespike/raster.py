"""A simple spike raster of one sample (matplotlib, Agg backend), used by ``onespike demo``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .simulation import SimulationResult

__all__ = ["plot_raster"]


def plot_raster(sim: SimulationResult, path: str | os.PathLike[str], *, sample: int = 0,
                title: str | None = None, max_points: int = 20_000) -> Path:
    """Save a raster of sample ``sample`` of ``sim`` (recorded spike times) to ``path``.

    One panel per spiking layer, stacked top (input) to bottom: x = spike time (τ_c),
    y = neuron index (flattened), each layer's window shaded, the readout time (latency)
    marked. Layers with more than ``max_points`` neurons are subsampled evenly.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not sim.spike_times:
        raise ValueError("the simulation did not record spike times (record=True)")
    n = len(sim.spike_times)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.2 + 1.5 * n), sharex=True, squeeze=False)
    for ax, times, name, (t0, t1) in zip(axes[:, 0], sim.spike_times, sim.layer_names,
                                         sim.windows):
        t = times[sample].reshape(-1).double().cpu()
        idx = torch.arange(t.numel())
        if t.numel() > max_points:
            keep = torch.linspace(0, t.numel() - 1, max_points).long()
            t, idx = t[keep], idx[keep]
        fired = torch.isfinite(t)
        ax.axvspan(t0, t1, color="tab:blue", alpha=0.12, lw=0)
        ax.scatter(t[fired].numpy(), idx[fired].numpy(), s=2, color="black", marker="|")
        silent = int((~fired).sum())
        label = f"{name}: {int(fired.sum())} spikes" + (f", {silent} silent" if silent else "")
        ax.set_title(label, loc="left", fontsize=9)
        ax.set_ylabel("neuron index")
        ax.set_ylim(-0.5, max(int(times[sample].numel()), 1) - 0.5)
        ax.axvline(sim.latency, color="tab:red", lw=0.8, ls="--")
    axes[-1, 0].set_xlabel("time (units of τ_c); shaded: layer window, dashed: readout")
    fig.suptitle(title or f"spike raster, sample {sample} ({sim.neuron} neurons)", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
