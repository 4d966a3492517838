"""``onespike.convert``: the pipeline trace → fold → scale → calibrate → map."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from onespike._version import __version__
from onespike.conversion.calibrate import calibrate, iter_inputs
from onespike.conversion.fold import fold
from onespike.conversion.mapping import build_layers, window_sizes
from onespike.conversion.scale import scale_for_model_a
from onespike.conversion.trace import to_graph, validate_and_trace
from onespike.data.batching import first_inputs, shard_batches
from onespike.distributed import Coordinator, model_fingerprint, shard_bounds
from onespike.errors import ArgumentError, ArgumentTypeError, CalibrationError
from onespike.network.snn import SpikingNetwork, check_normalization
from onespike.simulation.neurons import NEURON_MODELS, get_neuron

__all__ = ["convert"]

RangeBound = float | Sequence[float] | Tensor


def _range_map(value: RangeBound, shape: tuple[int, ...], dtype: torch.dtype,
               device: torch.device, what: str) -> Tensor:
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.dim() == 0:
        return t.expand(shape).clone()
    if t.dim() == 1 and shape and t.numel() == shape[0]:
        return t.reshape((-1,) + (1,) * (len(shape) - 1)).expand(shape).clone()
    if tuple(t.shape) == tuple(shape):
        return t.clone()
    raise ArgumentError(
        f"input_range {what} has shape {tuple(t.shape)}; give a scalar, one value per channel "
        f"({shape[0] if shape else 1}) or a full map {shape}"
    )


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in itertools.chain(model.parameters(), model.buffers()):
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def convert(
    model: nn.Module,
    calibration: Any,
    *,
    input_range: tuple[RangeBound, RangeBound] = (0.0, 1.0),
    zeta: float = 0.5,
    neuron: str = "alpha",
    dtype: torch.dtype = torch.float64,
    clip: bool = False,
    progress: bool = True,
    normalization: tuple[Any, Any] | None = None,
    batch_size: int = 256,
    workers: int = 0,
) -> SpikingNetwork:
    """Convert a trained ReLU network into an exact single-spike network.

    Args:
        model: an ``nn.Module`` made of supported layers (see the README). It is converted
            with its inference behaviour: a model left in training mode is converted as in
            ``model.eval()`` (with a warning; the model itself is not modified).
        calibration: model inputs used to size the time windows — a tensor, an in-memory
            :class:`~onespike.data.Dataset`, a map-style ``torch.utils.data.Dataset`` of
            ``(input, label)`` items (e.g. ``load_dataset(..., stream=True)``, read
            ``batch_size`` items at a time with ``workers`` loader processes), a
            ``DataLoader``, or an iterable of tensors or of ``(input, label)`` batches.
        input_range: ``(p, q)`` — scalars, per-channel sequences or full maps — bounding the
            values the model's input takes (e.g. ``((0-m)/s, (1-m)/s)`` after
            ``Normalize(m, s)``).
        zeta: window margin, ``B_n = (1 + zeta)·X_n``.
        neuron: ``"alpha"`` (model A, the paper's: every neuron fires once; includes the
            weight scaling step) or ``"constant-slope"`` (model B: zeros stay silent).
        dtype: floating dtype of the spiking network (float64 by default: exactness).
        clip: clip calibration inputs to ``input_range`` instead of raising.
        progress: show a progress bar while calibrating.
        normalization: ``(mean, std)`` (scalars or per channel) of the ``Normalize`` that
            turned pixels in ``[0, 1]`` into the model's inputs. It is recorded in the network
            (``snn.normalization``, saved with it, applied by ``snn.normalize(images)`` and the
            CLI), and when ``input_range`` is left at its default the range becomes
            ``((0 − mean)/std, (1 − mean)/std)``.
        batch_size, workers: how a dataset is read (a tensor is one batch).

    With an initialised ``torch.distributed`` process group of several processes, every rank
    calls ``convert`` with the same model and calibration data: each calibrates its contiguous
    shard, the per-population maxima are all-reduced (MAX), and every rank returns the network
    a single process would build — bit-identical windows, byte-identical saved file. The
    ranks first check that they convert the same model (a hash) with the same versions and
    data size; a failure on any rank raises :class:`~onespike.DistributedError` on all.

    Raises:
        UnsupportedOperationError: an operation cannot be mapped (raised before any
            calibration work), naming it and its module path / graph node.
        UnsupportedModelError, CalibrationError, InputRangeError, ValueError.
    """
    if neuron not in NEURON_MODELS:
        raise ArgumentError(f"neuron must be one of {NEURON_MODELS}, got {neuron!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ArgumentError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    window_sizes([1.0], zeta)  # validates zeta
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")

    gm = validate_and_trace(model)  # refuses unsupported operations before touching data

    training = [name or "<model>" for name, m in model.named_modules() if m.training]
    if training:
        warnings.warn(
            f"model is in training mode ({len(training)} modules, e.g. {training[0]!r}); "
            "converting its inference behaviour (as after model.eval()): batch norm uses its "
            "running statistics and dropout is the identity",
            UserWarning,
            stacklevel=2,
        )
    device, model_dtype = _model_device_dtype(model)
    coord = Coordinator("calibrate")
    first = first_inputs(calibration, 2)
    total: int | None = None
    size: int | None = None
    if first is None:  # a one-shot iterable of batches: this rank's own share
        batches = iter_inputs(calibration)
        try:
            first = next(batches)
        except StopIteration:
            raise CalibrationError(
                "the calibration set is empty; pass a tensor or batches of representative "
                "inputs") from None
        shard: Iterator[Tensor] = itertools.chain([first], batches)
    else:
        if isinstance(calibration, Tensor) and calibration.dim() >= 1:
            lo, hi = shard_bounds(int(calibration.shape[0]), coord.rank, coord.world_size)
            batch_size = max(1, hi - lo)  # a tensor is calibrated as one batch
        part = shard_batches(calibration, batch_size=batch_size, workers=workers,
                             rank=coord.rank, world_size=coord.world_size,
                             what="calibration", whole_batches=False)
        shard, total, size = (x for x, _ in part.batches), part.size, part.total
    if first.dim() < 1 or first.shape[0] == 0:
        raise CalibrationError(
            f"calibration batch has shape {tuple(first.shape)}; expected (batch, ...) with at "
            "least one sample"
        )
    coord.check_same({
        "onespike": __version__, "torch": torch.__version__,
        "model": model_fingerprint(model), "neuron": neuron, "zeta": zeta, "dtype": str(dtype),
        "clip": clip, "calibration_shape": tuple(first.shape[1:]),
        "calibration_samples": size,  # None: each rank's own iterable
    })
    sample = first[:2].to(device=device, dtype=model_dtype if first.is_floating_point()
                          else first.dtype)
    flags = {m: m.training for m in gm.modules()}
    try:
        gm.eval()
        graph = to_graph(gm, sample, dtype)
    finally:
        for m, f in flags.items():
            m.train(f)

    input_shape = graph.nodes[0].out_shape
    norm = None
    if normalization is not None:
        norm = check_normalization(*normalization)
        if tuple(input_range) == (0.0, 1.0):
            n = max(len(norm[0]), len(norm[1]))
            mu = norm[0] * n if len(norm[0]) == 1 else norm[0]
            sd = norm[1] * n if len(norm[1]) == 1 else norm[1]
            input_range = ([(0 - a) / b for a, b in zip(mu, sd)],
                           [(1 - a) / b for a, b in zip(mu, sd)])
    low = _range_map(input_range[0], input_shape, dtype, device, "low")
    high = _range_map(input_range[1], input_shape, dtype, device, "high")
    if not bool(torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ArgumentError(
            f"input_range must be finite, got {input_range}: the input is encoded as spike "
            "times t = 1 − (x − low)/(high − low), which needs finite bounds; give the range "
            "the data really take (e.g. (0, 1) for pixels, or the normalised bounds)"
        )
    if not bool((high > low).all()):
        raise ArgumentError(f"input_range must have high > low everywhere, got {input_range}")

    folded = fold(graph, low, high)
    if get_neuron(neuron).needs_scaling:
        scale_for_model_a(folded)

    probe = SpikingNetwork([], input_shape=input_shape, input_low=low, input_high=high,
                           output_routes=[], neuron=neuron, zeta=zeta)

    def encode(x: Tensor, name: str) -> Tensor:
        return probe.encode(x, clip=clip, name=name)

    X, count = calibrate(folded, shard, encode, progress=progress, total=total,
                         coordinator=coord)
    layers = build_layers(folded, X, neuron, zeta)
    meta = {"calibration_samples": count, "model": type(model).__name__}
    return SpikingNetwork(layers, input_shape=input_shape, input_low=low, input_high=high,
                          output_routes=folded.output_routes, neuron=neuron, zeta=zeta,
                          meta=meta, normalization=norm)
