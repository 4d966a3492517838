"""onespike: exact conversion of trained ReLU networks to single-spike neural networks.

Implements the exact mapping of Stanojevic et al., "An exact mapping from ReLU networks to
spiking neural networks", Neural Networks (2023): time-to-first-spike coding, non-leaky
integrate-and-fire neurons with ramp synapses, one time window per population (the method in
the project's words: ``docs/method.md``).

Pipeline: trace → fold → scale → calibrate → map (:mod:`onespike.conversion`) → the
converted network (:mod:`onespike.network`) → simulate (:mod:`onespike.simulation`) →
measure (:mod:`onespike.analysis`). Applications (CLI, benchmark, training) live in
:mod:`onespike.apps`.

The names in ``__all__`` are the public API; every module below the subpackages is an
implementation detail that may move between releases.
"""

from typing import TYPE_CHECKING, Any

from onespike import analysis
from onespike._version import __version__
from onespike.analysis import (
    KNOBS,
    Evaluation,
    LayerStats,
    RobustnessPoint,
    RobustnessResult,
    Stats,
    evaluate,
    measure,
    sweep,
)
from onespike.conversion import convert
from onespike.data.stream import StreamingDataset
from onespike.errors import (
    ArgumentError,
    ArgumentTypeError,
    CalibrationError,
    DatasetError,
    DatasetFormatError,
    DatasetNotFoundError,
    DistributedError,
    FormatError,
    InputRangeError,
    MissingDependencyError,
    MissingFileError,
    ModelSpecError,
    NirExportError,
    NirNotInstalledError,
    NotFoundError,
    OnespikeError,
    OutOfRangeError,
    RebuildError,
    UnavailableAttributeError,
    UnknownDatasetError,
    UnsupportedModelError,
    UnsupportedOperationError,
)
from onespike.export import export_nir
from onespike.network import (
    FORMAT_VERSION,
    Population,
    SpikingLayer,
    SpikingNetwork,
    load,
    save,
)
from onespike.simulation import (
    ENGINES,
    NEURON_MODELS,
    Certificate,
    Perturbation,
    SimulationResult,
)

if TYPE_CHECKING:
    from onespike.analysis.plots import (
        plot_histograms,
        plot_output,
        plot_raster,
        plot_trace,
        save_figure,
    )

__all__ = [
    "ENGINES",
    "FORMAT_VERSION",
    "KNOBS",
    "NEURON_MODELS",
    "ArgumentError",
    "ArgumentTypeError",
    "CalibrationError",
    "Certificate",
    "DatasetError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DistributedError",
    "Evaluation",
    "FormatError",
    "InputRangeError",
    "LayerStats",
    "MissingDependencyError",
    "MissingFileError",
    "ModelSpecError",
    "NirExportError",
    "NirNotInstalledError",
    "NotFoundError",
    "OnespikeError",
    "OutOfRangeError",
    "Perturbation",
    "Population",
    "RebuildError",
    "RobustnessPoint",
    "RobustnessResult",
    "SimulationResult",
    "SpikingLayer",
    "SpikingNetwork",
    "Stats",
    "StreamingDataset",
    "UnavailableAttributeError",
    "UnknownDatasetError",
    "UnsupportedModelError",
    "UnsupportedOperationError",
    "__version__",
    "convert",
    "evaluate",
    "export_nir",
    "load",
    "measure",
    "plot_histograms",
    "plot_output",
    "plot_raster",
    "plot_trace",
    "save",
    "save_figure",
    "sweep",
]

def __getattr__(name: str) -> Any:
    # the plot functions, imported on first use by onespike.analysis (matplotlib is slow)
    if name in analysis.PLOTS:
        return getattr(analysis, name)
    raise AttributeError(f"module 'onespike' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
