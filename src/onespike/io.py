"""Save and load converted networks: :func:`save` and :func:`load` (no pickle anywhere).

File format (``format_version`` 1)
----------------------------------
A ``.onespike`` file is a plain `safetensors <https://github.com/huggingface/safetensors>`_
file:

* **tensors**: the network's ``state_dict()`` — ``input_low``, ``input_high`` and every
  layer's buffers ``layers.<i>.<buffer>`` (``weight``, ``bias``, ``S``, ``alpha``, ``G``,
  ``theta``, ``route<j>_sign``) — plus ``output_routes.<j>.sign`` for a signed max pool after
  the readout (rare);
* **header** ``__metadata__`` (a str → str map) with two keys:

  - ``"onespike"``: a JSON document ``{"format": "onespike", "format_version": 1,
    "onespike_version", "neuron", "zeta", "dtype", "input_shape", "output_shape",
    "latency", "output_routes": [route…], "layers": [layer…], "tensors": {name: {"dtype",
    "shape"}}, "meta": {…}}`` where each layer is :meth:`SpikingLayer.describe` (geometry,
    windows ``t_min``/``t_max``/``B_in``/``X`` as exact JSON floats, routes);
  - ``"onespike_sha256"``: SHA-256 over the JSON text and every listed tensor (name, dtype,
    shape, raw bytes, in name order) — an integrity check that catches truncation, bit flips
    and edits (it is not a signature: whoever edits the file can recompute it).

Loading rebuilds every :class:`SpikingLayer` from its description and the stored ``weight`` /
``bias``, then overwrites all buffers with the stored tensors, so the loaded network computes
bit for bit what the saved one computed. Any defect — not a safetensors file, truncated
data, a header or JSON that does not parse, a missing/extra tensor, a wrong shape or dtype, a
checksum mismatch, an unknown or newer ``format_version`` — raises
:class:`~onespike.FormatError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .affine import Affine
from .errors import FormatError
from .layers import NEURON_MODELS, SpikingLayer
from .network import SpikingNetwork
from .routing import MaxPoolRoute, ReshapeRoute, Route

__all__ = ["FORMAT_VERSION", "load", "save"]

#: Version written by :func:`save`; :func:`load` reads versions 1 … FORMAT_VERSION.
FORMAT_VERSION = 1
_META_KEY = "onespike"
_DIGEST_KEY = "onespike_sha256"
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header
_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool,
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# -- saving ---------------------------------------------------------------------------------
def _route_to_json(r: Route) -> dict[str, Any]:
    if isinstance(r, MaxPoolRoute):
        return {
            "type": "maxpool", "dims": r.dims, "kernel": list(r.kernel),
            "stride": list(r.stride), "padding": list(r.padding), "dilation": list(r.dilation),
            "ceil_mode": r.ceil_mode, "in_shape": list(r.in_shape),
            "out_shape": list(r.out_shape), "signed": r.sign is not None, "source": r.source,
        }
    if isinstance(r, ReshapeRoute):
        return {"type": "reshape", "in_shape": list(r.in_shape), "out_shape": list(r.out_shape),
                "source": r.source}
    raise TypeError(f"cannot save route of type {type(r).__name__}")


def _tensors_of(snn: SpikingNetwork) -> dict[str, Tensor]:
    tensors = {k: v for k, v in snn.state_dict().items()}
    for j, r in enumerate(snn.output_routes):
        if isinstance(r, MaxPoolRoute) and r.sign is not None:
            tensors[f"output_routes.{j}.sign"] = r.sign
    # own, contiguous CPU copies: safetensors refuses shared or strided storage
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def _digest(text: str, tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    h.update(text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{_dtype_name(t.dtype)}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _describe(snn: SpikingNetwork, tensors: dict[str, Tensor]) -> dict[str, Any]:
    from . import __version__

    return {
        "format": "onespike",
        "format_version": FORMAT_VERSION,
        "onespike_version": __version__,
        "neuron": snn.neuron,
        "zeta": snn.zeta,
        "dtype": _dtype_name(snn.dtype),
        "input_shape": list(snn.input_shape),
        "output_shape": list(snn.output_shape),
        "latency": snn.latency,
        "output_routes": [_route_to_json(r) for r in snn.output_routes],
        "layers": [ly.describe() for ly in snn.layers],  # type: ignore[operator]
        "tensors": {k: {"dtype": _dtype_name(v.dtype), "shape": list(v.shape)}
                    for k, v in sorted(tensors.items())},
        "meta": snn.meta,
    }


def save(snn: SpikingNetwork, path: str | os.PathLike[str]) -> Path:
    """Write ``snn`` to ``path`` (conventionally ``*.onespike``; see the module docstring for
    the format). The file is written atomically (temporary file, then rename). ``meta`` values
    that are not JSON types are stored as their ``str()``. Returns the path."""
    from safetensors.torch import save as st_save

    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"save() needs a SpikingNetwork, got {type(snn).__name__}")
    path = Path(path)
    tensors = _tensors_of(snn)
    text = json.dumps(_describe(snn, tensors), default=str, sort_keys=True)
    blob = st_save(tensors, metadata={_META_KEY: text, _DIGEST_KEY: _digest(text, tensors)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# -- loading --------------------------------------------------------------------------------
class _Reader:
    """Validates one file; every failure is a :class:`FormatError` naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, what: str) -> FormatError:
        return FormatError(f"{self.path}: {what}")

    def header(self, data: bytes) -> dict[str, Any]:
        """Parse the safetensors header, checking it against the file size."""
        size = len(data)
        if size < 8:
            raise self.fail(f"not a onespike file: only {size} bytes (truncated or empty)")
        (n,) = struct.unpack("<Q", data[:8])
        if n > _MAX_HEADER:
            raise self.fail("not a onespike file (no safetensors header found)")
        if 8 + n > size:
            raise self.fail(f"truncated: the header declares {n} bytes but only {size - 8} "
                            "follow")
        try:
            header = json.loads(data[8 : 8 + n].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self.fail(f"corrupted or not a onespike file: header is not valid JSON "
                            f"({exc})") from None
        if not isinstance(header, dict):
            raise self.fail("corrupted or not a onespike file: header is not a JSON object")
        ends = [e.get("data_offsets", [0, 0])[1] for k, e in header.items()
                if k != "__metadata__" and isinstance(e, dict)
                and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2]
        data_len = size - 8 - n
        if any(not isinstance(e, int) for e in ends):
            raise self.fail("corrupted header: tensor offsets are not integers")
        if ends and max(ends) > data_len:
            raise self.fail(f"truncated: tensor data needs {max(ends)} bytes but only "
                            f"{data_len} are present")
        return header

    def document(self, header: dict[str, Any]) -> tuple[dict[str, Any], str, str | None]:
        meta = header.get("__metadata__")
        if not isinstance(meta, dict) or _META_KEY not in meta:
            raise self.fail("not a onespike file (a safetensors file without onespike "
                            "metadata); create one with onespike.save(snn, path)")
        text = meta[_META_KEY]
        if not isinstance(text, str):
            raise self.fail("corrupted onespike metadata (not a string)")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.fail(f"corrupted onespike metadata: invalid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != "onespike":
            raise self.fail("corrupted onespike metadata: missing 'format': 'onespike'")
        version = doc.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise self.fail(f"unknown format_version {version!r} (expected an integer 1…"
                            f"{FORMAT_VERSION})")
        if version > FORMAT_VERSION:
            raise self.fail(f"format_version {version} is newer than this onespike reads "
                            f"(up to {FORMAT_VERSION}); upgrade onespike to load it")
        digest = meta.get(_DIGEST_KEY)
        return doc, text, digest if isinstance(digest, str) else None

    def tensors(self, data: bytes, doc: dict[str, Any]) -> dict[str, Tensor]:
        from safetensors.torch import load as st_load

        try:
            tensors = st_load(data)
        except Exception as exc:  # safetensors raises its own SafetensorError (Rust)
            raise self.fail(f"corrupted tensor data ({type(exc).__name__}: {exc})") from None
        listed = doc.get("tensors")
        if not isinstance(listed, dict):
            raise self.fail("corrupted onespike metadata: no tensor list")
        missing = sorted(set(listed) - set(tensors))
        extra = sorted(set(tensors) - set(listed))
        if missing:
            raise self.fail(f"tensor(s) missing: {', '.join(missing[:5])}"
                            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        if extra:
            raise self.fail(f"unexpected tensor(s): {', '.join(extra[:5])}")
        for name, spec in listed.items():
            t = tensors[name]
            if not isinstance(spec, dict):
                raise self.fail(f"corrupted onespike metadata for tensor {name!r}")
            if list(t.shape) != spec.get("shape"):
                raise self.fail(f"tensor {name!r} has shape {list(t.shape)}, expected "
                                f"{spec.get('shape')}")
            if _dtype_name(t.dtype) != spec.get("dtype"):
                raise self.fail(f"tensor {name!r} has dtype {_dtype_name(t.dtype)}, expected "
                                f"{spec.get('dtype')}")
        return tensors


def _int_tuple(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(isinstance(i, int) for i in v):
        raise ValueError(f"expected a list of integers, got {v!r}")
    return tuple(v)


def _route_from_json(d: dict[str, Any], sign: Tensor | None) -> Route:
    if d["type"] == "reshape":
        return ReshapeRoute(_int_tuple(d["in_shape"]), _int_tuple(d["out_shape"]),
                            str(d.get("source", "")))
    if d["type"] == "maxpool":
        if bool(d["signed"]) != (sign is not None):
            raise ValueError("max pool sign tensor does not match its 'signed' flag")
        return MaxPoolRoute(int(d["dims"]), _int_tuple(d["kernel"]), _int_tuple(d["stride"]),
                            _int_tuple(d["padding"]), _int_tuple(d["dilation"]),
                            bool(d["ceil_mode"]), _int_tuple(d["in_shape"]),
                            _int_tuple(d["out_shape"]), sign, str(d.get("source", "")))
    raise ValueError(f"unknown route type {d['type']!r}")


def _float(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _check_geometry(d: dict[str, Any], weight: Tensor, bias: Tensor) -> None:
    """The layer description must agree with the stored weight and bias shapes."""
    in_shape, out_shape = _int_tuple(d["in_shape"]), _int_tuple(d["out_shape"])
    if tuple(bias.shape) != out_shape:
        raise ValueError(f"layer {d.get('name')!r}: bias shape {list(bias.shape)} does not "
                         f"match out_shape {list(out_shape)}")
    if d["kind"] == "linear":
        ok = weight.dim() == 2 and tuple(weight.shape) == (math.prod(out_shape),
                                                           math.prod(in_shape))
    elif d["kind"] == "conv":
        dims = int(d["dims"])
        ok = (weight.dim() == 2 + dims and len(in_shape) == len(out_shape) == 1 + dims
              and weight.shape[0] == out_shape[0]
              and weight.shape[1] * int(d["groups"]) == in_shape[0])
    else:
        raise ValueError(f"layer {d.get('name')!r}: unknown kind {d['kind']!r}")
    if not ok:
        raise ValueError(f"layer {d.get('name')!r}: weight shape {list(weight.shape)} does not "
                         f"match a {d['kind']} layer {list(in_shape)} -> {list(out_shape)}")


def _build_layer(i: int, d: dict[str, Any], tensors: dict[str, Tensor]) -> SpikingLayer:
    prefix = f"layers.{i}."
    _check_geometry(d, tensors[prefix + "weight"], tensors[prefix + "bias"])
    routes = [_route_from_json(r, tensors.get(f"{prefix}route{j}_sign"))
              for j, r in enumerate(d["routes"])]
    affine = Affine(str(d["kind"]), tensors[prefix + "weight"], tensors[prefix + "bias"],
                    _int_tuple(d["in_shape"]), _int_tuple(d["out_shape"]), int(d["dims"]),
                    _int_tuple(d["stride"]), _int_tuple(d["pad"]), _int_tuple(d["dilation"]),
                    int(d["groups"]))
    layer = SpikingLayer(
        name=str(d["name"]), source=str(d["source"]), affine=affine, routes=routes,
        neuron=str(d["neuron"]), readout=bool(d["readout"]),
        t_min=_float(d["t_min"], "t_min"), t_max=_float(d["t_max"], "t_max"),
        B_in=_float(d["B_in"], "B_in"), X=_float(d["X"], "X"), synthetic=bool(d["synthetic"]),
    )
    # the constructor recomputes S/G/theta/alpha; the stored tensors are authoritative
    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    layer.load_state_dict(own, strict=True)
    return layer


def _build(doc: dict[str, Any], tensors: dict[str, Tensor]) -> SpikingNetwork:
    if doc["neuron"] not in NEURON_MODELS:
        raise ValueError(f"unknown neuron model {doc['neuron']!r}")
    dtype = _DTYPES.get(doc["dtype"])
    if dtype is None or not dtype.is_floating_point:
        raise ValueError(f"unknown dtype {doc['dtype']!r}")
    for name, t in tensors.items():
        if t.is_floating_point() and t.dtype != dtype:
            raise ValueError(f"tensor {name!r} is {_dtype_name(t.dtype)}, the network "
                             f"{doc['dtype']}")
    layers = [_build_layer(i, d, tensors) for i, d in enumerate(doc["layers"])]
    if not layers or not layers[-1].readout or any(ly.readout for ly in layers[:-1]):
        raise ValueError("the last layer (and only it) must be the readout")
    out_routes = [_route_from_json(r, tensors.get(f"output_routes.{j}.sign"))
                  for j, r in enumerate(doc["output_routes"])]
    meta = doc.get("meta") or {}
    snn = SpikingNetwork(
        layers, input_shape=_int_tuple(doc["input_shape"]), input_low=tensors["input_low"],
        input_high=tensors["input_high"], output_routes=out_routes, neuron=doc["neuron"],
        zeta=_float(doc["zeta"], "zeta"), meta=meta if isinstance(meta, dict) else {},
    )
    known = set(snn.state_dict()) | {f"output_routes.{j}.sign"
                                     for j, r in enumerate(out_routes)
                                     if isinstance(r, MaxPoolRoute) and r.sign is not None}
    unused = sorted(set(tensors) - known)
    if unused:
        raise ValueError(f"tensor(s) not used by the network: {', '.join(unused[:5])}")
    return snn


def load(path: str | os.PathLike[str], device: str | torch.device | None = None
         ) -> SpikingNetwork:
    """Read a network written by :func:`save`; returns it on ``device`` (default CPU).

    The loaded network's outputs and spike times are bit-identical to the saved network's.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: the file is not a onespike file, is truncated or corrupted (checksum
            mismatch, missing tensors, wrong shapes), or has an unknown / newer
            ``format_version``. The message names the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    reader = _Reader(path)
    if path.is_dir():
        raise reader.fail("is a directory, not a .onespike file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise reader.fail(f"cannot be read ({exc.strerror or exc})") from None
    doc, text, digest = reader.document(reader.header(data))
    tensors = reader.tensors(data, doc)
    if digest is None:
        raise reader.fail("checksum missing from the header (the file was altered)")
    if _digest(text, tensors) != digest:
        raise reader.fail("checksum mismatch: the file was modified or corrupted after it "
                          "was saved")
    try:
        snn = _build(doc, tensors)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).split("\n")[0]
        raise reader.fail(f"inconsistent network description: {what}") from None
    if device is not None:
        dev = torch.device(device)
        snn = snn.to(dev)
        for r in snn.output_routes:  # not buffers: move by hand
            if isinstance(r, MaxPoolRoute) and r.sign is not None:
                r.sign = r.sign.to(dev)
    return snn
