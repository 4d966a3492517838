"""Save and load converted networks: :func:`save` and :func:`load` (no pickle anywhere).

File format (``format_version`` 2)
----------------------------------
A ``.onespike`` file is a plain safetensors
file:

* **tensors**: the network's ``state_dict()`` — ``input_low``, ``input_high`` and every
  population's buffers ``layers.<i>.<buffer>``: ``edge<k>_weight`` (the weights of incoming
  edge ``k``), ``edge<k>_route<j>_sign`` (the channel signs of a signed max pool on that
  edge), ``bias``, ``S``, ``alpha``, ``G``, ``theta`` — plus ``output_routes.<j>.sign`` for a
  signed max pool after the readout (rare);
* **header** ``__metadata__`` (a str → str map) with two keys:

  - ``"onespike"``: a JSON document ``{"format": "onespike", "format_version": 2,
    "onespike_version", "neuron", "zeta", "dtype", "input_shape", "output_shape",
    "latency", "output_routes": [route…], "layers": [population…], "tensors": {name:
    {"dtype", "shape"}}, "meta": {…}}`` where each population is
    :meth:`Population.describe`: ``name``, ``source``, ``neuron``, ``readout``, ``role``,
    ``out_shape``, the windows ``t_min``/``t_max``/``B_in``/``X`` as exact JSON floats, and
    ``edges``, each ``{"source", "kind", "in_shape", "dims", "stride", "pad", "dilation",
    "groups", "delay", "origin", "routes"}``. An edge's ``source`` is ``"input"`` or the
    name of an *earlier* population (the list is in topological order, the readout last);
    its ``delay`` is ``≥ 0``. A route is ``{"type": "maxpool", …, "signed"}``, ``{"type":
    "reshape", …}`` or ``{"type": "slice", "slices": [[start, stop, step]…], …}``;
  - ``"onespike_sha256"``: SHA-256 over the JSON text and every listed tensor (name, dtype,
    shape, raw bytes, in name order) — an integrity check that catches truncation, bit flips
    and edits (it is not a signature: whoever edits the file can recompute it).

The file is deterministic: the JSON document and the safetensors header are written with
sorted keys and the tensor data in name order, so saving the same network twice gives the
same bytes.

Loading rebuilds every :class:`~onespike.network.population.Population` from its description and the
stored edge weights / ``bias``, then overwrites all buffers with the stored tensors, so the
loaded network computes bit for bit what the saved one computed. Any defect — not a
safetensors file, truncated data, a header or JSON that does not parse, a missing/extra
tensor, a wrong shape or dtype, a checksum mismatch, an unknown or newer ``format_version``,
or a description that does not fit the tensors (unknown route type, an edge whose source is
not ``"input"`` or an earlier population, a negative delay, shapes that do not chain) —
raises :class:`~onespike.FormatError` naming the file and the problem.

Version 1 (chain-only releases)
-------------------------------
Version-1 files hold one affine map per layer: tensors ``layers.<i>.weight`` and
``layers.<i>.route<j>_sign`` and layer descriptions with ``kind``/``in_shape``/geometry,
``routes`` and ``synthetic`` at the top level. They still load: layer ``i`` becomes a
population with a single edge from population ``i − 1`` (``"input"`` for the first) with
delay 0, its routes and weight those of the layer (role ``"pool"`` for a synthetic layer).
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

from onespike.errors import ArgumentError, ArgumentTypeError, FormatError, MissingFileError
from onespike.network.population import EdgeSpec, Population, describe_route
from onespike.network.snn import SpikingNetwork, check_normalization
from onespike.simulation.neurons import NEURON_MODELS
from onespike.simulation.routing import MaxPoolRoute, ReshapeRoute, Route, SliceRoute

__all__ = ["FORMAT_VERSION", "load", "save"]

#: Version written by :func:`save`; :func:`load` reads versions 1 … FORMAT_VERSION.
FORMAT_VERSION = 2
_META_KEY = "onespike"
_DIGEST_KEY = "onespike_sha256"
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header
_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool,
}
#: safetensors' names of the dtypes above
_ST_DTYPES: dict[torch.dtype, str] = {
    torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
    torch.int8: "I8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64",
    torch.uint8: "U8", torch.bool: "BOOL",
}
_ROUTE_TYPES = ("maxpool", "reshape", "slice")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _raw(t: Tensor) -> bytes:
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


# -- saving ---------------------------------------------------------------------------------
def _route_to_json(r: Route) -> dict[str, Any]:
    if not isinstance(r, (MaxPoolRoute, ReshapeRoute, SliceRoute)):
        raise ArgumentTypeError(f"cannot save route of type {type(r).__name__}")
    return describe_route(r)


def _tensors_of(snn: SpikingNetwork) -> dict[str, Tensor]:
    tensors = {k: v for k, v in snn.state_dict().items()}
    for j, r in enumerate(snn.output_routes):
        if isinstance(r, MaxPoolRoute) and r.sign is not None:
            tensors[f"output_routes.{j}.sign"] = r.sign
    # own, contiguous CPU copies: safetensors refuses shared or strided storage
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sorted(tensors.items())}


def _digest(text: str, tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    h.update(text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{_dtype_name(t.dtype)}\0{list(t.shape)}\0".encode())
        h.update(_raw(t))
    return h.hexdigest()


def _describe(snn: SpikingNetwork, tensors: dict[str, Tensor]) -> dict[str, Any]:
    from onespike._version import __version__

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
        "layers": [p.describe() for p in snn.populations],
        "tensors": {k: {"dtype": _dtype_name(v.dtype), "shape": list(v.shape)}
                    for k, v in sorted(tensors.items())},
        "normalization": (None if snn.normalization is None else
                          {"mean": snn.normalization[0], "std": snn.normalization[1]}),
        "meta": snn.meta,
    }


def _safetensors_bytes(tensors: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file with a deterministic layout: header JSON with sorted keys (the
    ``__metadata__`` map included), tensor data in name order, the header padded with spaces
    to a multiple of 8 bytes (as safetensors itself does)."""
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in _ST_DTYPES:
            raise ArgumentTypeError(f"cannot save tensor {name!r} of dtype {_dtype_name(t.dtype)}")
        raw = _raw(t)
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    head = text.encode("utf-8")
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(chunks)


