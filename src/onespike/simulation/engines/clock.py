"""The clock-driven engine: membrane potentials advanced on a fixed time grid.

This is what time-stepped neuromorphic hardware does. Every window ``[t_min(m), t_max(m)]``
(the input window ``[0, 1]``, then every hidden population's) is divided into ``K_m`` ticks
of length ``dt_m = B_m / K_m``: ``K_m = steps`` (option ``steps=``), or ``K_m = ⌈B_m / dt⌉``
(option ``dt=``: ticks of at most ``dt``, so that every window boundary lies on the grid).
A population ``n`` integrates on its own grid ``t_0 = t_start(n) < t_1 < … < t_max(n)``: the
grid of the window of its source with the largest window (``B_s = B_in``), shifted by that
edge's delay (``0`` in a chain: the grid of the previous window), followed by the grid of its
own window. Forward Euler steps

    V_i(t_0) = 0,      V_i(t_{k+1}) = V_i(t_k) + (t_{k+1} − t_k) · I_i(t_k),

    model A:   I_i(t_k) = alpha_i + G_i Σ_e Σ_j W_e,ij · [s_j ≤ t_k],
    model B:   I_i(t_k) = Σ_e Σ_j W_e,ij · [s_j ≤ t_k]   if t_k < t_min(n),   1 otherwise

(``clock_current`` of the neuron model, :mod:`onespike.simulation.neurons`), where ``s_j`` are the
(routed: first spike of each max-pool window) input spike times of every edge ``e``, sent at
``t_j`` and arriving at ``t_j + d_e``, as *registered* on the receiving grid: an input
arriving at ``s`` is seen from the first grid point ``≥ s`` on (for ``d_e ≠ 0`` up to a few
ulps: ``t_j + d_e`` that misses a grid point by rounding registers there). The synaptic sum is one
GEMM/convolution per edge of the 0/1 arrival indicator per time step (time steps are batched
into blocks; after the last input has arrived the current is constant and is not recomputed).

A neuron's spike is registered at the first grid point with ``V ≥ theta``. Model A: any grid
point from ``t_start(n)`` on, forced at ``t_max(n)`` if none; model B: only grid points in
``[t_min(n), t_max(n))``, silent otherwise. The input population's spikes ``t = 1 − x̂`` are
registered at the first grid point of the input window ``≥ t``. The readout (``J = W``,
``alpha = b / B_in``) integrates the same way over the input part of its grid; its potential
at ``t_min`` is the output.

Because registered spikes lie on grid points, the synaptic current is constant between grid
points and Euler integration is exact for the registered inputs: the only error is the
registration (rounding up to the grid) of each population's spikes, at most one tick per
population, so the decoded error shrinks ∝ dt.

State (what the driver, :func:`onespike.simulation.driver.run_simulation`, passes between
populations): the *registered spike times* themselves, stored negated (``−t``, exact), so that
silent model-B neurons read as ``−inf`` like the values of the other engines; spike times are
never converted to values and back, which would round them off the grid.

Certificate: ``early`` = neurons whose registered spike is before ``t_min`` of their
population; ``saturated`` = neurons with ``z = b + Σ_e W_e x_e > B`` for the registered
inputs ``x_j = t_min(n) − s_j``; ``checked`` = every neuron (each crossing was found by
simulation).

Perturbations (:class:`~onespike.Perturbation`) act as in the event engine, with the same
random draws in the same order: ``alpha_noise`` multiplies ``alpha_i`` in the current (model A),
``jitter`` / ``time_bits`` act on every population's registered spike times before they are
sent on (the receiving population registers the perturbed times on its own grid).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import psutil
import torch
from torch import Tensor

from onespike.errors import ArgumentError, ArgumentTypeError
from onespike.simulation.engines.ordering import first_true
from onespike.simulation.engines.step import PopulationStep
from onespike.simulation.masks import any_along, count_per_sample

if TYPE_CHECKING:
    from onespike.simulation.perturb import Perturbation
    from onespike.simulation.protocols import NetworkLike, PopulationLike

__all__ = ["DEFAULT_STEPS", "ClockEngine", "clock_grids"]

#: Ticks per window when neither ``steps`` nor ``dt`` is given.
DEFAULT_STEPS = 64


def _window_grid(t_min: float, t_max: float, ticks: int, dtype: torch.dtype,
                 device: torch.device) -> Tensor:
    g = t_min + (t_max - t_min) * torch.arange(ticks + 1, dtype=torch.float64) / ticks
    g[0], g[-1] = t_min, t_max  # boundaries exactly (shared with the neighbouring window)
    return g.to(device=device, dtype=dtype)


def _check_options(steps: int | None, dt: float | None) -> int | None:
    if steps is not None and dt is not None:
        raise ArgumentError("give either steps= or dt=, not both")
    if dt is not None:
        if not (isinstance(dt, (int, float)) and not isinstance(dt, bool)
                and math.isfinite(dt) and dt > 0):
            raise ArgumentError(f"dt must be a positive finite number, got {dt!r}")
        return None
    steps = DEFAULT_STEPS if steps is None else steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ArgumentError(f"steps must be a positive integer, got {steps!r}")
    return steps


def clock_grids(
    network: NetworkLike, *, steps: int | None = None, dt: float | None = None
) -> list[Tensor]:
    """Grid points of every window: the input window ``[0, 1]``, then each hidden
    population's (topological order).

    ``steps``: ticks per window; ``dt``: largest tick (each window gets ``⌈B/dt⌉`` ticks).
    A population integrates on its widest source's grid (shifted by the edge's delay)
    followed by its own window's."""
    steps = _check_options(steps, dt)
    windows = [(0.0, 1.0)] + [(p.t_min, p.t_max) for p in network.hidden_layers]
    grids = []
    for lo, hi in windows:
        ticks = steps if dt is None else max(1, math.ceil((hi - lo) / dt - 1e-9))
        assert ticks is not None
        grids.append(_window_grid(lo, hi, ticks, network.dtype, network.device))
    return grids


