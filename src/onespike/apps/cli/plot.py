"""Command-line front ends of :mod:`onespike.analysis.plots` and
:mod:`onespike.analysis.robustness`.

Click commands ``plot`` (subcommands ``raster``, ``trace``, ``hist``, ``output``) and
``robustness``, registered in ``onespike``'s command group (``cli`` is ``plot``).

The network comes from one of

* ``--snn FILE``: a saved network (:func:`onespike.load`); the data set defaults to the one
  recorded when it was converted;
* ``--model NAME``: a model (a built-in name loads its shipped pretrained weights), converted
  on the fly with ``--calibration-samples`` images of the ``--dataset`` train split;
* ``--demo``: the digits CNN on the scikit-learn digits (trained briefly if its weights are
  not shipped).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from torch import Tensor

__all__ = ["cli", "plot", "robustness"]


@dataclass
class _Source:
    snn: Any
    images: Tensor
    labels: Tensor
    classes: list[str]
    description: str


def _source_options(default_samples: int) -> Callable[[Any], Any]:
    opts = [
        click.option("--snn", "snn_path", type=click.Path(dir_okay=False, exists=True),
                     help="A saved spiking network (.onespike)."),
        click.option("--model", help="Model to convert on the fly: a built-in name "
                     "(digits_cnn, mlp_fmnist, lenet5_fmnist, vgg_fmnist) or a model spec."),
        click.option("--weights", type=click.Path(dir_okay=False, exists=True),
                     help="Weights for --model (default: the shipped pretrained weights)."),
        click.option("--demo", is_flag=True,
                     help="The digits CNN on the scikit-learn digits (no files needed)."),
        click.option("--dataset", help="Data set the inputs come from (digits, "
                     "fashion-mnist, …; default: the network's own, or digits with --demo)."),
        click.option("--root", type=click.Path(), metavar="DIR",
                     help="Folder of the data set files (or the CIFAR .tar.gz archive), where "
                     "its loader needs one."),
        click.option("--split", type=click.Choice(["test", "train"]), default="test",
                     show_default=True, help="Split the inputs come from."),
        click.option("--samples", type=click.IntRange(min=1), default=default_samples,
                     show_default=True, help="Use the first N samples of the split."),
        click.option("--calibration-samples", type=click.IntRange(min=1), default=1000,
                     show_default=True,
                     help="Train-split samples that size the windows (--model/--demo)."),
        click.option("--neuron", type=click.Choice(["alpha", "constant-slope"]),
                     default="alpha", show_default=True,
                     help="Neuron model when converting (--model/--demo)."),
        click.option("--zeta", type=float, default=0.5, show_default=True,
                     help="Window margin when converting (--model/--demo)."),
        click.option("--clip", is_flag=True, help="Clip inputs to the network's input range."),
    ]

    def deco(f: Any) -> Any:
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def _load_model(name: str, weights: str | None) -> Any:
    try:
        from onespike.apps.modelspec import load_model
    except ImportError:  # pragma: no cover - modelspec ships with the CLI
        from onespike.models import load_pretrained

        if weights:
            raise click.UsageError("--weights needs onespike.apps.modelspec") from None
        return load_pretrained(name)
    model, _ = load_model(name, weights)
    return model


def _demo_model() -> Any:
    from onespike.models import load_pretrained

    try:
        return load_pretrained("digits_cnn")
    except FileNotFoundError:
        from onespike.apps.training import train_pretrained

        click.echo("digits_cnn weights are not shipped: training it briefly (5 epochs)…",
                   err=True)
        model, _ = train_pretrained("digits_cnn", seed=0, epochs=5, progress=False)
        return model.eval()


def _normalise(images: Tensor, snn: Any) -> Tensor:
    """The network's recorded input normalisation (any image rank)."""
    return snn.normalize(images)