def save(snn: SpikingNetwork, path: str | os.PathLike[str]) -> Path:
    """Write ``snn`` to ``path`` (conventionally ``*.onespike``; see the module docstring for
    the format). The file is written atomically (temporary file, then rename) and is
    byte-identical for identical networks. ``meta`` values that are not JSON types are stored
    as their ``str()``. Returns the path."""
    if not isinstance(snn, SpikingNetwork):
        raise ArgumentTypeError(f"save() needs a SpikingNetwork, got {type(snn).__name__}")
    path = Path(path)
    tensors = _tensors_of(snn)
    text = json.dumps(_describe(snn, tensors), default=str, sort_keys=True)
    blob = _safetensors_bytes(tensors, {_META_KEY: text, _DIGEST_KEY: _digest(text, tensors)})
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
    if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                          for i in v):
        raise ArgumentError(f"expected a list of integers, got {v!r}")
    return tuple(v)


def _slices(v: Any) -> tuple[tuple[int, int, int], ...]:
    if not isinstance(v, list):
        raise ArgumentError(f"slice route: expected a list of [start, stop, step], got {v!r}")
    out = []
    for s in v:
        if (not isinstance(s, list) or len(s) != 3
                or not all(i is None or (isinstance(i, int) and not isinstance(i, bool))
                           for i in s)):
            raise ArgumentError(f"slice route: expected [start, stop, step], got {s!r}")
        out.append(tuple(s))
    return tuple(out)


