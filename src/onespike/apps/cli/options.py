"""The options every command shares, with choices taken from the library's registries (neuron
models, engines, datasets, robustness knobs) and one default each.

Groups: where the network comes from (:func:`network_options`: ``--snn``, ``--model``,
``--weights``, ``--demo``), how a model is converted (:func:`conversion_options`), which data
are used (:func:`data_options`, :func:`root_option`), how it is simulated
(:func:`engine_options`, :func:`clip_option`). :mod:`onespike.apps.cli.resolve` turns the
parsed values into a network and data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from onespike.analysis.robustness import KNOBS
from onespike.data import DATASET_NAMES
from onespike.simulation import ENGINES, NEURON_MODELS

__all__ = [
    "CALIBRATION_SAMPLES",
    "DTYPES",
    "NEURON_CHOICE",
    "KnobChoice",
    "clip_option",
    "conversion_options",
    "data_options",
    "engine_options",
    "json_flag",
    "network_options",
    "root_option",
    "workers_option",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Calibration samples of every command that converts (windows are sized from them).
CALIBRATION_SAMPLES = 5000
#: Neuron models of :func:`onespike.convert`.
NEURON_CHOICE = click.Choice(list(NEURON_MODELS))
#: Precisions of a converted network.
DTYPES = ("float64", "float32")
#: Options that only matter when a model is converted (refused beside --snn).
CONVERSION_ONLY = ("calibration", "calibration_samples", "calibration_split", "input_range",
                   "zeta", "neuron", "dtype")

DATA_HINT = (f"a dataset name ({', '.join(DATASET_NAMES)}), a dataset folder, or a "
             ".pt/.safetensors tensor file")
MODEL_HELP = ("pkg.module:factory or file.py:factory (callable returning an nn.Module, or an "
              "nn.Module object; the current folder is importable), a TorchScript .pt "
              "(scripted nn.Sequential), a torch.export .pt2, or a built-in name (digits_cnn, "
              "…: shipped weights unless --weights).")


def _stack(opts: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    def deco(f: F) -> F:
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def network_options(*, snn: bool = True, demo: bool = True) -> Callable[[F], F]:
    """``--snn FILE`` (a saved network), ``--model SPEC`` (converted, or with ``--snn`` the
    ReLU reference), ``--weights FILE`` and ``--demo`` (the shipped digits CNN)."""
    opts: list[Callable[[F], F]] = []
    if snn:
        opts.append(click.option("--snn", "snn_file", type=click.Path(dir_okay=False),
                                 help="A .onespike file written by 'onespike convert' or "
                                 "onespike.save."))
    opts += [
        click.option("--model", "model", metavar="SPEC",
                     help=MODEL_HELP + (" With --snn: the ReLU model to compare with."
                                        if snn else "")),
        click.option("--weights", type=click.Path(dir_okay=False),
                     help="State dict for --model: .safetensors, or a torch.save file read "
                     "with weights_only=True (never a full unpickle)."),
    ]
    if demo:
        opts.append(click.option("--demo", is_flag=True,
                                 help="The shipped digits CNN on the scikit-learn digits (no "
                                 "files needed)."))
    return _stack(opts)


def conversion_options() -> Callable[[F], F]:
    """How a model is converted: calibration data, input range / normalisation, margin,
    neuron model, precision."""
    return _stack([
        click.option("--calibration",
                     help="Data that sizes the time windows: " + DATA_HINT
                     + ". Default: the --dataset (train split), or digits with --demo."),
        click.option("--calibration-samples", type=click.IntRange(min=1),
                     default=CALIBRATION_SAMPLES, show_default=True,
                     help="Use at most this many calibration samples."),
        click.option("--calibration-split", type=click.Choice(["train", "test"]),
                     default="train", show_default=True,
                     help="Split of a calibration dataset."),
        click.option("--input-range", "input_range", nargs=2, multiple=True,
                     metavar="LOW HIGH",
                     help="Range of the model's inputs: scalars or comma lists (one value per "
                     "channel); repeat the option once per channel as an alternative. "
                     "Default: the dataset's pixel range, else 0 1."),
        click.option("--normalize", nargs=2, multiple=True, metavar="MEAN STD",
                     help="The model expects Normalize(MEAN, STD) inputs: dataset images "
                     "([0, 1] pixels) are normalised and the input range becomes "
                     "[(0-MEAN)/STD, (1-MEAN)/STD]. Comma lists or one option per channel. "
                     "A converted network remembers it."),
        click.option("--zeta", type=float, default=0.5, show_default=True,
                     help="Window margin: B_n = (1 + zeta)·X_n."),
        click.option("--neuron", type=NEURON_CHOICE, default="alpha",
                     show_default=True,
                     help="alpha: the paper's model (every neuron fires once); "
                     "constant-slope: zeros stay silent."),
        click.option("--dtype", type=click.Choice(list(DTYPES)), default="float64",
                     show_default=True, help="Precision of the spiking network."),
    ])


def root_option() -> Callable[[F], F]:
    return click.option("--root", type=click.Path(), metavar="DIR",
                        help="Where a dataset's files are: a folder (cifar10, cifar100, "
                        "imagefolder, fashion-mnist elsewhere than the default) or a CIFAR "
                        ".tar.gz archive.")


def workers_option() -> Callable[[F], F]:
    return click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
                        metavar="N",
                        help="Data-loader worker processes that read and decode the images "
                        "(0: this process).")


def data_options(*, limit: int | None, what: str = "Use") -> Callable[[F], F]:
    """``--dataset``, ``--split``, ``--limit N`` (also ``--samples N``), ``--root``,
    ``--workers N``."""
    return _stack([
        workers_option(),
        click.option("--dataset", help="The data: " + ", ".join(DATASET_NAMES)
                     + " or a dataset folder. Default: the dataset the network was "
                     "calibrated on (digits with --demo)."),
        click.option("--split", type=click.Choice(["test", "train"]), default="test",
                     show_default=True, help="Split of the dataset."),
        click.option("--limit", "--samples", "limit", type=click.IntRange(min=1),
                     default=limit, show_default=limit is not None,
                     help=f"{what} the first N samples of the split"
                     + ("." if limit is not None else " (default: all).")),
        root_option(),
    ])


def engine_options(engines: Sequence[str] = ENGINES, *, steps: bool = True
                   ) -> Callable[[F], F]:
    """``--engine`` (one of the simulation engines) and, with the clock engine, ``--steps``."""
    help_of = {"event": "exact dynamics", "closed": "t = t_max − ReLU(z) plus the certificate",
               "clock": "time-stepped, --steps ticks per window"}
    opts = [click.option("--engine", type=click.Choice(list(engines)), default=engines[0],
                         show_default=True,
                         help="; ".join(f"{e}: {help_of.get(e, e)}" for e in engines) + ".")]
    if steps and "clock" in engines:
        opts.append(click.option("--steps", type=click.IntRange(min=1), default=64,
                                 show_default=True, help="Clock engine: ticks per window."))
    return _stack(opts)


def clip_option() -> Callable[[F], F]:
    return click.option("--clip", is_flag=True,
                        help="Clip inputs to the network's input range instead of failing.")


def json_flag(help_text: str = "Print JSON instead of a table.") -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help_text)


class KnobChoice(click.Choice):
    """The robustness knobs (:data:`onespike.analysis.robustness.KNOBS`), spelt with hyphens
    (``alpha-noise``, as in the README) or underscores; the value is the underscore name."""

    def __init__(self) -> None:
        super().__init__([k.replace("_", "-") for k in KNOBS])

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        text = str(value).strip().lower().replace("_", "-")
        return super().convert(text, param, ctx).replace("-", "_")