def _source(opts: dict[str, Any]) -> _Source:
    """Resolve ``--snn`` / ``--model`` / ``--demo`` and the data set into a network and data."""
    import onespike
    from onespike.apps.cli import load_data

    given = [k for k in ("snn_path", "model", "demo") if opts.get(k)]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --snn FILE, --model NAME or --demo")
    dataset = opts.get("dataset")
    meta: dict[str, Any] = {}
    if opts.get("snn_path"):
        snn = onespike.load(opts["snn_path"])
        meta = dict(snn.meta)
        dataset = dataset or meta.get("dataset")
        if not dataset:
            raise click.UsageError(f"{opts['snn_path']} does not record its data set: "
                                   "give --dataset")
        origin = opts["snn_path"]
    else:
        if opts.get("demo"):
            dataset = dataset or "digits"
            model, origin = _demo_model(), "digits_cnn (demo)"
        else:
            if not dataset:
                raise click.UsageError("--model needs --dataset (the data it was trained on)")
            model, origin = _load_model(opts["model"], opts.get("weights")), opts["model"]
        calib = load_data(dataset, "train", opts["calibration_samples"], opts.get("root"))
        snn = onespike.convert(model, calib.images, input_range=calib.input_range,
                               zeta=opts["zeta"], neuron=opts["neuron"],
                               clip=opts.get("clip", False), progress=False)
        origin = f"{origin} converted (neuron {opts['neuron']}, zeta {opts['zeta']:g}, " \
                 f"{len(calib)} calibration samples)"
    data = load_data(dataset, opts["split"], opts["samples"], opts.get("root"))
    images = _normalise(data.images, snn)
    if tuple(images.shape[1:]) != tuple(snn.input_shape):
        raise click.UsageError(f"{data.name} images have shape {tuple(images.shape[1:])} but "
                               f"the network expects {tuple(snn.input_shape)}")
    return _Source(snn, images, data.labels, list(data.classes),
                   f"{origin}; data {data.name} ({len(data)} samples)")


def _simulate(src: _Source, opts: dict[str, Any], x: Tensor) -> Any:
    extra: dict[str, Any] = {}
    if opts.get("engine") == "clock":
        extra["steps"] = opts.get("steps")
    return src.snn.simulate(x, engine=opts.get("engine") or "event", clip=opts["clip"],
                            record=True, **extra)


def _engine_options(f: Any) -> Any:
    f = click.option("--steps", type=click.IntRange(min=1), default=64, show_default=True,
                     help="Clock engine: ticks per window.")(f)
    return click.option("--engine", type=click.Choice(["event", "closed", "clock"]),
                        default="event", show_default=True,
                        help="Simulation engine.")(f)


def _check_out(path: str, option: str = "--out", example: str = "figure.png") -> None:
    from onespike.apps.cli import check_output_file

    check_output_file(path, option, example)


def _out_option(default: str) -> Callable[[Any], Any]:
    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        _check_out(value, "--out", default)
        return value

    return click.option("--out", type=click.Path(dir_okay=False), default=default,
                        show_default=True, callback=check, help="PNG file to write.")


def _check_sample(src: _Source, sample: int) -> None:
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
@_source_options(default_samples=16)
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which sample to show.")
@click.option("--max-neurons", type=click.IntRange(min=1), default=4000, show_default=True,
              help="Show at most this many neurons per layer (evenly spaced).")
@_engine_options
@_out_option("raster.png")
def raster_cmd(sample: int, max_neurons: int, out: str, **opts: Any) -> None:
    """Spike raster of one sample: one panel per layer, windows shaded."""
    from onespike.analysis.plots import plot_raster

    src = _source(opts)
    _check_sample(src, sample)
    sim = _simulate(src, opts, src.images[sample : sample + 1])
    plot_raster(sim, out, max_neurons=max_neurons,
                title=f"Spike raster, sample {sample} (label "
                f"{_label(src, sample)}, {sim.engine} engine, neuron {sim.neuron})")
    click.echo(f"{src.description}\nwrote {out}")


def _label(src: _Source, i: int) -> str:
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
@_source_options(default_samples=16)
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which sample to show.")
@click.option("--layer", help="Layer name or index into the spiking layers (0 = first "
              "hidden layer; the readout shows its potentials). Default: 0.")
@click.option("--neurons", help="Comma-separated flat neuron indices (default: up to 4 that "
              "fire inside their window).")
@_out_option("trace.png")
def trace_cmd(sample: int, layer: str | None, neurons: str | None, out: str,
              **opts: Any) -> None:
    """Membrane potential traces V(t) of chosen neurons, with θ, windows and the spike."""
    from onespike.analysis.plots import plot_trace

    src = _source(opts)
    _check_sample(src, sample)
    idx = _layer_arg(src.snn, layer)
    chosen = _neurons_arg(src.snn, idx, neurons)
    sim = src.snn.simulate(src.images[sample : sample + 1], clip=opts["clip"], record=True)
    plot_trace(src.snn, sim, idx, neurons=chosen, path=out)
    click.echo(f"{src.description}\nwrote {out}")


