"""A NIR variant for time-stepped consumers that have neither ``I``, ``Delay`` nor clock inputs
(e.g. Norse, whose importer knows ``Affine``, ``CubaLIF``, ``IF``, ``LIF``, ``Conv2d``,
``SumPool2d``, ``Flatten``).

Scope: model A (``neuron="alpha"``) chains of fully connected populations (MLPs). Every
population ``n`` becomes ``Affine`` → ``CubaLIF`` with (almost) no leak,
``tau_syn = tau_mem = T`` (:data:`NO_LEAK_TAU`), ``w_in = T``, ``r = T``, so that on a grid of
step ``dt`` (Norse: ``i ← i + (dt/T)(w_in·x − i)``, ``v ← v + (dt/T)(r·i − v)``) a spike adds
its weight to the current ``i`` and ``v`` grows by ``i·dt`` per step (``w_in = T/dt`` so that
``v`` keeps the units of ``θ``): the ramp synapse of model A, up to the ``dt`` grid.

The clock is carried by extra input channels (appended after the flattened image):
``clock[0]`` at ``t = 0`` drives the first population's constant current ``alpha``;
``clock[1]`` at ``t_max`` of the hidden population forces the spike of its silent neurons (a
large current); ``clock[2]`` at ``t_start`` of the readout drives a relay neuron of the hidden
population (it fires in the same step) that starts the readout's constant current. One hidden
population only (more would need one relay per later clock). The readout spikes too: a
model-A neuron with ``G = 1``, ``alpha = 1 − S`` and window ``readout_window`` fires at
``t_min(N) + readout_window − z``, so the first readout spike is the arg-max logit.
Single spike: the consumer must reset to a very low potential (Norse:
``from_nir(..., reset_method=...)``, see ``scripts/nir_consumer.py``); NIR's ``v_reset`` is
set accordingly for consumers that honour it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from onespike.export.common import NirExportError, require_nir

if TYPE_CHECKING:
    from onespike.network.snn import SpikingNetwork

__all__ = ["NO_LEAK_TAU", "DiscreteExport", "export_nir_discrete"]

#: Time constant standing for "no leak" (units of tau_c): the leak per step is dt/T.
NO_LEAK_TAU = 1e7

#: Membrane potential a spiking neuron is reset to (single-spike convention).
RESET = -1e9


@dataclass
class DiscreteExport:
    """The graph and how to drive it: ``input_size`` image channels, then ``clock_times``
    (one spike each); ``relays``: per CubaLIF node the index of its clock relay neuron (None
    for the readout); ``readout_time``: ``t_min`` of the readout; ``horizon``: the time by
    which every readout neuron has fired for logits above ``−readout_window``."""

    graph: Any
    input_size: int
    clock_times: list[float]
    relays: dict[str, int | None]
    readout_time: float
    readout_window: float
    horizon: float


def export_nir_discrete(snn: SpikingNetwork, dt: float, *,
                        readout_window: float | None = None) -> DiscreteExport:
    """The time-stepped NIR variant of an MLP ``snn`` (model A) for step ``dt`` (see the
    module docstring); ``readout_window`` defaults to the largest excitatory drive
    ``b + B_in Σ W⁺`` of a logit (no readout spike before ``t_min``)."""
    nir = require_nir("export_nir_discrete")
    if snn.neuron != "alpha":
        raise NirExportError("constant-slope neurons", "the discrete variant",
                             "model B needs latches (IF nodes with exact timing)",
                             "use export_nir (continuous time) or convert with neuron='alpha'")
    pops = snn.populations
    for i, p in enumerate(pops):
        src = "input" if i == 0 else pops[i - 1].name
        if len(p.edges) != 1 or p.edges[0].kind != "linear" or p.edges[0].source != src or any(
                type(r).__name__ != "ReshapeRoute" for r in p.edges[0].routes):
            raise NirExportError("non-chain or convolutional population", f"population {p.name}",
                                 "the discrete variant supports chains of fully connected "
                                 "populations only", "use export_nir (continuous time)")
    n_in = int(np.prod(snn.input_shape))
    hidden = pops[:-1]
    readout = pops[-1]
    if readout_window is None:
        # the excitatory-drive bound b + B_in Σ W⁺ of every logit: no readout neuron can
        # saturate or fire before t_min (the drive certificate of docs/certificates.md)
        w = readout.weight.detach().to("cpu", torch.float64)
        bound = readout.bias.detach().to("cpu", torch.float64).reshape(-1) + (
            readout.B_in * w.clamp_min(0).sum(1))
        readout_window = max(1.0, float(bound.max()) * 1.01)
    if len(hidden) != 1:
        raise NirExportError(f"{len(hidden)} hidden populations", "the discrete variant",
                             "only one-hidden-layer MLPs are supported")
    hid = hidden[0]
    clock = [0.0, hid.t_max, readout.t_start]
    T = NO_LEAK_TAU
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([n_in + 3])})}

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy().reshape(t.shape[0], -1) if (
            t.dim() == 2) else t.detach().to("cpu", torch.float64).numpy().reshape(-1)

    def cuba(thr: np.ndarray, name: str) -> Any:
        m = thr.size
        return nir.CubaLIF(tau_syn=np.full(m, T), tau_mem=np.full(m, T), r=np.full(m, T),
                           v_leak=np.zeros(m), v_threshold=thr, v_reset=np.full(m, RESET),
                           w_in=np.full(m, T / dt), metadata={"onespike.network.population": name})

    # hidden population + relay neuron (index n)
    W, G, alpha, theta = arr(hid.weight), arr(hid.G), arr(hid.alpha), arr(hid.theta)
    n = W.shape[0]
    A = np.zeros((n + 1, n_in + 3))
    A[:n, :n_in] = G[:, None] * W
    A[:n, n_in] = alpha  # constant current from t_start = 0
    A[:n, n_in + 1] = 2.0 * (np.abs(theta).max() + 1.0) / dt  # forced spike at t_max
    A[n, n_in + 2] = 2.0 / dt  # relay: fires in the step of clock[2]
    nodes[f"{hid.name}_w"] = nir.Affine(weight=A, bias=np.zeros(n + 1))
    nodes[hid.name] = cuba(np.concatenate([theta, [1.0]]), hid.name)
    # readout: G = 1, alpha = 1 − S from t_start (the relay), window readout_window
    Wr, Sr, br = arr(readout.weight), arr(readout.S), arr(readout.bias)
    nr = Wr.shape[0]
    Ar = np.zeros((nr, n + 1))
    Ar[:, :n] = Wr
    Ar[:, n] = 1.0 - Sr
    nodes[f"{readout.name}_w"] = nir.Affine(weight=Ar, bias=np.zeros(nr))
    nodes[readout.name] = cuba((1.0 - Sr) * readout.B_in + readout_window - br, readout.name)
    edges = [("input", f"{hid.name}_w"), (f"{hid.name}_w", hid.name),
             (hid.name, f"{readout.name}_w"), (f"{readout.name}_w", readout.name),
             (readout.name, "output")]
    relays: dict[str, int | None] = {hid.name: n, readout.name: None}
    nodes["output"] = nir.Output(output_type={"output": np.array([readout.out_shape[0]])})
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=True, metadata={
        "onespike.variant": "discrete", "onespike.dt": dt,
        "onespike.clock_times": np.asarray(clock), "onespike.input_size": n_in})
    horizon = readout.t_min + readout_window + 1.0
    return DiscreteExport(graph, n_in, clock, relays, readout.t_min, readout_window, horizon)


def run_norse(exp: DiscreteExport, input_times: torch.Tensor, dt: float, *,
              stop_at_decision: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Simulate ``exp.graph`` in Norse (``norse.torch.from_nir``) on the grid ``dt``.

    ``input_times``: spike times of the image channels ``(B, input_size)`` (``inf``: none);
    a spike at ``t`` is delivered in step ``round(t/dt)``; with ``stop_at_decision`` the run
    ends in the step where every sample has a readout spike (the decision). Returns the
    readout's first-spike step times ``(B, n_out)`` (``inf``: none), and the number of spikes
    of each hidden neuron (relay excluded) ``(B, n_hidden)`` and of each readout neuron.
    """
    try:
        import norse.torch as norse_torch
    except ImportError as exc:  # pragma: no cover - environment dependent
        raise NirExportError("Norse run", "run_norse", f"norse is not installed ({exc})",
                             "pip install norse nirtorch --no-deps") from None
    import warnings

    def single_spike(z: torch.Tensor, v: torch.Tensor, reset: torch.Tensor,
                     th: torch.Tensor) -> torch.Tensor:
        return (1 - z) * v + z * RESET

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = norse_torch.from_nir(exp.graph, dt=dt, reset_method=single_spike,
                                      ignore_warnings=True)
    hid = next(iter(exp.relays))
    n_h = exp.relays[hid]
    assert n_h is not None
    b = input_times.shape[0]
    clock = torch.tensor(exp.clock_times, dtype=torch.float64).expand(b, -1)
    times = torch.cat([input_times.to(torch.float64), clock], 1)
    steps = torch.where(torch.isfinite(times), torch.round(times / dt), torch.full_like(
        times, -1.0)).long()
    n_steps = math.ceil(exp.horizon / dt) + 1
    counts = torch.zeros(b, n_h + 1)
    seen: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _i: Any, out: Any) -> None:
        seen["z"] = out[0] if isinstance(out, tuple) else out

    handle = getattr(module, hid).register_forward_hook(hook)
    first = torch.full((b, 0), math.inf)
    rd_counts = None
    state = None
    try:
        with torch.no_grad():
            for k in range(n_steps):
                s = (steps == k).to(torch.float32)
                out, state = module(s, state)
                z = out[0] if isinstance(out, tuple) else out
                if rd_counts is None:
                    rd_counts = torch.zeros(z.shape)
                    first = torch.full(z.shape, math.inf)
                rd_counts += z
                first = torch.where((z > 0) & torch.isinf(first), torch.full_like(
                    first, k * dt), first)
                counts += seen["z"]
                if stop_at_decision and bool(torch.isfinite(first).any(1).all()):
                    break
    finally:
        handle.remove()
    assert rd_counts is not None
    return first, counts[:, :n_h], rd_counts
