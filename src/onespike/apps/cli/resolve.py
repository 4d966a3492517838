"""The one resolver behind every command: from parsed options to a spiking network, the ReLU
model it came from and the data to run.

* :func:`resolve_network` — ``--snn FILE`` (loaded), ``--model SPEC`` (converted with the
  conversion options; with ``--snn``, the ReLU model to compare with) or ``--demo`` (the
  shipped digits CNN, converted on the digits);
* :func:`resolve_data` — ``--dataset`` (default: the dataset the network records), split,
  ``--limit``, ``--root``, normalised as the network was converted (``--normalize``);
* output files are checked before any work (:func:`check_output_file`) and written with
  messages that name the path the user gave (:func:`save_network`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from onespike.apps.cli.errors import cli_spelling
from onespike.apps.cli.options import CONVERSION_ONLY, DATA_HINT
from onespike.errors import ArgumentError

__all__ = [
    "NetworkSource",
    "check_output_file",
    "convert_model",
    "demo_model",
    "load_data",
    "progress_enabled",
    "resolve_data",
    "resolve_network",
    "resolve_stream",
    "save_network",
]

#: Suffixes of tensor files (read by --calibration directly, not as a dataset).
_TENSOR_SUFFIXES = (".pt", ".pth", ".safetensors")


@dataclass
class NetworkSource:
    """A resolved network: ``snn``; ``model`` the ReLU model when one was given or converted
    (None: compare with ``snn.reference``); ``origin`` a description; ``dataset`` the data it
    is meant for (given, recorded, or digits for the demo); ``file`` the ``--snn`` path."""

    snn: Any
    model: Any
    origin: str
    dataset: str | None
    file: str | None = None


def progress_enabled(asked: bool | None = None) -> bool:
    """Progress bars: never under ``onespike -q``; else as ``asked`` (a command's own
    ``--progress/--no-progress``), by default when stderr is a terminal."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().params.get("quiet"):
        return False
    return sys.stderr.isatty() if asked is None else bool(asked)


# -- files ------------------------------------------------------------------------------------
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


def save_network(snn: Any, path: str | os.PathLike[str]) -> Path:
    """:func:`onespike.save` whose failures name ``path``, not the temporary file it writes
    first."""
    from onespike.network import save

    try:
        return save(snn, path)
    except OSError as exc:
        why = (exc.strerror or type(exc).__name__).lower()
        raise click.ClickException(f"cannot write {os.fspath(path)}: {why}") from None


# -- values -----------------------------------------------------------------------------------
def _pairs(values: tuple[tuple[str, str], ...], what: str) -> tuple[list[float], list[float]]:
    from onespike.apps.modelspec import parse_values

    a: list[float] = []
    b: list[float] = []
    for x, y in values:
        a += parse_values(x, what)
        b += parse_values(y, what)
    return a, b


def _scalar_or_list(v: list[float]) -> float | list[float]:
    return v[0] if len(v) == 1 else v


