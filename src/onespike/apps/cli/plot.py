"""``onespike plot`` (``raster``, ``trace``, ``hist``, ``output``): figures of a spiking
network as PNG files, from :mod:`onespike.analysis.plots`.

The network and the data come from the shared resolver (:mod:`onespike.apps.cli.resolve`):
``--snn FILE``, ``--model SPEC`` (converted with the conversion options) or ``--demo``, and
``--dataset`` (default: the network's own), exactly as for ``onespike evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from torch import Tensor

from onespike.apps.cli.options import (
    clip_option,
    conversion_options,
    data_options,
    engine_options,
    network_options,
)
from onespike.apps.cli.resolve import check_output_file, resolve_data, resolve_network

__all__ = ["Source", "out_option", "plot", "resolve_source", "source_options"]


@dataclass
class Source:
    """A network and the data to show: ``images`` (normalised as the network expects),
    ``labels``, ``classes`` and a one-line ``description``."""

    snn: Any
    images: Tensor
    labels: Tensor
    classes: list[str]
    description: str


def source_options(default_samples: int) -> Callable[[Any], Any]:
    """Network, conversion, data and clip options of the figure commands."""

    def deco(f: Any) -> Any:
        for o in (clip_option(), data_options(limit=default_samples),
                  conversion_options(), network_options()):
            f = o(f)
        return f

    return deco


def resolve_source(opts: dict[str, Any]) -> Source:
    """The network and data of the options, through the shared resolver."""
    src = resolve_network(opts)
    data, images = resolve_data(opts, src)
    return Source(src.snn, images, data.labels, list(data.classes),
                  f"{src.origin}; data {data.name} ({len(data)} samples)")


def _simulate(src: Source, opts: dict[str, Any], x: Tensor) -> Any:
    extra: dict[str, Any] = {}
    if opts.get("engine") == "clock":
        extra["steps"] = opts.get("steps")
    return src.snn.simulate(x, engine=opts.get("engine") or "event", clip=opts["clip"],
                            record=True, **extra)


def out_option(default: str) -> Callable[[Any], Any]:
    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        check_output_file(value, "--out", default)
        return value

    return click.option("--out", type=click.Path(dir_okay=False), default=default,
                        show_default=True, callback=check, help="PNG file to write.")


def _check_sample(src: Source, sample: int) -> None:
    if not 0 <= sample < src.images.shape[0]:
        raise click.UsageError(f"--sample {sample} is out of range: the data has "
                               f"{src.images.shape[0]} samples (see --samples)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def plot() -> None:
    """Figures of a spiking network: spike raster, membrane traces, spike-time histograms and
    readout potentials (PNG files; time in units of τ_c).

    \b
    onespike plot raster --demo --out raster.png
    onespike plot trace  --snn net.onespike --layer 1 --neurons 0,5,9
    onespike plot hist   --model vgg_fmnist --dataset fashion-mnist --samples 100
    onespike plot output --demo --sample 3
    """


@plot.command("raster")
@source_options(default_samples=16)
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which sample to show.")
@click.option("--max-neurons", type=click.IntRange(min=1), default=4000, show_default=True,
              help="Show at most this many neurons per layer (evenly spaced).")
@engine_options()
@out_option("raster.png")
def raster_cmd(sample: int, max_neurons: int, out: str, **opts: Any) -> None:
    """Spike raster of one sample: one panel per layer, windows shaded."""
    from onespike.analysis.plots import plot_raster

    src = resolve_source(opts)
    _check_sample(src, sample)
    sim = _simulate(src, opts, src.images[sample : sample + 1])
    plot_raster(sim, out, max_neurons=max_neurons,
                title=f"Spike raster, sample {sample} (label "
                f"{_label(src, sample)}, {sim.engine} engine, neuron {sim.neuron})")
    click.echo(f"{src.description}\nwrote {out}")


def _label(src: Source, i: int) -> str:
    y = int(src.labels[i])
    if y < 0:
        return "none"
    return src.classes[y] if y < len(src.classes) else str(y)


def _layer_arg(snn: Any, text: str | None) -> int:
    """Index into ``snn.layers`` of ``--layer`` (a name or an index, negative from the end)."""
    names = [ly.name for ly in snn.layers]
    if text is None:
        return 0
    try:
        idx = int(text)
    except ValueError:
        if text not in names:
            raise click.BadParameter(f"no layer {text!r}; layers: {', '.join(names)}",
                                     param_hint="'--layer'") from None
        return names.index(text)
    if not -len(names) <= idx < len(names):
        raise click.BadParameter(f"layer {idx} is out of range: the network has "
                                 f"{len(names)} layers ({', '.join(names)}; 0 to "
                                 f"{len(names) - 1}, or negative from the end)",
                                 param_hint="'--layer'")
    return idx % len(names)


def _neurons_arg(snn: Any, layer: int, text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        chosen = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("give integers separated by commas",
                                 param_hint="'--neurons'") from None
    ly = snn.layers[layer]
    n = ly.num_neurons
    bad = [i for i in chosen if not 0 <= i < n]
    if bad:
        raise click.BadParameter(f"neuron {bad[0]} is out of range: layer {ly.name} has {n} "
                                 f"neurons (flat indices 0 to {n - 1})",
                                 param_hint="'--neurons'")
    return chosen


@plot.command("trace")
@source_options(default_samples=16)
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which sample to show.")
@click.option("--layer", help="Layer name or index into the spiking layers (0 = first "
              "hidden layer; the readout shows its potentials). Default: 0.")
@click.option("--neurons", help="Comma-separated flat neuron indices (default: up to 4 that "
              "fire inside their window).")
@out_option("trace.png")
def trace_cmd(sample: int, layer: str | None, neurons: str | None, out: str,
              **opts: Any) -> None:
    """Membrane potential traces V(t) of chosen neurons, with θ, windows and the spike."""
    from onespike.analysis.plots import plot_trace

    src = resolve_source(opts)
    _check_sample(src, sample)
    idx = _layer_arg(src.snn, layer)
    chosen = _neurons_arg(src.snn, idx, neurons)
    sim = src.snn.simulate(src.images[sample : sample + 1], clip=opts["clip"], record=True)
    plot_trace(src.snn, sim, idx, neurons=chosen, path=out)
    click.echo(f"{src.description}\nwrote {out}")


@plot.command("hist")
@source_options(default_samples=200)
@click.option("--bins", type=click.IntRange(min=1), default=50, show_default=True,
              help="Histogram bins per layer.")
@click.option("--linear", is_flag=True, help="Linear instead of logarithmic counts.")
@engine_options()
@out_option("hist.png")
def hist_cmd(bins: int, linear: bool, out: str, **opts: Any) -> None:
    """Per-layer spike-time histograms over --samples inputs."""
    from onespike.analysis.plots import plot_histograms

    src = resolve_source(opts)
    sim = _simulate(src, opts, src.images)
    plot_histograms(sim, out, bins=bins, log=not linear)
    click.echo(f"{src.description}\nwrote {out}")


@plot.command("output")
@source_options(default_samples=16)
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which sample to show.")
@out_option("output.png")
def output_cmd(sample: int, out: str, **opts: Any) -> None:
    """Readout potentials of one sample over time, ending at the logits."""
    from onespike.analysis.plots import plot_output

    src = resolve_source(opts)
    _check_sample(src, sample)
    sim = src.snn.simulate(src.images[sample : sample + 1], clip=opts["clip"], record=True)
    plot_output(src.snn, sim, class_names=src.classes or None, path=out)
    pred = int(sim.predictions[0])
    click.echo(f"{src.description}\nsample {sample}: label {_label(src, sample)}, predicted "
               f"{src.classes[pred] if pred < len(src.classes) else pred}\nwrote {out}")
