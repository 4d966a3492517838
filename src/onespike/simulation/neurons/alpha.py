"""Model A, the paper's neuron: every neuron fires exactly once.

Non-leaky integrate-and-fire with ramp (linear) post-synaptic potentials, integrating from
``t_start = t_min − B_in``::

    dV_i/dt = alpha_i · H(t − t_start) + Σ_j J_ij · H(t − t_j),   V_i(t_start) = 0
    S_i = Σ_j W_ij < 1,   G_i = alpha_i / (1 − S_i),   J_ij = G_i W_ij,   alpha_i = 1
    theta_i = alpha_i · B_in + G_i · (B − b_i)

It fires at the first ``V = theta`` and never again; if not by ``t_max`` it is forced to fire
there (value 0). With ``u = t_min − t`` and ``x_j = t_min − t_j``::

    V_i(t) − theta_i = G_i · f_i(u),   f_i(u) = b_i + Σ_j W_ij (x_j − u)⁺ − (1 − S_i) u − B

so a neuron whose ``f`` stays negative on ``[0, B_in]`` fires at ``t_max − ReLU(z)``
(certificates: :mod:`onespike.simulation.engines.bounds`); the others are walked exactly
(:mod:`onespike.simulation.engines.crossing`). Clock-driven current ``I = alpha + G Σ_j W_ij [s_j ≤
t]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from onespike.errors import ArgumentError
from onespike.simulation.neurons.base import NeuronModel
from onespike.simulation.ops import clamped

if TYPE_CHECKING:
    from onespike.simulation.engines.step import PopulationStep
    from onespike.simulation.protocols import PopulationLike

__all__ = ["AlphaNeuron"]


class AlphaNeuron(NeuronModel):
    name = "alpha"
    zero_spikes = True
    needs_scaling = True
    has_alpha = True

    def _hidden_parameters(self, S: Tensor, b: Tensor, B: float, B_in: float,
                           name: str) -> dict[str, Tensor]:
        if bool((S >= 1).any()):
            raise ArgumentError(f"population {name}: model A needs S < 1 (scaling step missing)")
        alpha = torch.ones_like(b)
        G = alpha / (1 - S)
        return {"alpha": alpha, "G": G, "theta": alpha * B_in + G * (B - b)}

    def clip_inputs(self, x: Tensor, B_in: float) -> Tensor:
        # x itself when nothing exceeds B_in (no new map: the engines only read their inputs)
        return clamped(x, high=B_in)

    def event_step(self, pop: PopulationLike, xs: list[Tensor], *, gain: Tensor | None,
                   perturbed: bool, use_exact: bool = True) -> PopulationStep:
        from onespike.simulation.engines.common import model_a_step

        z = pop.z(xs)
        return model_a_step(pop, xs, z, use_exact=use_exact, gain=gain,
                            late_possible=perturbed)

    def clock_current(self, pop: PopulationLike, syn: Tensor, own: Tensor,
                      gain: Tensor | None) -> Tensor:
        alpha = pop.alpha if gain is None else pop.alpha * gain
        return alpha + pop.G * syn

    def membrane(self, pop: PopulationLike, t: Tensor, ramps: Tensor, index: Tensor) -> Tensor:
        alpha = pop.alpha.reshape(-1)[index][:, None]
        G = pop.G.reshape(-1)[index][:, None]
        return alpha * (t - pop.t_start).clamp_min(0)[None, :] + G * ramps