def _normalization(opts: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    return _pairs(opts["normalize"], "--normalize") if opts.get("normalize") else None


def _input_range(opts: dict[str, Any], natural: tuple[float, float] | None) -> tuple[Any, Any]:
    from onespike.apps.modelspec import normalization_range

    if opts.get("input_range") and opts.get("normalize"):
        raise click.UsageError("give --input-range or --normalize, not both")
    if opts.get("input_range"):
        low, high = _pairs(opts["input_range"], "--input-range")
        return _scalar_or_list(low), _scalar_or_list(high)
    norm = _normalization(opts)
    if norm is not None:
        lo, hi = normalization_range(*norm)
        return _scalar_or_list(lo), _scalar_or_list(hi)
    return natural if natural is not None else (0.0, 1.0)


def _check_channels(norm: tuple[list[float], list[float]], channels: int) -> None:
    """``--normalize`` gives one value, or one per channel."""
    if len(norm[0]) not in (1, channels) or len(norm[1]) not in (1, channels):
        raise click.UsageError(f"--normalize has {len(norm[0])} value(s) but the images have "
                               f"{channels} channel(s)")


def _apply_normalization(images: Any, norm: tuple[list[float], list[float]] | None) -> Any:
    if norm is None:
        return images
    import torch

    mean, std = (torch.tensor(v, dtype=images.dtype, device=images.device) for v in norm)
    _check_channels(norm, int(images.shape[1]))
    shape = (1, -1) + (1,) * (images.dim() - 2)
    return (images - mean.reshape(shape)) / std.reshape(shape)


# -- data -------------------------------------------------------------------------------------
def load_data(name_or_path: str, split: str, limit: int | None, root: str | None,
              stream: bool = False) -> Any:
    """:func:`onespike.data.load_dataset`; a dataset that needs ``--root`` without one (or a
    path and ``--root`` both) is a usage error, worded with the option. ``stream``: a
    :class:`~onespike.data.StreamingDataset` where the loader can stream (not the digits)."""
    from onespike.data import load_dataset

    try:
        return load_dataset(name_or_path, split, limit=limit, root=root, stream=stream)
    except ArgumentError as exc:
        if exc.facts.get("argument") == "root":
            raise click.UsageError(exc.render(cli_spelling)) from None
        raise


def _calibration_data(opts: dict[str, Any], default: str | None
                      ) -> tuple[Any, str, tuple[float, float] | None]:
    """(inputs, description, natural pixel range or None) of the calibration data."""
    from onespike.apps.modelspec import load_tensor_file

    spec = opts.get("calibration") or default
    if spec is None:
        raise click.UsageError("--calibration is required: " + DATA_HINT)
    if Path(spec).suffix.lower() in _TENSOR_SUFFIXES:  # also when missing: "not found"
        x = load_tensor_file(spec)[: opts["calibration_samples"]]
        return x, f"{spec} ({x.shape[0]} samples)", None
    ds = load_data(spec, opts.get("calibration_split", "train"), opts["calibration_samples"],
                   opts.get("root"), stream=True)
    x = _normalized(ds, _normalization(opts))
    return x, f"{ds.name} ({len(ds)} samples)", ds.input_range


def _normalized(ds: Any, norm: tuple[list[float], list[float]] | None) -> Any:
    """The images of ``ds`` normalised with ``norm``: a tensor for an in-memory dataset, a
    streaming dataset normalising each item for a streaming one."""
    from onespike.data import StreamingDataset

    if isinstance(ds, StreamingDataset):
        if norm is not None:
            _check_channels(norm, ds.input_shape[0])
        return ds.with_normalization(norm)
    return _apply_normalization(ds.images, norm)


def _check_model_accepts(model: Any, calib: Any, desc: str) -> None:
    """Run the model on one calibration sample: a clean error for a shape mismatch."""
    import torch

    from onespike.data.batching import first_inputs
    from onespike.errors import CalibrationError

    head = first_inputs(calib, 1)
    calib = head if head is not None else calib
    if calib.dim() < 1 or calib.shape[0] == 0:
        raise CalibrationError(f"calibration data {desc} is empty", data=desc)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), calib.dtype)
    try:
        with torch.no_grad():
            model(calib[:1].to(dtype))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CalibrationError(
            f"the model rejects calibration samples of shape {tuple(calib.shape[1:])} from "
            f"{desc} ({type(exc).__name__}: {first}); give {{calibration}} data of the shape "
            "the model was built for", params=("calibration",), data=desc,
            shape=tuple(calib.shape[1:])) from None


def demo_model() -> tuple[Any, str]:
    """The shipped digits CNN (trained now, with the shipped recipe, if its weights are
    missing) and a description of its weights."""
    from onespike.models import load_pretrained

    try:
        return load_pretrained("digits_cnn"), "shipped weights"
    except FileNotFoundError:
        from onespike.apps.training import DIGITS_RECIPE, train_pretrained

        click.echo("digits_cnn weights are not shipped: training them now…", err=True)
        model, history = train_pretrained("digits_cnn", seed=0, progress=progress_enabled())
        acc = history[-1].get("test_acc", float("nan"))
        return model, (f"weights trained now: {DIGITS_RECIPE.epochs} epochs, test accuracy "
                       f"{acc:.4f}; the shipped weights are missing")


def convert_model(model: Any, opts: dict[str, Any], calibration: str | None
                  ) -> tuple[Any, int]:
    """Convert ``model`` as the conversion options say (calibration data: ``--calibration``,
    else ``calibration``); returns the network and the number of calibration samples."""
    import torch

    from onespike.conversion import convert

    calib, calib_desc, natural = _calibration_data(opts, calibration)
    _check_model_accepts(model, calib, calib_desc)
    low, high = _input_range(opts, natural)
    dtype = torch.float64 if opts.get("dtype", "float64") == "float64" else torch.float32
    snn = convert(model, calib, input_range=(low, high), zeta=opts.get("zeta", 0.5),
                  neuron=opts.get("neuron", "alpha"), dtype=dtype,
                  clip=opts.get("clip", False), progress=progress_enabled(),
                  normalization=_normalization(opts), workers=opts.get("workers") or 0)
    snn.meta["calibration"] = calib_desc
    spec = opts.get("calibration") or calibration
    if spec and not Path(spec).suffix:
        snn.meta["dataset"] = spec
    return snn, int(snn.meta["calibration_samples"])


