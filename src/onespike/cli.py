"""The ``onespike`` command line: ``demo``, ``convert``, ``evaluate``, ``info`` (plus the
plugins ``plot``, ``robustness``, ``bench``, ``export``).

Every user error ends with one line ``error: …`` on stderr and a non-zero exit code (2 for
command-line usage errors, 1 otherwise); ``--debug`` (or ``ONESPIKE_DEBUG=1``) shows the
traceback instead. The mapping lives in :meth:`OnespikeGroup.main`.

Every command runs with one torch thread unless ``onespike --threads N`` (or
``ONESPIKE_THREADS``) says otherwise: see :data:`DEFAULT_THREADS`.

Other modules add subcommands by defining a click command named ``cli`` in one of
:data:`PLUGIN_COMMANDS` (loaded lazily), or by calling ``main.add_command(...)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["DEFAULT_THREADS", "PLUGIN_COMMANDS", "OnespikeGroup", "main"]

#: Subcommand name → ``module:attribute`` of a click command, imported only when used.
PLUGIN_COMMANDS: dict[str, str] = {
    "plot": "onespike.plots_cli:cli",
    "robustness": "onespike.plots_cli:robustness",
    "bench": "onespike.bench:cli",
    "export": "onespike.export.cli:cli",
}

#: Torch threads of every command unless ``--threads`` / ``ONESPIKE_THREADS`` say otherwise.
DEFAULT_THREADS = 1

_DATA_HINT = ("a dataset name (digits, fashion-mnist, cifar10, cifar100, imagefolder), a "
              "dataset folder, or a .pt/.safetensors tensor file")


# -- error mapping --------------------------------------------------------------------------
def _debug(args: list[str] | None) -> bool:
    argv = sys.argv[1:] if args is None else list(args)
    return os.environ.get("ONESPIKE_DEBUG", "") not in ("", "0") or "--debug" in argv


_MAX_MESSAGE = 600


def _one_line(text: str) -> str:
    """Join the lines of a message, dropping embedded tracebacks and capping its length."""
    text = str(text)
    for marker in ("Traceback (most recent call last)", "\n\nWhile executing"):
        head, found, _ = text.partition(marker)
        if found:
            text = head.rstrip() + " …"
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def describe_error(exc: BaseException) -> str:
    """One-line message (with the way out) for an exception raised by a command."""
    from .data import DatasetFormatError, DatasetNotFoundError, UnknownDatasetError
    from .errors import InputRangeError, OnespikeError
    from .modelspec import SpecError

    msg = _one_line(str(exc))
    if isinstance(exc, InputRangeError):
        msg = msg.split(" Pass clip=True")[0].rstrip(".")  # the Python API's advice
        return (f"{msg}; add --clip to clip inputs to the range, or convert with the model's "
                "real input range (--input-range LOW HIGH or --normalize MEAN STD)")
    if isinstance(exc, (OnespikeError, SpecError, UnknownDatasetError, DatasetNotFoundError,
                        DatasetFormatError)):
        return msg
    if isinstance(exc, OSError) and exc.filename is not None:
        what = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {what.lower()}"
    if isinstance(exc, (FileNotFoundError, ValueError)):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg} (run with --debug for the traceback)"


class OnespikeGroup(click.Group):
    """Click group that turns every exception into one ``error:`` line and loads the
    :data:`PLUGIN_COMMANDS` lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        for name, target in PLUGIN_COMMANDS.items():
            try:
                found = importlib.util.find_spec(target.partition(":")[0]) is not None
            except (ImportError, ValueError):
                found = False
            if found:
                names.add(name)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in PLUGIN_COMMANDS:
            return cmd
        module_name, _, attr = PLUGIN_COMMANDS[cmd_name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        plugin = getattr(module, attr, None)
        return plugin if isinstance(plugin, click.Command) else None

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        arglist = None if args is None else list(args)
        try:
            rv = super().main(arglist, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        except click.ClickException as exc:
            if _debug(arglist):
                raise
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
            code = exc.exit_code
        except (click.Abort, KeyboardInterrupt):
            click.echo("error: aborted", err=True)
            code = 130
        except Exception as exc:
            if _debug(arglist):
                raise
            click.echo(f"error: {describe_error(exc)}", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def _version() -> str:
    from . import __version__

    return __version__


@click.group(cls=OnespikeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="onespike")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors "
              "(also: ONESPIKE_DEBUG=1).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (they are shown only "
              "when stderr is a terminal anyway).")
@click.option("--threads", type=click.IntRange(min=0), default=DEFAULT_THREADS,
              show_default=True, envvar="ONESPIKE_THREADS", metavar="N",
              help="CPU threads torch may use (also: ONESPIKE_THREADS). The default is 1, not "
              "one per core: on a loaded 2-core machine two threads made convert 10x slower "
              "than one, as the threads wait for each other at every parallel step. Raise it "
              "on an idle multi-core machine; 0 leaves torch's own default.")
def main(debug: bool, quiet: bool, threads: int) -> None:
    """Convert trained ReLU networks into exact single-spike networks and check them.

    \b
    onespike demo                         digits CNN: ReLU vs spiking, raster plot
    onespike convert --model M --calibration DATA --out net.onespike
    onespike evaluate --snn net.onespike --dataset digits
    onespike info net.onespike
    onespike --threads 2 convert …        more CPU threads (default 1)
    """
    _set_threads(click.get_current_context(), threads)


def _set_threads(ctx: click.Context, threads: int) -> None:
    """``torch.set_num_threads(threads)`` for the command (restored when it ends); 0 keeps
    torch's default."""
    if threads <= 0:
        return
    import torch  # already imported with onespike

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    ctx.call_on_close(lambda: torch.set_num_threads(old))


def progress_enabled(asked: bool | None = None) -> bool:
    """Progress bars: never under ``onespike -q``; else as ``asked`` (a command's own
    ``--progress/--no-progress``), by default when stderr is a terminal."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().params.get("quiet"):
        return False
    return sys.stderr.isatty() if asked is None else bool(asked)


def _progress() -> bool:
    return progress_enabled()


# -- shared options ---------------------------------------------------------------------------
def _conversion_options(required_calibration: bool) -> Callable[[Any], Any]:
    opts = [
        click.option("--weights", type=click.Path(dir_okay=False),
                     help="State dict for the model: .safetensors, or a torch.save file read "
                     "with weights_only=True (never a full unpickle)."),
        click.option("--calibration", required=required_calibration,
                     help="Data that sizes the time windows: " + _DATA_HINT
                     + (". Default: the --dataset train split." if not required_calibration
                        else ".")),
        click.option("--calibration-samples", type=click.IntRange(min=1), default=5000,
                     show_default=True, help="Use at most this many calibration samples."),
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
                     "[(0-MEAN)/STD, (1-MEAN)/STD]. Comma lists or one option per channel."),
        click.option("--zeta", type=float, default=0.5, show_default=True,
                     help="Window margin: B_n = (1 + zeta)·X_n."),
        click.option("--neuron", type=click.Choice(["alpha", "constant-slope"]),
                     default="alpha", show_default=True,
                     help="alpha: the paper's model (every neuron fires once); "
                     "constant-slope: zeros stay silent."),
        click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
                     show_default=True, help="Precision of the spiking network."),
    ]

    def deco(f: Any) -> Any:
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def _pairs(values: tuple[tuple[str, str], ...], what: str) -> tuple[list[float], list[float]]:
    from .modelspec import parse_values

    a: list[float] = []
    b: list[float] = []
    for x, y in values:
        a += parse_values(x, what)
        b += parse_values(y, what)
    return a, b


def _scalar_or_list(v: list[float]) -> float | list[float]:
    return v[0] if len(v) == 1 else v


def _normalization(opts: dict[str, Any], meta: dict[str, Any] | None = None
                   ) -> tuple[list[float], list[float]] | None:
    if opts.get("normalize"):
        return _pairs(opts["normalize"], "--normalize")
    norm = (meta or {}).get("normalize")
    if isinstance(norm, dict) and "mean" in norm and "std" in norm:
        return list(norm["mean"]), list(norm["std"])
    return None


def _evaluation_normalization(opts: dict[str, Any], snn: Any
                              ) -> tuple[list[float], list[float]] | None:
    """The normalisation to apply before evaluating ``snn``: the one it records; a different
    ``--normalize`` is refused (it would silently feed the network other inputs)."""
    given = _normalization(opts)
    stored = snn.normalization
    if given is not None and stored is not None:
        from .network import check_normalization

        if check_normalization(*given) != check_normalization(*stored):
            raise click.UsageError(
                f"--normalize {given[0]} {given[1]} disagrees with the normalisation the "
                f"network was converted with (mean {stored[0]}, std {stored[1]}); leave "
                "--normalize out to use the recorded one")
    return stored if stored is not None else given


def _warn_range_mismatch(snn: Any, images: Any, name: str) -> None:
    """Warn when the data cover much less than the network's input range (e.g. raw [0, 1]
    pixels fed to a network converted for normalised inputs)."""
    if images.numel() == 0 or not images.is_floating_point():
        return
    lo, hi = float(images.min()), float(images.max())
    low, high = float(snn.input_low.min()), float(snn.input_high.max())
    span = high - low
    inside = max(0.0, min(hi, high) - max(lo, low))
    if span > 0 and inside < 0.5 * span:
        click.echo(
            f"warning: the {name} inputs span [{lo:.4g}, {hi:.4g}] but the network's input "
            f"range is [{low:.4g}, {high:.4g}]: are the data normalised as for conversion? "
            "(--normalize MEAN STD, or convert with the data's own range)", err=True)


def _apply_normalization(images: Any, norm: tuple[list[float], list[float]] | None) -> Any:
    if norm is None:
        return images
    import torch

    mean, std = (torch.tensor(v, dtype=images.dtype) for v in norm)
    c = images.shape[1]
    if mean.numel() not in (1, c) or std.numel() not in (1, c):
        raise click.UsageError(f"--normalize has {mean.numel()} value(s) but the images have "
                               f"{c} channel(s)")
    shape = (1, -1) + (1,) * (images.dim() - 2)
    return (images - mean.reshape(shape)) / std.reshape(shape)


def _cli_wording(text: str) -> str:
    """The loaders' keyword ``root=`` is the option ``--root DIR`` here."""
    return text.replace("pass root= as", "pass --root DIR as").replace("root=", "--root DIR")


def load_data(name_or_path: str, split: str, limit: int | None, root: str | None) -> Any:
    """:func:`onespike.data.load_dataset` with its messages in the CLI's words (``--root DIR``,
    not ``root=``); a dataset that needs ``--root`` without one is a usage error."""
    from .data import DatasetFormatError, DatasetNotFoundError, UnknownDatasetError, load_dataset

    try:
        return load_dataset(name_or_path, split, limit=limit, root=root)
    except (DatasetNotFoundError, DatasetFormatError, UnknownDatasetError) as exc:
        if "root=" not in str(exc):
            raise
        raise type(exc)(_cli_wording(str(exc))) from None
    except ValueError as exc:
        if "root=" in str(exc):  # needs --root, or a path and --root both given
            raise click.UsageError(_cli_wording(str(exc))) from None
        raise


#: Suffixes of tensor files (read by --calibration directly, not as a dataset).
_TENSOR_SUFFIXES = (".pt", ".pth", ".safetensors")


def _calibration_data(opts: dict[str, Any], default: str | None
                      ) -> tuple[Any, str, tuple[float, float] | None]:
    """(inputs, description, natural pixel range or None) of the calibration data."""
    from .modelspec import load_tensor_file

    spec = opts.get("calibration") or default
    if spec is None:
        raise click.UsageError("--calibration is required: " + _DATA_HINT)
    path = Path(spec)
    if path.suffix.lower() in _TENSOR_SUFFIXES:  # also when missing: "not found"
        x = load_tensor_file(spec)[: opts["calibration_samples"]]
        return x, f"{spec} ({x.shape[0]} samples)", None
    ds = load_data(spec, opts["calibration_split"], opts["calibration_samples"],
                   opts.get("root"))
    x = _apply_normalization(ds.images, _normalization(opts))
    return x, f"{ds.name} ({len(ds)} samples)", ds.input_range


def _input_range(opts: dict[str, Any], natural: tuple[float, float] | None) -> tuple[Any, Any]:
    from .modelspec import normalization_range

    if opts.get("input_range") and opts.get("normalize"):
        raise click.UsageError("give --input-range or --normalize, not both")
    if opts.get("input_range"):
        low, high = _pairs(opts["input_range"], "--input-range")
        return _scalar_or_list(low), _scalar_or_list(high)
    norm = _normalization(opts)
    if norm is not None:
        low, high = normalization_range(*norm)
        return _scalar_or_list(low), _scalar_or_list(high)
    return natural if natural is not None else (0.0, 1.0)


def _check_model_accepts(model: Any, calib: Any, desc: str) -> None:
    """Run the model on one calibration sample: a clean error for a shape mismatch."""
    import torch

    if calib.dim() < 1 or calib.shape[0] == 0:
        raise ValueError(f"calibration data {desc} is empty")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), calib.dtype)
    try:
        with torch.no_grad():
            model(calib[:1].to(dtype))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(
            f"the model rejects calibration samples of shape {tuple(calib.shape[1:])} from "
            f"{desc} ({type(exc).__name__}: {first}); give --calibration data of the shape "
            "the model was built for") from None


