"""Trace a PyTorch model into the onespike graph IR (step 1 of the pipeline).

``validate_and_trace`` runs torch.fx's symbolic tracer, refuses every operation the exact
mapping cannot represent (before any data is touched), and ``to_graph`` then turns the traced
graph into IR nodes with per-sample shapes obtained by propagating one sample.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from .errors import CalibrationError, UnsupportedModelError, UnsupportedOperationError
from .ir import (
    AdaptiveAvgPoolNode,
    AvgPoolNode,
    BatchNormNode,
    ConvNode,
    FlattenNode,
    Graph,
    InputNode,
    LinearNode,
    MaxPoolNode,
    Node,
    OutputNode,
    ReLUNode,
)

__all__ = ["SUPPORTED_MODULES", "to_graph", "validate_and_trace"]

_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_RESHAPE_MODULES = (nn.Flatten, nn.Unflatten)
SUPPORTED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    *_RESHAPE_MODULES,
    *_IDENTITY_MODULES,
)
# Module types that subclass a supported type but compute something else.
_REFUSED_SUBCLASSES: tuple[type[nn.Module], ...] = (nn.LazyLinear, nn.LazyConv1d, nn.LazyConv2d)

_RELU_FUNCTIONS: set[Callable[..., Any]] = {F.relu, torch.relu, torch.relu_, F.relu_}
_FLATTEN_FUNCTIONS: set[Callable[..., Any]] = {torch.flatten}
_IDENTITY_FUNCTIONS: set[Callable[..., Any]] = {F.dropout, torch.dropout}
_POOL_FUNCTIONS: dict[Callable[..., Any], type[nn.Module]] = {
    F.max_pool1d: nn.MaxPool1d,
    F.max_pool2d: nn.MaxPool2d,
    F.avg_pool1d: nn.AvgPool1d,
    F.avg_pool2d: nn.AvgPool2d,
    F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
    F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}
_IDENTITY_METHODS = {"contiguous", "clone", "detach"}
_SHAPE_METHODS = {"size", "dim"}
_HINT = (
    "Supported: Linear, Conv1d/Conv2d, BatchNorm1d/2d, ReLU, MaxPool1d/2d, AvgPool, "
    "AdaptiveAvgPool, Flatten/view/reshape, Dropout, Identity"
)


def _name_of(target: Any) -> str:
    if isinstance(target, str):
        return target
    mod = getattr(target, "__module__", None) or ""
    qual = getattr(target, "__name__", None) or getattr(target, "__qualname__", repr(target))
    if mod.startswith("torch.nn.functional"):
        return f"F.{qual}"
    if mod.startswith("torch") or mod == "_operator":
        return f"{'operator' if mod == '_operator' else 'torch'}.{qual}"
    return f"{mod}.{qual}" if mod else qual


def _is_shape_node(node: torch.fx.Node, shape_nodes: set[str]) -> bool:
    """Nodes that only compute Python sizes (``x.size(0)``, ``x.shape[0]``, arithmetic on them)."""
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function":
        if node.target is builtins.getattr and len(node.args) > 1 and node.args[1] == "shape":
            return True
        if node.target in (operator.getitem, operator.mul, operator.floordiv, operator.add):
            tensor_args = [a for a in node.args if isinstance(a, torch.fx.Node)]
            return bool(tensor_args) and all(a.name in shape_nodes for a in tensor_args)
    return False


def validate_and_trace(model: nn.Module) -> torch.fx.GraphModule:
    """Symbolically trace ``model`` and refuse unsupported operations up front.

    Raises :class:`UnsupportedOperationError` naming the operation and its module path / graph
    node, without running the model on any data.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for path, mod in model.named_modules():
        if isinstance(mod, _REFUSED_SUBCLASSES):
            raise UnsupportedOperationError(
                type(mod).__name__, path or "<model>", "lazy modules are not initialised",
                "Run one forward pass (or use the non-lazy module) before converting",
            )
        if isinstance(mod, nn.modules.conv._ConvNd) and not isinstance(
            mod, (nn.Conv1d, nn.Conv2d)
        ):
            raise UnsupportedOperationError(type(mod).__name__, path, "", _HINT)
    if type(model).__module__.startswith("torch.nn") and not isinstance(model, nn.Sequential):
        # a bare library layer (e.g. nn.Linear) is traced through its own forward otherwise
        model = nn.Sequential(model)
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx raises TraceError, TypeError, … for dynamic code
        raise UnsupportedOperationError(
            "untraceable forward",
            type(model).__name__,
            f"torch.fx could not trace it ({type(exc).__name__}: {exc})",
            "Data-dependent control flow (if/for on tensor values) cannot be converted; "
            "write forward() as a fixed sequence of supported operations",
        ) from exc

    modules = dict(gm.named_modules())
    shape_nodes: set[str] = set()
    placeholders = 0
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        owner = next(reversed(stack.values()))[0] if stack else ""
        where = f"{node.name} (graph node{' in ' + owner if owner else ''})"
        if node.op == "placeholder":
            placeholders += 1
            if placeholders > 1:
                raise UnsupportedOperationError(
                    "second input", node.name, "the model takes more than one tensor input"
                )
        elif node.op == "get_attr":
            raise UnsupportedOperationError(
                "parameter access", f"{node.target} (graph node {node.name})",
                "parameters used outside their modules (functional layers) cannot be folded",
                "Use nn.Linear / nn.Conv2d modules instead of F.linear / F.conv2d with "
                "free parameters",
            )
        elif node.op == "call_module":
            mod = modules[node.target]
            if not isinstance(mod, SUPPORTED_MODULES):
                raise UnsupportedOperationError(type(mod).__name__, node.target, "", _HINT)
            _check_module_options(mod, node.target)
        elif node.op == "call_function":
            t = node.target
            if _is_shape_node(node, shape_nodes):
                shape_nodes.add(node.name)
                continue
            if t in _RELU_FUNCTIONS or t in _FLATTEN_FUNCTIONS or t in _IDENTITY_FUNCTIONS:
                continue
            if t in _POOL_FUNCTIONS:
                if node.kwargs.get("return_indices"):
                    raise UnsupportedOperationError(_name_of(t), where, "return_indices=True")
                continue
            if t in (operator.add, torch.add, operator.iadd, torch.cat, torch.concat):
                raise UnsupportedOperationError(
                    _name_of(t), where,
                    "residual additions and concatenation are not supported yet",
                )
            raise UnsupportedOperationError(_name_of(t), where, "", _HINT)
        elif node.op == "call_method":
            if _is_shape_node(node, shape_nodes):
                shape_nodes.add(node.name)
                continue
            if node.target in {"relu", "relu_"} | _RESHAPE_METHODS | _IDENTITY_METHODS:
                continue
            raise UnsupportedOperationError(f"Tensor.{node.target}", where, "", _HINT)
        elif node.op == "output":
            if not isinstance(node.args[0], torch.fx.Node):
                raise UnsupportedOperationError(
                    "structured output", "output",
                    "the model must return a single tensor (the readout)",
                )
    _check_structure(gm, shape_nodes)
    return gm


