"""Simulation engines behind one per-population contract: ``event`` (exact dynamics),
``closed`` (closed form) and ``clock`` (time-stepped); the driver is
:mod:`onespike.simulation`."""

from .closed import ClosedEngine
from .crossing import first_crossing
from .event import EventEngine
from .step import PopulationStep

__all__ = ["ClosedEngine", "EventEngine", "PopulationStep", "first_crossing"]
