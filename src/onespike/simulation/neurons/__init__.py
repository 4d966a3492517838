"""Neuron models: one module per model, each owning its parameters, input encoding, closed
form, event step, clock-driven current and membrane formula.

* :mod:`onespike.simulation.neurons.alpha` — model A (``neuron="alpha"``, the paper's: every neuron
  fires exactly once);
* :mod:`onespike.simulation.neurons.constant_slope` — model B (``neuron="constant-slope"``: zero
  activations stay silent).
"""

from __future__ import annotations

from onespike.errors import ArgumentError
from onespike.simulation.neurons.alpha import AlphaNeuron
from onespike.simulation.neurons.base import NeuronModel
from onespike.simulation.neurons.constant_slope import ConstantSlopeNeuron

__all__ = ["NEURON_MODELS", "AlphaNeuron", "ConstantSlopeNeuron", "NeuronModel", "get_neuron"]

_MODELS: dict[str, NeuronModel] = {m.name: m for m in (AlphaNeuron(), ConstantSlopeNeuron())}

#: Names accepted by ``convert(neuron=...)``.
NEURON_MODELS: tuple[str, ...] = tuple(_MODELS)


def get_neuron(name: str) -> NeuronModel:
    """The neuron model called ``name`` (one of :data:`NEURON_MODELS`)."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ArgumentError(f"neuron must be one of {NEURON_MODELS}, got {name!r}") from None
