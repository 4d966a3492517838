"""Rebuild convertible ``nn.Module`` models from TorchScript and ``torch.export`` files.

:func:`onespike.convert` traces models with ``torch.fx``, which needs Python modules: it cannot
trace a TorchScript ``ScriptModule``, and the graph of an exported program calls ATen
operators on free parameters. These helpers rebuild an equivalent module made of the standard
``torch.nn`` layers:

* :func:`from_torchscript` — a *scripted* ``nn.Sequential`` (nested Sequentials allowed) of
  supported layers, rebuilt from the hyper-parameters TorchScript keeps. Traced modules
  (``torch.jit.trace``) keep no hyper-parameters and custom containers keep no Python
  ``forward``: both are refused with an explanation.
* :func:`from_exported` — a ``torch.export`` program: every ATen call (conv, linear, batch
  norm, ReLU, pools, flatten/view, dropout) becomes the matching ``nn`` module, named after
  the original module path; other operations are kept, so ``convert`` reports them.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from typing import Any
from unittest import mock

import torch
import torch.fx
from torch import Tensor, nn

from onespike.errors import RebuildError

__all__ = ["RebuildError", "from_exported", "from_torchscript", "is_torchscript_archive"]


# -- TorchScript -----------------------------------------------------------------------------
_SCRIPT_LAYERS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "Conv1d": (nn.Conv1d, ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                           "dilation", "groups", "padding_mode")),
    "Conv2d": (nn.Conv2d, ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                           "dilation", "groups", "padding_mode")),
    "Linear": (nn.Linear, ("in_features", "out_features")),
    "BatchNorm1d": (nn.BatchNorm1d, ("num_features", "eps", "momentum", "affine",
                                     "track_running_stats")),
    "BatchNorm2d": (nn.BatchNorm2d, ("num_features", "eps", "momentum", "affine",
                                     "track_running_stats")),
    "ReLU": (nn.ReLU, ()),
    "MaxPool1d": (nn.MaxPool1d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "MaxPool2d": (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "AvgPool1d": (nn.AvgPool1d, ("kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad")),
    "AvgPool2d": (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad", "divisor_override")),
    "AdaptiveAvgPool1d": (nn.AdaptiveAvgPool1d, ("output_size",)),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, ("output_size",)),
    "Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "Unflatten": (nn.Unflatten, ("dim", "unflattened_size")),
    "Dropout": (nn.Dropout, ("p",)),
    "Dropout1d": (nn.Dropout1d, ("p",)),
    "Dropout2d": (nn.Dropout2d, ("p",)),
    "Identity": (nn.Identity, ()),
}

_SCRIPT_HINT = (
    "save the model with torch.jit.script (not torch.jit.trace) as an nn.Sequential, or "
    "export it with torch.export.save(torch.export.export(model, (x,)), 'model.pt2'), or pass "
    "the Python class with --model module:factory --weights state.pt"
)


def is_torchscript_archive(path: str) -> bool:
    """True if ``path`` is a TorchScript zip archive (it holds a ``code/`` folder)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _script_layer(sm: Any, path: str) -> nn.Module:
    kind = str(getattr(sm, "original_name", type(sm).__name__))
    if kind == "Sequential":
        return nn.Sequential(*[_script_layer(c, f"{path}.{n}" if path else n)
                               for n, c in sm.named_children()])
    where = path or "<model>"
    if kind not in _SCRIPT_LAYERS:
        raise RebuildError(
            f"TorchScript module {where!r} is a {kind}; only nn.Sequential containers of "
            f"standard layers ({', '.join(sorted(_SCRIPT_LAYERS))}) can be rebuilt, because "
            f"torch.fx cannot trace TorchScript code. Instead, {_SCRIPT_HINT}"
        )
    cls, fields = _SCRIPT_LAYERS[kind]
    kwargs: dict[str, Any] = {}
    for f in fields:
        try:
            kwargs[f] = getattr(sm, f)
        except (AttributeError, RuntimeError):
            raise RebuildError(
                f"TorchScript module {where!r} ({kind}) does not record its {f!r}: traced "
                f"modules (torch.jit.trace) keep no layer settings. Instead, {_SCRIPT_HINT}"
            ) from None
    if kind in ("Linear",):
        kwargs["bias"] = getattr(sm, "bias", None) is not None
    if kind in ("Conv1d", "Conv2d"):
        kwargs["bias"] = getattr(sm, "bias", None) is not None
    layer = cls(**kwargs)
    state = {k: v for k, v in sm.state_dict().items()}
    try:
        layer.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RebuildError(f"TorchScript module {where!r} ({kind}): its tensors do not fit a "
                           f"rebuilt {kind} ({str(exc).splitlines()[0]})") from None
    return layer


