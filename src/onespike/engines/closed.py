"""The closed-form engine: ``t = t_max − ReLU(z)`` layer by layer.

This is the ReLU network written in spike times (what the spiking network does whenever the
certificate holds). With ``certify=True`` it also evaluates the certificate on its own inputs:
saturation (``z > B``) and, for model A, early spikes: neurons no certificate proves
(:mod:`onespike.engines.bounds`) get the exact first-crossing computation, so a violation is
reported although the closed form does not show it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..layers import SpikingLayer
from .common import LayerStep, _per_sample, model_a_step

__all__ = ["closed_hidden", "closed_readout"]


def closed_hidden(layer: SpikingLayer, v_in: Tensor, *, certify: bool = True) -> LayerStep:
    x = v_in.clamp_min(0.0)
    z = layer.affine(x)
    if certify and layer.neuron == "alpha":
        return model_a_step(layer, x.clamp(max=layer.B_in), z, use_exact=False,
                            late_possible=False)
    zero = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
    sat = _per_sample(z > layer.B) if certify else zero
    if layer.neuron == "alpha":
        values = z.clamp_min(0.0)
    else:
        neg_inf = torch.full((), float("-inf"), dtype=z.dtype, device=z.device)
        values = torch.where(z > 0, z, neg_inf)
    return LayerStep(values, zero, sat, zero.clone())


def closed_readout(layer: SpikingLayer, v_in: Tensor) -> Tensor:
    return layer.affine(v_in.clamp_min(0.0))