def _register(s: Tensor, grid: Tensor, tol: float = 0.0) -> Tensor:
    """Spike times ``s`` as seen on ``grid``: the first grid point ``≥ s − tol`` (the first
    point for spikes before the grid, ``+inf`` for spikes after it or no spike)."""
    idx = torch.searchsorted(grid, (s - tol if tol else s).contiguous(), side="left")
    inside = idx < grid.numel()
    reg = grid[idx.clamp_max(grid.numel() - 1)]
    return torch.where(inside, reg, torch.full_like(s, float("inf")))


def _spike_times(fired: Tensor, grid: Tensor) -> Tensor:
    inf = torch.full(fired.shape, float("inf"), dtype=grid.dtype, device=grid.device)
    return torch.where(fired < grid.numel(), grid[fired.clamp_max(grid.numel() - 1)], inf)


class ClockEngine:
    """Time-stepped simulation on per-population grids (see the module docstring).

    ``steps``: ticks per window (default :data:`DEFAULT_STEPS` when ``dt`` is not given);
    ``dt``: largest tick length (units of tau_c), each window gets ``⌈B/dt⌉`` ticks;
    ``max_memory``: bytes for the time blocks of one population (default: a quarter of the
    available memory, at most 2 GiB, halved).
    """

    name = "clock"
    uses_values = False

    def __init__(self, network: NetworkLike, *, steps: int | None = None,
                 dt: float | None = None, max_memory: int | None = None,
                 **unexpected: Any) -> None:
        if unexpected:
            raise ArgumentTypeError(f"unexpected options for engine 'clock': {sorted(unexpected)} "
                                    "(it takes steps=, dt=)")
        self.grids = clock_grids(network, steps=steps, dt=dt)
        dev = network.device
        if max_memory is None:
            if dev.type == "cuda":
                avail = int(torch.cuda.mem_get_info(dev)[0])
            else:
                avail = int(psutil.virtual_memory().available)
            max_memory = min(2 << 30, avail // 4)
        self.block_bytes = max(1, int(max_memory) // 2)
        names = ["input"] + [p.name for p in network.hidden_layers]
        self._window: dict[str, Tensor] = dict(zip(names, self.grids))
        self._B = {"input": 1.0, **{p.name: p.B for p in network.hidden_layers}}
        self._pop_grid: dict[str, Tensor] = {}

    def extras(self) -> dict[str, object]:
        return {
            "steps": [g.numel() - 1 for g in self.grids],
            "dt": [float(g[1] - g[0]) for g in self.grids],
            "grid": self.grids,
        }

    # -- grids -------------------------------------------------------------------------------
    def grid(self, pop: PopulationLike) -> Tensor:
        """Grid points population ``pop`` integrates on: its widest source's window grid
        shifted by the edge delay (ending at ``t_min``), then (hidden) its own window's."""
        g = self._pop_grid.get(pop.name)
        if g is not None:
            return g
        widths = [self._B[e.source] for e in pop.edges]
        j = widths.index(max(widths))
        e = pop.edges[j]
        src = self._window[e.source]
        if e.delay != 0.0:
            src = src + e.delay
            src[-1] = pop.t_min
        parts = [src] if pop.readout else [src, self._window[pop.name][1:]]
        g = torch.cat(parts) if len(parts) > 1 else parts[0]
        self._pop_grid[pop.name] = g
        return g

    # -- driver hooks ------------------------------------------------------------------------
    def encode(self, network: NetworkLike, xhat: Tensor) -> Tensor:
        """Input spikes ``t = 1 − x̂`` (model B: none for ``x̂ = 0``) registered on the input
        window's grid, as state ``−t``."""
        if network.layers[0].model.zero_spikes:
            s = 1.0 - xhat
        else:
            s = torch.where(xhat > 0, 1.0 - xhat, torch.full_like(xhat, float("inf")))
        return -_register(s, self._window["input"])

    def perturb(self, state: Tensor, t_max: float, B: float, perturbation: Perturbation,
                gens: list[torch.Generator]) -> Tensor:
        s = -state
        return -(t_max - perturbation.spikes(t_max - s, B, gens))

    def times(self, state: Tensor, t_max: float) -> Tensor:
        return -state

    def edge_input(self, pop: PopulationLike, j: int, state: Tensor,
                   window: tuple[float, float]) -> Tensor:
        """Edge ``j``'s routed source spikes, arriving at ``t + delay``, registered on the
        grid of ``pop``."""
        s = -pop.route(j, state)  # routing acts on values c − t; commutes with the shift
        d = pop.edges[j].delay
        if d == 0.0:
            return _register(s, self.grid(pop))
        # t + d may miss the grid point it lands on by a rounding error (a spike at t_max of
        # the source arrives at t_min): a few ulps of tolerance
        grid = self.grid(pop)
        tol = 8 * torch.finfo(grid.dtype).eps * max(1.0, abs(pop.t_max))
        return _register(s + d, grid, tol)

    def hidden(self, pop: PopulationLike, xs: list[Tensor], *, gain: Tensor | None,
               perturbed: bool) -> PopulationStep:
        grid = self.grid(pop)
        fired = self._integrate(pop, xs, grid, gain=gain)
        s_out = _spike_times(fired, grid)
        x_reg = [pop.model.clip_inputs(pop.t_min - s, pop.B_in) for s in xs]
        z = pop.z(x_reg)
        early = count_per_sample(s_out < pop.t_min)
        sat = count_per_sample(z > pop.B)
        checked = torch.full_like(early, pop.num_neurons)
        return PopulationStep(-s_out, early, sat, checked)

    def readout(self, pop: PopulationLike, xs: list[Tensor]) -> Tensor:
        """Readout potential at ``t_min``, integrated over the input part of its grid."""
        return self._integrate(pop, xs, self.grid(pop), gain=None)

    # -- integration -------------------------------------------------------------------------
    def _integrate(self, pop: PopulationLike, s_in: list[Tensor], grid: Tensor, *,
                   gain: Tensor | None) -> Tensor:
        """Euler-integrate one population on ``grid``; return the index of each neuron's
        registered spike (``grid.numel()`` = none; model A: forced at the last point) or, for
        the readout, the final potential.

        ``s_in``: routed input times of each edge, registered on ``grid`` (``+inf`` never
        arrives)."""
        syn_op = pop.synapses
        bsz = s_in[0].shape[0]
        out_shape = (bsz, *pop.out_shape)
        nd = len(out_shape)
        dtype, dev = grid.dtype, grid.device
        n_pts = grid.numel()
        dts = grid[1:] - grid[:-1]
        model = pop.model
        readout = pop.readout
        # model B (no zero spikes): fires only in its own window, current 1 there
        model_b = not readout and not model.zero_spikes
        theta = pop.theta
        # after the last arrival the indicator (hence the current) no longer changes
        finite = [torch.isfinite(s) for s in s_in]
        lasts = [float(s[f].max()) for s, f in zip(s_in, finite) if bool(f.any())]
        last = max(lasts) if lasts else float(grid[0])
        k_const = int(torch.searchsorted(grid, torch.tensor([last], dtype=dtype, device=dev)))
        syn_final = syn_op.linear([f.to(dtype) for f in finite])
        k_own = int(torch.searchsorted(grid, torch.tensor([pop.t_min], dtype=dtype,
                                                          device=dev)))
        item = torch.empty((), dtype=dtype).element_size()
        n_in = sum(s[0].numel() for s in s_in)
        per_step = max(1, bsz * (n_in + 4 * pop.num_neurons) * item)
        tb = max(1, min(n_pts - 1, self.block_bytes // per_step))

        def current(syn: Tensor, t_blk: Tensor) -> Tensor:
            if readout:
                return pop.alpha + pop.G * syn
            own = (t_blk >= pop.t_min).reshape(-1, *([1] * nd))
            return model.clock_current(pop, syn, own, gain)

        V = torch.zeros(out_shape, dtype=dtype, device=dev)
        fired = torch.full(out_shape, n_pts, dtype=torch.long, device=dev)
        if not readout:
            # grid point 0: V = 0 (fires at once where theta ≤ 0; model A only)
            if not model_b:
                fired = torch.where(theta <= 0, torch.zeros_like(fired), fired)
            can = (grid >= pop.t_min) & (grid < pop.t_max)  # model B firing points
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
                    tv = t_blk[:var]
                    inds = [(s[None] <= tv.reshape(-1, *([1] * s.dim()))).to(dtype)
                            .reshape(var * bsz, *s.shape[1:]) for s in s_in]
                    parts.append(syn_op.linear(inds).reshape(var, *out_shape))
                if T - var:
                    parts.append(syn_final[None].expand(T - var, *out_shape))
                syn_all = torch.cat(parts) if len(parts) > 1 else parts[0]
                cur = current(syn_all, t_blk)
            inc = dts[k:k1].reshape(-1, *([1] * nd)) * cur
            Vs = V[None] + torch.cumsum(inc, dim=0)  # V at grid points k+1 … k1
            V = Vs[-1]
            if not readout:
                hit = Vs >= theta
                if model_b:
                    hit &= can[k + 1 : k1 + 1].reshape(-1, *([1] * nd))
                any_hit = any_along(hit, 0)
                first = first_true(hit, dim=0) + (k + 1)
                fired = torch.where((fired == n_pts) & any_hit, first, fired)
                if not model_b and bool((fired < n_pts).all()):
                    break
            k = k1
        if readout:
            return V
        if not model_b:
            fired = fired.clamp_max(n_pts - 1)  # forced spike at t_max
        return fired