def _convert(opts: dict[str, Any], default_calibration: str | None = None
             ) -> tuple[Any, Any]:
    """Build the model and convert it as the options say; returns ``(snn, model)``."""
    import torch

    import onespike

    from .modelspec import load_model

    model, origin = load_model(opts["model"], opts.get("weights"))
    calib, calib_desc, natural = _calibration_data(opts, default_calibration)
    _check_model_accepts(model, calib, calib_desc)
    low, high = _input_range(opts, natural)
    dtype = torch.float64 if opts["dtype"] == "float64" else torch.float32
    norm = _normalization(opts)
    snn = onespike.convert(model, calib, input_range=(low, high), zeta=opts["zeta"],
                           neuron=opts["neuron"], dtype=dtype, clip=opts.get("clip", False),
                           progress=_progress(), normalization=norm)
    snn.meta.update({"source": origin, "calibration": calib_desc})
    spec = opts.get("calibration") or default_calibration
    if spec and not Path(spec).suffix:
        snn.meta["dataset"] = spec
    return snn, model


def check_output_file(path: str | os.PathLike[str], option: str = "--out",
                      example: str | None = "snn.onespike") -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, a path under
    a file, a folder without write permission. The message names the path the user gave.
    ``example``: a file name to suggest inside a folder given by mistake (None: the file's
    folder is what the option names; suggest another one)."""
    text = os.fspath(path)
    p = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or p.is_dir():
        fix = (f"give a file name such as {p / example}" if example is not None
               else f"give another {option} folder")
        raise click.BadParameter(f"{text} is a folder; {fix}", param_hint=f"'{option}'")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise click.BadParameter(f"cannot write {text}: {folder} is a file, not a folder",
                                 param_hint=f"'{option}'")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write {text}: no permission to write in {folder}",
                                 param_hint=f"'{option}'")
    return p


def _save(snn: Any, path: str | os.PathLike[str]) -> Path:
    """``onespike.save`` whose failures name ``path``, not the temporary file it writes first."""
    import onespike

    try:
        return onespike.save(snn, path)
    except OSError as exc:
        why = (exc.strerror or type(exc).__name__).lower()
        raise click.ClickException(f"cannot write {os.fspath(path)}: {why}") from None


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _table(rows: list[tuple[str, ...]], align: str = "") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.rjust(w) if (align[i:i + 1] == "r") else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "n/a (unlabelled)" if v is None else f"{100 * v:.2f} %"


def _certificate_line(cert: Any, nonfinite: int = 0, samples_exact: int | None = None
                      ) -> str:
    d = cert.as_dict()
    if samples_exact is not None:
        d["samples_exact"] = samples_exact
    why = [f"{cert.violations} violations"] if not d["exact"] else []
    if nonfinite:
        why.append(f"{nonfinite} samples with NaN/inf logits or spike times")
    head = f"NOT exact ({', '.join(why)})" if why else "exact"
    per = ", ".join(f"{ly['layer']}: {ly['early']} early / {ly['saturated']} saturated / "
                    f"{ly['checked']} checked" for ly in d["layers"])
    return f"{head} on {d['samples_exact']}/{d['samples']} samples ({per})"


def _results_rows(ev: Any, latency: float) -> list[tuple[str, str]]:
    rows = [
        ("samples", str(ev.samples)),
        ("ReLU accuracy", _pct(ev.relu_accuracy)
         + ("" if ev.relu_source == "model" else f"  [{ev.relu_source}]")),
        (f"SNN accuracy ({ev.engine})", _pct(ev.snn_accuracy)),
        ("agreement (argmax)", f"{100 * ev.agreement:.2f} %"),
        ("max |logit difference|", f"{ev.max_abs_logit_diff:.3g}"),
        ("certificate", _certificate_line(ev.certificate, ev.nonfinite_samples,
                                          ev.samples_exact)),
    ]
    if ev.stats is not None:
        st = ev.stats
        rows += [
            ("spikes per neuron", f"{st.spikes_per_neuron:.3f}  ({st.spikes:,.0f} spikes, "
             f"{st.neurons:,} input+hidden neurons, per sample)"),
            ("synaptic events", f"{st.events:,.0f} per sample  (ANN: {st.macs:,} MACs)"),
        ]
    rows += [("latency", f"{latency:.4g} τ_c"),
             ("simulation time", f"{ev.snn_seconds:.2f} s")]
    return rows


# -- demo -------------------------------------------------------------------------------------
def _demo_model(progress: bool) -> tuple[Any, str]:
    from .models import load_pretrained

    try:
        return load_pretrained("digits_cnn"), "shipped weights"
    except FileNotFoundError:
        from .training import DIGITS_RECIPE, train_pretrained

        model, history = train_pretrained("digits_cnn", seed=0, progress=progress)
        acc = history[-1].get("test_acc", float("nan"))
        return model, (f"weights trained now: {DIGITS_RECIPE.epochs} epochs, test accuracy "
                       f"{acc:.4f}; the shipped weights are missing")


def _raster(sim: Any, path: Path, title: str) -> Path:
    from .plots import plot_raster

    plot_raster(sim, path, sample=0, title=title)
    return path


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="onespike-out",
              show_default=True, help="Folder for the raster PNG and the converted network.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of a table.")
@click.option("--neuron", type=click.Choice(["alpha", "constant-slope"]), default="alpha",
              show_default=True, help="Neuron model of the spiking network.")
@click.option("--no-plot", is_flag=True, help="Do not write the raster PNG.")
def demo(out_dir: str, as_json: bool, neuron: str, no_plot: bool) -> None:
    """Convert the pretrained digits CNN and compare it with its spiking twin.

    Loads the shipped digits CNN (trains it first if the weights are missing), converts it
    with the digits train split as calibration data, runs the ReLU network and the spiking
    network (event engine) on the 450 held-out digits and prints accuracies, agreement, the
    largest logit difference, the exactness certificate, spikes per neuron, synaptic events
    and latency. Writes OUT/digits_cnn.onespike and a spike raster OUT/raster.png.
    """
    import onespike

    from .data import load_dataset
    from .evaluation import evaluate

    t_start = time.perf_counter()
    out = Path(out_dir)
    check_output_file(out / "digits_cnn.onespike", "--out", None)
    if not no_plot:
        check_output_file(out / "raster.png", "--out", None)
    progress = _progress()
    model, weights = _demo_model(progress)
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    t0 = time.perf_counter()
    snn = onespike.convert(model, train.images, neuron=neuron, progress=progress)
    snn.meta.update({"source": "built-in digits_cnn", "dataset": "digits",
                     "calibration": f"{train.name} ({len(train)} samples)"})
    t_convert = time.perf_counter() - t0
    ev = evaluate(snn, test.images, test.labels, model=model, engine="event", progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    snn_file = _save(snn, out / "digits_cnn.onespike")
    raster = None
    if not no_plot:
        sim = snn.simulate(test.images[:1], "event")
        raster = _raster(sim, out / "raster.png",
                         f"digits CNN as a single-spike network ({neuron}); test digit "
                         f"{int(test.labels[0])}")
    total = time.perf_counter() - t_start
    if as_json:
        d = ev.as_dict()
        d.pop("activity", None)
        _echo_json({
            "model": "digits_cnn", "weights": weights, "neuron": neuron,
            "calibration_samples": len(train), **d,
            "latency": snn.latency, "snn_file": str(snn_file),
            "raster": str(raster) if raster else None,
            "seconds": {"convert": round(t_convert, 3), "total": round(total, 3)},
        })
        return
    click.echo(f"digits CNN ({weights}), calibrated on {len(train)} training digits, "
               f"{neuron} neurons")
    click.echo(_table(_results_rows(ev, snn.latency)))
    click.echo(f"\nsaved {snn_file}" + (f" and {raster}" if raster else "")
               + f"  ({total:.1f} s in all)")


# -- convert ------------------------------------------------------------------------------------
@main.command()
@click.option("--model", "model", required=True, metavar="SPEC",
              help="pkg.module:factory or file.py:factory (callable returning an nn.Module, "
              "or an nn.Module object; the current folder is importable), a TorchScript .pt "
              "(scripted nn.Sequential), a torch.export .pt2, or a built-in name "
              "(digits_cnn, …: shipped weights unless --weights).")
@_conversion_options(required_calibration=True)
@click.option("--root", type=click.Path(), metavar="DIR",
              help="Where a dataset's files are: a folder (cifar10, cifar100, imagefolder, "
              "fashion-mnist elsewhere than the default) or a CIFAR .tar.gz archive.")
@click.option("--clip", is_flag=True, help="Clip calibration inputs to the input range "
              "instead of failing.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="snn.onespike",
              show_default=True, help="Where to write the spiking network.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def convert(out: str, as_json: bool, **opts: Any) -> None:
    """Convert a trained ReLU model into a spiking network file (.onespike).

    Example: onespike convert --model mypkg.nets:make_cnn --weights cnn.safetensors
    --calibration digits --out cnn.onespike
    """
    check_output_file(out)
    snn, _ = _convert(opts)
    path = _save(snn, out)
    summary = snn.summary()
    if as_json:
        _echo_json({"file": str(path), **summary})
        return
    click.echo(f"saved {path}: {len(snn.layers)} layers ({len(snn.hidden_layers)} spiking + "
               f"readout), {summary['hidden_neurons']:,} hidden neurons, "
               f"{summary['synapses']:,} synapses, latency {snn.latency:.4g} τ_c, "
               f"{snn.neuron} neurons, calibrated on {snn.meta['calibration']}")


# -- evaluate -----------------------------------------------------------------------------------
@main.command()
@click.option("--snn", "snn_file", type=click.Path(dir_okay=False),
              help="A .onespike file written by 'onespike convert' or onespike.save.")
@click.option("--model", "model", metavar="SPEC",
              help="The ReLU model (as in 'onespike convert'); with --snn it gives the ReLU "
              "accuracy, without --snn it is converted first.")
@_conversion_options(required_calibration=False)
@click.option("--dataset", help="Evaluation data: a dataset name (digits, fashion-mnist, "
              "cifar10, cifar100, imagefolder) or a dataset folder. Default: the dataset the "
              "network was calibrated on.")
@click.option("--split", type=click.Choice(["train", "test"]), default="test",
              show_default=True, help="Split of the evaluation dataset.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N samples only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Samples simulated at a time.")
@click.option("--root", type=click.Path(), metavar="DIR",
              help="Dataset folder or CIFAR .tar.gz archive (see convert).")
@click.option("--engine", type=click.Choice(["event", "closed"]), default="event",
              show_default=True, help="event: exact dynamics; closed: t = t_max − ReLU(z) "
              "plus the certificate.")
@click.option("--clip", is_flag=True, help="Clip inputs to the network's input range.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def evaluate(snn_file: str | None, dataset: str | None, split: str, limit: int | None,
             batch_size: int, engine: str, as_json: bool, **opts: Any) -> None:
    """Compare a spiking network with its ReLU network on a labelled dataset.

    Reports ReLU accuracy, SNN accuracy, agreement of the predictions, the largest logit
    difference, the exactness certificate, spikes per neuron and synaptic events. Without
    --model the ReLU logits come from the folded ReLU network stored in the spiking network
    (snn.reference), which equals the original model up to rounding.

    The conversion options (--calibration … --dtype) apply when --model is converted (no
    --snn). --normalize also normalises the evaluation data; a network converted with
    --normalize remembers it.
    """
    import onespike

    from .evaluation import check_input_shape
    from .evaluation import evaluate as run_evaluation

    if snn_file is None and opts.get("model") is None:
        raise click.UsageError("give --snn FILE, --model SPEC, or both")
    if snn_file is not None:
        _refuse_conversion_options()
    if opts.get("weights") and opts.get("model") is None:
        raise click.UsageError("--weights needs --model")
    model = None
    if snn_file is not None:
        snn = onespike.load(snn_file)
        if opts.get("model") is not None:
            from .modelspec import load_model

            model, _ = load_model(opts["model"], opts.get("weights"))
    dataset = dataset or (snn.meta.get("dataset") if snn_file is not None else None)
    if dataset is None:
        raise click.UsageError("--dataset is required (the network does not record one)")
    if snn_file is None:
        snn, model = _convert(opts, default_calibration=dataset)
    data = load_data(dataset, split, limit, opts.get("root"))
    check_input_shape(snn, tuple(data.images.shape[1:]), f"dataset {data.name}")
    images = _apply_normalization(data.images, _evaluation_normalization(opts, snn))
    _warn_range_mismatch(snn, images, data.name)
    ev = run_evaluation(snn, images, data.labels, model=model, engine=engine,
                        batch_size=batch_size, clip=opts.get("clip", False),
                        progress=_progress())
    if as_json:
        d = ev.as_dict()
        d.update({"dataset": data.name, "latency": snn.latency,
                  "snn": snn_file, "model": opts.get("model")})
        _echo_json(d)
        return
    click.echo(f"{data.name}: {len(data)} samples, {snn.neuron} neurons, engine {engine}")
    click.echo(_table(_results_rows(ev, snn.latency)))
    if ev.relu_source != "model":
        click.echo("(ReLU accuracy from the folded ReLU network inside the spiking network; "
                   "pass --model to compare with the original model)")


_CONVERSION_ONLY = ("calibration", "calibration_samples", "calibration_split", "input_range",
                    "zeta", "neuron", "dtype")


def _refuse_conversion_options() -> None:
    """With --snn nothing is converted: refuse conversion options rather than ignore them."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [f"--{n.replace('_', '-')}" for n in _CONVERSION_ONLY
             if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{', '.join(given)} only apply when converting --model; the "
                               "network given with --snn is already converted")


