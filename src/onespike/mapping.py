"""Map the folded, scaled, calibrated network to spiking layers (step 5 of the pipeline).

Windows (design note §1): the input window is ``[0, 1]``; hidden layer ``n`` gets
``t_min(n) = t_max(n−1)`` and ``B_n = (1 + zeta)·X_n`` (``X_n`` its calibrated maximum; a
layer that is silent on the whole calibration set gets ``B_n = 1 + zeta``); the readout sits at
``t_min(N) = 1 + Σ_hidden B_n`` (the latency).
"""

from __future__ import annotations

from .fold import Folded
from .layers import SpikingLayer

__all__ = ["build_layers", "window_sizes"]


def window_sizes(X: list[float], zeta: float) -> list[float]:
    """``B_n = (1 + zeta)·X_n`` (``1 + zeta`` where ``X_n = 0``)."""
    if not zeta > -1:
        raise ValueError(f"zeta must be > -1 (windows B = (1 + zeta)·X), got {zeta}")
    return [(1.0 + zeta) * (x if x > 0 else 1.0) for x in X]


def build_layers(folded: Folded, X: list[float], neuron: str, zeta: float) -> list[SpikingLayer]:
    sizes = window_sizes(X, zeta)
    layers: list[SpikingLayer] = []
    t_min, B_in = 1.0, 1.0  # the input window is [0, 1]
    hidden = [st for st in folded.stages if st.relu]
    for st, B, x in zip(hidden, sizes, X):
        layers.append(SpikingLayer(
            name=st.name, source=st.source, affine=st.affine, routes=st.routes, neuron=neuron,
            readout=False, t_min=t_min, t_max=t_min + B, B_in=B_in, X=x, synthetic=st.synthetic,
        ))
        t_min, B_in = t_min + B, B
    last = folded.stages[-1]
    layers.append(SpikingLayer(
        name="readout", source=last.source, affine=last.affine, routes=last.routes,
        neuron=neuron, readout=True, t_min=t_min, t_max=t_min, B_in=B_in, X=0.0,
    ))
    return layers