def _route_from_json(d: dict[str, Any], sign: Tensor | None) -> Route:
    if not isinstance(d, dict):
        raise ArgumentError(f"a route must be a JSON object, got {d!r}")
    kind = d["type"]
    if kind not in _ROUTE_TYPES:
        raise ArgumentError(f"unknown route type {kind!r} (known: {', '.join(_ROUTE_TYPES)})")
    if kind != "maxpool" and sign is not None:
        raise ArgumentError(f"a {kind} route has a sign tensor")
    if kind == "reshape":
        in_shape, out_shape = _int_tuple(d["in_shape"]), _int_tuple(d["out_shape"])
        if math.prod(in_shape) != math.prod(out_shape):
            raise ArgumentError(f"reshape route {list(in_shape)} -> {list(out_shape)} changes "
                                "the number of elements")
        return ReshapeRoute(in_shape, out_shape, str(d.get("source", "")))
    if kind == "slice":
        r = SliceRoute(_slices(d["slices"]), _int_tuple(d["in_shape"]),
                       _int_tuple(d["out_shape"]), str(d.get("source", "")))
        if len(r.slices) > len(r.in_shape):
            raise ArgumentError(f"slice route has {len(r.slices)} slices for a "
                                f"{len(r.in_shape)}-d input")
        got = tuple(r(torch.empty(1, *r.in_shape, device="meta")).shape[1:])
        if got != r.out_shape:
            raise ArgumentError(f"slice route gives shape {list(got)}, not its out_shape "
                                f"{list(r.out_shape)}")
        return r
    if bool(d["signed"]) != (sign is not None):
        raise ArgumentError("max pool sign tensor does not match its 'signed' flag")
    in_shape = _int_tuple(d["in_shape"])
    if sign is not None and (sign.dim() != 1 or not in_shape or sign.shape[0] != in_shape[0]):
        raise ArgumentError(f"max pool sign of shape {list(sign.shape)} does not match its "
                            f"input {list(in_shape)}")
    if int(d["dims"]) not in (1, 2):
        raise ArgumentError(f"max pool over {d['dims']!r} dimensions")
    return MaxPoolRoute(int(d["dims"]), _int_tuple(d["kernel"]), _int_tuple(d["stride"]),
                        _int_tuple(d["padding"]), _int_tuple(d["dilation"]),
                        bool(d["ceil_mode"]), in_shape, _int_tuple(d["out_shape"]), sign,
                        str(d.get("source", "")))


