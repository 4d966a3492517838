"""Simulation engines behind one per-population contract: ``event`` (exact dynamics),
``closed`` (closed form) and ``clock`` (time-stepped); the driver is
:mod:`onespike.simulation.driver`."""

from onespike.simulation.engines.closed import ClosedEngine
from onespike.simulation.engines.crossing import first_crossing
from onespike.simulation.engines.event import EventEngine
from onespike.simulation.engines.step import PopulationStep

__all__ = ["ClosedEngine", "EventEngine", "PopulationStep", "first_crossing"]
