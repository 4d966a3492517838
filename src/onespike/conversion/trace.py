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

from onespike.conversion.ir import (
    AdaptiveAvgPoolNode,
    AddNode,
    AvgPoolNode,
    BatchNormNode,
    ClampNode,
    ConcatNode,
    ConvNode,
    FlattenNode,
    Graph,
    InputNode,
    LinearNode,
    MaxPoolNode,
    Node,
    OutputNode,
    PadNode,
    ReLUNode,
    ScaleNode,
    SliceNode,
)
from onespike.errors import (
    ArgumentTypeError,
    CalibrationError,
    UnsupportedModelError,
    UnsupportedOperationError,
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
    nn.ReLU6,
    nn.Hardtanh,
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
_CLAMP_FUNCTIONS: set[Callable[..., Any]] = {
    F.relu6, F.hardtanh, F.hardtanh_, torch.clamp, torch.clip, torch.clamp_min, torch.maximum,
}
_ADD_FUNCTIONS: set[Callable[..., Any]] = {
    operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub,
}
_MUL_FUNCTIONS: set[Callable[..., Any]] = {
    operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv, torch.div,
    operator.neg, torch.neg,
}
_CAT_FUNCTIONS: set[Callable[..., Any]] = {torch.cat, torch.concat}
_INPLACE_FUNCTIONS: set[Callable[..., Any]] = {
    torch.relu_, F.relu_, F.hardtanh_, operator.iadd, operator.isub, operator.imul,
    operator.itruediv,
}
_CLAMP_METHODS = {"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"}
_ARITH_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "neg_"}
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
    "Supported: Linear, Conv1d/Conv2d, BatchNorm1d/2d, ReLU (and ReLU6/Hardtanh(0, c)/"
    "clamp(x, 0, c)), MaxPool1d/2d, AvgPool, AdaptiveAvgPool, Flatten/view/reshape, "
    "additions and constant scalings, torch.cat, slicing, F.pad with zeros, Dropout, Identity"
)


class _Const:
    """A Python-number constant met while tracing (``0.5``, a scalar tensor constant)."""

    def __init__(self, value: float) -> None:
        self.value = float(value)


def _number(arg: Any, gm: torch.fx.GraphModule | None = None) -> float | None:
    """``arg`` as a Python float when it is a constant number (or a one-element constant
    tensor held by the traced module), else None."""
    if isinstance(arg, bool):
        return None
    if isinstance(arg, (int, float)):
        return float(arg)
    if isinstance(arg, torch.Tensor) and arg.numel() == 1 and not arg.requires_grad:
        return float(arg)
    if (isinstance(arg, torch.fx.Node) and arg.op == "get_attr" and gm is not None):
        t = _get_attr(gm, str(arg.target))
        if isinstance(t, torch.Tensor) and t.numel() == 1 and not isinstance(t, nn.Parameter):
            return float(t)
    return None


