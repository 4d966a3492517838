"""Simulation engines: ``event`` (exact dynamics) and ``closed`` (closed form)."""

from .closed import closed_hidden, closed_readout
from .common import LayerStep
from .crossing import first_crossing
from .event import event_hidden, event_readout

__all__ = [
    "LayerStep",
    "closed_hidden",
    "closed_readout",
    "event_hidden",
    "event_readout",
    "first_crossing",
]
