"""onespike: exact conversion of trained ReLU networks to single-spike neural networks.

Implements the exact mapping of Stanojevic et al., "An exact mapping from ReLU networks to
spiking neural networks", Neural Networks (2023): time-to-first-spike coding, non-leaky
integrate-and-fire neurons with ramp synapses, one time window per layer.

Pipeline: trace → fold → scale → calibrate → map → simulate → measure.
"""

from .certificate import Certificate
from .convert import convert
from .errors import (
    CalibrationError,
    FormatError,
    InputRangeError,
    OnespikeError,
    UnsupportedModelError,
    UnsupportedOperationError,
)
from .export import export_nir
from .io import load, save
from .layers import NEURON_MODELS, SpikingLayer
from .network import SpikingNetwork
from .perturb import Perturbation
from .simulation import SimulationResult

__version__ = "0.1.0"

__all__ = [
    "NEURON_MODELS",
    "CalibrationError",
    "Certificate",
    "FormatError",
    "InputRangeError",
    "OnespikeError",
    "Perturbation",
    "SimulationResult",
    "SpikingLayer",
    "SpikingNetwork",
    "UnsupportedModelError",
    "UnsupportedOperationError",
    "__version__",
    "convert",
    "export_nir",
    "load",
    "save",
]
