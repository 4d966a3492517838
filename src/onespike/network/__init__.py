"""The converted network: populations with their edges and windows
(:class:`Population`), the network that simulates them (:class:`SpikingNetwork`) and its
file format (:func:`save`, :func:`load`: safetensors + JSON). The modules are internal;
use the names below (also re-exported by :mod:`onespike`)."""

from onespike.network.io import FORMAT_VERSION, load, save
from onespike.network.population import EdgeSpec, Population, SpikingLayer
from onespike.network.snn import SpikingNetwork

__all__ = [
    "FORMAT_VERSION",
    "EdgeSpec",
    "Population",
    "SpikingLayer",
    "SpikingNetwork",
    "load",
    "save",
]
