"""The event engine: what the spiking network really does.

Each hidden neuron's spike is its true first threshold crossing under its neuron model's
dynamics (:mod:`onespike.simulation.neurons`). For model A, neurons proven by a certificate
(:mod:`onespike.simulation.engines.bounds`: the excitatory drive bound, then the grid bound) cross
at
``t_max − ReLU(z)`` (one convolution/GEMM per edge); every other neuron — possible early
spikes, ``theta ≤ 0``, inputs arriving after ``t_min`` — is computed exactly by
:func:`~onespike.simulation.engines.crossing.first_crossing`. Model B integrates its inputs until
``t_min`` and then rises with slope 1, so its spike time is ``t_max − z`` clipped to the
window, and silence below threshold.

State: the values ``v = t_max − t`` of every population. An edge delivers its source's spikes
``t_j`` at ``t_j + d``; the receiving population sees ``x_j = t_min − (t_j + d)`` (for
``d = 0``, ``x_j = v_j`` exactly). A neuron only integrates from ``t_min − B_in``, so earlier
spikes act as if they arrived then (``x_j ≤ B_in``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.engines.step import PopulationStep
from onespike.simulation.ops import rsub

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike

__all__ = ["EventEngine", "delayed_values"]


def delayed_values(v: Tensor, t_max_source: float, delay: float, t_min: float) -> Tensor:
    """Values ``x = t_min − (t + d)`` seen by the receiving population for source values
    ``v = t_max(s) − t`` sent with delay ``d``."""
    if delay == 0.0:
        return v
    # t_min − ((t_max(s) − v) + d), each scalar − tensor in one pass (rsub); one new map,
    # the second subtraction written into the first's (a fresh map of a 4M-entry layer costs
    # as much as two passes over a warm one: its pages are faulted in)
    t = rsub(t_max_source, v).add_(delay)
    x = rsub(t_min, t, out=t)
    # a spike at the source's t_max arrives at t_min (x = 0) up to the rounding of t + d:
    # snap those few-ulp negatives, which are no late arrivals. One pass (the smallest entry)
    # decides whether there is any negative, and whether all of them are such roundings.
    if x.numel() == 0:
        return x
    tol = 8.0 * torch.finfo(x.dtype).eps * max(1.0, abs(t_min))
    low = float(x.min())  # NaN if any entry is: then the general form below
    if low >= 0.0:  # nothing to snap
        return x
    if -tol < low < 0.0:  # every negative is a rounding: all of them snap
        return x.clamp_min_(0.0)
    return torch.where((x < 0) & (x > -tol), torch.zeros((), dtype=x.dtype, device=x.device), x)


class EventEngine:
    """Exact dynamics (true first threshold crossings)."""

    name = "event"
    uses_values = True

    def __init__(self, certify: bool = True) -> None:
        self.certify = certify

    def hidden(self, pop: PopulationLike, xs: list[Tensor], *, gain: Tensor | None,
               perturbed: bool) -> PopulationStep:
        clipped = [pop.model.clip_inputs(x, pop.B_in) for x in xs]
        return pop.model.event_step(pop, clipped, gain=gain, perturbed=perturbed)

    def readout(self, pop: PopulationLike, xs: list[Tensor]) -> Tensor:
        """Readout potential at ``t_min``: ``alpha·B_in + Σ_j W_ij (x_j)⁺`` = ``b + Σ W x``."""
        return pop.z([x.clamp(0.0, pop.B_in) for x in xs])
