"""Former name of :mod:`onespike.population` (chain-only releases called populations
"layers"); kept so that ``from onespike.layers import SpikingLayer`` goes on working."""

from .neurons import NEURON_MODELS
from .population import Population, SpikingLayer

__all__ = ["NEURON_MODELS", "Population", "SpikingLayer"]
