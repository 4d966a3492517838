"""Spiking layers: the per-layer parameters of the mapped network (step 5 of the pipeline).

A hidden layer ``n`` owns the window ``[t_min, t_max]`` with ``B = t_max − t_min`` and receives
spikes from the window ``[t_min − B_in, t_min]`` of the layer before (after ``routes``: max
pools and reshapes). With ``z = W x + b`` the folded pre-activation:

Model A (``neuron="alpha"``, the paper's)::

    dV/dt = alpha · H(t − t_min(n−1)) + Σ_j J_ij · H(t − t_j),   V(t_min(n−1)) = 0
    S_i = Σ_j W_ij < 1,   G_i = alpha_i / (1 − S_i),   J_ij = G_i W_ij,   alpha_i = 1
    theta_i = alpha_i · B_in + G_i · (B − b_i)
    fires once, at the first V = theta, or is forced to fire at t_max.

Model B (``neuron="constant-slope"``)::

    t < t_min:  dV/dt = Σ_j W_ij · H(t − t_j);   t ≥ t_min:  dV/dt = 1
    theta_i = B − b_i;  fires at the first t in [t_min, t_max) with V ≥ theta, else never.

Readout (last layer, does not spike): ``J = W``, ``alpha_i = b_i / B_in``; its potential at
``t_min`` equals ``b + W x`` = the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .affine import Affine
from .routing import MaxPoolRoute, ReshapeRoute, Route

__all__ = ["NEURON_MODELS", "SpikingLayer"]

NEURON_MODELS = ("alpha", "constant-slope")


class SpikingLayer(nn.Module):
    """One layer of a :class:`~onespike.SpikingNetwork` (hidden or readout).

    Buffers: ``weight`` (W), ``bias`` (b per position), ``S`` (Σ_j W_ij per neuron),
    ``theta`` (threshold per neuron), ``alpha`` (constant input current per neuron; model A and
    readout), ``G`` (model A slope gain). Windows are Python floats: ``t_min``, ``t_max``,
    ``B`` (= t_max − t_min), ``B_in`` (window of the input layer), ``X`` (calibrated maximum
    activation).
    """

    weight: Tensor
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
        affine: Affine,
        routes: list[Route],
        neuron: str,
        readout: bool,
        t_min: float,
        t_max: float,
        B_in: float,
        X: float,
        synthetic: bool = False,
    ) -> None:
        super().__init__()
        if neuron not in NEURON_MODELS:
            raise ValueError(f"neuron must be one of {NEURON_MODELS}, got {neuron!r}")
        self.name = name
        self.source = source
        self.neuron = neuron
        self.readout = readout
        self.synthetic = synthetic
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.B_in = float(B_in)
        self.X = float(X)
        self.kind = affine.kind
        self.in_shape = tuple(affine.in_shape)
        self.out_shape = tuple(affine.out_shape)
        self.dims = affine.dims
        self.stride = tuple(affine.stride)
        self.pad = tuple(affine.pad)
        self.dilation = tuple(affine.dilation)
        self.groups = affine.groups
        self.routes = routes
        self.register_buffer("weight", affine.weight.detach().clone())
        self.register_buffer("bias", affine.bias.detach().clone())
        self.register_buffer("S", affine.fan_in_sum().detach())
        for i, r in enumerate(routes):
            if isinstance(r, MaxPoolRoute) and r.sign is not None:
                self.register_buffer(f"route{i}_sign", r.sign.detach().clone())
        b = self.bias
        if readout:
            self.register_buffer("alpha", b / self.B_in)
            self.register_buffer("theta", torch.full_like(b, float("nan")))
            self.register_buffer("G", torch.ones_like(b))
        elif neuron == "alpha":
            if bool((self.S >= 1).any()):
                raise ValueError(f"layer {name}: model A needs S < 1 (scaling step missing)")
            alpha = torch.ones_like(b)
            G = alpha / (1 - self.S)
            self.register_buffer("alpha", alpha)
            self.register_buffer("G", G)
            self.register_buffer("theta", alpha * self.B_in + G * (self.B - b))
        else:
            self.register_buffer("alpha", torch.zeros_like(b))
            self.register_buffer("G", torch.ones_like(b))
            self.register_buffer("theta", self.B - b)
        # tensors derived from weight/bias/B for the certificates (engines.bounds)
        self._derived: dict[str, Tensor] = {}
        self._cache_owner: tuple[int, int, int, int, float] | None = None

    # -- windows -----------------------------------------------------------------------------
    @property
    def B(self) -> float:
        """Window size of this layer, ``t_max − t_min``."""
        return self.t_max - self.t_min

    @property
    def t_start(self) -> float:
        """When the neurons start integrating: ``t_min − B_in`` (the input layer's t_min)."""
        return self.t_min - self.B_in

    # -- derived views -----------------------------------------------------------------------
    @property
    def affine(self) -> Affine:
        """The folded ``z = W x + b`` as an :class:`Affine` (shares tensors)."""
        return Affine(self.kind, self.weight, self.bias, self.in_shape, self.out_shape,
                      self.dims, self.stride, self.pad, self.dilation, self.groups)

    def routed(self, v: Tensor) -> Tensor:
        """Apply this layer's input routing (max pools, reshapes) to values ``v``."""
        for i, r in enumerate(self.routes):
            if isinstance(r, MaxPoolRoute) and r.sign is not None:
                r.sign = getattr(self, f"route{i}_sign")
            v = r(v)
        return v

    @property
    def J(self) -> Tensor:
        """Synaptic weights ``J_ij = G_i W_ij``. Linear layers: (out, in). Convolutions: one
        kernel per neuron, shape (*out_shape, C_in/groups, *kernel) (can be large)."""
        if self.kind == "linear":
            return self.G.reshape(-1, 1) * self.weight
        c = self.out_shape[0]
        w = self.weight.reshape(c, *([1] * (len(self.out_shape) - 1)), *self.weight.shape[1:])
        g = self.G.reshape(*self.out_shape, *([1] * (self.weight.dim() - 1)))
        return g * w

    def _cache_key(self) -> tuple[int, int, int, int, float]:
        """Changes whenever weight or bias is replaced or modified in place."""
        return (self.weight.data_ptr(), self.weight._version, self.bias.data_ptr(),
                self.bias._version, self.B)

    def derived(self, name: str, make: Callable[[], Tensor]) -> Tensor:
        """A tensor computed from ``weight``/``bias``/``B`` by ``make`` (e.g. the float32
        weights of the certificates), cached under ``name`` until any of them changes."""
        key = self._cache_key()
        if self._cache_owner != key:
            self._derived = {}
            self._cache_owner = key
        t = self._derived.get(name)
        if t is None:
            t = make()
            self._derived[name] = t
        return t

    def positive_weight32(self) -> Tensor:
        """``max(W, 0)`` in float32 (cached), for the certificate's cheap upper bound."""
        return self.derived("wpos32", lambda: self.weight.clamp_min(0).to(torch.float32))

    @property
    def num_neurons(self) -> int:
        n = 1
        for s in self.out_shape:
            n *= int(s)
        return n

    def _apply(self, fn: Any, recurse: bool = True) -> SpikingLayer:  # keep caches coherent
        self._derived = {}
        self._cache_owner = None
        return super()._apply(fn, recurse)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (geometry, windows, routes)."""
        routes: list[dict[str, Any]] = []
        for r in self.routes:
            if isinstance(r, MaxPoolRoute):
                routes.append({
                    "type": "maxpool", "dims": r.dims, "kernel": list(r.kernel),
                    "stride": list(r.stride), "padding": list(r.padding),
                    "dilation": list(r.dilation), "ceil_mode": r.ceil_mode,
                    "in_shape": list(r.in_shape), "out_shape": list(r.out_shape),
                    "signed": r.sign is not None, "source": r.source,
                })
            elif isinstance(r, ReshapeRoute):
                routes.append({"type": "reshape", "in_shape": list(r.in_shape),
                               "out_shape": list(r.out_shape), "source": r.source})
        return {
            "name": self.name, "source": self.source, "neuron": self.neuron,
            "readout": self.readout, "synthetic": self.synthetic, "kind": self.kind,
            "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
            "dims": self.dims, "stride": list(self.stride), "pad": list(self.pad),
            "dilation": list(self.dilation), "groups": self.groups,
            "t_min": self.t_min, "t_max": self.t_max, "B_in": self.B_in, "X": self.X,
            "routes": routes,
        }

    def extra_repr(self) -> str:
        role = "readout" if self.readout else f"neuron={self.neuron}"
        return (f"{self.name} ({self.source}): {self.kind} {self.in_shape}->{self.out_shape}, "
                f"{role}, window=[{self.t_min:.4g}, {self.t_max:.4g}]")
