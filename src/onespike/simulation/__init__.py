"""Simulation of a converted network: the driver, the engines, the neuron models, the
exactness certificate and perturbations.

This layer knows nothing of how a network was converted or saved: it runs anything that has
the attributes of :mod:`onespike.simulation.protocols`. Users reach it through
:meth:`onespike.SpikingNetwork.simulate`; the names below are the public part, the modules
are internal.
"""

from onespike.simulation.certificate import Certificate
from onespike.simulation.driver import ENGINES, SimulationResult, run_simulation
from onespike.simulation.neurons import NEURON_MODELS, NeuronModel, get_neuron
from onespike.simulation.perturb import Perturbation

__all__ = [
    "ENGINES",
    "NEURON_MODELS",
    "Certificate",
    "NeuronModel",
    "Perturbation",
    "SimulationResult",
    "get_neuron",
    "run_simulation",
]