def from_torchscript(path: str) -> nn.Module:
    """Load a TorchScript archive and rebuild it as plain ``nn`` modules (in eval mode)."""
    try:
        sm = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError / ValueError with long C++ messages
        raise RebuildError(f"{path} is not a loadable TorchScript file "
                           f"({_first_line(exc)})") from None
    return _script_layer(sm, "").eval()


# -- torch.export ----------------------------------------------------------------------------
def _aten(name: str) -> list[Any]:
    """The overloads ``torch.ops.aten.<name>.<overload>`` that exist in this torch."""
    base, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, base, None)
    if packet is None:
        return []
    op = getattr(packet, overload or "default", None)
    return [op] if op is not None else []


def _ops(*names: str) -> set[Any]:
    return {op for n in names for op in _aten(n)}


_CONV = _ops("conv1d.default", "conv2d.default", "conv1d.padding", "conv2d.padding")
_CONVOLUTION = _ops("convolution.default")
_LINEAR = _ops("linear.default")
_RELU = _ops("relu.default", "relu_.default")
_BN = _ops("batch_norm.default")
_BN_LEGIT = _ops("_native_batch_norm_legit_no_training.default")
_MAXPOOL = _ops("max_pool1d.default", "max_pool2d.default")
_MAXPOOL_IDX = _ops("max_pool2d_with_indices.default")
_AVGPOOL = _ops("avg_pool1d.default", "avg_pool2d.default")
_ADAPTIVE = _ops("adaptive_avg_pool1d.default", "adaptive_avg_pool2d.default",
                 "_adaptive_avg_pool2d.default")
_FLATTEN = _ops("flatten.using_ints")
_RESHAPE = _ops("view.default", "reshape.default", "_unsafe_view.default")
_IDENTITY = _ops("dropout.default", "clone.default", "contiguous.default", "alias.default",
                 "detach.default", "feature_dropout.default")


def _arg(node: torch.fx.Node, i: int, name: str, default: Any) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _rank(node: Any) -> int:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    if val is None or not hasattr(val, "dim"):
        raise RebuildError(f"graph node {node} has no recorded shape")
    return int(val.dim())



def _node(x: Any) -> torch.fx.Node:
    """``x`` as a graph node (the input of a reshape / identity)."""
    if not isinstance(x, torch.fx.Node):
        raise RebuildError(f"expected a graph node as input, got {x!r}")
    return x