def _kind(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    """Coarse role of a data node: core, relu, pool, other."""
    if node.op == "call_module":
        mod = modules[node.target]
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            return "core"
        if isinstance(mod, nn.ReLU):
            return "relu"
        if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                            nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            return "pool"
        return "other"
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return "relu"
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return "relu"
    if node.op == "call_function" and node.target in _POOL_FUNCTIONS:
        return "pool"
    return "other"


def _check_structure(gm: torch.fx.GraphModule, shape_nodes: set[str]) -> None:
    """Structural checks on the data path that need no shapes: the readout is the last
    Linear/Conv (no ReLU or pool after it) and consecutive Linear/Conv layers have a ReLU
    between them. Branching is left to the IR's chain check."""
    modules = dict(gm.named_modules())
    data = [n for n in gm.graph.nodes
            if n.op in ("call_module", "call_function", "call_method")
            and n.name not in shape_nodes]
    last_core: torch.fx.Node | None = None
    relu_since: torch.fx.Node | None = None
    for node in data:
        kind = _kind(node, modules)
        where = str(node.target) if node.op == "call_module" else f"{node.name} (graph node)"
        if kind == "core":
            if last_core is not None and relu_since is None:
                raise UnsupportedOperationError(
                    type(modules[node.target]).__name__, where,
                    f"it follows {last_core.target!r} with no ReLU in between",
                    "Two Linear/Conv layers in a row cannot be mapped to one spiking layer; "
                    "merge them into one layer or put a ReLU between them",
                )
            last_core, relu_since = node, None
        elif kind == "relu":
            relu_since = node
    if last_core is None:
        raise UnsupportedModelError(
            "the model has no Linear/Conv layer; onespike maps the last Linear/Conv to the "
            "non-spiking readout"
        )
    after = data[data.index(last_core) + 1 :]
    for node in after:
        if _kind(node, modules) == "pool":
            where = str(node.target) if node.op == "call_module" else f"{node.name} (graph node)"
            raise UnsupportedModelError(
                f"the network's output is not produced by a Linear/Conv readout: the last "
                f"Linear/Conv {last_core.target!r} is followed by pooling ({where}); the "
                "readout must be the last Linear/Conv (only batch norm, Flatten, Dropout and "
                "reshapes may follow it)"
            )
    for node in after:
        if _kind(node, modules) == "relu":
            where = str(node.target) if node.op == "call_module" else f"{node.name} (graph node)"
            raise UnsupportedOperationError(
                "ReLU", where, f"the readout {last_core.target!r} is followed by a ReLU",
                "The readout (last Linear/Conv) must give the logits; remove the final "
                "activation",
            )


def _check_module_options(mod: nn.Module, path: str) -> None:
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and mod.padding_mode != "zeros":
        raise UnsupportedOperationError(
            f"{type(mod).__name__}(padding_mode={mod.padding_mode!r})", path,
            "only zero padding can be folded exactly",
        )
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)) and mod.return_indices:
        raise UnsupportedOperationError(type(mod).__name__, path, "return_indices=True")
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and (
        mod.running_mean is None or mod.running_var is None
    ):
        raise UnsupportedOperationError(
            type(mod).__name__, path, "track_running_stats=False: no inference statistics",
        )


