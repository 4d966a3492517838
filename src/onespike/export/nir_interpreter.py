"""An event-driven simulator of NIR graphs, written from the NIR node equations alone.

It shares no code with onespike's engines: it reads a ``nir.NIRGraph`` (any graph built from
the nodes below, not only onespike's) and integrates it exactly, for the class of graphs whose
membranes are piecewise linear in time:

* ``Input``: one spike train per element (here: at most one spike, a time or ``inf``);
* linear nodes map signals pointwise in time: ``Affine`` ``y = W x + b``, ``Conv1d``/
  ``Conv2d`` (zero padding, stride, dilation, groups, bias), ``SumPool2d``, ``Flatten``,
  ``Scale`` ``y = s ⊙ x``, ``Delay`` ``y(t) = x(t − d)`` (one delay per node);
* ``I``: ``dv/dt = r·u``, ``v(0) = 0`` (its output is ``v``);
* ``IF``: ``dv/dt = r·u``, ``v(0) = 0``, a spike when ``v > v_threshold``, then
  ``v ← v_reset``.

Every signal is kept symbolically as a sum of terms ``w · k_n(t − τ)`` over spike times ``τ``
with ``k_0 = δ`` (spikes), ``k_1 = H`` (steps), ``k_2 = (·)⁺`` (ramps); a bias ``b`` is
``b·k_1(t)``. Linear nodes act on the weights, ``I`` raises the order, ``Delay`` shifts ``τ``.
An ``IF`` receiving terms of order 0 (jumps of ``v``) and 1 (ramps of ``v``) has a piecewise
linear membrane whose first crossing is found exactly by walking its sorted breakpoints (ties
merged: only the value after all events of one instant counts). After its first spike the
simulator checks that ``v`` (restarted at ``v_reset``) does not cross again before the
horizon; a graph that would spike twice is reported (:attr:`NirRun.repeated`), since one spike
per neuron is all it represents. Outputs are evaluated at ``t_read``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from onespike.errors import ArgumentError, NotFoundError
from onespike.export.common import NirExportError, require_nir

__all__ = ["NirRun", "simulate_nir"]

_DT = torch.float64


@dataclass
class _Term:
    """``Σ_f w[i, f] · k_order(t − times[:, idx[i, f]] − delay)`` for target element ``i``."""

    times: Tensor  # (B, n_src), inf = no spike
    idx: Tensor | None  # (n_t, f) long, −1 = nothing; None = identity (f = 1)
    w: Tensor  # (n_t, f)
    delay: float
    order: int


@dataclass
class _Gather:
    """A linear map as per-target gather lists: ``y_i = Σ_f w[i, f] x[idx[i, f]]``."""

    idx: Tensor  # (n_out, f) long, −1 = padding
    w: Tensor  # (n_out, f)


@dataclass
class NirRun:
    """Result of :func:`simulate_nir`.

    ``spikes``: first-spike times of every ``IF`` and ``Input`` node, ``(B, *shape)``, ``inf``
    for none. ``outputs``: the value of every ``Output`` node's signal at ``t_read``.
    ``repeated``: per ``IF`` node, how many neurons would fire a second time before the
    horizon (0 for a faithful single-spike graph). ``t_read``, ``horizon``: the times used.
    """

    spikes: dict[str, Tensor]
    outputs: dict[str, Tensor]
    repeated: dict[str, int] = field(default_factory=dict)
    t_read: float = 0.0
    horizon: float = 0.0

    @property
    def output(self) -> Tensor:
        """The single Output's values."""
        if len(self.outputs) != 1:
            raise NotFoundError(f"graph has outputs {sorted(self.outputs)}")
        return next(iter(self.outputs.values()))

    def spike_count(self, nodes: list[str] | None = None) -> int:
        """Number of spikes (finite times) of the ``IF`` nodes ``nodes`` (default: all)."""
        keys = self.spikes if nodes is None else nodes
        return sum(int(torch.isfinite(self.spikes[k]).sum()) for k in keys)


def _arr(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _t(v: Any) -> Tensor:
    return torch.as_tensor(_arr(v), dtype=_DT)


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in np.asarray(v).reshape(-1))