class _ExportRebuilder:
    """Translates one exported graph into a GraphModule of ``nn`` modules."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        self.gm = gm
        self.graph = torch.fx.Graph()
        self.env: dict[torch.fx.Node, Any] = {}
        self.attrs: dict[str, Any] = {}
        self.tuples: dict[torch.fx.Node, torch.fx.Node] = {}  # op → its first output

    def tensor(self, node: Any) -> Tensor | None:
        if node is None:
            return None
        if isinstance(node, torch.fx.Node) and node.op == "get_attr":
            value: Any = self.gm
            for part in str(node.target).split("."):
                value = getattr(value, part)
            return value.detach()
        raise RebuildError(f"expected a stored parameter, got graph node {node}")

    def name_for(self, node: torch.fx.Node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        path = ""
        if stack:
            path = str(list(stack.values())[-1][0])
        base = path or node.name
        name, k = base, 1
        while name in self.attrs:
            name, k = f"{base}_{k}", k + 1
        return name

    def module(self, node: torch.fx.Node, module: nn.Module, x: Any) -> torch.fx.Node:
        name = self.name_for(node)
        self.attrs[name] = module
        return self.graph.call_module(name, (self.env[x],))

    def value(self, a: Any) -> Any:
        """Map an argument of an unrecognised call into the new graph."""
        if isinstance(a, torch.fx.Node):
            if a in self.env:
                return self.env[a]
            if a.op == "get_attr":
                name = str(a.target)
                self.attrs[name] = self.tensor(a)
                self.env[a] = self.graph.get_attr(name)
                return self.env[a]
            raise RebuildError(f"graph node {a} is used before it is defined")
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(v) for v in a)
        if isinstance(a, dict):
            return {k: self.value(v) for k, v in a.items()}
        return a

    def call(self, n: torch.fx.Node) -> Any:
        t = n.target
        x = n.args[0] if n.args else None
        if t in _CONV or t in _CONVOLUTION:
            return self.conv(n)
        if t in _LINEAR:
            w, b = self.tensor(n.args[1]), self.tensor(_arg(n, 2, "bias", None))
            if w is None:
                raise RebuildError(f"graph node {n}: a linear layer without a weight")
            lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            _copy(lin, w, b)
            return self.module(n, lin, x)
        if t in _RELU:
            return self.module(n, nn.ReLU(), x)
        if t in _BN or t in _BN_LEGIT:
            return self.batch_norm(n)
        if t in _MAXPOOL or t in _MAXPOOL_IDX:
            rank = _rank(x) - 2
            cls: Callable[..., nn.Module] = nn.MaxPool1d if rank == 1 else nn.MaxPool2d
            kernel = _arg(n, 1, "kernel_size", None)
            pool = cls(kernel, _arg(n, 2, "stride", None) or kernel, _arg(n, 3, "padding", 0),
                       _arg(n, 4, "dilation", 1), ceil_mode=bool(_arg(n, 5, "ceil_mode", False)))
            return self.module(n, pool, x)
        if t in _AVGPOOL:
            rank = _rank(x) - 2
            kernel = _arg(n, 1, "kernel_size", None)
            stride = _arg(n, 2, "stride", None) or kernel
            args = (kernel, stride, _arg(n, 3, "padding", 0), bool(_arg(n, 4, "ceil_mode", False)),
                    bool(_arg(n, 5, "count_include_pad", True)))
            pool = nn.AvgPool1d(*args) if rank == 1 else nn.AvgPool2d(
                *args, divisor_override=_arg(n, 6, "divisor_override", None))
            return self.module(n, pool, x)
        if t in _ADAPTIVE:
            rank = _rank(x) - 2
            size = _arg(n, 1, "output_size", None)
            cls = nn.AdaptiveAvgPool1d if rank == 1 else nn.AdaptiveAvgPool2d
            return self.module(n, cls(size), x)
        if t in _FLATTEN:
            return self.module(n, nn.Flatten(_arg(n, 1, "start_dim", 0), _arg(n, 2, "end_dim", -1)),
                               x)
        if t in _RESHAPE:
            shape = list(_arg(n, 1, "size", []))
            src = self.env[_node(x)]
            batch = self.graph.call_method("size", (src, 0))
            return self.graph.call_method("reshape", (src, batch, *shape[1:]))
        if t in _IDENTITY:
            return self.env[_node(x)]
        if t is operator.getitem and isinstance(x, torch.fx.Node) and x in self.tuples:
            if n.args[1] != 0:
                raise RebuildError(f"graph node {n} uses output {n.args[1]} of {x}; only the "
                                   "first output of batch norm / max pool is supported")
            return self.tuples[x]
        # anything else is kept as is: onespike.convert then names it as unsupported
        if not callable(t):
            raise RebuildError(f"graph node {n}: target {t!r} is not a function")
        return self.graph.call_function(t, self.value(n.args), self.value(n.kwargs))

    def conv(self, n: torch.fx.Node) -> torch.fx.Node:
        x = n.args[0]
        w, b = self.tensor(n.args[1]), self.tensor(_arg(n, 2, "bias", None))
        if w is None:
            raise RebuildError(f"graph node {n}: a convolution without a weight")
        if n.target in _CONVOLUTION:
            if bool(_arg(n, 6, "transposed", False)):
                raise RebuildError(f"graph node {n}: transposed convolutions are not supported")
            groups = int(_arg(n, 8, "groups", 1))
        else:
            groups = int(_arg(n, 6, "groups", 1))
        dims = w.dim() - 2
        if dims not in (1, 2):
            raise RebuildError(f"graph node {n}: {dims}-d convolutions are not supported")
        cls: Callable[..., nn.Module] = nn.Conv1d if dims == 1 else nn.Conv2d
        conv = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]),
                   stride=_arg(n, 3, "stride", 1), padding=_arg(n, 4, "padding", 0),
                   dilation=_arg(n, 5, "dilation", 1), groups=groups, bias=b is not None)
        _copy(conv, w, b)
        return self.module(n, conv, x)

    def batch_norm(self, n: torch.fx.Node) -> torch.fx.Node:
        x = n.args[0]
        w, b = self.tensor(n.args[1]), self.tensor(n.args[2])
        mean, var = self.tensor(n.args[3]), self.tensor(n.args[4])
        assert mean is not None and var is not None
        if n.target in _BN:
            if bool(_arg(n, 5, "training", False)):
                raise RebuildError(f"graph node {n}: batch norm exported in training mode; "
                                   "call model.eval() before torch.export.export")
            eps = float(_arg(n, 7, "eps", 1e-5))
        else:
            eps = float(_arg(n, 6, "eps", 1e-5))
        cls = nn.BatchNorm1d if _rank(x) in (2, 3) else nn.BatchNorm2d
        bn = cls(mean.numel(), eps=eps, affine=w is not None)
        with torch.no_grad():
            bn.running_mean.copy_(mean)  # type: ignore[union-attr]
            bn.running_var.copy_(var)  # type: ignore[union-attr]
            if w is not None:
                bn.weight.copy_(w)
                bn.bias.copy_(b if b is not None else torch.zeros_like(w))
        out = self.module(n, bn.eval(), x)
        return out

    def run(self) -> torch.fx.GraphModule:
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                self.env[n] = self.graph.placeholder(n.name)
            elif n.op == "get_attr":
                continue  # consumed by the operators that use it
            elif n.op == "call_module":
                if n.users:
                    raise RebuildError(f"graph node {n} calls module {n.target!r}, which "
                                       "cannot be rebuilt")
            elif n.op == "call_function":
                out = self.call(n)
                if n.target in _BN_LEGIT or n.target in _MAXPOOL_IDX:
                    self.tuples[n] = out
                self.env[n] = out
            elif n.op == "output":
                outs = n.args[0]
                if isinstance(outs, (list, tuple)) and len(outs) == 1:
                    outs = outs[0]
                self.graph.output(self.value(outs))
            else:
                raise RebuildError(f"graph node {n} ({n.op}) cannot be rebuilt")
        gm = torch.fx.GraphModule(self.attrs, self.graph, class_name="RebuiltExport")
        return gm.eval()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _is_pt2_archive(path: str) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n == "archive_format" or n.endswith("/archive_format")
                       for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _copy(module: nn.Module, w: Tensor, b: Tensor | None) -> None:
    with torch.no_grad():
        module.weight.copy_(w)  # type: ignore[operator]
        if b is not None:
            module.bias.copy_(b)  # type: ignore[operator]


def from_exported(path: str) -> nn.Module:
    """Load a ``torch.export`` program (``.pt2``) and rebuild it from ``nn`` modules."""
    if not _is_pt2_archive(path):
        raise RebuildError(f"{path} is not a torch.export program (expected a .pt2 archive "
                           "written by torch.export.save)")
    real_load = torch.load

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        # torch.export.load falls back to a full unpickle for custom objects; refuse that
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    try:
        logger = logging.getLogger("torch.export")
        level = logger.level
        logger.setLevel(logging.CRITICAL)  # torch logs a traceback before raising
        try:
            with mock.patch.object(torch, "load", weights_only_load):
                program = torch.export.load(path)
        finally:
            logger.setLevel(level)
    except Exception as exc:  # torch raises many types for a bad archive
        raise RebuildError(f"{path} is not a loadable torch.export program "
                           f"({_first_line(exc)})"
                           ) from None
    return _ExportRebuilder(program.module()).run()
