"""Export of converted spiking networks to other formats.

* :func:`export_nir` — the Neuromorphic Intermediate Representation (NIR, optional extra
  ``onespike[nir]``): a graph whose continuous-time dynamics equal onespike's
  (:mod:`onespike.export.nir_graph`, encoding in docs/nir.md);
* :func:`simulate_nir` — an event-driven simulator of such graphs written from the NIR node
  equations, independent of onespike's engines (:mod:`onespike.export.nir_interpreter`);
* :func:`export_nir_data` / :func:`read_nir_data` — reference spike trains in NIR's recorded
  data format (:mod:`onespike.export.nir_data`);
* :func:`export_nir_discrete` — a time-stepped variant for NIR consumers without integrator,
  delay or clock nodes (:mod:`onespike.export.nir_discrete`).
"""

from __future__ import annotations

from onespike.export.common import NirExportError, NirNotInstalledError
from onespike.export.nir_data import export_nir_data, read_nir_data
from onespike.export.nir_discrete import export_nir_discrete
from onespike.export.nir_graph import ENCODING_VERSION, clock_spikes, encode_input, export_nir
from onespike.export.nir_interpreter import NirRun, simulate_nir

__all__ = [
    "ENCODING_VERSION",
    "NirExportError",
    "NirNotInstalledError",
    "NirRun",
    "clock_spikes",
    "encode_input",
    "export_nir",
    "export_nir_data",
    "export_nir_discrete",
    "read_nir_data",
    "simulate_nir",
]
