"""Model B, the constant-slope neuron: zero activations stay silent.

It integrates its inputs during the input window, then rises with slope 1; firing is enabled
only in its own window::

    t < t_min:   dV_i/dt = Σ_j W_ij · H(t − t_j)        (J = W, no alpha, no scaling step)
    t ≥ t_min:   dV_i/dt = 1
    fires at the first t ≥ t_min with V_i(t) ≥ theta_i = B − b_i; no spike if none by t_max.

``V_i(t_min) = Σ_j W_ij x_j``, so ``t_i = t_max − z_i``: exact for every input except
saturation (``z_i > B`` fires at ``t_min``, value clipped to ``B``). Inputs that never spike
contribute nothing, so spikes per neuron = fraction of non-zero activations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.simulation.masks import count_per_sample
from onespike.simulation.neurons.base import NeuronModel

if TYPE_CHECKING:
    from onespike.simulation.engines.step import PopulationStep
    from onespike.simulation.protocols import PopulationLike

__all__ = ["ConstantSlopeNeuron"]


class ConstantSlopeNeuron(NeuronModel):
    name = "constant-slope"
    zero_spikes = False
    needs_scaling = False

    def _hidden_parameters(self, S: Tensor, b: Tensor, B: float, B_in: float,
                           name: str) -> dict[str, Tensor]:
        return {"alpha": torch.zeros_like(b), "G": torch.ones_like(b), "theta": B - b}

    def clip_inputs(self, x: Tensor, B_in: float) -> Tensor:
        # silent inputs (−inf) and late inputs contribute nothing before t_min
        return x.clamp(0.0, B_in)

    def event_step(self, pop: PopulationLike, xs: list[Tensor], *, gain: Tensor | None,
                   perturbed: bool, use_exact: bool = True) -> PopulationStep:
        from onespike.simulation.engines.step import PopulationStep

        z = pop.z(xs)
        B = pop.B
        sat = z > B
        neg_inf = torch.full((), float("-inf"), dtype=z.dtype, device=z.device)
        values = torch.where(z > 0, z.clamp_max(B), neg_inf)
        zero = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        return PopulationStep(values, zero, count_per_sample(sat), zero.clone())

    def clock_current(self, pop: PopulationLike, syn: Tensor, own: Tensor,
                      gain: Tensor | None) -> Tensor:
        return torch.where(own, torch.ones_like(syn), syn)

    def synaptic_time(self, pop: PopulationLike, t: Tensor) -> Tensor:
        return t.clamp(max=pop.t_min)

    def membrane(self, pop: PopulationLike, t: Tensor, ramps: Tensor, index: Tensor) -> Tensor:
        return ramps + (t - pop.t_min).clamp_min(0)[None, :]