def _pair(v: Any, n: int) -> tuple[int, ...]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        return (int(a[0]),) * n
    return tuple(int(x) for x in a)


def _conv_gather(weight: Tensor, in_shape: tuple[int, ...], stride: tuple[int, ...],
                 padding: tuple[int, ...], dilation: tuple[int, ...], groups: int
                 ) -> tuple[_Gather, tuple[int, ...]]:
    """Gather lists of a 2-d cross-correlation (``weight``: (C_out, C_in/groups, kh, kw)) on
    ``in_shape = (C_in, H, W)``, padding entries dropped."""
    _, h, w = in_shape
    c_out, cg, kh, kw = weight.shape
    per = c_out // groups
    idx_parts, w_parts = [], []
    out_hw: tuple[int, int] | None = None
    for g in range(groups):
        img = (torch.arange(cg * h * w, dtype=_DT) + 1 + g * cg * h * w).reshape(1, cg, h, w)
        cols = F.unfold(img, (kh, kw), dilation=dilation, padding=padding, stride=stride)[0]
        cols = cols.round().long() - 1  # (cg·kh·kw, L)
        ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        out_hw = (ho, wo)
        valid = cols >= 0
        keep = int(valid.sum(0).max()) if cols.numel() else 0
        keep = max(keep, 1)
        order = torch.argsort((~valid).to(torch.int8), dim=0, stable=True)[:keep]  # (keep, L)
        sel_idx = cols.gather(0, order)
        sel_ok = valid.gather(0, order)
        wf = weight[g * per:(g + 1) * per].reshape(per, -1)  # (per, cg·kh·kw)
        ws = wf[:, order]  # (per, keep, L)
        ws = torch.where(sel_ok[None], ws, torch.zeros((), dtype=_DT))
        idx = torch.where(sel_ok, sel_idx, torch.full_like(sel_idx, -1))
        idx_parts.append(idx.T[None].expand(per, -1, -1).reshape(per * idx.shape[1], keep))
        w_parts.append(ws.permute(0, 2, 1).reshape(per * idx.shape[1], keep))
    assert out_hw is not None
    return _Gather(torch.cat(idx_parts), torch.cat(w_parts)), (c_out, *out_hw)