def _tup(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1 and n > 1:
            return tuple(int(v[0]) for _ in range(n))
        return tuple(int(x) for x in v)
    return tuple(int(v) for _ in range(n))


def _conv_pad(mod: nn.Conv1d | nn.Conv2d, dims: int) -> tuple[int, ...]:
    kernel = _tup(mod.kernel_size, dims)
    dil = _tup(mod.dilation, dims)
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            return (0,) * (2 * dims)
        pads: list[int] = []
        for k, d in zip(kernel, dil):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    out: list[int] = []
    for p in _tup(mod.padding, dims):
        out += [p, p]
    return tuple(out)


def _pool_module(node: torch.fx.Node) -> nn.Module:
    """Instantiate the module equivalent of a functional pooling call."""
    cls = _POOL_FUNCTIONS[node.target]
    args = list(node.args[1:])
    kwargs = {k: v for k, v in node.kwargs.items() if k != "return_indices"}
    return cls(*args, **kwargs)


def to_graph(
    gm: torch.fx.GraphModule, sample: torch.Tensor, dtype: torch.dtype
) -> Graph:
    """Convert a validated GraphModule into the IR, copying parameters in ``dtype``.

    ``sample`` (a small batch of model inputs) is propagated to record per-sample shapes; a
    shape the model rejects raises :class:`CalibrationError`.
    """
    try:
        with torch.no_grad():
            gm(sample)  # a plain run first: ShapeProp would print its own traceback
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CalibrationError(
            f"the model rejects inputs of shape {tuple(sample.shape)} "
            f"({type(exc).__name__}: {first}); check the calibration data's shape and dtype"
        ) from exc
    ShapeProp(gm).propagate(sample)

    modules = dict(gm.named_modules())
    graph = Graph()
    alias: dict[str, str] = {}  # fx name -> IR name (identity ops are aliases)

    def shape_of(node: torch.fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise UnsupportedOperationError(
                "non-tensor value", node.name, "the operation does not produce one tensor"
            )
        return tuple(int(s) for s in meta.shape[1:])

    def src(node: torch.fx.Node) -> str:
        if node.op == "call_module":
            return str(node.target)
        stack = node.meta.get("nn_module_stack")
        owner = next(reversed(stack.values()))[0] if stack else ""
        label = _name_of(node.target) if node.op != "call_method" else f"Tensor.{node.target}"
        return f"{label} in {owner}" if owner else f"{label} (node {node.name})"

    def data_input(node: torch.fx.Node) -> str:
        arg = node.args[0]
        if not isinstance(arg, torch.fx.Node) or arg.name not in alias:
            raise UnsupportedOperationError(
                "operation on a non-tensor", src(node), "its first argument is not a tensor"
            )
        return alias[arg.name]

    def p(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.detach().to(dtype).clone()

    batch = int(sample.shape[0])
    for node in gm.graph.nodes:
        ir: Node | None = None
        if node.op == "placeholder":
            ir = InputNode(node.name, "input", [], shape_of(node))
        elif node.op == "output":
            ir = OutputNode("output", "output", [alias[node.args[0].name]], shape_of(node.args[0]))
        elif node.op in ("call_module", "call_function", "call_method"):
            meta = node.meta.get("tensor_meta")
            if meta is None or not hasattr(meta, "shape"):
                continue  # size arithmetic
            mod = modules.get(node.target) if node.op == "call_module" else None
            if node.op == "call_function" and node.target in _POOL_FUNCTIONS:
                mod = _pool_module(node)
            inp = data_input(node)
            shape = shape_of(node)
            if int(meta.shape[0]) != batch:
                raise UnsupportedOperationError(
                    "batch reshape", src(node), "it mixes samples of the batch",
                    "Reshapes must keep the batch dimension first",
                )
            if isinstance(mod, _IDENTITY_MODULES) or (
                node.op == "call_function" and node.target in _IDENTITY_FUNCTIONS
            ) or (node.op == "call_method" and node.target in _IDENTITY_METHODS):
                alias[node.name] = inp
                continue
            ir = _make_node(node, mod, inp, shape, src(node), p)
        if ir is not None:
            graph.add(ir)
            alias[node.name] = ir.name
    return graph


def _make_node(
    node: torch.fx.Node,
    mod: nn.Module | None,
    inp: str,
    shape: tuple[int, ...],
    source: str,
    p: Callable[[torch.Tensor | None], torch.Tensor | None],
) -> Node:
    name, ins = node.name, [inp]
    if isinstance(mod, nn.Linear):
        return LinearNode(name, source, ins, shape, p(mod.weight), p(mod.bias))
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        dims = 1 if isinstance(mod, nn.Conv1d) else 2
        return ConvNode(
            name, source, ins, shape, p(mod.weight), p(mod.bias), dims,
            _tup(mod.stride, dims), _conv_pad(mod, dims), _tup(mod.dilation, dims), mod.groups,
        )
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return BatchNormNode(
            name, source, ins, shape, p(mod.running_mean), p(mod.running_var),
            p(mod.weight) if mod.affine else None, p(mod.bias) if mod.affine else None,
            float(mod.eps),
        )
    if isinstance(mod, nn.ReLU) or (
        node.op == "call_function" and node.target in _RELU_FUNCTIONS
    ) or (node.op == "call_method" and node.target in ("relu", "relu_")):
        return ReLUNode(name, source, ins, shape)
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
        dims = 1 if isinstance(mod, nn.MaxPool1d) else 2
        k = _tup(mod.kernel_size, dims)
        return MaxPoolNode(
            name, source, ins, shape, dims, k, _tup(mod.stride or k, dims),
            _tup(mod.padding, dims), _tup(mod.dilation, dims), bool(mod.ceil_mode),
        )
    if isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d)):
        dims = 1 if isinstance(mod, nn.AvgPool1d) else 2
        k = _tup(mod.kernel_size, dims)
        return AvgPoolNode(
            name, source, ins, shape, dims, k, _tup(mod.stride or k, dims),
            _tup(mod.padding, dims), bool(mod.ceil_mode), bool(mod.count_include_pad),
            getattr(mod, "divisor_override", None),
        )
    if isinstance(mod, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        dims = 1 if isinstance(mod, nn.AdaptiveAvgPool1d) else 2
        return AdaptiveAvgPoolNode(name, source, ins, shape, dims, shape[1:])
    # Reshapes: nn.Flatten / nn.Unflatten, torch.flatten, Tensor.view/reshape/flatten/...
    return FlattenNode(name, source, ins, shape)
