"""The conversion pipeline, one module a phase:

trace (:mod:`~onespike.conversion.trace`, torch.fx → :mod:`~onespike.conversion.ir`) →
fold (:mod:`~onespike.conversion.fold`: batch norm, pools, sums, concatenations, clipped
ReLUs into populations and edges) → scale (:mod:`~onespike.conversion.scale`) → calibrate
(:mod:`~onespike.conversion.calibrate`: the largest activation per population) → map
(:mod:`~onespike.conversion.mapping`: windows, delays, parameters) —
:func:`~onespike.conversion.convert.convert` runs them in order. The modules are internal;
:func:`convert` is public (also as :func:`onespike.convert`). The method: ``docs/method.md``.
"""

from onespike.conversion.convert import convert

__all__ = ["convert"]
