"""The converted spiking network (an ``nn.Module``): a DAG of spiking populations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast, overload

import torch
from torch import Tensor, nn

from onespike.errors import ArgumentError, ArgumentTypeError, InputRangeError, NotFoundError
from onespike.network.population import Population
from onespike.simulation.driver import ENGINES, SimulationResult, run_simulation
from onespike.simulation.perturb import Perturbation
from onespike.simulation.routing import MaxPoolRoute, Route

__all__ = ["SpikingNetwork"]

_RANGE_TOL = 1e-9

if TYPE_CHECKING:
    class _PopulationList(nn.ModuleList):
        """Typing-only view of ``SpikingNetwork.layers``: the ``nn.ModuleList`` holding the
        populations, with its items typed (the runtime object stays a plain ``nn.ModuleList``;
        it satisfies :class:`onespike.simulation.protocols.PopulationsLike`)."""

        @overload
        def __getitem__(self, idx: slice) -> _PopulationList: ...
        @overload
        def __getitem__(self, idx: int) -> Population: ...
        def __getitem__(self, idx: int | slice) -> Population | _PopulationList: ...
        def __iter__(self) -> Iterator[Population]: ...


def check_normalization(mean: Any, std: Any) -> tuple[list[float], list[float]]:
    """``(mean, std)`` of ``Normalize`` as float lists (scalars or one value per channel)."""
    m = [float(v) for v in (mean if isinstance(mean, (list, tuple)) else [mean])]
    s = [float(v) for v in (std if isinstance(std, (list, tuple)) else [std])]
    if not m or not s or any(not v > 0 or v != v or v == float("inf") for v in s) or any(
            v != v or abs(v) == float("inf") for v in m):
        raise ArgumentError(f"normalization needs finite means and positive finite stds, got "
                            f"mean={mean!r}, std={std!r}")
    return m, s


def range_tolerance(dtype: torch.dtype, low: Tensor, high: Tensor) -> float:
    """How far (in units of the normalised input ``x̂``) an input may lie outside the declared
    range and still count as inside: rounding of data normalised in ``dtype``
    (``(x − m)/s`` in float32 is off by a few float32 ulps of the bounds), at least 1e-9."""
    if not dtype.is_floating_point:
        return _RANGE_TOL
    eps = torch.finfo(dtype).eps
    span = float((high - low).min())
    scale = max(1.0, float(low.abs().max()), float(high.abs().max()))
    return max(_RANGE_TOL, 16.0 * eps * scale / span)


class SpikingNetwork(nn.Module):
    """A single-spike network equivalent to a ReLU network.

    ``snn(x)`` takes what the original model takes and returns the readout potentials (the
    logits) computed by the event engine. :meth:`simulate` gives spike times, decoded
    activations and the exactness certificate. Inputs ``x`` in the declared range
    ``[low, high]`` are sent as spikes at ``t = 1 − (x − low)/(high − low)``.
    """

    input_low: Tensor
    input_high: Tensor

    def __init__(
        self,
        layers: list[Population],
        *,
        input_shape: tuple[int, ...],
        input_low: Tensor,
        input_high: Tensor,
        output_routes: list[Route],
        neuron: str,
        zeta: float,
        meta: dict[str, Any] | None = None,
        normalization: tuple[Any, Any] | None = None,
    ) -> None:
        super().__init__()
        # cast: the list holds only the Populations passed in (see _PopulationList)
        self.layers = cast("_PopulationList", nn.ModuleList(layers))
        self.input_shape = tuple(input_shape)
        self.register_buffer("input_low", input_low.detach().clone())
        self.register_buffer("input_high", input_high.detach().clone())
        self.output_routes = output_routes
        self.neuron = neuron
        self.zeta = float(zeta)
        self.meta: dict[str, Any] = dict(meta or {})
        self.normalization: tuple[list[float], list[float]] | None = (
            None if normalization is None else check_normalization(*normalization))

    def _apply(self, fn: Any, recurse: bool = True) -> SpikingNetwork:
        """``nn.Module._apply`` (``to``, ``cuda``, ``double``, …), and the signs of signed
        max-pool output routes, which are no buffers (a route is no module), alike."""
        super()._apply(fn, recurse)
        for r in self.output_routes:
            if isinstance(r, MaxPoolRoute) and r.sign is not None:
                r.sign = fn(r.sign)
        return self

    # -- properties --------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.input_low.dtype

    @property
    def device(self) -> torch.device:
        return self.input_low.device

    @property
    def hidden_layers(self) -> list[Population]:
        """The hidden populations in topological order."""
        return [ly for ly in self.layers if not ly.readout]

    @property
    def populations(self) -> list[Population]:
        """Every population (hidden in topological order, then the readout)."""
        return list(self.layers)

    @property
    def readout(self) -> Population:
        return self.layers[-1]

    def population(self, name: str) -> Population:
        for p in self.layers:
            if p.name == name:
                return p
        raise NotFoundError(f"no population {name!r}; populations: "
                            f"{', '.join(p.name for p in self.layers)}")

    @property
    def latency(self) -> float:
        """Time of the readout: its ``t_min`` over the DAG (the longest path of windows;
        ``1 + Σ B_n`` for a chain), in units of tau_c."""
        return self.readout.t_min

    def edges(self) -> list[dict[str, Any]]:
        """Every edge: source, target, delay, kind and synapse count."""
        out = []
        for p in self.layers:
            for i, e in enumerate(p.edges):
                out.append({"source": e.source, "target": p.name, "delay": e.delay,
                            "kind": e.kind, "origin": e.origin,
                            "synapses": p.edge_affine(i).macs()})
        return out

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.output_routes:
            return tuple(self.output_routes[-1].out_shape)
        return self.readout.out_shape

    def normalize(self, images: Tensor) -> Tensor:
        """Apply the recorded input normalisation ``(x − mean)/std`` (per channel, dim 1) to
        raw ``images``; unchanged when the network records none."""
        if self.normalization is None:
            return images
        mean, std = (torch.tensor(v, dtype=images.dtype if images.is_floating_point()
                                  else self.dtype, device=images.device)
                     for v in self.normalization)
        shape = (1, -1) + (1,) * (images.dim() - 2)
        return (images - mean.reshape(shape)) / std.reshape(shape)

    # -- input encoding ----------------------------------------------------------------------
    def encode(self, x: Tensor, *, clip: bool = False, name: str = "input") -> Tensor:
        """Normalise ``x`` to ``x̂ ∈ [0, 1]`` (the input layer's values), checking it.

        Raises ``ValueError`` for NaN/inf or a wrong shape and :class:`InputRangeError` for
        values outside the declared range (unless ``clip``)."""
        if not isinstance(x, Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.input_shape:
            raise ArgumentError(
                f"{name} has shape {tuple(x.shape)}; the network expects (batch, "
                f"{', '.join(map(str, self.input_shape))})"
            )
        in_dtype = x.dtype
        if not x.is_floating_point():
            x = x.to(self.dtype)
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            raise ArgumentError(
                f"{name} contains {int(bad.sum())} NaN/inf value(s) (first at index "
                f"{tuple(int(i) for i in bad.nonzero()[0])}); clean the data before "
                "simulating"
            )
        x = x.to(device=self.device, dtype=self.dtype)
        xhat = (x - self.input_low) / (self.input_high - self.input_low)
        if not clip and x.numel():
            lo, hi = float(xhat.min()), float(xhat.max())
            tol = range_tolerance(in_dtype, self.input_low, self.input_high)
            if lo < -tol or hi > 1 + tol:
                low = x.new_tensor(float(self.input_low.min()))
                high = x.new_tensor(float(self.input_high.max()))
                d = 8 if in_dtype in (torch.float32, torch.float16, torch.bfloat16) else 12
                raise InputRangeError(
                    f"{name} has values in [{float(x.min()):.{d}g}, {float(x.max()):.{d}g}] "
                    f"outside the declared input_range (per element [{float(low):.{d}g}, "
                    f"{float(high):.{d}g}] at the widest; normalised min {lo:.10g}, max "
                    f"{hi:.10g}, tolerance {tol:.3g} for {str(in_dtype).replace('torch.', '')} "
                    "inputs). Pass clip=True to clip inputs to the range, or convert "
                    "with a wider input_range",
                    tensor=name, observed=(float(x.min()), float(x.max())),
                    declared=(float(low), float(high)), normalised=(lo, hi), tolerance=tol,
                    dtype=in_dtype,
                )
        return xhat.clamp(0.0, 1.0)

    # -- simulation --------------------------------------------------------------------------
    def forward(self, x: Tensor, *, clip: bool = False, engine: str = "event") -> Tensor:
        """Readout potentials (= logits) of the spiking network for ``x``."""
        return self.simulate(x, engine=engine, clip=clip, record=False).output

    def simulate(
        self,
        x: Tensor,
        engine: str = "event",
        *,
        clip: bool = False,
        record: bool = True,
        certify: bool = True,
        chunk_size: int | None = None,
        max_memory: int | None = None,
        progress: bool = False,
        perturbation: Perturbation | None = None,
        **engine_options: Any,
    ) -> SimulationResult:
        """Simulate the network on a batch ``x``.

        ``engine``: ``"event"`` (exact dynamics: true first threshold crossings), ``"closed"``
        (``t = t_max − ReLU(z)``; ``certify`` adds the certificate) or ``"clock"``
        (time-stepped, see :mod:`onespike.simulation.engines.clock`). ``record``: keep every layer's
        spike times (memory: one float per neuron and sample). The batch is processed in
        chunks of ``chunk_size`` samples (default: chosen from ``max_memory`` or the free
        memory). ``perturbation``: a :class:`~onespike.Perturbation` (jitter, alpha noise,
        spike-time quantisation) applied inside the dynamics (event engine).
        """
        if engine not in ENGINES:
            raise ArgumentError(f"engine must be one of {ENGINES}, got {engine!r}")
        extras: dict[str, object] = {}
        if engine == "clock":
            from onespike.simulation.engines.clock import ClockEngine

            eng: Any = ClockEngine(self, **engine_options)
            extras = eng.extras()
        else:
            if engine_options:
                raise ArgumentTypeError(f"unexpected options for engine {engine!r}: "
                                        f"{sorted(engine_options)}")
            if perturbation is not None and perturbation.active and engine != "event":
                raise ArgumentError("perturbations are simulated by the event (or clock) engine "
                                    "only")
            from onespike.simulation.engines import ClosedEngine, EventEngine

            eng = EventEngine(certify) if engine == "event" else ClosedEngine(certify)
        xhat = self.encode(x, clip=clip)
        return run_simulation(self, xhat, eng, record=record, chunk_size=chunk_size,
                              max_memory=max_memory, progress=progress,
                              perturbation=perturbation, extras=extras)

    def reference(self, x: Tensor, *, clip: bool = False) -> list[Tensor]:
        """The folded ReLU network on ``x``: every hidden population's activation (in
        topological order), then the logits (shaped like the model's output). Independent of
        the spiking dynamics."""
        values: dict[str, Tensor] = {"input": self.encode(x, clip=clip)}
        outs: list[Tensor] = []
        with torch.no_grad():
            for pop in self.layers:
                v = pop.z([pop.route(i, values[e.source]) for i, e in enumerate(pop.edges)])
                if not pop.readout:
                    v = v.clamp_min(0)
                values[pop.name] = v
                outs.append(v)
            for r in self.output_routes:
                outs[-1] = r(outs[-1])
        return outs

    # -- description -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Layers, windows, latency, neuron and synapse counts (JSON-friendly)."""
        layers = []
        for ly in self.layers:
            d = ly.describe()
            d["neurons"] = ly.num_neurons
            d["synapses"] = ly.synapses.macs()
            for i, e in enumerate(d["edges"]):
                e["synapses"] = ly.edge_affine(i).macs()
            layers.append(d)
        delays = [e.delay for ly in self.layers for e in ly.edges]
        inputs = 1
        for s in self.input_shape:
            inputs *= s
        return {
            "neuron": self.neuron,
            "zeta": self.zeta,
            "dtype": str(self.dtype).replace("torch.", ""),
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "latency": self.latency,
            "input_neurons": inputs,
            "hidden_neurons": sum(ly.num_neurons for ly in self.hidden_layers),
            "synapses": sum(d["synapses"] for d in layers),
            "edges": sum(len(ly.edges) for ly in self.layers),
            "delayed_edges": sum(1 for d in delays if d > 0),
            "max_delay": max(delays, default=0.0),
            "layers": layers,
            "normalization": (None if self.normalization is None else
                              {"mean": self.normalization[0], "std": self.normalization[1]}),
            "meta": self.meta,
        }

    def extra_repr(self) -> str:
        return (f"neuron={self.neuron}, zeta={self.zeta}, input_shape={self.input_shape}, "
                f"latency={self.latency:.4g}")