def _get_attr(gm: torch.fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj


def _is_zero_like(arg: Any, gm: torch.fx.GraphModule) -> bool:
    if isinstance(arg, torch.fx.Node) and arg.op == "call_function" and arg.target in (
        torch.zeros_like,
    ):
        return True
    v = _number(arg, gm)
    return v is not None and v == 0.0


def _clamp_bounds(node: torch.fx.Node, gm: torch.fx.GraphModule) -> tuple[Any, Any] | None:
    """``(low, high)`` of a clamp-like call as constants (None = no bound), or None when it
    is not a clamp with constant bounds."""
    t, args, kw = node.target, list(node.args), dict(node.kwargs)
    if node.op == "call_module":
        mod = gm.get_submodule(str(t))
        if isinstance(mod, nn.ReLU6):
            return 0.0, 6.0
        if isinstance(mod, nn.Hardtanh):
            return float(mod.min_val), float(mod.max_val)
        return None
    if t is F.relu6:
        return 0.0, 6.0
    if t in (F.hardtanh, F.hardtanh_):
        lo = args[1] if len(args) > 1 else kw.get("min_val", -1.0)
        hi = args[2] if len(args) > 2 else kw.get("max_val", 1.0)
        return _number(lo, gm), _number(hi, gm)
    if t is torch.maximum or (node.op == "call_method" and t == "maximum"):
        other = args[1] if len(args) > 1 else kw.get("other")
        return (0.0, None) if _is_zero_like(other, gm) else None
    if t is torch.clamp_min or (node.op == "call_method" and t in ("clamp_min", "clamp_min_")):
        lo = args[1] if len(args) > 1 else kw.get("min")
        return _number(lo, gm), None
    lo = args[1] if len(args) > 1 else kw.get("min")
    hi = args[2] if len(args) > 2 else kw.get("max")
    low = None if lo is None else _number(lo, gm)
    high = None if hi is None else _number(hi, gm)
    if (lo is not None and low is None) or (hi is not None and high is None):
        return None
    return low, high


def _clamp_problem(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str | None:
    """Why a clamp-like operation is not a (clipped) ReLU, or None when it is one."""
    bounds = _clamp_bounds(node, gm)
    if bounds is None:
        return "its bounds are not constants (or the other operand of maximum is not 0)"
    low, high = bounds
    if low != 0.0:
        return (f"its lower bound is {low} (only 0 makes it a ReLU; clamp(x, 0, c) is a "
                "clipped ReLU)")
    if high is not None and not high > 0.0:
        return f"its upper bound {high} is not positive"
    return None


def _scalar_operands(node: torch.fx.Node, gm: torch.fx.GraphModule
                     ) -> tuple[list[torch.fx.Node], list[float]] | None:
    """Tensor operands and constant operands of an arithmetic node."""
    args = list(node.args)
    if node.op == "call_method":
        args = list(node.args)
    tensors = [a for a in args if isinstance(a, torch.fx.Node) and _number(a, gm) is None]
    consts = [_number(a, gm) for a in args if not (isinstance(a, torch.fx.Node)
                                                   and _number(a, gm) is None)]
    if any(c is None for c in consts):
        return None
    return tensors, [float(c) for c in consts if c is not None]


def _name_of(target: Any) -> str:
    if isinstance(target, str):
        return target
    mod = getattr(target, "__module__", None) or ""
    qual: str = getattr(target, "__name__", "") or getattr(target, "__qualname__", repr(target))
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
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedOperationError(
            "TorchScript module", type(model).__name__,
            "a torch.jit.script/trace object has no Python forward that torch.fx can trace",
            "Pass the original nn.Module; for a scripted nn.Sequential saved as .pt, "
            "onespike.apps.rebuild.from_torchscript(path) (used by `onespike convert --model "
            "net.pt`) "
            "rebuilds it from nn layers",
        )
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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
            if _number(node, gm) is not None:
                continue  # a scalar constant (torch.tensor(0.) in forward); used as a number
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
            if t is torch.zeros_like:
                continue  # only as the 0 of torch.maximum(h, zeros_like(h)) (checked there)
            _check_function(node, gm, where)
        elif node.op == "call_method":
            if _is_shape_node(node, shape_nodes):
                shape_nodes.add(node.name)
                continue
            if node.target in {"relu", "relu_"} | _RESHAPE_METHODS | _IDENTITY_METHODS:
                continue
            if node.target in _CLAMP_METHODS or node.target == "maximum":
                problem = _clamp_problem(node, gm)
                if problem:
                    raise UnsupportedOperationError(f"Tensor.{node.target}", where, problem,
                                                    "Use F.relu, or clamp(x, 0, c)")
                continue
            if node.target in _ARITH_METHODS:
                _check_arith(node, gm, where, f"Tensor.{node.target}")
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


def _check_function(node: torch.fx.Node, gm: torch.fx.GraphModule, where: str) -> None:
    t = node.target
    if t in _CLAMP_FUNCTIONS:
        problem = _clamp_problem(node, gm)
        if problem:
            raise UnsupportedOperationError(_name_of(t), where, problem,
                                            "Use F.relu, or clamp(x, 0, c) / ReLU6")
        return
    if t in _ADD_FUNCTIONS or t in _MUL_FUNCTIONS:
        _check_arith(node, gm, where, _name_of(t))
        return
    if t in _CAT_FUNCTIONS:
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        if not isinstance(parts, (list, tuple)) or not all(
            isinstance(a, torch.fx.Node) for a in parts
        ):
            raise UnsupportedOperationError(_name_of(t), where,
                                            "it must concatenate a list of tensors")
        return
    if t is operator.getitem:
        idx = node.args[1]
        items = idx if isinstance(idx, tuple) else (idx,)
        for it in items:
            if not (isinstance(it, slice) or it is Ellipsis):
                raise UnsupportedOperationError(
                    "indexing", where, f"index {it!r} is not a slice",
                    "Only basic slicing such as x[:, :, ::2, ::2] can be converted; "
                    "use slices (x[:, 0:1]) instead of integer or tensor indices",
                )
            if isinstance(it, slice) and any(
                isinstance(v, torch.fx.Node) for v in (it.start, it.stop, it.step)
            ):
                raise UnsupportedOperationError("indexing", where,
                                                "slice bounds computed from tensors")
        return
    if t is F.pad:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value", None)
        if mode != "constant" or value not in (None, 0, 0.0):
            raise UnsupportedOperationError(
                "F.pad", where, f"mode={mode!r}, value={value!r}",
                "Only zero padding (mode='constant', value=0) maps onto spikes exactly",
            )
        return
    hint = _HINT
    if t in (torch.matmul, operator.matmul, torch.bmm, torch.einsum,
             F.scaled_dot_product_attention, torch.softmax, F.softmax):
        hint = "Products of two tensors and attention have no single-spike equivalent"
    raise UnsupportedOperationError(_name_of(t), where, "", hint)


def _check_arith(node: torch.fx.Node, gm: torch.fx.GraphModule, where: str, label: str) -> None:
    """Additions/subtractions of tensors and constants; products and quotients of a tensor
    and a constant."""
    ops = _scalar_operands(node, gm)
    if ops is None:
        raise UnsupportedOperationError(label, where, "an operand is neither a tensor nor a "
                                        "constant number")
    tensors, _ = ops
    base = str(node.target).split(".")[-1].strip("_")
    is_mul = node.target in _MUL_FUNCTIONS or base in ("mul", "div", "neg")
    is_div = node.target in (operator.truediv, operator.itruediv, torch.div) or base == "div"
    if is_mul and len(tensors) > 1:
        raise UnsupportedOperationError(
            label, where, "it multiplies two tensors",
            "Products of two tensors (gating, attention) have no single-spike equivalent; "
            "only multiplication by constants is linear",
        )
    if is_div and node.args and not (isinstance(node.args[0], torch.fx.Node)
                                     and _number(node.args[0], gm) is None):
        raise UnsupportedOperationError(label, where, "it divides by a tensor")
    if is_div and "rounding_mode" in node.kwargs and node.kwargs["rounding_mode"] is not None:
        raise UnsupportedOperationError(label, where, "rounding division is not linear")


def _check_structure(gm: torch.fx.GraphModule, shape_nodes: set[str]) -> None:
    """The model has a Linear/Conv, and its output comes from one (a ReLU or a max pool right
    before the output is refused: the readout gives the logits)."""
    modules = dict(gm.named_modules())
    if not any(isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) for m in modules.values()):
        raise UnsupportedModelError(
            "the model has no Linear/Conv layer; onespike maps the last Linear/Conv to the "
            "non-spiking readout"
        )
    out = next(n for n in gm.graph.nodes if n.op == "output")
    node = out.args[0]
    while isinstance(node, torch.fx.Node):
        where = str(node.target) if node.op == "call_module" else f"{node.name} (graph node)"
        mod = modules.get(str(node.target)) if node.op == "call_module" else None
        passthrough = (
            isinstance(mod, (*_IDENTITY_MODULES, *_RESHAPE_MODULES, nn.BatchNorm1d,
                             nn.BatchNorm2d))
            or (node.op == "call_method" and node.target in _RESHAPE_METHODS | _IDENTITY_METHODS)
            or (node.op == "call_function" and node.target in _FLATTEN_FUNCTIONS
                | _IDENTITY_FUNCTIONS)
        )
        if passthrough:
            node = node.args[0]
            continue
        relu_like = isinstance(mod, (nn.ReLU, nn.ReLU6, nn.Hardtanh)) or (
            node.op == "call_function" and (node.target in _RELU_FUNCTIONS
                                            or node.target in _CLAMP_FUNCTIONS)
        ) or (node.op == "call_method" and (node.target in ("relu", "relu_", "maximum")
                                            or node.target in _CLAMP_METHODS))
        if relu_like:
            raise UnsupportedOperationError(
                "ReLU", where, "the readout is followed by a ReLU",
                "The readout (last Linear/Conv) must give the logits; remove the final "
                "activation",
            )
        pool = isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)) or (
            node.op == "call_function" and node.target in (F.max_pool1d, F.max_pool2d))
        if pool:
            raise UnsupportedModelError(
                f"the network's output is not produced by a Linear/Conv readout: it is "
                f"followed by pooling ({where}); the readout must be the last Linear/Conv "
                "(only batch norm, Flatten, Dropout and reshapes may follow it)"
            )
        break