def _refuse_conversion_options() -> None:
    """With --snn nothing is converted: refuse conversion options rather than ignore them."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [f"--{n.replace('_', '-')}" for n in CONVERSION_ONLY
             if n in ctx.params and ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{', '.join(given)} only apply when converting --model; the "
                               "network given with --snn is already converted")


def resolve_network(opts: dict[str, Any], *, allow_reference_model: bool = True
                    ) -> NetworkSource:
    """The network the options name (see the module docstring). ``allow_reference_model``:
    ``--snn`` and ``--model`` together (the model is the ReLU reference)."""
    snn_file, spec, demo = opts.get("snn_file"), opts.get("model"), opts.get("demo", False)
    if demo and (snn_file or spec):
        raise click.UsageError("--demo takes no --snn or --model")
    if not (snn_file or spec or demo):
        ways = [w for key, w in (("snn_file", "--snn FILE"), ("model", "--model SPEC"),
                                 ("demo", "--demo")) if key in opts]
        raise click.UsageError("give " + ", ".join(ways[:-1]) + " or " + ways[-1])
    if snn_file and spec and not allow_reference_model:
        raise click.UsageError("give --snn FILE or --model SPEC, not both")
    if opts.get("weights") and not spec:
        raise click.UsageError("--weights needs --model")
    dataset = opts.get("dataset")
    if spec and not snn_file and not (opts.get("calibration") or dataset):
        raise click.UsageError("--model needs --calibration DATA"
                               + (" or --dataset (its train split calibrates)"
                                  if "dataset" in opts else ""))
    model = None
    if spec:
        from onespike.apps.modelspec import load_model

        model, origin = load_model(spec, opts.get("weights"))
    if snn_file:
        from onespike.network import load

        _refuse_conversion_options()
        snn = load(snn_file)
        return NetworkSource(snn, model, snn_file, dataset or snn.meta.get("dataset"),
                             snn_file)
    if demo:
        model, weights = demo_model()
        dataset = dataset or "digits"
        origin = f"built-in digits_cnn ({weights})"
    snn, _ = convert_model(model, opts, dataset if not demo else (opts.get("calibration")
                                                                  or "digits"))
    snn.meta["source"] = origin
    return NetworkSource(snn, model, origin, dataset or snn.meta.get("dataset"))


def _evaluation_normalization(opts: dict[str, Any], snn: Any
                              ) -> tuple[list[float], list[float]] | None:
    """The normalisation to apply before running ``snn``: the one it records; a different
    ``--normalize`` is refused (it would silently feed the network other inputs)."""
    given = _normalization(opts) if "normalize" in opts else None
    stored = snn.normalization
    if given is not None and stored is not None:
        from onespike.network.snn import check_normalization

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


def _dataset_name(opts: dict[str, Any], src: NetworkSource) -> str:
    """``--dataset``, else the dataset the network is meant for."""
    dataset = opts.get("dataset") or src.dataset
    if not dataset:
        where = f"{src.file} does not record" if src.file else "the network does not record"
        raise click.UsageError(f"--dataset is required ({where} its dataset)")
    return str(dataset)


def resolve_stream(opts: dict[str, Any], src: NetworkSource) -> tuple[Any, Any]:
    """``(dataset, data)`` as :func:`resolve_data`, but streamed where the loader can
    (image folders, CIFAR, Fashion-MNIST): ``data`` is a dataset of ``(image, label)``
    items normalised as the network expects, read batch by batch (``--workers``), so that
    memory does not grow with the number of images. The range check looks at the first
    images."""
    from onespike.analysis.evaluation import check_input_shape
    from onespike.data import StreamingDataset
    from onespike.data.batching import first_inputs

    dataset = _dataset_name(opts, src)
    data = load_data(dataset, opts.get("split", "test"), opts.get("limit"), opts.get("root"),
                     stream=True)
    if not isinstance(data, StreamingDataset):
        return resolve_data(opts, src, data)
    if len(data):
        check_input_shape(src.snn, data.input_shape, f"dataset {data.name}")
    norm = _evaluation_normalization(opts, src.snn)
    stream = _normalized(data, norm)
    head = first_inputs(stream, 4)
    if head is not None:
        _warn_range_mismatch(src.snn, head, data.name)
    return data, stream


def resolve_data(opts: dict[str, Any], src: NetworkSource, data: Any = None
                 ) -> tuple[Any, Any]:
    """``(dataset, images)``: the data the options name (default: the network's own dataset),
    its images normalised as the network expects; shapes checked, a range mismatch warned."""
    from onespike.analysis.evaluation import check_input_shape

    dataset = _dataset_name(opts, src)
    if data is None:
        data = load_data(dataset, opts.get("split", "test"), opts.get("limit"),
                         opts.get("root"))
    check_input_shape(src.snn, tuple(data.images.shape[1:]), f"dataset {data.name}")
    norm = _evaluation_normalization(opts, src.snn)
    images = (src.snn.normalize(data.images) if src.snn.normalization is not None
              else _apply_normalization(data.images, norm))
    _warn_range_mismatch(src.snn, images, data.name)
    return data, images
