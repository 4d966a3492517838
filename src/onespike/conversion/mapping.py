"""Map the folded, scaled, calibrated network to spiking populations (step 5 of the pipeline).

Windows (docs/method.md): the input window is ``[0, 1]``; a population ``p`` starts when its
latest source ends, ``t_min(p) = max_s t_max(s)``, integrates from ``t_min(p) − B_in`` with
``B_in = max_s B_s``, and gets ``B_p = (1 + zeta)·X_p`` (``X_p`` its calibrated maximum; a
population silent on the whole calibration set gets ``B_p = 1 + zeta``). An edge from ``s``
carries the delay ``d = t_min(p) − t_max(s) ≥ 0``. The readout sits at ``t_min(readout)``, the
latency (``1 + Σ B_n`` for a chain).
"""

from __future__ import annotations

from onespike.conversion.fold import Folded, FoldedPopulation
from onespike.errors import ArgumentError
from onespike.network.population import EdgeSpec, Population

__all__ = ["build_layers", "window_sizes"]


def window_sizes(X: list[float], zeta: float) -> list[float]:
    """``B_n = (1 + zeta)·X_n`` (``1 + zeta`` where ``X_n = 0``)."""
    if not zeta > -1:
        raise ArgumentError(f"zeta must be > -1 (windows B = (1 + zeta)·X), got {zeta}")
    return [(1.0 + zeta) * (x if x > 0 else 1.0) for x in X]


def build_layers(folded: Folded, X: dict[str, float], neuron: str, zeta: float
                 ) -> list[Population]:
    """One :class:`Population` per folded population (hidden in order, then the readout)."""
    windows: dict[str, tuple[float, float]] = {"input": (0.0, 1.0)}
    out: list[Population] = []
    for fp in [*folded.populations, folded.readout]:
        t_min = max(windows[e.source][1] for e in fp.edges)
        B_in = max(windows[e.source][1] - windows[e.source][0] for e in fp.edges)
        if fp.relu:
            x = X[fp.name]
            t_max = t_min + window_sizes([x], zeta)[0]
        else:
            x, t_max = 0.0, t_min
        out.append(make_population(fp, neuron, t_min, t_max, B_in, x,
                                   {e.source: windows[e.source][1] for e in fp.edges}))
        windows[fp.name] = (t_min, t_max)
    return out


def make_population(fp: FoldedPopulation, neuron: str, t_min: float, t_max: float,
                    B_in: float, X: float, source_end: dict[str, float]) -> Population:
    edges = [EdgeSpec(e.source, e.routes, e.affine.kind, tuple(e.affine.in_shape),
                      e.affine.dims, tuple(e.affine.stride), tuple(e.affine.pad),
                      tuple(e.affine.dilation), e.affine.groups,
                      delay=t_min - source_end[e.source], origin=e.origin) for e in fp.edges]
    return Population(
        name=fp.name, source=fp.source, edges=edges, weights=[e.affine.weight for e in fp.edges],
        bias=fp.bias, neuron=neuron, readout=not fp.relu, t_min=t_min, t_max=t_max, B_in=B_in,
        X=X, role=fp.role,
    )
