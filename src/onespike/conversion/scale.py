"""The weight scaling step of model A (step 3 of the pipeline, docs/method.md).

Model A needs ``S_i = Σ_j W_ij < 1`` (over all edges) for every hidden neuron. For each hidden
channel whose largest ``S`` (over positions, padding excluded) exceeds 0.99, its incoming
weights and bias are multiplied by ``f = 0.99 / S``; a channel whose ``S`` is below −10
everywhere gets ``f = −10 / max S``. Every edge leaving that population — to each of its
consumers — divides its weights from that channel by ``f`` (routed like the spikes: through max
pools, reshapes and slices). ReLU is positively homogeneous and max pooling commutes with
positive per-channel factors, so the network function is unchanged; factors are per channel
because convolutions and pools share them across positions. Populations are scaled in
topological order, so each sees the compensated weights of its sources.
"""

from __future__ import annotations

import torch
from torch import Tensor

from onespike.conversion.fold import Folded, _channel_map

__all__ = ["S_MAX", "S_MIN", "scale_for_model_a"]

S_MAX = 0.99
S_MIN = -10.0


def scale_for_model_a(folded: Folded) -> dict[str, Tensor]:
    """Rescale ``folded`` in place so that every hidden neuron has ``S < 1``; returns the
    per-channel factor applied to each hidden population."""
    factors: dict[str, Tensor] = {}
    consumers = [*folded.populations, folded.readout]
    for p in folded.populations:
        s = p.edges[0].affine.fan_in_sum()
        for e in p.edges[1:]:
            s = s + e.affine.fan_in_sum()
        s_ch = s.reshape(s.shape[0], -1).amax(dim=1)
        f = torch.ones_like(s_ch)
        f = torch.where(s_ch > S_MAX, S_MAX / s_ch, f)
        f = torch.where(s_ch < S_MIN, S_MIN / s_ch, f)
        factors[p.name] = f
        if bool((f == 1).all()):
            continue
        for e in p.edges:
            e.affine.scale_output(f)
        p.bias = p.bias * _channel_map(f, p.out_shape)
        for q in consumers:
            for e in q.edges:
                if e.source != p.name:
                    continue
                fmap = _channel_map(f, p.out_shape)[None]
                for r in e.routes:
                    fmap = r(fmap)
                e.affine.scale_input(1.0 / fmap[0])
    return factors