class _Interpreter:
    def __init__(self, graph: Any, inputs: dict[str, Tensor], t_read: float,
                 horizon: float) -> None:
        self.nir = require_nir("simulate_nir")
        self.graph = graph
        self.inputs = inputs
        self.t_read = t_read
        self.horizon = horizon
        self.signals: dict[str, tuple[tuple[int, ...], list[_Term]]] = {}
        self.spikes: dict[str, Tensor] = {}
        self.outputs: dict[str, Tensor] = {}
        self.repeated: dict[str, int] = {}
        self.batch = next(iter(inputs.values())).shape[0]

    # -- graph order --------------------------------------------------------------------------
    def order(self) -> list[str]:
        preds: dict[str, list[str]] = {k: [] for k in self.graph.nodes}
        succ: dict[str, list[str]] = {k: [] for k in self.graph.nodes}
        for a, b in self.graph.edges:
            preds[b].append(a)
            succ[a].append(b)
        indeg = {k: len(v) for k, v in preds.items()}
        ready = [k for k, d in indeg.items() if d == 0]
        out = []
        while ready:
            k = ready.pop(0)
            out.append(k)
            for s in succ[k]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    ready.append(s)
        if len(out) != len(self.graph.nodes):
            raise NirExportError("recurrent graph", "the NIR graph",
                                 "the event-driven interpreter handles feed-forward graphs only")
        self.preds = preds
        return out

    def input_terms(self, name: str) -> tuple[tuple[int, ...] | None, list[_Term]]:
        terms: list[_Term] = []
        shape = None
        for p in self.preds[name]:
            s, t = self.signals[p]
            if shape is not None and s != shape:
                raise ArgumentError(f"node {name}: inputs of shapes {shape} and {s}")
            shape = s
            terms.extend(t)
        return shape, terms

    # -- linear maps --------------------------------------------------------------------------
    @staticmethod
    def apply(g: _Gather, terms: list[_Term]) -> list[_Term]:
        out = []
        for t in terms:
            if t.idx is None:
                w = torch.where(g.idx >= 0, g.w, torch.zeros((), dtype=_DT))
                idx = g.idx.clamp_min(0)
                out.append(_Term(t.times, idx, w * t.w.reshape(-1)[idx], t.delay, t.order))
                continue
            gi = g.idx.clamp_min(0)
            ok = (g.idx >= 0)[..., None]
            idx = t.idx[gi]  # (n_out, f1, f0)
            w = torch.where(ok, g.w[..., None] * t.w[gi], torch.zeros((), dtype=_DT))
            out.append(_Term(t.times, idx.reshape(idx.shape[0], -1),
                             w.reshape(w.shape[0], -1), t.delay, t.order))
        return out

    def bias_term(self, b: Tensor) -> _Term:
        n = b.numel()
        return _Term(torch.zeros(self.batch, 1, dtype=_DT),
                     torch.zeros(n, 1, dtype=torch.long), b.reshape(n, 1), 0.0, 1)

    def run_node(self, name: str) -> None:
        nir = self.nir
        node = self.graph.nodes[name]
        if isinstance(node, nir.Input):
            if name not in self.inputs:
                raise NotFoundError(f"no spike times given for Input node {name!r}; inputs: "
                                    f"{sorted(self.inputs)}")
            times = self.inputs[name].to(_DT)
            shape = tuple(times.shape[1:])
            expect = _shape(node.input_type["input"])
            if math.prod(shape) != math.prod(expect):
                raise ArgumentError(f"Input {name}: got shape {shape}, the graph has {expect}")
            flat = times.reshape(self.batch, -1)
            self.spikes[name] = times.reshape(self.batch, *expect)
            self.signals[name] = (expect, [_Term(flat, None, torch.ones(flat.shape[1], 1,
                                                                         dtype=_DT), 0.0, 0)])
            return
        found, terms = self.input_terms(name)
        if found is None:
            raise ArgumentError(f"node {name} has no input")
        shape = found
        if isinstance(node, nir.Output):
            self.outputs[name] = self.evaluate(terms, shape, self.t_read)
            return
        if isinstance(node, nir.Flatten):
            out_shape = (math.prod(shape),) if node.start_dim == 0 and node.end_dim in (
                -1, len(shape) - 1) else _shape(node.output_type["output"])
            self.signals[name] = (out_shape, terms)
        elif isinstance(node, nir.Delay):
            d = _arr(node.delay)
            if d.size and not np.all(d == d.reshape(-1)[0]):
                raise NirExportError("per-element delays", f"node {name}",
                                     "the interpreter supports one delay per Delay node")
            dv = float(d.reshape(-1)[0]) if d.size else 0.0
            self.signals[name] = (shape, [_Term(t.times, t.idx, t.w, t.delay + dv, t.order)
                                          for t in terms])
        elif isinstance(node, nir.Scale):
            s = _t(node.scale).reshape(-1)
            n = s.numel()
            g = _Gather(torch.arange(n).reshape(n, 1), s.reshape(n, 1))
            self.signals[name] = (shape, self.apply(g, terms))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = _t(node.weight)
            n_out, n_in = w.shape
            if math.prod(shape) != n_in:
                raise ArgumentError(f"{name}: input of {shape} for weight {tuple(w.shape)}")
            g = _Gather(torch.arange(n_in).expand(n_out, n_in), w)
            out = self.apply(g, terms)
            bias = _t(getattr(node, "bias", np.zeros(n_out)))
            if bool((bias != 0).any()):
                out.append(self.bias_term(bias))
            self.signals[name] = ((n_out,), out)
        elif isinstance(node, (nir.Conv2d, nir.Conv1d, nir.SumPool2d)):
            self.signals[name] = self.conv(node, name, shape, terms)
        elif isinstance(node, nir.I):
            r = _t(node.r).reshape(-1)
            out = [self._scale_rows(t, r, t.order + 1) for t in terms]
            self.signals[name] = (shape, out)
        elif isinstance(node, nir.IF):
            self.fire(name, node, shape, terms)
        else:
            raise NirExportError(f"node type {type(node).__name__}", f"node {name}",
                                 "not in the piecewise-linear subset the event-driven "
                                 "interpreter integrates exactly")

    @staticmethod
    def _scale_rows(t: _Term, r: Tensor, order: int) -> _Term:
        if t.idx is None:
            return _Term(t.times, None, t.w * r.reshape(-1, 1), t.delay, order)
        return _Term(t.times, t.idx, t.w * r.reshape(-1, 1), t.delay, order)

    def conv(self, node: Any, name: str, shape: tuple[int, ...], terms: list[_Term]
             ) -> tuple[tuple[int, ...], list[_Term]]:
        nir = self.nir
        if isinstance(node, nir.SumPool2d):
            c = shape[0]
            k = _pair(node.kernel_size, 2)
            weight = torch.ones(c, 1, *k, dtype=_DT)
            g, pooled = _conv_gather(weight, shape, _pair(node.stride, 2),
                                     _pair(node.padding, 2), (1, 1), c)
            return pooled, self.apply(g, terms)
        weight = _t(node.weight)
        if isinstance(node.padding, str):
            raise NirExportError("string padding", f"node {name}",
                                 f"padding {node.padding!r}; give integers")
        if isinstance(node, nir.Conv1d):
            weight2 = weight[:, :, None, :]
            shape2 = (shape[0], 1, shape[1])
            g, out2 = _conv_gather(weight2, shape2, (1, _pair(node.stride, 1)[0]),
                                   (0, _pair(node.padding, 1)[0]),
                                   (1, _pair(node.dilation, 1)[0]), int(node.groups))
            out_shape: tuple[int, ...] = (out2[0], out2[2])
        else:
            g, out_shape = _conv_gather(weight, shape, _pair(node.stride, 2),
                                        _pair(node.padding, 2), _pair(node.dilation, 2),
                                        int(node.groups))
        out = self.apply(g, terms)
        bias = _t(node.bias).reshape(-1)
        if bool((bias != 0).any()):
            n_sp = math.prod(out_shape[1:])
            out.append(self.bias_term(bias.repeat_interleave(n_sp)))
        return out_shape, out

    # -- evaluation ---------------------------------------------------------------------------
    @staticmethod
    def _events(terms: list[_Term], orders: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """``(τ, w, order)`` of shape (B, n, F) over all terms."""
        taus, ws, os_ = [], [], []
        for t in terms:
            if t.order not in orders:
                raise NirExportError(
                    f"signal of order {t.order}", "an IF or Output node",
                    "the membrane would not be piecewise linear")
            if t.idx is None:
                tau = t.times[:, :, None]
                w = t.w.reshape(1, -1, 1).expand_as(tau)
            else:
                ok = t.idx >= 0
                tau = t.times[:, t.idx.clamp_min(0)]
                tau = torch.where(ok[None], tau, torch.full((), math.inf, dtype=_DT))
                w = t.w[None].expand_as(tau)
            taus.append(tau + t.delay)
            ws.append(w)
            os_.append(torch.full(tau.shape, t.order, dtype=torch.int8))
        return torch.cat(taus, 2), torch.cat(ws, 2), torch.cat(os_, 2)

    def evaluate(self, terms: list[_Term], shape: tuple[int, ...], t: float) -> Tensor:
        tau, w, o = self._events(terms, (1, 2))
        fin = torch.isfinite(tau) & (tau <= t)
        dt = torch.where(fin, t - tau, torch.zeros((), dtype=_DT))
        k = torch.where(o == 1, fin.to(_DT), dt)
        return (w * k).sum(2).reshape(self.batch, *shape)

    def fire(self, name: str, node: Any, shape: tuple[int, ...], terms: list[_Term]) -> None:
        n = math.prod(shape)
        r = _t(node.r).reshape(-1)
        thr = _t(node.v_threshold).reshape(-1).expand(n)
        v_reset = _t(node.v_reset).reshape(-1).expand(n)
        tau, w, o = self._events(terms, (0, 1))
        w = w * r.reshape(1, -1, 1)
        horizon = self.horizon
        inf = torch.full((), math.inf, dtype=_DT)
        tau = torch.where(torch.isfinite(tau) & (tau <= horizon), tau, inf)
        tau, perm = torch.sort(tau, dim=2, stable=True)
        w = w.gather(2, perm)
        o = o.gather(2, perm)
        fin = torch.isfinite(tau)
        zero = torch.zeros((), dtype=_DT)
        a = torch.where(fin & (o == 0), w, zero)  # jumps of v
        c = torch.where(fin & (o == 1), w, zero)  # slopes of v
        tau0 = torch.where(fin, tau, zero)
        cum_a, cum_c = a.cumsum(2), c.cumsum(2)
        v = cum_a + cum_c * tau0 - (c * tau0).cumsum(2)  # v right after event k
        nxt = torch.cat([tau[..., 1:], torch.full_like(tau[..., :1], math.inf)], 2)
        end = torch.where(torch.isfinite(nxt), nxt, torch.full((), horizon, dtype=_DT))
        last = fin & (nxt > tau)  # last event of its instant
        th = thr.reshape(1, -1, 1)
        jump = last & (v > th)
        v_end = v + cum_c * (end - tau0)
        seg = last & ~jump & (cum_c > 0) & (v_end > th)
        cross = jump | seg
        t_cross = torch.where(jump, tau0, tau0 + (th - v) / torch.where(cum_c > 0, cum_c, 1.0))
        has = cross.any(2)
        k = cross.to(torch.int8).argmax(2, keepdim=True)
        t_s = t_cross.gather(2, k)[..., 0]
        # v(0) = 0 before any event: fires at t = 0 if the threshold is negative
        at0 = thr.reshape(1, -1) < 0
        first_tau = torch.where(fin[..., 0], tau0[..., 0], inf)
        before = at0 & (first_tau > 0)
        spike = torch.where(has, t_s, inf)
        spike = torch.where(before, torch.zeros((), dtype=_DT), spike)
        # single-spike check: restarted at v_reset, does v cross again before the horizon?
        v_after = torch.where(jump.gather(2, k)[..., 0], v.gather(2, k)[..., 0], thr)
        later_pts = torch.cat([torch.where(last & (tau0 > t_s[..., None]), v, -inf),
                               torch.where(last & (end > t_s[..., None]), v_end, -inf)], 2)
        peak = later_pts.max(2).values
        again = torch.isfinite(spike) & ~before & (
            v_reset.reshape(1, -1) + peak - v_after > thr.reshape(1, -1))
        self.repeated[name] = int(again.sum())
        self.spikes[name] = spike.reshape(self.batch, *shape)
        self.signals[name] = (shape, [_Term(spike, None, torch.ones(n, 1, dtype=_DT), 0.0, 0)])


def simulate_nir(
    graph: Any,
    inputs: dict[str, Tensor],
    *,
    t_read: float | None = None,
    horizon: float | None = None,
    chunk_size: int = 16,
) -> NirRun:
    """Simulate ``graph`` (a ``nir.NIRGraph``) exactly, event by event.

    ``inputs``: spike times per ``Input`` node, ``(batch, *shape)`` (one spike per element or
    ``inf``). ``t_read``: when the ``Output`` signals are read (default: graph metadata
    ``onespike.readout_time``); ``horizon``: end of the simulated time (default
    ``onespike.horizon``, else ``t_read``). Samples are simulated ``chunk_size`` at a time.
    """
    meta = getattr(graph, "metadata", {}) or {}
    if t_read is None:
        if "onespike.readout_time" not in meta:
            raise ArgumentError("t_read is needed (the graph has no onespike.readout_time)")
        t_read = float(np.asarray(meta["onespike.readout_time"]))
    if horizon is None:
        horizon = float(np.asarray(meta.get("onespike.horizon", t_read)))
    batch = next(iter(inputs.values())).shape[0]
    runs = []
    for s in range(0, batch, chunk_size):
        part = {k: v[s:s + chunk_size] for k, v in inputs.items()}
        it = _Interpreter(graph, part, float(t_read), float(horizon))
        for name in it.order():
            it.run_node(name)
        runs.append(it)
    first = runs[0]
    return NirRun(
        spikes={k: torch.cat([r.spikes[k] for r in runs]) for k in first.spikes},
        outputs={k: torch.cat([r.outputs[k] for r in runs]) for k in first.outputs},
        repeated={k: sum(r.repeated[k] for r in runs) for k in first.repeated},
        t_read=float(t_read), horizon=float(horizon))
