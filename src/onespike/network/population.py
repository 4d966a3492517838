"""Spiking populations: the per-population parameters of the mapped network (step 5).

A hidden population ``p`` owns the window ``[t_min, t_max]`` (``B = t_max − t_min``). Its
edges bring the spikes of its sources ``s``, each delayed by ``d = t_min − t_max(s) ≥ 0`` so
that every source's spikes are referenced to ``t_min``: an input value ``x_j = t_max(s) − t_j``
arrives at ``t_min − x_j``. The population integrates from ``t_start = t_min − B_in`` with
``B_in = max_s B_s``; with ``z = b + Σ_e A_e(x_e)`` its neuron model
(:mod:`onespike.simulation.neurons`)
turns ``z`` into spike times ``t = t_max − ReLU(z)``. The readout does not spike: its
potential at ``t_min`` equals ``z`` (the logits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from onespike.errors import ArgumentError, UnavailableAttributeError
from onespike.simulation.affine import Affine, keep_packed
from onespike.simulation.neurons import NEURON_MODELS, NeuronModel, get_neuron
from onespike.simulation.ops import positive_float32, positive_part
from onespike.simulation.rounding import bf16_up, in_pieces
from onespike.simulation.routing import MaxPoolRoute, Route, SliceRoute
from onespike.simulation.synapses import Synapses

__all__ = ["EdgeSpec", "Population", "SpikingLayer", "describe_route"]


@dataclass
class EdgeSpec:
    """Geometry of one incoming edge: source population, routes, delay and the Linear/Conv
    layout of its weights (held by the population as buffer ``edge<i>_weight``)."""

    source: str
    routes: list[Route]
    kind: str
    in_shape: tuple[int, ...]
    dims: int = 0
    stride: tuple[int, ...] = ()
    pad: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    delay: float = 0.0
    origin: str = ""


def describe_route(r: Route) -> dict[str, Any]:
    if isinstance(r, MaxPoolRoute):
        return {
            "type": "maxpool", "dims": r.dims, "kernel": list(r.kernel),
            "stride": list(r.stride), "padding": list(r.padding),
            "dilation": list(r.dilation), "ceil_mode": r.ceil_mode,
            "in_shape": list(r.in_shape), "out_shape": list(r.out_shape),
            "signed": r.sign is not None, "source": r.source,
        }
    if isinstance(r, SliceRoute):
        return {"type": "slice", "slices": [list(s) for s in r.slices],
                "in_shape": list(r.in_shape), "out_shape": list(r.out_shape),
                "source": r.source}
    return {"type": "reshape", "in_shape": list(r.in_shape), "out_shape": list(r.out_shape),
            "source": r.source}


class Population(nn.Module):
    """One population of a :class:`~onespike.SpikingNetwork` (hidden or readout).

    Buffers: ``edge<i>_weight`` (W of edge i), ``bias`` (b per position), ``S`` (Σ_j W_ij over
    all edges), ``theta``, ``alpha``, ``G`` (see the neuron model). Windows are Python floats:
    ``t_min``, ``t_max``, ``B`` (= t_max − t_min), ``B_in`` (largest source window), ``X``
    (calibrated maximum activation). ``edges`` hold each edge's source, routes and delay.
    """

    bias: Tensor
    S: Tensor
    theta: Tensor
    alpha: Tensor
    G: Tensor

    def __init__(
        self,
        *,
        name: str,
        source: str,
        edges: list[EdgeSpec],
        weights: list[Tensor],
        bias: Tensor,
        neuron: str,
        readout: bool,
        t_min: float,
        t_max: float,
        B_in: float,
        X: float,
        role: str = "relu",
    ) -> None:
        super().__init__()
        if neuron not in NEURON_MODELS:
            raise ArgumentError(f"neuron must be one of {NEURON_MODELS}, got {neuron!r}")
        if len(edges) != len(weights) or not edges:
            raise ArgumentError(f"population {name}: one weight tensor per edge is needed")
        self.name = name
        self.source = source
        self.neuron = neuron
        self.readout = readout
        self.role = "readout" if readout else role
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.B_in = float(B_in)
        self.X = float(X)
        self.out_shape = tuple(int(s) for s in bias.shape)
        self.edges = edges
        for i, (e, w) in enumerate(zip(edges, weights)):
            self.register_buffer(f"edge{i}_weight", w.detach().clone())
            for j, r in enumerate(e.routes):
                if isinstance(r, MaxPoolRoute) and r.sign is not None:
                    self.register_buffer(f"edge{i}_route{j}_sign", r.sign.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.register_buffer("S", self.synapses.fan_in_sum().detach())
        params = self.model.parameters(self.S, self.bias, self.B, self.B_in, readout=readout,
                                       name=name)
        for key in ("alpha", "G", "theta"):
            self.register_buffer(key, params[key])
        self._derived: dict[str, Any] = {}
        self._cache_owner: tuple[Any, ...] | None = None

    # -- windows -----------------------------------------------------------------------------
    @property
    def B(self) -> float:
        """Window size of this population, ``t_max − t_min``."""
        return self.t_max - self.t_min

    @property
    def t_start(self) -> float:
        """When the neurons start integrating: ``t_min − B_in``."""
        return self.t_min - self.B_in

    @property
    def model(self) -> NeuronModel:
        """The neuron model (readout: the non-spiking integrator of model A)."""
        return get_neuron(self.neuron)

    @property
    def synthetic(self) -> bool:
        """True for a population whose ReLU is inert (e.g. an average pool of a ReLU output)."""
        return self.role == "pool"

    # -- edges -------------------------------------------------------------------------------
    def edge_weight(self, i: int) -> Tensor:
        return getattr(self, f"edge{i}_weight")

    def edge_affine(self, i: int) -> Affine:
        e = self.edges[i]
        return Affine(e.kind, self.edge_weight(i), self.bias, e.in_shape, self.out_shape,
                      e.dims, e.stride, e.pad, e.dilation, e.groups)

    def edge_routes(self, i: int) -> list[Route]:
        routes = self.edges[i].routes
        for j, r in enumerate(routes):
            if isinstance(r, MaxPoolRoute) and r.sign is not None:
                r.sign = getattr(self, f"edge{i}_route{j}_sign")
        return routes

    def route(self, i: int, v: Tensor) -> Tensor:
        """Apply edge ``i``'s routing (max pools, reshapes, slices) to source values ``v``."""
        for r in self.edge_routes(i):
            v = r(v)
        return v

    @property
    def synapses(self) -> Synapses:
        """``Σ_e A_e`` over the edges (shares the weight buffers)."""
        return Synapses([self.edge_affine(i) for i in range(len(self.edges))])

    @property
    def sources(self) -> list[str]:
        return [e.source for e in self.edges]

    def z(self, xs: list[Tensor]) -> Tensor:
        """``b + Σ_e A_e(x_e)`` for routed, delay-aligned edge inputs ``xs`` (each sample's
        value independent of the batch it is computed in)."""
        return self.synapses.linear(xs, rows_invariant=True).add_(self.bias)

    # -- single-edge views (chains) ------------------------------------------------------------
    def _only_edge(self) -> int:
        if len(self.edges) != 1:
            raise UnavailableAttributeError(
                f"population {self.name} has {len(self.edges)} edges; use edge_affine(i) / "
                "synapses")
        return 0

    @property
    def weight(self) -> Tensor:
        """W of the population's single edge (chains)."""
        return self.edge_weight(self._only_edge())

    @property
    def affine(self) -> Affine:
        """The single edge's ``z = W x + b`` as an :class:`Affine` (shares tensors)."""
        return self.edge_affine(self._only_edge())

    @property
    def routes(self) -> list[Route]:
        return self.edge_routes(self._only_edge())

    @property
    def kind(self) -> str:
        return self.edges[self._only_edge()].kind

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.edges[self._only_edge()].in_shape

    def routed(self, v: Tensor) -> Tensor:
        return self.route(self._only_edge(), v)

    @property
    def J(self) -> Tensor:
        """Synaptic weights ``J_ij = G_i W_ij`` of a single-edge population (Linear: (out,
        in); convolutions: one kernel per neuron, (*out_shape, C_in/groups, *kernel))."""
        w = self.weight
        if self.kind == "linear":
            return self.G.reshape(-1, 1) * w
        c = self.out_shape[0]
        wr = w.reshape(c, *([1] * (len(self.out_shape) - 1)), *w.shape[1:])
        g = self.G.reshape(*self.out_shape, *([1] * (w.dim() - 1)))
        return g * wr

    # -- caches ------------------------------------------------------------------------------
    def _cache_key(self) -> tuple[Any, ...]:
        """Changes whenever a weight or the bias is replaced or modified in place."""
        ws = [self.edge_weight(i) for i in range(len(self.edges))]
        return (tuple((w.data_ptr(), w._version) for w in ws), self.bias.data_ptr(),
                self.bias._version, self.B)

    def derived(self, name: str, make: Callable[[], Any]) -> Any:
        """A value computed from the weights/bias/B by ``make`` (e.g. the float32 weights of
        the certificates), cached under ``name`` until any of them changes."""
        key = self._cache_key()
        if self._cache_owner != key:
            self._derived = {}
            self._cache_owner = key
        t = self._derived.get(name)
        if t is None:
            t = make()
            self._derived[name] = t
        return t

    def positive_weight32(self) -> list[Tensor]:
        """``max(W_e, 0)`` in float32 per edge (cached), for the drive certificate."""
        return self.derived("wpos32", lambda: [
            in_pieces(self.edge_weight(i), positive_float32, torch.float32)
            for i in range(len(self.edges))])

    def positive_weight_bf16(self) -> list[Tensor]:
        """``max(W_e, 0)`` rounded *up* to bfloat16 per edge (cached; every entry ≥ the exact
        weight), for the bfloat16 drive certificate."""
        return self.derived("wpos_bf16", lambda: [
            keep_packed(bf16_up(self.edge_weight(i), positive_part))
            for i in range(len(self.synapses.affines))])

    @property
    def num_neurons(self) -> int:
        n = 1
        for s in self.out_shape:
            n *= int(s)
        return n

    def _apply(self, fn: Any, recurse: bool = True) -> Population:  # keep caches coherent
        self._derived = {}
        self._cache_owner = None
        return super()._apply(fn, recurse)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (edges with geometry, routes and delays; windows)."""
        edges = []
        for e in self.edges:
            edges.append({
                "source": e.source, "kind": e.kind, "in_shape": list(e.in_shape),
                "dims": e.dims, "stride": list(e.stride), "pad": list(e.pad),
                "dilation": list(e.dilation), "groups": e.groups, "delay": e.delay,
                "origin": e.origin, "routes": [describe_route(r) for r in e.routes],
            })
        return {
            "name": self.name, "source": self.source, "neuron": self.neuron,
            "readout": self.readout, "role": self.role, "out_shape": list(self.out_shape),
            "t_min": self.t_min, "t_max": self.t_max, "B_in": self.B_in, "X": self.X,
            "edges": edges,
        }

    def extra_repr(self) -> str:
        role = "readout" if self.readout else f"neuron={self.neuron}"
        srcs = ", ".join(f"{e.source}(+{e.delay:.3g})" if e.delay else e.source
                         for e in self.edges)
        return (f"{self.name} ({self.source}): {self.out_shape} <- [{srcs}], {role}, "
                f"window=[{self.t_min:.4g}, {self.t_max:.4g}]")


#: The name of populations in the chain-only releases.
SpikingLayer = Population