def _check_module_options(mod: nn.Module, path: str) -> None:
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and mod.padding_mode != "zeros":
        raise UnsupportedOperationError(
            f"{type(mod).__name__}(padding_mode={mod.padding_mode!r})", path,
            "only zero padding can be folded exactly",
        )
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)) and mod.return_indices:
        raise UnsupportedOperationError(type(mod).__name__, path, "return_indices=True")
    if isinstance(mod, nn.Hardtanh) and not isinstance(mod, nn.ReLU6) and (
        mod.min_val != 0.0 or not mod.max_val > 0.0
    ):
        raise UnsupportedOperationError(
            f"Hardtanh(min_val={mod.min_val}, max_val={mod.max_val})", path,
            "only Hardtanh(0, c) with c > 0 is a clipped ReLU",
        )
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


def _pool_module(node: torch.fx.Node, consts: dict[str, Any]) -> nn.Module:
    """Instantiate the module equivalent of a functional pooling call; sizes computed from
    shapes (``F.avg_pool2d(x, x.size()[3])``) take their values from the sample run."""
    assert callable(node.target)  # a call_function node (see to_graph)
    cls = _POOL_FUNCTIONS[node.target]

    def value(n: torch.fx.Node) -> Any:
        if n.name not in consts:
            raise UnsupportedOperationError(
                _name_of(node.target), node.name, f"argument {n.name} is a tensor, not a size")
        return consts[n.name]

    args = list(torch.fx.node.map_arg(tuple(node.args[1:]), value))
    kwargs = {k: v for k, v in torch.fx.node.map_arg(dict(node.kwargs), value).items()
              if k != "return_indices"}
    return cls(*args, **kwargs)


