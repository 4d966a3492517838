"""What a converted network does on data: accuracy and agreement (:func:`evaluate`), spikes,
synaptic events, latency and energy (:func:`measure`), robustness sweeps (:func:`sweep`) and
plots (PNG). The modules are internal; the names below are public (also re-exported by
:mod:`onespike`)."""

from typing import TYPE_CHECKING, Any

from onespike.analysis.evaluation import Evaluation, evaluate
from onespike.analysis.metrics import LayerStats, Stats, measure
from onespike.analysis.robustness import KNOBS, RobustnessPoint, RobustnessResult, sweep

__all__ = [
    "KNOBS",
    "Evaluation",
    "LayerStats",
    "RobustnessPoint",
    "RobustnessResult",
    "Stats",
    "evaluate",
    "measure",
    "plot_histograms",
    "plot_output",
    "plot_raster",
    "plot_trace",
    "save_figure",
    "sweep",
]

#: Plot functions, imported on first use (matplotlib takes most of a second to import).
PLOTS = ("plot_histograms", "plot_output", "plot_raster", "plot_trace", "save_figure")

if TYPE_CHECKING:
    from onespike.analysis.plots import (
        plot_histograms,
        plot_output,
        plot_raster,
        plot_trace,
        save_figure,
    )


def __getattr__(name: str) -> Any:
    if name in PLOTS:
        from onespike.analysis import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
