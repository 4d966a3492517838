"""The weight scaling step of model A (step 3 of the pipeline, design note §2).

Model A needs ``S_i = Σ_j W_ij < 1`` for every hidden neuron. For each hidden channel whose
largest ``S`` (over positions, padding excluded) exceeds 0.99, its incoming weights and bias are
multiplied by ``f = 0.99 / S``; a channel whose ``S`` is below −10 everywhere gets
``f = −10 / max S``. The next layer's weights from that channel are multiplied by ``1/f``.
ReLU is positively homogeneous and max pooling commutes with positive per-channel factors, so
the network function is unchanged; factors are per channel because convolutions and pools
share them across positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fold import Folded, _channel_map

__all__ = ["S_MAX", "S_MIN", "scale_for_model_a"]

S_MAX = 0.99
S_MIN = -10.0


def scale_for_model_a(folded: Folded) -> list[Tensor]:
    """Rescale ``folded`` in place so that every hidden neuron has ``S < 1``; returns the
    per-channel factor applied to each hidden stage."""
    factors: list[Tensor] = []
    stages = folded.stages
    for n, st in enumerate(stages):
        if not st.relu:
            break
        s = st.affine.fan_in_sum()
        s_ch = s.reshape(s.shape[0], -1).amax(dim=1)
        f = torch.ones_like(s_ch)
        f = torch.where(s_ch > S_MAX, S_MAX / s_ch, f)
        f = torch.where(s_ch < S_MIN, S_MIN / s_ch, f)
        factors.append(f)
        if bool((f == 1).all()):
            continue
        st.affine.scale_output(f)
        fmap = _channel_map(f, st.affine.out_shape)[None]
        nxt = stages[n + 1]
        for r in nxt.routes:
            fmap = r(fmap)
        nxt.affine.scale_input(1.0 / fmap[0])
    return factors