class _SizeRecorder(torch.fx.Interpreter):
    """Runs the traced model once and keeps the values of nodes that are not tensors (sizes
    computed from shapes)."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.consts: dict[str, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        if not isinstance(out, torch.Tensor):
            self.consts[n.name] = out
        return out


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
    recorder = _SizeRecorder(gm)
    with torch.no_grad():
        recorder.run(sample)

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
            if node.op == "call_function" and node.target is torch.zeros_like:
                continue  # the 0 of torch.maximum(h, zeros_like(h))
            mod = modules.get(node.target) if node.op == "call_module" else None
            if node.op == "call_function" and node.target in _POOL_FUNCTIONS:
                mod = _pool_module(node, recorder.consts)
            shape = shape_of(node)
            if int(meta.shape[0]) != batch:
                raise UnsupportedOperationError(
                    "batch reshape", src(node), "it mixes samples of the batch",
                    "Reshapes must keep the batch dimension first",
                )
            multi = _multi_input_node(node, gm, alias, shape, src(node))
            if multi is not None:
                ir = multi
            else:
                inp = data_input(node)
                if isinstance(mod, _IDENTITY_MODULES) or (
                    node.op == "call_function" and node.target in _IDENTITY_FUNCTIONS
                ) or (node.op == "call_method" and node.target in _IDENTITY_METHODS):
                    alias[node.name] = inp
                    continue
                ir = _make_node(node, mod, inp, shape, src(node), p, gm)
        if ir is not None:
            graph.add(ir)
            alias[node.name] = ir.name
            target = _inplace_target(node, modules)
            if target is not None:  # later readers of the modified tensor see the result
                alias[target.name] = ir.name
    graph.check_connected()
    return graph


def _inplace_target(node: torch.fx.Node, modules: dict[str, nn.Module]) -> torch.fx.Node | None:
    """The tensor an in-place operation modifies (``relu(inplace=True)``, ``x += y``, …)."""
    if not node.args or not isinstance(node.args[0], torch.fx.Node):
        return None
    inplace = False
    if node.op == "call_module":
        inplace = bool(getattr(modules.get(str(node.target)), "inplace", False))
    elif node.op == "call_function":
        inplace = node.target in _INPLACE_FUNCTIONS or bool(node.kwargs.get("inplace"))
    elif node.op == "call_method":
        inplace = str(node.target).endswith("_")
    return node.args[0] if inplace else None


def _multi_input_node(
    node: torch.fx.Node,
    gm: torch.fx.GraphModule,
    alias: dict[str, str],
    shape: tuple[int, ...],
    source: str,
) -> Node | None:
    """IR node for arithmetic, concatenation, slicing, padding and clamps (None for the
    single-input module-like operations handled by :func:`_make_node`)."""
    t, name = node.target, node.name
    if node.op == "call_module":
        mod = gm.get_submodule(str(t))
        if isinstance(mod, (nn.ReLU6, nn.Hardtanh)):
            bounds = _clamp_bounds(node, gm)
            assert bounds is not None
            return ClampNode(name, source, [_ir(node.args[0], alias, source)], shape,
                             high=float(bounds[1]))
        return None
    method = str(t) if node.op == "call_method" else ""
    base = method.rstrip("_")
    if t in _CAT_FUNCTIONS:
        parts = node.args[0] if node.args else node.kwargs["tensors"]
        assert isinstance(parts, (list, tuple))  # checked by _check_function
        # fx arguments are untyped; int() checks this one at run time
        dim: Any = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        ndim = len(shape) + 1
        dim = int(dim) % ndim
        if dim == 0:
            raise UnsupportedOperationError("torch.cat", source, "it concatenates along the "
                                            "batch dimension")
        return ConcatNode(name, source, [_ir(a, alias, source) for a in parts], shape,
                          dim=dim - 1)
    if t in _CLAMP_FUNCTIONS or base in {"clamp", "clip", "clamp_min", "maximum"}:
        bounds = _clamp_bounds(node, gm)
        assert bounds is not None
        data = node.args[0]
        if t is torch.maximum and _is_zero_like(data, gm):
            data = node.args[1]
        inp = _ir(data, alias, source)
        high = bounds[1]
        if high is None:
            return ReLUNode(name, source, [inp], shape)
        return ClampNode(name, source, [inp], shape, high=float(high))
    if t in _ADD_FUNCTIONS or base in ("add", "sub"):
        sub = t in (operator.sub, operator.isub, torch.sub) or base == "sub"
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs["other"]
        alpha_arg: Any = node.kwargs.get("alpha", 1.0)  # untyped fx argument: float() checks it
        alpha = float(alpha_arg)
        cb = (-alpha if sub else alpha)
        na, nb = _number(a, gm), _number(b, gm)
        if na is None and nb is None:
            return AddNode(name, source, [_ir(a, alias, source), _ir(b, alias, source)], shape,
                           coeffs=[1.0, cb])
        if na is None:
            assert nb is not None
            return ScaleNode(name, source, [_ir(a, alias, source)], shape, 1.0, cb * nb)
        return ScaleNode(name, source, [_ir(b, alias, source)], shape, cb, na)
    if t in _MUL_FUNCTIONS or base in ("mul", "div", "neg"):
        if t in (operator.neg, torch.neg) or base == "neg":
            return ScaleNode(name, source, [_ir(node.args[0], alias, source)], shape, -1.0)
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs["other"]
        div = t in (operator.truediv, operator.itruediv, torch.div) or base == "div"
        na, nb = _number(a, gm), _number(b, gm)
        tensor, c = (a, nb) if na is None else (b, na)
        assert c is not None
        if div:
            if c == 0.0:
                raise UnsupportedOperationError(_name_of(t), source, "division by zero")
            c = 1.0 / c
        return ScaleNode(name, source, [_ir(tensor, alias, source)], shape, c)
    if t is operator.getitem:
        sliced = node.args[0]
        assert isinstance(sliced, torch.fx.Node)  # getitem nodes come from Proxy.__getitem__
        in_shape = tuple(int(v) for v in sliced.meta["tensor_meta"].shape)
        idx = node.args[1]
        items = list(idx) if isinstance(idx, tuple) else [idx]
        if Ellipsis in items:
            k = items.index(Ellipsis)
            fill = len(in_shape) - (len(items) - 1)
            items = items[:k] + [slice(None)] * fill + items[k + 1 :]
        items += [slice(None)] * (len(in_shape) - len(items))
        if items[0] != slice(None):
            raise UnsupportedOperationError("indexing", source, "it slices the batch dimension")
        slices = []
        for it, size in zip(items[1:], in_shape[1:]):
            assert isinstance(it, slice)  # _check_function: slices and Ellipsis (expanded)
            start, stop, step = it.indices(size)
            if step < 1:
                raise UnsupportedOperationError("indexing", source, "negative slice steps")
            slices.append((start, stop, step))
        return SliceNode(name, source, [_ir(sliced, alias, source)], shape, tuple(slices))
    if t is F.pad:
        # fx arguments are untyped; list() and int() check this one at run time
        pad_arg: Any = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
        pad = list(pad_arg)
        ndim = len(shape)
        per: list[int] = [0] * (2 * ndim)
        for k in range(len(pad) // 2):
            d = ndim - 1 - k
            per[2 * d], per[2 * d + 1] = int(pad[2 * k]), int(pad[2 * k + 1])
        if any(v < 0 for v in per):
            raise UnsupportedOperationError("F.pad", source, "negative padding (cropping)",
                                            "Use slicing to crop")
        return PadNode(name, source, [_ir(node.args[0], alias, source)], shape, tuple(per))
    return None


def _ir(arg: Any, alias: dict[str, str], source: str) -> str:
    if not isinstance(arg, torch.fx.Node) or arg.name not in alias:
        raise UnsupportedOperationError(
            "operation on a non-tensor", source, f"operand {arg!r} is not a traced tensor"
        )
    return alias[arg.name]


def _make_node(
    node: torch.fx.Node,
    mod: nn.Module | None,
    inp: str,
    shape: tuple[int, ...],
    source: str,
    p: Callable[[torch.Tensor | None], torch.Tensor | None],
    gm: torch.fx.GraphModule | None = None,
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
