"""The event engine: what the spiking network really does.

Each hidden neuron's spike is its true first threshold crossing under the model's dynamics
(layers.py). For model A, neurons proven by a certificate (:mod:`onespike.engines.bounds`: the
excitatory drive bound, then the grid bound) cross at ``t_max − ReLU(z)`` (the layer's one
convolution/GEMM); every other neuron — possible early spikes, ``theta ≤ 0``, inputs arriving
after ``t_min`` — is computed exactly by :func:`~onespike.engines.crossing.first_crossing`.
Model B integrates its inputs until ``t_min`` and then rises with slope 1, so its spike time
is ``t_max − z`` clipped to the window, and silence below threshold.

Inputs are values ``x_j = t_min − t_j`` of the layer before (after routing); a neuron only
integrates from ``t_min − B_in``, so earlier spikes act as if they arrived then
(``x_j ≤ B_in``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..layers import SpikingLayer
from .common import LayerStep, _per_sample, model_a_step

__all__ = ["event_hidden", "event_readout"]


def event_hidden(
    layer: SpikingLayer, v_in: Tensor, gain: Tensor | None = None, *, perturbed: bool = True
) -> LayerStep:
    """One hidden layer: ``v_in`` are the routed input values; returns output values.
    ``gain``: optional per-neuron factor on ``alpha`` (model A robustness studies);
    ``perturbed=False`` promises that no input arrives after ``t_min``."""
    aff = layer.affine
    if layer.neuron == "alpha":
        x = v_in.clamp(max=layer.B_in)
        z = aff(x)
        return model_a_step(layer, x, z, use_exact=True, gain=gain, late_possible=perturbed)
    # model B: silent inputs (−inf) and late inputs contribute nothing before t_min
    x = v_in.clamp(0.0, layer.B_in)
    z = aff(x)
    B = layer.B
    sat = z > B
    neg_inf = torch.full((), float("-inf"), dtype=z.dtype, device=z.device)
    values = torch.where(z > 0, z.clamp_max(B), neg_inf)
    zero = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
    return LayerStep(values, zero, _per_sample(sat), zero.clone())


def event_readout(layer: SpikingLayer, v_in: Tensor) -> Tensor:
    """Readout potential at ``t_min``: ``alpha·B_in + Σ_j W_ij (x_j)⁺`` = ``b + W x``."""
    return layer.affine(v_in.clamp(0.0, layer.B_in))
