"""The clock-driven engine: membrane potentials advanced on a fixed time grid.

This is what time-stepped neuromorphic hardware does. Every window ``[t_min(m), t_max(m)]``
(the input window ``[0, 1]``, then every hidden layer's) is divided into ``K_m`` ticks of
length ``dt_m = B_m / K_m``: ``K_m = steps`` (option ``steps=``), or ``K_m = ⌈B_m / dt⌉``
(option ``dt=``: ticks of at most ``dt``, so that every window boundary lies on the grid).
Hidden layer ``n`` integrates on the grid points ``t_0 = t_min(n−1) < t_1 < … < t_max(n)``
of the windows ``n−1`` and ``n``, with forward Euler steps

    V_i(t_0) = 0,      V_i(t_{k+1}) = V_i(t_k) + (t_{k+1} − t_k) · I_i(t_k),

    model A:   I_i(t_k) = alpha_i + Σ_j J_ij · [s_j ≤ t_k],        J_ij = G_i W_ij,
    model B:   I_i(t_k) = Σ_j W_ij · [s_j ≤ t_k]   if t_k < t_min(n),   1 otherwise,

where ``s_j`` are the (routed: first spike of each max-pool window) input spike times as
*registered* on the grid: an input arriving at ``s`` is seen from the first grid point
``≥ s`` on. The synaptic sum ``Σ_j W_ij [s_j ≤ t_k]`` is one GEMM/convolution of the 0/1
arrival indicator per time step (time steps are batched into blocks; after the last input has
arrived the current is constant and is not recomputed).

A neuron's spike is registered at the first grid point with ``V ≥ theta``. Model A: any grid
point from ``t_min(n−1)`` on, forced at ``t_max(n)`` if none; model B: only grid points in
``[t_min(n), t_max(n))``, silent otherwise. The input layer's spikes ``t = 1 − x̂`` are
registered at the first grid point of the input window ``≥ t``. The readout (``J = W``,
``alpha = b / B_in``) integrates the same way over the last hidden window; its potential at
``t_min(N)`` is the output.

Because registered spikes lie on grid points, the synaptic current is constant between grid
points and Euler integration is exact for the registered inputs: the only error is the
registration (rounding up to the grid) of each layer's spikes, at most one tick per layer, so
the decoded error shrinks ∝ dt.

Certificate: ``early`` = neurons whose registered spike is before ``t_min`` of their layer;
``saturated`` = neurons with ``z = W x + b > B`` for the registered inputs
``x_j = t_min(n) − s_j``; ``checked`` = every neuron (each crossing was found by simulation).

Perturbations (:class:`~onespike.Perturbation`) act as in the event engine, with the same
random draws in the same order: ``alpha_noise`` multiplies ``alpha_i`` in the current (model A),
``jitter`` / ``time_bits`` act on every layer's registered spike times before they are sent
on (the receiving layer registers the perturbed times on its own grid).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import psutil
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..certificate import Certificate
from ..layers import SpikingLayer
from ..perturb import Perturbation

if TYPE_CHECKING:
    from ..network import SpikingNetwork
    from ..simulation import SimulationResult

__all__ = ["DEFAULT_STEPS", "clock_grids", "simulate_clock"]

#: Ticks per window when neither ``steps`` nor ``dt`` is given.
DEFAULT_STEPS = 64


def _window_grid(t_min: float, t_max: float, ticks: int, dtype: torch.dtype,
                 device: torch.device) -> Tensor:
    g = t_min + (t_max - t_min) * torch.arange(ticks + 1, dtype=torch.float64) / ticks
    g[0], g[-1] = t_min, t_max  # boundaries exactly (shared with the neighbouring window)
    return g.to(device=device, dtype=dtype)


def clock_grids(
    network: SpikingNetwork, *, steps: int | None = None, dt: float | None = None
) -> list[Tensor]:
    """Grid points of every window: the input window ``[0, 1]``, then each hidden layer's.

    ``steps``: ticks per window; ``dt``: largest tick (each window gets ``⌈B/dt⌉`` ticks).
    Consecutive grids share their boundary point (``t_max(m) = t_min(m+1)``)."""
    if steps is not None and dt is not None:
        raise ValueError("give either steps= or dt=, not both")
    if dt is not None:
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    else:
        steps = DEFAULT_STEPS if steps is None else steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
    windows = [(0.0, 1.0)] + [(ly.t_min, ly.t_max) for ly in network.hidden_layers]
    grids = []
    for lo, hi in windows:
        ticks = steps if dt is None else max(1, math.ceil((hi - lo) / dt - 1e-9))
        assert ticks is not None
        grids.append(_window_grid(lo, hi, ticks, network.dtype, network.device))
    return grids


def _register(s: Tensor, grid: Tensor) -> Tensor:
    """Spike times ``s`` as seen on ``grid``: the first grid point ``≥ s`` (the first point for
    spikes before the grid, ``+inf`` for spikes after it or no spike)."""
    idx = torch.searchsorted(grid, s.contiguous(), side="left")
    inside = idx < grid.numel()
    reg = grid[idx.clamp_max(grid.numel() - 1)]
    return torch.where(inside, reg, torch.full_like(s, float("inf")))


def _route_times(layer: SpikingLayer, s: Tensor) -> Tensor:
    """Routing on spike times (routing acts on values ``c − s`` and commutes with shifts)."""
    return -layer.routed(-s)


def _integrate(
    layer: SpikingLayer,
    s_in: Tensor,
    grid: Tensor,
    *,
    gain: Tensor | None,
    block_bytes: int,
) -> Tensor:
    """Euler-integrate one layer on ``grid``; return the index of each neuron's registered
    spike (``grid.numel()`` = none; model A hidden: forced at the last point) or, for the
    readout, the final potential.

    ``s_in``: routed input times already registered on ``grid`` (``+inf`` never arrives)."""
    aff = layer.affine
    bsz = s_in.shape[0]
    out_shape = (bsz, *layer.out_shape)
    dtype, dev = s_in.dtype, s_in.device
    n_pts = grid.numel()
    dts = grid[1:] - grid[:-1]
    model_b = layer.neuron == "constant-slope" and not layer.readout
    if model_b:
        alpha = torch.zeros((), dtype=dtype, device=dev)
        G = torch.ones((), dtype=dtype, device=dev)
    else:
        alpha = layer.alpha if gain is None else layer.alpha * gain
        G = layer.G
    theta = layer.theta
    # after the last arrival the indicator (hence the current) no longer changes
    finite = torch.isfinite(s_in)
    last = float(s_in[finite].max()) if bool(finite.any()) else float(grid[0])
    k_const = int(torch.searchsorted(grid, torch.tensor([last], dtype=dtype, device=dev)))
    syn_final = aff.linear(finite.to(dtype))
    # model B: its own window (t_k ≥ t_min) has current 1, no synaptic input
    k_own = int(torch.searchsorted(grid, torch.tensor([layer.t_min], dtype=dtype, device=dev)))
    item = torch.empty((), dtype=dtype).element_size()
    n_in = s_in[0].numel()
    n_out = layer.num_neurons
    per_step = max(1, bsz * (n_in + 4 * n_out) * item)
    tb = max(1, min(n_pts - 1, block_bytes // per_step))

    V = torch.zeros(out_shape, dtype=dtype, device=dev)
    fired = torch.full(out_shape, n_pts, dtype=torch.long, device=dev)
    if not layer.readout:
        # grid point 0: V = 0 (fires at once where theta ≤ 0; model A only)
        if not model_b:
            fired = torch.where(theta <= 0, torch.zeros_like(fired), fired)
        can = (grid >= layer.t_min) & (grid < layer.t_max)  # model B firing points
    k = 0
    while k < n_pts - 1:
        k1 = min(n_pts - 1, k + tb)
        t_blk = grid[k:k1]
        T = k1 - k
        if model_b and k >= k_own:
            cur = torch.ones((T, *out_shape), dtype=dtype, device=dev)
        else:
            var = max(0, min(k1, k_const) - k)  # steps whose indicator still changes
            parts = []
            if var:
                ind = (s_in[None] <= t_blk[:var].reshape(-1, *([1] * s_in.dim()))).to(dtype)
                syn = aff.linear(ind.reshape(var * bsz, *s_in.shape[1:]))
                parts.append(syn.reshape(var, *out_shape))
            if T - var:
                parts.append(syn_final[None].expand(T - var, *out_shape))
            syn_all = torch.cat(parts) if len(parts) > 1 else parts[0]
            cur = alpha + G * syn_all
            if model_b:
                own = (t_blk >= layer.t_min).reshape(-1, *([1] * len(out_shape)))
                cur = torch.where(own, torch.ones_like(cur), cur)
        inc = dts[k:k1].reshape(-1, *([1] * len(out_shape))) * cur
        Vs = V[None] + torch.cumsum(inc, dim=0)  # V at grid points k+1 … k1
        V = Vs[-1]
        if not layer.readout:
            hit = Vs >= theta
            if model_b:
                hit &= can[k + 1 : k1 + 1].reshape(-1, *([1] * len(out_shape)))
            any_hit = hit.any(dim=0)
            first = torch.argmax(hit.to(torch.int8), dim=0) + (k + 1)
            fired = torch.where((fired == n_pts) & any_hit, first, fired)
            if not model_b and bool((fired < n_pts).all()):
                break
        k = k1
    if layer.readout:
        return V
    if not model_b:
        fired = fired.clamp_max(n_pts - 1)  # forced spike at t_max
    return fired


def _spike_times(fired: Tensor, grid: Tensor) -> Tensor:
    inf = torch.full(fired.shape, float("inf"), dtype=grid.dtype, device=grid.device)
    return torch.where(fired < grid.numel(), grid[fired.clamp_max(grid.numel() - 1)], inf)


def _chunk(
    network: SpikingNetwork,
    xhat: Tensor,
    grids: list[Tensor],
    *,
    record: bool,
    perturbation: Perturbation | None,
    gains: list[Tensor | None] | None,
    gen: torch.Generator | None,
    block_bytes: int,
) -> tuple[Tensor, list[Tensor], Certificate]:
    perturb = perturbation is not None and perturbation.active
    hidden = network.hidden_layers
    bsz = xhat.shape[0]
    times: list[Tensor] = []
    early, sat, checked, neurons = [], [], [], []
    bad = torch.zeros(bsz, dtype=torch.bool, device=xhat.device)
    if network.neuron == "alpha":
        s = 1.0 - xhat
    else:  # model B: an input value of 0 sends no spike
        s = torch.where(xhat > 0, 1.0 - xhat, torch.full_like(xhat, float("inf")))
    s = _register(s, grids[0])

    def send(s: Tensor, t_max: float, B: float) -> Tensor:
        if not perturb:
            return s
        assert perturbation is not None and gen is not None
        return t_max - perturbation.spikes(t_max - s, B, gen)

    s = send(s, 1.0, 1.0)
    if record:
        times.append(s)
    for i, layer in enumerate(hidden):
        grid = torch.cat([grids[i], grids[i + 1][1:]])
        s_in = _register(_route_times(layer, s), grid)
        fired = _integrate(layer, s_in, grid, gain=gains[i] if gains else None,
                           block_bytes=block_bytes)
        s_out = _spike_times(fired, grid)
        x = layer.t_min - s_in
        x = x.clamp(max=layer.B_in) if layer.neuron == "alpha" else x.clamp(0.0, layer.B_in)
        z = layer.affine(x)
        e = (s_out < layer.t_min).reshape(bsz, -1)
        sa = (z > layer.B).reshape(bsz, -1)
        early.append(int(e.sum()))
        sat.append(int(sa.sum()))
        checked.append(bsz * layer.num_neurons)
        neurons.append(bsz * layer.num_neurons)
        bad |= e.any(dim=1) | sa.any(dim=1)
        s = send(s_out, layer.t_max, layer.B)
        if record:
            times.append(s)
    readout = network.readout
    grid = grids[len(hidden)]
    s_in = _register(_route_times(readout, s), grid)
    out = _integrate(readout, s_in, grid, gain=None, block_bytes=block_bytes)
    for r in network.output_routes:
        out = r(out)
    cert = Certificate([ly.name for ly in hidden], early, sat, checked, neurons, ~bad)
    return out, times, cert


def simulate_clock(
    network: SpikingNetwork,
    x: Tensor,
    *,
    clip: bool = False,
    record: bool = True,
    chunk_size: int | None = None,
    perturbation: Perturbation | None = None,
    steps: int | None = None,
    dt: float | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    **unexpected: Any,
) -> SimulationResult:
    """Simulate ``network`` on ``x`` with the clock-driven engine (see the module docstring).

    Called by ``network.simulate(x, engine="clock", steps=... | dt=...)``.

    Args:
        network: the spiking network.
        x: a batch of model inputs (checked and normalised by ``network.encode``).
        clip: clip inputs to the declared input range instead of raising.
        record: keep every layer's (registered, perturbed) spike times.
        chunk_size: samples simulated together (default: from the memory budget).
        perturbation: jitter / alpha noise / spike-time quantisation (as the event engine).
        steps: ticks per window (default :data:`DEFAULT_STEPS` when ``dt`` is not given).
        dt: largest tick length (units of tau_c); each window gets ``⌈B/dt⌉`` ticks.
        max_memory: bytes for one chunk's working set (default: a quarter of the available
            memory, at most 2 GiB).
        progress: show a progress bar over chunks.

    Returns:
        A :class:`~onespike.SimulationResult` with ``engine="clock"``; ``extras`` holds
        ``"steps"`` (ticks per window), ``"dt"`` (tick per window) and ``"grid"`` (the grid
        point tensors of every window).
    """
    from ..simulation import SimulationResult, auto_chunk_size

    if unexpected:
        raise TypeError(f"unexpected options for engine 'clock': {sorted(unexpected)} "
                        "(it takes steps=, dt=, max_memory=, progress=)")
    grids = clock_grids(network, steps=steps, dt=dt)
    xhat = network.encode(x, clip=clip)
    n = xhat.shape[0]
    dtype, dev = network.dtype, network.device
    if max_memory is None:
        if dev.type == "cuda":
            avail = int(torch.cuda.mem_get_info(dev)[0])
        else:
            avail = int(psutil.virtual_memory().available)
        max_memory = min(2 << 30, avail // 4)
    if chunk_size is None:
        chunk_size = auto_chunk_size(network, record, dtype, dev, max_memory // 2)
    chunk_size = max(1, int(chunk_size))
    block_bytes = max(1, max_memory // 2)
    gen, gains = None, None
    if perturbation is not None and perturbation.active:
        if perturbation.alpha_noise > 0 and network.neuron != "alpha":
            raise ValueError("alpha noise applies to model A (neuron='alpha') only")
        gen = perturbation.generator(dev)
        gains = [perturbation.alpha_gain(ly.out_shape, gen, dtype, dev)
                 for ly in network.hidden_layers]
    outs: list[Tensor] = []
    recs: list[list[Tensor]] = []
    certs: list[Certificate] = []
    starts = range(0, max(n, 1), chunk_size)
    with torch.no_grad():
        for s in tqdm(starts, desc="simulating (clock)", unit="chunk",
                      disable=not progress or len(starts) < 2, leave=False):
            out, times, cert = _chunk(network, xhat[s : s + chunk_size], grids, record=record,
                                      perturbation=perturbation, gains=gains, gen=gen,
                                      block_bytes=block_bytes)
            outs.append(out)
            recs.append(times)
            certs.append(cert)
    extras = {
        "steps": [g.numel() - 1 for g in grids],
        "dt": [float(g[1] - g[0]) for g in grids],
        "grid": grids,
    }
    return SimulationResult.from_chunks(network, outs, recs, certs, "clock", record, extras)