# -- info -----------------------------------------------------------------------------------------
def _routes_text(routes: list[dict[str, Any]]) -> str:
    parts = []
    for r in routes:
        if r["type"] == "maxpool":
            parts.append(("signed " if r.get("signed") else "") + "maxpool"
                         + "x".join(map(str, r["kernel"])))
        else:
            parts.append(str(r["type"]))
    return "+".join(parts) or "-"


def _edges_text(edges: list[dict[str, Any]], key: Any) -> str:
    return ", ".join(key(e) for e in edges) or "-"


def _shape(shape: Any) -> str:
    return "x".join(map(str, shape))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(file: str, as_json: bool) -> None:
    """Describe a saved spiking network: populations and the edges that feed them, windows,
    delays, latency, neuron and synapse counts."""
    import onespike

    from .io import FORMAT_VERSION

    snn = onespike.load(file)
    s = snn.summary()
    if as_json:
        _echo_json({"file": file, "format_version": FORMAT_VERSION,
                    "bytes": Path(file).stat().st_size, **s})
        return
    rows: list[tuple[str, ...]] = [("#", "layer", "from", "kind", "routes", "in", "out",
                                    "t_min", "t_max", "B", "neurons", "synapses")]
    for i, ly in enumerate(s["layers"]):
        b = ly["t_max"] - ly["t_min"]
        edges = ly.get("edges", [])
        rows.append((
            str(i), ly["name"],
            _edges_text(edges, lambda e: e["source"] + (f" (+{e['delay']:.4g} τ_c)"
                                                        if e.get("delay") else "")),
            _edges_text(edges, lambda e: e["kind"]),
            _edges_text(edges, lambda e: _routes_text(e.get("routes", []))),
            _edges_text(edges, lambda e: _shape(e["in_shape"])), _shape(ly["out_shape"]),
            f"{ly['t_min']:.4g}", f"{ly['t_max']:.4g}",
            "readout" if ly["readout"] else f"{b:.4g}",
            f"{ly['neurons']:,}", f"{ly['synapses']:,}"))
    click.echo(f"{file}: {s['neuron']} neurons, zeta {s['zeta']:g}, {s['dtype']}, input "
               f"{_shape(s['input_shape'])} -> output {_shape(s['output_shape'])}")
    click.echo(_table(rows, align="rlllllllrrrr"))
    delays = ""
    if s.get("delayed_edges"):
        delays = (f"; {s['delayed_edges']} of {s['edges']} edges delayed (up to "
                  f"{s['max_delay']:.4g} τ_c)")
    click.echo(f"latency {s['latency']:.4g} τ_c; neurons: {s['input_neurons']:,} input + "
               f"{s['hidden_neurons']:,} hidden; synapses {s['synapses']:,}{delays}")
    if s.get("normalization"):
        n = s["normalization"]
        click.echo(f"input normalisation: mean {n['mean']}, std {n['std']}")
    meta = {k: v for k, v in s["meta"].items() if k not in ("normalize",)}
    if meta:
        click.echo("meta: " + ", ".join(f"{k}={v}" for k, v in meta.items()))


if __name__ == "__main__":  # pragma: no cover
    main()
