"""The closed-form engine: ``t = t_max − ReLU(z)`` population by population.

This is the ReLU network written in spike times (what the spiking network does whenever the
certificate holds). With ``certify=True`` it also evaluates the certificate on its own inputs:
saturation (``z > B``) and, for model A, early spikes: neurons no certificate proves
(:mod:`onespike.simulation.engines.bounds`) get the exact first-crossing computation, so a
violation is
reported although the closed form does not show it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.engines.common import model_a_step
from onespike.simulation.engines.step import PopulationStep
from onespike.simulation.masks import count_per_sample
from onespike.simulation.ops import positive_part

if TYPE_CHECKING:
    from onespike.simulation.protocols import PopulationLike

__all__ = ["ClosedEngine"]


class ClosedEngine:
    """``values = closed form of z``; the certificate is optional."""

    name = "closed"
    uses_values = True

    def __init__(self, certify: bool = True) -> None:
        self.certify = certify

    def hidden(self, pop: PopulationLike, xs: list[Tensor], *, gain: Tensor | None,
               perturbed: bool) -> PopulationStep:
        xs = [positive_part(x) for x in xs]
        model = pop.model
        if self.certify and model.needs_scaling:
            clipped = [model.clip_inputs(x, pop.B_in) for x in xs]
            return model_a_step(pop, clipped, pop.z(xs), use_exact=False, late_possible=False)
        z = pop.z(xs)
        zero = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        sat = count_per_sample(z > pop.B) if self.certify else zero
        return PopulationStep(model.closed(z), zero, sat, zero.clone())

    def readout(self, pop: PopulationLike, xs: list[Tensor]) -> Tensor:
        return pop.z([positive_part(x) for x in xs])
