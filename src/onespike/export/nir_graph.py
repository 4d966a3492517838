"""NIR graph writer: a :class:`~onespike.SpikingNetwork` as a NIR graph with the same
continuous-time dynamics (encoding version :data:`ENCODING_VERSION`, docs/nir.md).

Time is in units of tau_c. Every node follows the NIR 1.0 equations: ``I`` (integrator)
``dv/dt = r·u``; ``IF`` ``dv/dt = r·u``, a spike when ``v > v_threshold``, then
``v ← v_reset``; ``Affine``/``Conv`` ``y = W x + b``; ``SumPool2d``; ``Flatten``; ``Delay``
``y(t) = x(t − d)``. A spike is a unit delta, so a delta into an ``IF`` is a jump of ``r`` and a
delta into an ``I`` a step of its output.

Hidden population ``p`` of model A (``neuron="alpha"``; ``u = t − t_start``)::

    <p>_syn : I(r=1)      u_syn = Σ_e W_e · s_e(t − d_e) + (1 − S) δ(t − t_start)
    <p>     : IF(r=G, v_threshold=θ + K⁰, v_reset)
              dv/dt = G · (Σ_e W_e H(t − t_e) + (1 − S) H(t − t_start))
                      + K⁰ δ(t − t_start) + K^f δ(t − t_max)

so ``v = alpha·(t − t_start)⁺ + Σ J (t − t_j)⁺`` with ``J = G W``, ``alpha = G(1 − S)``: model
A's membrane. ``K^f`` (a jump at ``t_max``) forces the spike of a neuron that has not fired;
``K⁰ = 1 − θ`` where ``θ ≤ 0`` (else 0) makes such a neuron fire at ``t_start`` as onespike's
does, not at ``t = 0``; ``v_reset`` lies so far below threshold that no neuron fires twice before
the readout time (the single-spike convention, metadata ``onespike.single_spike``).

Hidden population of model B (``neuron="constant-slope"``): the same ``<p>_syn`` without the
``(1 − S)`` term; per edge a *latch* ``<p>_e<i>_latch`` (IF, threshold 1.5) that fires at
``t_min`` if and only if its input has spiked by then, feeding ``−W_e`` back into
``<p>_syn``; ``+1·δ(t − t_min)`` into ``<p>_syn``. So the synaptic current is ``Σ W H(t − t_j)``
before ``t_min`` and exactly 1 after — model B's switch to slope 1, with silent inputs
contributing nothing. ``<p>``: IF(r=1, v_threshold=θ + K) with jumps ``+K`` at ``t_min``
(firing enabled in the window) and ``−M`` at ``t_max`` (no spike after it).

Readout: ``readout_syn`` I(r=1) (edges plus ``alpha δ(t − t_start)``, ``alpha = b/B_in``) →
``readout`` I(r=1) → ``output``: the Output carries the readout potential; its value at
``onespike.readout_time = t_min`` of the readout is the logits.

Routes: a max pool (earliest spike of each window) is ``SumPool2d`` → IF(r=1,
v_threshold=0.5), a relay that fires at the first spike it receives; a signed channel (latest
spike) uses threshold ``n − 1/2`` with ``n`` the number of inputs of the window. Flatten is
``Flatten``; a delay ``d > 0`` is ``Delay``.

Clock: NIR has no spike source, so the graph has Input nodes ``clock`` (shape ``(K,)``) and,
for convolutional populations, ``clock2d`` ``(K, 1, 1)`` / ``clock1d`` ``(K, 1)``: channel ``k``
carries one spike at ``onespike.clock_times[k]`` (see :func:`clock_spikes`). A clock spike
reaches every neuron of a population with its own weight through a broadcasting ``Affine``
(``(N, K)``) or a convolution of the one-pixel clock with a flipped per-position kernel
(``padding = kernel − 1``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from onespike.export.common import NirExportError, require_nir
from onespike.simulation.routing import MaxPoolRoute, ReshapeRoute, SliceRoute

if TYPE_CHECKING:
    from onespike.network.population import Population
    from onespike.network.snn import SpikingNetwork

__all__ = ["ENCODING_VERSION", "clock_spikes", "encode_input", "export_nir"]

#: Version of the onespike NIR encoding (metadata ``onespike.encoding_version``).
ENCODING_VERSION = 1


def _np(t: Tensor | float) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach().to("cpu", torch.float64).numpy().copy()
    return np.asarray(t, dtype=np.float64)


def encode_input(snn: SpikingNetwork, x: Tensor, *, clip: bool = False) -> Tensor:
    """Spike times of the graph's ``input`` node for raw inputs ``x``: ``t = 1 − x̂`` with
    ``x̂ = (x − low)/(high − low)``; model B sends no spike (``inf``) where ``x̂ = 0``.
    float64, shape ``(batch, *input_shape)``."""
    xhat = snn.encode(x, clip=clip).to(torch.float64)
    t = 1.0 - xhat
    if not snn.populations[0].model.zero_spikes:
        t = torch.where(xhat > 0, t, torch.full_like(t, math.inf))
    return t


def clock_spikes(graph: Any, batch: int) -> dict[str, Tensor]:
    """Spike times of the clock Input nodes of an exported graph for a batch: channel ``k``
    fires once at ``onespike.clock_times[k]``. Keys: the clock node names present."""
    times = torch.as_tensor(np.asarray(graph.metadata["onespike.clock_times"],
                                       dtype=np.float64))
    out = {}
    for name, shape in (("clock", (-1,)), ("clock1d", (-1, 1)), ("clock2d", (-1, 1, 1))):
        if name in graph.nodes:
            out[name] = times.reshape(shape).unsqueeze(0).expand(batch, *times.reshape(
                shape).shape).clone()
    return out


class _Builder:
    """Collects nodes and edges of the graph."""

    def __init__(self, nir: Any, snn: SpikingNetwork) -> None:
        self.nir = nir
        self.snn = snn
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.clock_times: list[float] = []
        self.horizon = float(snn.readout.t_min)

    # -- plumbing ----------------------------------------------------------------------------
    def add(self, name: str, node: Any, *sources: str) -> str:
        if name in self.nodes:
            raise AssertionError(f"duplicate NIR node {name}")
        self.nodes[name] = node
        for s in sources:
            self.edges.append((s, name))
        return name

    def clock_index(self, t: float) -> int:
        for i, c in enumerate(self.clock_times):
            if c == t:
                return i
        self.clock_times.append(float(t))
        return len(self.clock_times) - 1

    def clock_into(self, name: str, target: str, shape: tuple[int, ...],
                   pulses: list[tuple[float, np.ndarray]], meta: dict[str, Any]) -> None:
        """A node ``name`` delivering, for each ``(t, w)`` of ``pulses``, a delta of weight
        ``w`` (array of ``shape``) at clock time ``t`` into ``target``. The clock is only
        sized at the end, so the weights are stored and the node built in :meth:`finish`."""
        for t, _ in pulses:
            self.clock_index(t)
        self._pending.append((name, target, shape, pulses, meta))

    _pending: list[tuple[str, str, tuple[int, ...], list[tuple[float, np.ndarray]],
                         dict[str, Any]]]

    def finish_clock(self) -> None:
        nir = self.nir
        k = len(self.clock_times)
        kinds = {len(s) for _, _, s, _, _ in self._pending}
        if 1 in kinds:
            self.add("clock", nir.Input(input_type={"input": np.array([k])},
                                        metadata={"onespike.role": "clock"}))
        if 2 in kinds:
            self.add("clock1d", nir.Input(input_type={"input": np.array([k, 1])},
                                          metadata={"onespike.role": "clock"}))
        if 3 in kinds:
            self.add("clock2d", nir.Input(input_type={"input": np.array([k, 1, 1])},
                                          metadata={"onespike.role": "clock"}))
        for name, target, shape, pulses, meta in self._pending:
            maps = np.zeros((k, *shape))
            for t, w in pulses:
                maps[self.clock_index(t)] += np.broadcast_to(w, shape)
            if len(shape) == 1:
                node = nir.Affine(weight=maps.T.copy(), bias=np.zeros(shape[0]), metadata=meta)
                self.add(name, node, "clock")
            elif len(shape) == 2:
                c, n = shape
                w = np.ascontiguousarray(np.transpose(maps, (1, 0, 2))[:, :, ::-1])
                node = nir.Conv1d(input_shape=1, weight=w, stride=1, padding=n - 1,
                                  dilation=1, groups=1, bias=np.zeros(c), metadata=meta)
                self.add(name, node, "clock1d")
            else:
                c, h, wd = shape
                w = np.ascontiguousarray(np.transpose(maps, (1, 0, 2, 3))[:, :, ::-1, ::-1])
                node = nir.Conv2d(input_shape=(1, 1), weight=w, stride=(1, 1),
                                  padding=(h - 1, wd - 1), dilation=(1, 1), groups=1,
                                  bias=np.zeros(c), metadata=meta)
                self.add(name, node, "clock2d")
            self.edges.append((name, target))

    # -- edges -------------------------------------------------------------------------------
    def route_chain(self, pop: Population, i: int, source: str,
                    source_shape: tuple[int, ...], prefix: str) -> tuple[str, tuple[int, ...]]:
        """Nodes for edge ``i``'s routes and delay; returns the last node and its shape."""
        nir = self.nir
        e = pop.edges[i]
        where = f"population {pop.name}, edge {i} (from {e.source})"
        cur, shape = source, tuple(source_shape)
        routes = pop.edge_routes(i)
        for j, r in enumerate(routes):
            if isinstance(r, SliceRoute):
                raise NirExportError(
                    "slice route", where, f"NIR 1.0 has no slicing node (route {r.slices})",
                    "Networks with strided slicing (e.g. option-A ResNet shortcuts) cannot be "
                    "exported; use 1x1 convolution shortcuts")
            if isinstance(r, ReshapeRoute):
                last_reshapes = all(isinstance(q, ReshapeRoute) for q in routes[j:])
                if e.kind == "linear" and last_reshapes:
                    continue  # the Linear reads the flattened value (Flatten added below)
                if tuple(r.out_shape) == (math.prod(r.in_shape),):
                    cur = self.add(f"{prefix}_flat{j}", nir.Flatten(
                        input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1), cur)
                    shape = tuple(r.out_shape)
                    continue
                raise NirExportError(
                    "reshape route", where,
                    f"reshape {tuple(r.in_shape)} -> {tuple(r.out_shape)} is not a flatten, and "
                    "NIR 1.0 has only Flatten", "")
            assert isinstance(r, MaxPoolRoute)
            cur, shape = self.max_pool(r, cur, shape, f"{prefix}_pool{j}", where, pop)
        if e.kind == "linear" and len(shape) > 1:
            cur = self.add(f"{prefix}_flat", nir.Flatten(
                input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1), cur)
            shape = (math.prod(shape),)
        if e.delay > 0:
            cur = self.add(f"{prefix}_delay", nir.Delay(delay=np.full(shape, float(e.delay))),
                           cur)
        return cur, shape

    def max_pool(self, r: MaxPoolRoute, cur: str, shape: tuple[int, ...], name: str,
                 where: str, pop: Population) -> tuple[str, tuple[int, ...]]:
        nir = self.nir
        if r.dims != 2:
            raise NirExportError("1-d max pool", where, "NIR 1.0 has SumPool2d only",
                                 "use 2-d pooling")
        if any(d != 1 for d in r.dilation):
            raise NirExportError("dilated max pool", where,
                                 f"dilation {tuple(r.dilation)}: NIR SumPool2d has no dilation")
        ones = torch.ones((1, *shape), dtype=torch.float64)
        counts = F.avg_pool2d(ones, r.kernel, r.stride, r.padding, ceil_mode=False,
                              count_include_pad=True, divisor_override=1)[0]
        if tuple(counts.shape) != tuple(r.out_shape):
            raise NirExportError(
                "ceil-mode max pool", where,
                f"output {tuple(r.out_shape)} differs from the floor-mode size "
                f"{tuple(counts.shape)} of NIR SumPool2d", "")
        # valid inputs per window (padding positions hold no neuron)
        valid = F.avg_pool2d(F.pad(ones, (r.padding[1],) * 2 + (r.padding[0],) * 2), r.kernel,
                             r.stride, 0, divisor_override=1)[0]
        sign = r.sign
        thr = torch.full(tuple(r.out_shape), 0.5, dtype=torch.float64)
        if sign is not None:
            s = sign.to("cpu", torch.float64).reshape(-1, 1, 1).expand_as(thr)
            thr = torch.where(s < 0, valid - 0.5, thr)
        kernel = math.prod(r.kernel)
        pool = self.add(f"{name}_sum", nir.SumPool2d(
            kernel_size=np.array(r.kernel), stride=np.array(r.stride),
            padding=np.array(r.padding)), cur)
        thr_np = _np(thr)
        relay = self.add(f"{name}", nir.IF(
            r=np.ones(r.out_shape), v_threshold=thr_np, v_reset=thr_np - kernel - 1.0,
            metadata={"onespike.role": "max-pool relay", "onespike.network.population": pop.name,
                      "onespike.signed": sign is not None}), pool)
        return relay, tuple(r.out_shape)

    def weight_node(self, pop: Population, i: int, name: str, in_shape: tuple[int, ...],
                    weight: np.ndarray, src: str) -> str:
        nir = self.nir
        e = pop.edges[i]
        where = f"population {pop.name}, edge {i} (from {e.source})"
        if e.kind == "linear":
            node = nir.Affine(weight=weight, bias=np.zeros(weight.shape[0]))
        else:
            pads = tuple(e.pad)
            if any(pads[2 * d] != pads[2 * d + 1] for d in range(e.dims)):
                raise NirExportError(
                    "asymmetric padding", where, f"padding {pads} (left/right per dim): NIR "
                    "convolutions pad symmetrically", "")
            pad = tuple(pads[0::2])
            groups = e.groups
            if groups > 1:
                # nir 1.0.8 infers a convolution's input channels as weight.shape[1], which
                # is wrong for groups > 1: write the equivalent block-diagonal dense kernel
                c_out, cg = weight.shape[:2]
                dense = np.zeros((c_out, cg * groups, *weight.shape[2:]))
                per = c_out // groups
                for g in range(groups):
                    dense[g * per:(g + 1) * per, g * cg:(g + 1) * cg] = weight[
                        g * per:(g + 1) * per]
                weight, groups = dense, 1
            if e.dims == 2:
                node = nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=weight,
                                  stride=tuple(e.stride), padding=pad,
                                  dilation=tuple(e.dilation), groups=groups,
                                  bias=np.zeros(weight.shape[0]))
            elif e.dims == 1:
                node = nir.Conv1d(input_shape=int(in_shape[1]), weight=weight,
                                  stride=int(e.stride[0]), padding=int(pad[0]),
                                  dilation=int(e.dilation[0]), groups=groups,
                                  bias=np.zeros(weight.shape[0]))
            else:
                raise NirExportError(f"{e.dims}-d convolution", where,
                                     "NIR 1.0 has Conv1d and Conv2d only")
        return self.add(name, node, src)