def _float(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ArgumentError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _check_edge(where: str, e: EdgeSpec, weight: Tensor, out_shape: tuple[int, ...],
                source_shape: tuple[int, ...]) -> None:
    """The edge description must chain from its source through its routes to ``in_shape``
    and agree with the stored weight."""
    shape = source_shape
    for j, r in enumerate(e.routes):
        if tuple(r.in_shape) != shape:
            raise ArgumentError(f"{where}: route {j} expects input {list(r.in_shape)}, gets "
                                f"{list(shape)} (from {e.source!r})")
        shape = tuple(r.out_shape)
    if shape != e.in_shape:
        raise ArgumentError(f"{where}: in_shape {list(e.in_shape)} does not match the routed "
                            f"source shape {list(shape)} (from {e.source!r})")
    in_shape = e.in_shape
    if e.kind == "linear":
        ok = weight.dim() == 2 and tuple(weight.shape) == (math.prod(out_shape),
                                                           math.prod(in_shape))
    elif e.kind == "conv":
        dims = e.dims
        ok = (e.groups >= 1 and weight.dim() == 2 + dims
              and len(in_shape) == len(out_shape) == 1 + dims
              and weight.shape[0] == out_shape[0]
              and weight.shape[1] * e.groups == in_shape[0]
              and len(e.stride) == len(e.dilation) == dims and len(e.pad) in (dims, 2 * dims))
    else:
        raise ArgumentError(f"{where}: unknown kind {e.kind!r}")
    if not ok:
        raise ArgumentError(f"{where}: weight shape {list(weight.shape)} does not match a "
                            f"{e.kind} edge {list(in_shape)} -> {list(out_shape)}")


def _edge_from_json(d: dict[str, Any], routes: list[Route]) -> EdgeSpec:
    return EdgeSpec(
        source=str(d["source"]), routes=routes, kind=str(d["kind"]),
        in_shape=_int_tuple(d["in_shape"]), dims=int(d["dims"]),
        stride=_int_tuple(d["stride"]), pad=_int_tuple(d["pad"]),
        dilation=_int_tuple(d["dilation"]), groups=int(d["groups"]),
        delay=_float(d.get("delay", 0.0), "delay"), origin=str(d.get("origin", "")),
    )


def _v1_as_v2(doc: dict[str, Any], tensors: dict[str, Tensor]
              ) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Version-1 layer descriptions and tensors in version-2 form: one edge per layer from
    the previous layer ("input" for the first), delay 0."""
    layers: list[dict[str, Any]] = []
    renamed: dict[str, Tensor] = {}
    prefixes = {f"layers.{i}.": i for i in range(len(doc["layers"]))}
    for name, t in tensors.items():
        head, _, buf = name.partition(".")
        idx, _, buf = buf.partition(".")
        if head == "layers" and f"layers.{idx}." in prefixes:
            if buf == "weight" or buf.startswith("route"):
                buf = f"edge0_{buf}"
            renamed[f"layers.{idx}.{buf}"] = t
        else:
            renamed[name] = t
    previous = "input"
    for d in doc["layers"]:
        if not isinstance(d, dict):
            raise ArgumentError(f"a layer must be a JSON object, got {d!r}")
        edge = {k: d[k] for k in ("kind", "in_shape", "dims", "stride", "pad", "dilation",
                                  "groups", "routes")}
        edge.update(source=previous, delay=0.0, origin="")
        layers.append({
            "name": d["name"], "source": d["source"], "neuron": d["neuron"],
            "readout": d["readout"], "out_shape": d["out_shape"],
            "role": "pool" if d["synthetic"] else "relu",
            "t_min": d["t_min"], "t_max": d["t_max"], "B_in": d["B_in"], "X": d["X"],
            "edges": [edge],
        })
        previous = str(d["name"])
    return layers, renamed


def _build_population(i: int, d: dict[str, Any], tensors: dict[str, Tensor],
                      shapes: dict[str, tuple[int, ...]]) -> Population:
    if not isinstance(d, dict):
        raise ArgumentError(f"population {i} must be a JSON object, got {d!r}")
    prefix = f"layers.{i}."
    name = str(d["name"])
    where = f"population {i} ({name!r})"
    if name in shapes:
        raise ArgumentError(f"{where}: the name is used twice (or is 'input')")
    out_shape = _int_tuple(d["out_shape"])
    bias = tensors.get(prefix + "bias")
    if bias is None:
        raise ArgumentError(f"{where}: no bias tensor {prefix}bias")
    if tuple(bias.shape) != out_shape:
        raise ArgumentError(f"{where}: bias shape {list(bias.shape)} does not match out_shape "
                            f"{list(out_shape)}")
    if not isinstance(d["edges"], list) or not d["edges"]:
        raise ArgumentError(f"{where}: no incoming edges")
    edges, weights = [], []
    for k, ed in enumerate(d["edges"]):
        if not isinstance(ed, dict):
            raise ArgumentError(f"{where}: edge {k} must be a JSON object, got {ed!r}")
        ew = f"{where}, edge {k}"
        if not isinstance(ed["routes"], list):
            raise ArgumentError(f"{ew}: routes must be a list")
        routes = [_route_from_json(r, tensors.get(f"{prefix}edge{k}_route{j}_sign"))
                  for j, r in enumerate(ed["routes"])]
        e = _edge_from_json(ed, routes)
        if e.source not in shapes:
            raise ArgumentError(f"{ew}: source {e.source!r} is neither 'input' nor an earlier "
                                "population")
        if e.delay < 0:
            raise ArgumentError(f"{ew}: negative delay {e.delay!r}")
        weight = tensors.get(f"{prefix}edge{k}_weight")
        if weight is None:
            raise ArgumentError(f"{ew}: no weight tensor {prefix}edge{k}_weight")
        _check_edge(ew, e, weight, out_shape, shapes[e.source])
        edges.append(e)
        weights.append(weight)
    windows = {k: _float(d[k], k) for k in ("t_min", "t_max", "B_in", "X")}
    pop = Population(
        name=name, source=str(d["source"]), edges=edges, weights=weights, bias=bias,
        neuron=str(d["neuron"]), readout=bool(d["readout"]), role=str(d["role"]), **windows,
    )
    # the constructor recomputes S/G/theta/alpha; the stored tensors are authoritative
    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    pop.load_state_dict(own, strict=True)
    shapes[name] = out_shape
    return pop


def _build(doc: dict[str, Any], tensors: dict[str, Tensor]) -> SpikingNetwork:
    if doc["neuron"] not in NEURON_MODELS:
        raise ArgumentError(f"unknown neuron model {doc['neuron']!r}")
    dtype = _DTYPES.get(doc["dtype"])
    if dtype is None or not dtype.is_floating_point:
        raise ArgumentError(f"unknown dtype {doc['dtype']!r}")
    for name, t in tensors.items():
        if t.is_floating_point() and t.dtype != dtype:
            raise ArgumentError(f"tensor {name!r} is {_dtype_name(t.dtype)}, the network "
                                f"{doc['dtype']}")
    if not isinstance(doc["layers"], list):
        raise ArgumentError("'layers' must be a list")
    descriptions = doc["layers"]
    if doc["format_version"] == 1:
        descriptions, tensors = _v1_as_v2(doc, tensors)
    input_shape = _int_tuple(doc["input_shape"])
    shapes: dict[str, tuple[int, ...]] = {"input": input_shape}
    layers = [_build_population(i, d, tensors, shapes) for i, d in enumerate(descriptions)]
    if not layers or not layers[-1].readout or any(p.readout for p in layers[:-1]):
        raise ArgumentError("the last population (and only it) must be the readout")
    if not isinstance(doc["output_routes"], list):
        raise ArgumentError("'output_routes' must be a list")
    out_routes = [_route_from_json(r, tensors.get(f"output_routes.{j}.sign"))
                  for j, r in enumerate(doc["output_routes"])]
    shape = layers[-1].out_shape
    for j, r in enumerate(out_routes):
        if tuple(r.in_shape) != shape:
            raise ArgumentError(f"output route {j} expects input {list(r.in_shape)}, gets "
                                f"{list(shape)}")
        shape = tuple(r.out_shape)
    meta = doc.get("meta") or {}
    norm = doc.get("normalization")
    if norm is None and isinstance(meta, dict) and isinstance(meta.get("normalize"), dict):
        norm = meta["normalize"]  # written by the CLI before the field existed
    if norm is not None:
        if not (isinstance(norm, dict) and "mean" in norm and "std" in norm):
            raise ArgumentError("'normalization' must be {'mean': …, 'std': …}")
        try:
            norm = check_normalization(norm["mean"], norm["std"])
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"invalid 'normalization': {exc}") from None
    snn = SpikingNetwork(
        layers, input_shape=input_shape, input_low=tensors["input_low"],
        input_high=tensors["input_high"], output_routes=out_routes, neuron=doc["neuron"],
        zeta=_float(doc["zeta"], "zeta"), meta=meta if isinstance(meta, dict) else {},
        normalization=norm,
    )
    known = set(snn.state_dict()) | {f"output_routes.{j}.sign"
                                     for j, r in enumerate(out_routes)
                                     if isinstance(r, MaxPoolRoute) and r.sign is not None}
    unused = sorted(set(tensors) - known)
    if unused:
        raise ArgumentError(f"tensor(s) not used by the network: {', '.join(unused[:5])}")
    return snn


def load(path: str | os.PathLike[str], device: str | torch.device | None = None
         ) -> SpikingNetwork:
    """Read a network written by :func:`save` (format version 1 or 2); returns it on
    ``device`` (default CPU).

    The loaded network's outputs and spike times are bit-identical to the saved network's.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FormatError: the file is not a onespike file, is truncated or corrupted (checksum
            mismatch, missing tensors, wrong shapes), has an unknown / newer
            ``format_version``, or describes a network that does not fit its tensors. The
            message names the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file")
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
        snn = snn.to(torch.device(device))  # (output routes' signs included: SpikingNetwork._apply)
    return snn
