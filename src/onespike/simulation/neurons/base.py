"""The interface every neuron model implements (see :mod:`onespike.simulation.neurons`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from onespike.simulation.engines.step import PopulationStep
    from onespike.simulation.protocols import PopulationLike

__all__ = ["NeuronModel"]


class NeuronModel:
    """A single-spike neuron model. Values are ``v = t_max − t`` of a population's spikes;
    ``-inf`` is a neuron that does not fire."""

    name: str = ""
    #: whether zero activations are spikes (at t_max) rather than silence
    zero_spikes: bool = True
    #: whether the weight scaling step (``S < 1``) is needed
    needs_scaling: bool = False
    #: whether hidden neurons have a constant input current ``alpha`` (alpha-noise studies)
    has_alpha: bool = False

    def parameters(self, S: Tensor, b: Tensor, B: float, B_in: float, *, readout: bool,
                   name: str = "") -> dict[str, Tensor]:
        """``alpha``, ``G`` and ``theta`` of a population (readout: ``J = W``,
        ``alpha = b / B_in``: its potential at ``t_min`` is ``b + W x``)."""
        if readout:
            return {"alpha": b / B_in, "G": torch.ones_like(b),
                    "theta": torch.full_like(b, float("nan"))}
        return self._hidden_parameters(S, b, B, B_in, name)

    def _hidden_parameters(self, S: Tensor, b: Tensor, B: float, B_in: float,
                           name: str) -> dict[str, Tensor]:
        raise NotImplementedError

    def encode(self, xhat: Tensor) -> Tensor:
        """Values of the input population for normalised inputs ``x̂ ∈ [0, 1]``."""
        if self.zero_spikes:
            return xhat
        return torch.where(xhat > 0, xhat, torch.full_like(xhat, float("-inf")))

    def clip_inputs(self, x: Tensor, B_in: float) -> Tensor:
        """Edge input values as the dynamics see them (integration starts at t_min − B_in)."""
        raise NotImplementedError

    def closed(self, z: Tensor) -> Tensor:
        """Values ``t_max − t`` of the closed form ``t = t_max − ReLU(z)``."""
        if self.zero_spikes:
            return z.clamp_min(0.0)
        return torch.where(z > 0, z, torch.full_like(z, float("-inf")))

    def event_step(self, pop: PopulationLike, xs: list[Tensor], *, gain: Tensor | None,
                   perturbed: bool, use_exact: bool = True) -> PopulationStep:
        """True first threshold crossings of a hidden population for clipped edge inputs."""
        raise NotImplementedError

    def clock_current(self, pop: PopulationLike, syn: Tensor, own: Tensor,
                      gain: Tensor | None) -> Tensor:
        """Input current at grid points from the synaptic sum ``syn = Σ_j W_ij [s_j ≤ t]``;
        ``own`` marks grid points in the population's own window."""
        raise NotImplementedError

    def membrane(self, pop: PopulationLike, t: Tensor, ramps: Tensor, index: Tensor) -> Tensor:
        """``V_i(t)`` of neurons ``index`` given ``ramps = Σ_j W_ij (τ − t_j)⁺`` evaluated
        at ``τ = t`` (or ``min(t, t_min)`` where :meth:`synaptic_time` says so)."""
        raise NotImplementedError

    def synaptic_time(self, pop: PopulationLike, t: Tensor) -> Tensor:
        """Times at which the synaptic ramps are evaluated for :meth:`membrane`."""
        return t

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "zero_spikes": self.zero_spikes}