def _abs_drive(pop: Population) -> Tensor:
    """``Σ_e Σ_j |W_e,ij|`` per neuron (padding excluded), float64."""
    total = torch.zeros(pop.out_shape, dtype=torch.float64)
    for i in range(len(pop.edges)):
        a = pop.edge_affine(i)
        w = a.weight.detach().to("cpu", torch.float64).abs()
        ones = torch.ones((1, *a.in_shape), dtype=torch.float64)
        a64 = type(a)(a.kind, w, a.bias.to("cpu", torch.float64), a.in_shape, a.out_shape,
                      a.dims, a.stride, a.pad, a.dilation, a.groups)
        total += a64.linear(ones, w)[0]
    return total


def export_nir(
    snn: SpikingNetwork,
    path: str | os.PathLike[str] | None = None,
    *,
    type_check: bool = True,
) -> Any:
    """The NIR graph (``nir.NIRGraph``) of ``snn``, with the same continuous-time dynamics;
    written to ``path`` with ``nir.write`` when given.

    Both neuron models are exported (model A: IF neurons with a clocked constant current and a
    forced spike at ``t_max``; model B: latches switching the current to slope 1 at ``t_min``
    — see the module docstring and docs/nir.md). The graph's inputs are ``input`` (spikes at
    :func:`encode_input`) and the clock nodes (:func:`clock_spikes`); its output ``output`` is
    the readout potential, equal to the logits at ``metadata["onespike.readout_time"]``.

    Raises:
        NirNotInstalledError: the ``nir`` package is missing (``pip install 'onespike[nir]'``).
        NirExportError: a slice route, a non-flatten reshape, asymmetric padding, a 1-d,
            dilated or ceil-mode max pool, or a 3-d convolution (no faithful NIR form).
    """
    nir = require_nir("export_nir")
    b = _Builder(nir, snn)
    b._pending = []
    model = snn.populations[0].model
    model_a = model.zero_spikes
    horizon = b.horizon
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(snn.input_shape)}
    outs: dict[str, str] = {"input": "input"}
    b.add("input", nir.Input(input_type={"input": np.array(snn.input_shape)},
                             metadata={"onespike.role": "input"}))
    for pop in snn.populations:
        name = pop.name
        shape = tuple(pop.out_shape)
        syn = f"{name}_syn"
        role = "readout synaptic current" if pop.readout else "synaptic current"
        b.add(syn, nir.I(r=np.ones(shape), metadata={"onespike.role": role,
                                                     "onespike.network.population": name}))
        for i, e in enumerate(pop.edges):
            prefix = f"{name}_e{i}"
            cur, cshape = b.route_chain(pop, i, outs[e.source], shapes[e.source], prefix)
            w = _np(pop.edge_weight(i))
            b.weight_node(pop, i, f"{prefix}_w", cshape, w, cur)
            b.edges.append((f"{prefix}_w", syn))
            if not model_a and not pop.readout:
                latch = b.add(f"{prefix}_latch", nir.IF(
                    r=np.ones(cshape), v_threshold=np.full(cshape, 1.5),
                    v_reset=np.full(cshape, -1.5),
                    metadata={"onespike.role": "latch", "onespike.network.population": name}), cur)
                b.clock_into(f"{prefix}_latch_clock", latch, cshape,
                             [(pop.t_min, np.ones(cshape))], {"onespike.role": "clock"})
                b.weight_node(pop, i, f"{prefix}_unw", cshape, -w, latch)
                b.edges.append((f"{prefix}_unw", syn))
        S = _np(pop.S)
        if pop.readout:
            b.clock_into(f"{name}_syn_clock", syn, shape, [(pop.t_start, _np(pop.alpha))],
                         {"onespike.role": "clock"})
            b.add(name, nir.I(r=np.ones(shape), metadata={
                "onespike.role": "readout potential", "onespike.network.population": name,
                "onespike.readout_time": pop.t_min}), syn)
            out_shape = tuple(snn.output_shape)
            for r in snn.output_routes:
                if not isinstance(r, ReshapeRoute):
                    raise NirExportError("output route", "the readout",
                                         f"{type(r).__name__} after the readout", "")
            b.add("output", nir.Output(output_type={"output": np.array(shape)},
                                       metadata={"onespike.output_shape": np.array(out_shape)}),
                  name)
            continue
        theta = _np(pop.theta)
        drive = _np(_abs_drive(pop))
        if model_a:
            G = _np(pop.G)
            k0 = np.where(theta <= 0, 1.0 - theta, 0.0)
            rate = G * (drive + np.abs(1.0 - S))
            kf = np.abs(theta) + k0 + rate * (pop.t_max - pop.t_start) + 1.0
            thr = theta + k0
            v_reset = thr - kf - rate * (horizon - pop.t_start) - 1.0
            b.clock_into(f"{name}_syn_clock", syn, shape, [(pop.t_start, 1.0 - S)],
                         {"onespike.role": "clock"})
            pulses = [(pop.t_max, kf / G)]
            if bool((k0 > 0).any()):
                pulses.append((pop.t_start, k0 / G))
            b.clock_into(f"{name}_clock", name, shape, pulses, {"onespike.role": "clock"})
            r_if = G
        else:
            k = np.abs(theta) + drive * pop.B_in + 1.0
            m = (horizon - pop.t_max) + 1.0
            thr = theta + k
            v_reset = thr - k - (horizon - pop.t_min) - 1.0
            b.clock_into(f"{name}_syn_clock", syn, shape, [(pop.t_min, np.ones(shape))],
                         {"onespike.role": "clock"})
            b.clock_into(f"{name}_clock", name, shape,
                         [(pop.t_min, k), (pop.t_max, -np.full(shape, m))],
                         {"onespike.role": "clock"})
            r_if = np.ones(shape)
        b.add(name, nir.IF(r=r_if, v_threshold=thr, v_reset=v_reset, metadata={
            "onespike.role": "neuron", "onespike.network.population": name,
            "onespike.t_min": pop.t_min, "onespike.t_max": pop.t_max,
            "onespike.t_start": pop.t_start}), syn)
        shapes[name] = shape
        outs[name] = name
    b.finish_clock()
    meta = _graph_metadata(snn, b.clock_times, horizon)
    graph = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=meta, type_check=type_check)
    if path is not None:
        p = Path(path)
        nir.write(str(p), graph)
    return graph


def _graph_metadata(snn: SpikingNetwork, clock_times: list[float], horizon: float
                    ) -> dict[str, Any]:
    pops = [{"name": p.name, "t_min": p.t_min, "t_max": p.t_max, "t_start": p.t_start,
             "shape": list(p.out_shape), "readout": bool(p.readout),
             "sources": [{"source": e.source, "delay": e.delay} for e in p.edges]}
            for p in snn.populations]
    return {
        "onespike.format": "onespike single-spike (time-to-first-spike) network",
        "onespike.encoding_version": ENCODING_VERSION,
        "onespike.neuron": snn.neuron,
        "onespike.time_unit": "tau_c",
        "onespike.single_spike": True,
        "onespike.input_encoding": ("t = 1 - (x - input_low)/(input_high - input_low); "
                                    + ("every input spikes" if snn.populations[0].model
                                       .zero_spikes else "no spike where x = input_low")),
        "onespike.input_low": _np(snn.input_low),
        "onespike.input_high": _np(snn.input_high),
        "onespike.clock_times": np.asarray(clock_times, dtype=np.float64),
        "onespike.readout_time": float(snn.readout.t_min),
        "onespike.horizon": float(horizon),
        "onespike.populations": json.dumps(pops),
    }