@plot.command("hist")
@_source_options(default_samples=200)
@click.option("--bins", type=click.IntRange(min=1), default=50, show_default=True,
              help="Histogram bins per layer.")
@click.option("--linear", is_flag=True, help="Linear instead of logarithmic counts.")
@_engine_options
@_out_option("hist.png")
def hist_cmd(bins: int, linear: bool, out: str, **opts: Any) -> None:
    """Per-layer spike-time histograms over --samples inputs."""
    from onespike.analysis.plots import plot_histograms

    src = _source(opts)
    sim = _simulate(src, opts, src.images)
    plot_histograms(sim, out, bins=bins, log=not linear)
    click.echo(f"{src.description}\nwrote {out}")


@plot.command("output")
@_source_options(default_samples=16)
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which sample to show.")
@_out_option("output.png")
def output_cmd(sample: int, out: str, **opts: Any) -> None:
    """Readout potentials of one sample over time, ending at the logits."""
    from onespike.analysis.plots import plot_output

    src = _source(opts)
    _check_sample(src, sample)
    sim = src.snn.simulate(src.images[sample : sample + 1], clip=opts["clip"], record=True)
    plot_output(src.snn, sim, class_names=src.classes or None, path=out)
    pred = int(sim.predictions[0])
    click.echo(f"{src.description}\nsample {sample}: label {_label(src, sample)}, predicted "
               f"{src.classes[pred] if pred < len(src.classes) else pred}\nwrote {out}")


def _parse_values(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("give numbers separated by commas, e.g. 0,0.01,0.05",
                                 param_hint="--values") from None
    if not vals:
        raise click.BadParameter("give at least one value", param_hint="--values")
    return vals


class _KnobChoice(click.Choice):
    """The knobs spelt with hyphens (``alpha-noise``, as in the README) or underscores
    (``alpha_noise``, as in :data:`onespike.analysis.robustness.KNOBS`); the value is the latter."""

    def __init__(self) -> None:
        super().__init__(["zeta", "jitter", "alpha-noise", "time-bits", "weight-bits"])

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        text = str(value).strip().lower().replace("_", "-")
        return super().convert(text, param, ctx).replace("-", "_")


@click.command("robustness", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--knob", type=_KnobChoice(), required=True,
              help="What to vary: window margin, spike-time jitter σ [τ_c], α noise σ "
              "(model A), spike-time bits per window, weight bits (0 = off for bits); "
              "alpha_noise etc. work as well.")
@click.option("--values", "values_text", required=True,
              help="Comma-separated knob values, e.g. 0,0.01,0.05.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds per value (deterministic settings run once).")
@click.option("--base-jitter", type=float, default=0.0, show_default=True,
              help="Jitter σ added to every run (e.g. to sweep zeta under jitter).")
@_source_options(default_samples=500)
@_engine_options
@_out_option("robustness.png")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the results as JSON.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar. Default: when stderr is a terminal, unless "
              "'onespike -q'.")
def robustness(knob: str, values_text: str, seeds: int, base_jitter: float, out: str,
               json_path: str | None, progress: bool | None, **opts: Any) -> None:
    """Sweep one robustness knob: accuracy and agreement with the ReLU network (mean ± std
    over seeds); prints a table and writes a PNG with error bars.

    \b
    onespike robustness --knob jitter --values 0,0.01,0.05 --seeds 3 \\
        --dataset fashion-mnist --model vgg_fmnist --samples 500
    """
    from onespike import Perturbation
    from onespike.analysis.robustness import sweep
    from onespike.apps.cli import progress_enabled

    values = _parse_values(values_text)
    if json_path:
        _check_out(json_path, "--json", "robustness.json")
    progress = progress_enabled(progress)
    src = _source(opts)
    extra: dict[str, Any] = {}
    if opts["engine"] == "clock":
        extra["steps"] = opts["steps"]
    elif opts["engine"] == "closed":
        raise click.UsageError("perturbations need --engine event or clock")
    base = Perturbation(jitter=base_jitter) if base_jitter else None
    res = sweep(src.snn, src.images, src.labels, knob, values, seeds=seeds, base=base,
                engine=opts["engine"], clip=opts["clip"], progress=progress, **extra)
    click.echo(src.description)
    click.echo(res.format_table())
    res.plot(out)
    click.echo(f"wrote {out}")
    if json_path:
        Path(json_path).write_text(json.dumps(res.as_dict(), indent=2))
        click.echo(f"wrote {json_path}")


#: The command ``onespike`` registers as ``plot``.
cli = plot
