"""Reference spike trains in NIR's recorded-data format (``nir.NIRGraphData``, nir ≥ 1.0.8).

:func:`export_nir_data` simulates a network with onespike's event engine and records, per
node of the exported graph (names as in :func:`~onespike.export.export_nir`):

* ``input`` and every hidden population ``<p>``: observable ``spikes``, an ``EventData`` with
  ``idx`` (flat neuron index, row-major over the node's shape, ``-1`` = padding) and ``time``
  (``inf`` = padding), one row per sample, events sorted by time; ``n_neurons`` = the node's
  size, ``t_max`` = ``onespike.horizon`` (the readout time);
* the readout ``<readout>``: observable ``potential``, a ``ValuedEventData`` with one event
  per output neuron at ``onespike.readout_time`` whose value is the logit.

Written with ``nir.write_data`` (HDF5: ``/nodes/<name>/observables/<obs>/{idx,time,value}``,
attributes ``n_neurons``, ``t_max``, ``__type__``); :func:`read_nir_data` turns such a file
back into dense spike-time tensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from onespike.export.common import require_nir

if TYPE_CHECKING:
    from onespike.network.snn import SpikingNetwork

__all__ = ["events_to_times", "export_nir_data", "read_nir_data", "times_to_events"]


def times_to_events(times: Tensor, t_max: float) -> Any:
    """``nir.EventData`` of first-spike times ``(B, *shape)`` (``inf`` = no spike)."""
    nir = require_nir("NIR recorded data")
    flat = times.detach().to("cpu", torch.float64).reshape(times.shape[0], -1).numpy()
    n = flat.shape[1]
    counts = np.isfinite(flat).sum(1)
    width = max(int(counts.max()) if counts.size else 0, 1)
    idx = np.full((flat.shape[0], width), -1, dtype=np.int64)
    time = np.full((flat.shape[0], width), np.inf)
    for s in range(flat.shape[0]):
        fired = np.nonzero(np.isfinite(flat[s]))[0]
        order = fired[np.argsort(flat[s, fired], kind="stable")]
        idx[s, :order.size] = order
        time[s, :order.size] = flat[s, order]
    return nir.EventData(idx=idx, time=time, n_neurons=n, t_max=float(t_max))


def events_to_times(ev: Any, shape: tuple[int, ...] | None = None) -> Tensor:
    """Dense first-spike times ``(B, *shape)`` (``inf`` = none) of an ``EventData``."""
    idx = np.asarray(ev.idx)
    time = np.asarray(ev.time, dtype=np.float64)
    out = np.full((idx.shape[0], int(ev.n_neurons)), np.inf)
    for s in range(idx.shape[0]):
        ok = idx[s] >= 0
        out[s, idx[s, ok]] = time[s, ok]
    t = torch.from_numpy(out)
    return t if shape is None else t.reshape(t.shape[0], *shape)


def export_nir_data(snn: SpikingNetwork, x: Tensor, path: str | os.PathLike[str] | None = None,
                    *, clip: bool = False) -> Any:
    """Record the event engine's spike trains and logits for inputs ``x`` as
    ``nir.NIRGraphData`` (written with ``nir.write_data`` to ``path`` when given)."""
    nir = require_nir("NIR recorded data")
    res = snn.simulate(x, engine="event", clip=clip, record=True)
    horizon = float(snn.readout.t_min)
    nodes: dict[str, Any] = {}
    for name, times in zip(res.layer_names, res.spike_times):
        nodes[name] = nir.NIRNodeData(observables={"spikes": times_to_events(times, horizon)})
    logits = res.output.detach().to("cpu", torch.float64).reshape(res.output.shape[0], -1)
    b, n = logits.shape
    nodes[snn.readout.name] = nir.NIRNodeData(observables={"potential": nir.ValuedEventData(
        idx=np.tile(np.arange(n), (b, 1)), time=np.full((b, n), horizon),
        value=logits.numpy().copy(), n_neurons=n, t_max=horizon)})
    data = nir.NIRGraphData(nodes=nodes)
    if path is not None:
        nir.write_data(str(Path(path)), data)
    return data


def read_nir_data(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A recorded-data file as tensors: ``{node: spike times (B, n)}`` for ``spikes``
    observables and ``{node: values (B, n)}`` for valued ones (the readout's logits)."""
    nir = require_nir("NIR recorded data")
    data = nir.read_data(str(Path(path)))
    out: dict[str, Tensor] = {}
    for name, node in data.nodes.items():
        for obs_name, ev in node.observables.items():
            if isinstance(ev, nir.ValuedEventData):
                vals = np.full((ev.idx.shape[0], int(ev.n_neurons)), np.nan)
                for s in range(ev.idx.shape[0]):
                    ok = ev.idx[s] >= 0
                    vals[s, ev.idx[s, ok]] = ev.value[s, ok]
                out[name] = torch.from_numpy(vals)
            elif obs_name == "spikes":
                out[name] = events_to_times(ev)
    return out
