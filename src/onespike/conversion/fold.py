"""Fold the graph IR into a DAG of affine spiking populations (step 2 of the pipeline).

A population is the input, or a ReLU output of the folded network; the readout is the sink.
Every population ``p`` computes (docs/method.md, "Networks that are not chains")::

    z_p = b_p + Σ_e A_e(route_e(x_{s_e})),     x_p = ReLU(z_p)

over its incoming **edges** ``e`` from earlier populations ``s_e``: ``route`` only moves spikes
(max pooling "first spike wins", reshapes, slicing) and ``A`` is one Linear or Conv map with
zero bias (batch norm, constant coefficients, average pooling, zero padding, concatenation
blocks and the input range folded in); ``b_p`` is a per-position bias map.

The fold propagates, node by node, a symbolic value for every IR tensor: a constant map plus a
sum of **terms**, each a population's values through routes and then a list of linear
operations. A ReLU turns such a sum into a population (or is inert on values that are already
non-negative; over a concatenation it acts block by block). Folding, as in the method notes:

* the input range ``[p, q]`` is the term ``x = p + (q − p) x̂`` of the input population;
* batch norm and constant scalings are elementwise affine maps: before a Linear/Conv they
  fold into its input side (a shift becomes the exact per-position bias map
  ``conv(shift image) + b`` under zero padding), after one into its output side;
* a max pool of a single population (per-channel scale and shift allowed, a negative scale
  makes it "latest spike") is a route; a max pool of pre-activation values moves after the
  ReLU that must follow it (with batch norm / scalings between);
* additions add terms; a concatenation places each term in its block of the output;
* linear maps with two Linear/Conv layers and no ReLU between them are composed when the
  composition is again one map (anything into a Linear; pointwise convolutions; average
  pooling after a convolution); otherwise the first map's values are split into
  ``ReLU(y) − ReLU(−y)``, two populations one window later (or one population when ``y ≥ 0``,
  as for an average pool of a ReLU output);
* a clipped ReLU ``min(max(z, 0), c)`` is ``ReLU(z) − ReLU(z − c)``: two populations with the
  same weights and biases ``b`` and ``b − c``.

Every edge's realisation is checked against the operations it replaces on a probe input.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

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
from onespike.errors import UnsupportedModelError, UnsupportedOperationError
from onespike.simulation.affine import Affine
from onespike.simulation.routing import MaxPoolRoute, ReshapeRoute, Route, SliceRoute
from onespike.simulation.schedule import last_use

__all__ = ["DENSE_LIMIT", "Edge", "Folded", "FoldedPopulation", "fold"]

#: Largest dense matrix (entries) a composed linear map into a Linear may become.
DENSE_LIMIT = 1 << 23
_PROBE_RTOL = 1e-9


# -- the folded network -----------------------------------------------------------------------
@dataclass
class Edge:
    """Synapses from population ``source``: ``A(route(x_source))`` with ``A = affine`` (its
    bias is zero: the population holds the bias)."""

    source: str
    routes: list[Route]
    affine: Affine
    origin: str = ""

    def __call__(self, v: Tensor) -> Tensor:
        for r in self.routes:
            v = r(v)
        return self.affine.linear(v)


@dataclass
class FoldedPopulation:
    """``x = ReLU(bias + Σ_e edge_e(x_source))`` (no ReLU for the readout). ``role``:
    ``"relu"`` (a ReLU of the model), ``"clip"`` (the ``ReLU(z − c)`` half of a clipped ReLU),
    ``"pool"`` (values that are non-negative anyway, e.g. an average pool of a ReLU output:
    the ReLU is inert), ``"split+"``/``"split-"`` (the halves of a signed stream), or
    ``"readout"``."""

    name: str
    source: str
    edges: list[Edge]
    bias: Tensor
    relu: bool
    role: str = "relu"

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.bias.shape)

    def z(self, values: dict[str, Tensor]) -> Tensor:
        out = self.bias
        for e in self.edges:
            out = out + e(values[e.source])
        return out


@dataclass
class Folded:
    """The folded network: input ``x̂ = (x − low)/(high − low) ∈ [0, 1]`` of ``input_shape``
    (population ``"input"``), hidden ``populations`` in topological order, the ``readout``
    and ``output_routes`` (reshapes) to the model's output shape."""

    input_shape: tuple[int, ...]
    input_low: Tensor
    input_high: Tensor
    populations: list[FoldedPopulation]
    readout: FoldedPopulation
    output_routes: list[Route] = field(default_factory=list)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.output_routes:
            return self.output_routes[-1].out_shape
        return self.readout.out_shape

    def run(self, xhat: Tensor) -> Iterator[tuple[str, Tensor]]:
        """Run the folded ReLU network on ``x̂``: yield ``(name, values)`` for every hidden
        population (post-ReLU) and finally ``("readout", logits)``; a population's values are
        dropped after its last consumer."""
        last = last_use([*self.populations, self.readout])
        values: dict[str, Tensor] = {"input": xhat}
        for i, p in enumerate([*self.populations, self.readout]):
            v = p.z(values)
            if p.relu:
                v = v.clamp_min(0)
            values[p.name] = v
            for name in [n for n, j in last.items() if j == i]:
                values.pop(name, None)
            yield p.name, v

    def forward_values(self, xhat: Tensor) -> dict[str, Tensor]:
        """Every hidden population's values and the logits (``"readout"``)."""
        return dict(self.run(xhat))


# -- symbolic values ---------------------------------------------------------------------------
@dataclass
class _Op:
    """One linear operation of a term (values of ``in_shape`` → ``out_shape``)."""

    kind: str  # scale | core | avgpool | reshape | place | pad | slice
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    source: str
    k: Tensor | None = None  # scale: factor map of in_shape
    affine: Affine | None = None  # core: zero-bias Linear/Conv
    node: Node | None = None  # avgpool
    pad: tuple[int, ...] = ()  # pad / place: (before_0, after_0, …) per-sample dims
    slices: tuple[tuple[int, int, int], ...] = ()

    def __call__(self, v: Tensor) -> Tensor:
        if self.kind == "scale":
            assert self.k is not None
            return v * self.k
        if self.kind == "core":
            assert self.affine is not None
            return self.affine.linear(v)
        if self.kind == "avgpool":
            assert self.node is not None
            return _apply_pool(self.node, v)
        if self.kind == "reshape":
            return v.reshape(v.shape[0], *self.out_shape)
        if self.kind in ("place", "pad"):
            return _zero_pad(v, self.pad)
        return v[(slice(None), *(slice(a, b, s) for a, b, s in self.slices))]


@dataclass
class _Term:
    pop: str
    pop_shape: tuple[int, ...]
    routes: list[Route] = field(default_factory=list)
    ops: list[_Op] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        if self.ops:
            return self.ops[-1].out_shape
        if self.routes:
            return tuple(self.routes[-1].out_shape)
        return self.pop_shape

    def scale_only(self) -> bool:
        return all(op.kind == "scale" for op in self.ops)

    def has_core(self) -> bool:
        return any(op.kind in ("core", "avgpool") for op in self.ops)

    def copy(self) -> _Term:
        return _Term(self.pop, self.pop_shape, list(self.routes), list(self.ops))


@dataclass
class _Expr:
    """``const + Σ terms`` (const None = 0)."""

    terms: list[_Term]
    const: Tensor | None
    shape: tuple[int, ...]
    #: the terms are non-decreasing functions of one pre-activation (a clipped ReLU
    #: ``ReLU(z) − ReLU(z − c)``): a max pool acts on each term (same argmax)
    comonotone: bool = False


@dataclass
class _Pooled:
    """``k · routes(inner) + c`` per channel: max pools of pre-activation values waiting for
    their ReLU (``routes``: MaxPool/Reshape routes, signs accumulated)."""

    inner: _Expr
    routes: list[Route]
    k: Tensor
    c: Tensor
    shape: tuple[int, ...]
    source: str


# -- helpers ----------------------------------------------------------------------------------
def _channel_map(vec: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Broadcast a per-channel vector (channel = dim 0 of ``shape``) to a full map."""
    return vec.reshape((-1,) + (1,) * (len(shape) - 1)).expand(shape).clone()


def _channel_uniform(m: Tensor) -> bool:
    flat = m.reshape(m.shape[0], -1)
    return bool((flat == flat[:, :1]).all())


def _per_channel(m: Tensor) -> Tensor:
    return m.reshape(m.shape[0], -1)[:, 0]


def _sign(k: Tensor) -> Tensor:
    s = torch.sign(k)
    return torch.where(s == 0, torch.ones_like(s), s)


def _numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


def _zero_pad(v: Tensor, pad: tuple[int, ...]) -> Tensor:
    """Zero padding of per-sample dims (``pad`` = before_0, after_0, before_1, …)."""
    torch_pad: list[int] = []
    for d in reversed(range(len(pad) // 2)):
        torch_pad += [pad[2 * d], pad[2 * d + 1]]
    return F.pad(v, torch_pad)


def _apply_pool(node: Node, v: Tensor) -> Tensor:
    if isinstance(node, AvgPoolNode):
        fn = F.avg_pool1d if node.dims == 1 else F.avg_pool2d
        kw: dict[str, Any] = {}
        if node.dims == 2:
            kw["divisor_override"] = node.divisor_override
        return fn(v, node.kernel, node.stride, node.padding, node.ceil_mode,
                  node.count_include_pad, **kw)
    assert isinstance(node, AdaptiveAvgPoolNode)
    if node.dims == 1:
        return F.adaptive_avg_pool1d(v, node.output_size)
    # cast: a 2-d pool's output_size is its output's (H, W) (trace: shape[1:] of (C, H, W))
    return F.adaptive_avg_pool2d(v, cast(tuple[int, int], node.output_size))


def _pool_as_conv(node: Node, in_shape: tuple[int, ...]
                  ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], float] | None:
    """Kernel, stride, padding and divisor of an average pool that is a convolution (None
    when its divisor depends on the position)."""
    if isinstance(node, AdaptiveAvgPoolNode):
        sizes = in_shape[1:]
        if any(s % o for s, o in zip(sizes, node.output_size)):
            return None
        k = tuple(s // o for s, o in zip(sizes, node.output_size))
        return k, k, (0,) * node.dims, float(math.prod(k))
    assert isinstance(node, AvgPoolNode)
    if any(node.padding) and not node.count_include_pad and node.divisor_override is None:
        return None
    floor_shape = tuple(
        (n + 2 * p - k) // s + 1
        for n, p, k, s in zip(in_shape[1:], node.padding, node.kernel, node.stride)
    )
    if node.ceil_mode and floor_shape != node.out_shape[1:]:
        return None
    div = float(node.divisor_override or math.prod(node.kernel))
    return node.kernel, node.stride, node.padding, div


# -- realising a term as one Linear/Conv edge ----------------------------------------------------
@dataclass
class _ConvSpec:
    """A dense (groups = 1) convolution: weight (C_out, C_in, *K), stride, (l, r) padding."""

    weight: Tensor
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]


def _dense_weight(a: Affine) -> Tensor:
    """A grouped convolution's weight expanded to groups = 1."""
    if a.groups == 1:
        return a.weight
    c_out, cg = a.weight.shape[0], a.weight.shape[1]
    w = a.weight.new_zeros((c_out, cg * a.groups, *a.weight.shape[2:]))
    per = c_out // a.groups
    for g in range(a.groups):
        w[g * per:(g + 1) * per, g * cg:(g + 1) * cg] = a.weight[g * per:(g + 1) * per]
    return w


def _op_spec(op: _Op, like: Tensor) -> _ConvSpec | None:
    c_in = op.in_shape[0]
    dims = len(op.in_shape) - 1
    one = (1,) * dims
    if op.kind == "scale":
        assert op.k is not None
        if not _channel_uniform(op.k):
            return None
        w = torch.diag(_per_channel(op.k)).reshape(c_in, c_in, *one)
        return _ConvSpec(w, one, (0,) * (2 * dims), one)
    if op.kind in ("place", "pad"):
        eye = torch.eye(c_in, dtype=like.dtype, device=like.device)
        c0, c1 = op.pad[0], op.pad[1]
        w = F.pad(eye, (0, 0, c0, c1)).reshape(c0 + c_in + c1, c_in, *one)
        return _ConvSpec(w, one, tuple(op.pad[2:]), one)
    if op.kind == "core":
        a = op.affine
        assert a is not None
        if a.kind != "conv":
            return None
        return _ConvSpec(_dense_weight(a), a.stride, a.pad, a.dilation)
    if op.kind == "avgpool":
        assert op.node is not None
        geo = _pool_as_conv(op.node, op.in_shape)
        if geo is None:
            return None
        kernel, stride, padding, div = geo
        w = like.new_zeros((c_in, c_in, *kernel))
        idx = torch.arange(c_in, device=like.device)
        w[idx, idx] = 1.0 / div
        pad: list[int] = []
        for p in padding:
            pad += [p, p]
        return _ConvSpec(w, tuple(stride), tuple(pad), one)
    return None


def _compose(a: _ConvSpec, b: _ConvSpec) -> _ConvSpec:
    """The convolution ``b ∘ a`` (exact when ``b`` has no padding or ``a`` is pointwise)."""
    dims = len(a.stride)
    ka, kb = a.weight.shape[2:], b.weight.shape[2:]
    ext = [a.dilation[d] * (ka[d] - 1) + 1 + a.stride[d] * b.dilation[d] * (kb[d] - 1)
           for d in range(dims)]
    w = a.weight.new_zeros((b.weight.shape[0], a.weight.shape[1], *ext))
    for pb in itertools.product(*[range(int(k)) for k in kb]):
        ib: tuple[slice | int, ...] = (slice(None), slice(None), *pb)
        wb = b.weight[ib]  # (O, J)
        for pa in itertools.product(*[range(int(k)) for k in ka]):
            m = tuple(pa[d] * a.dilation[d] + a.stride[d] * b.dilation[d] * pb[d]
                      for d in range(dims))
            ia: tuple[slice | int, ...] = (slice(None), slice(None), *pa)
            im: tuple[slice | int, ...] = (slice(None), slice(None), *m)
            wa = a.weight[ia]  # (J, I)
            w[im] += wb @ wa
    stride = tuple(a.stride[d] * b.stride[d] for d in range(dims))
    pad = []
    for d in range(dims):
        pad += [a.pad[2 * d] + a.stride[d] * b.pad[2 * d],
                a.pad[2 * d + 1] + a.stride[d] * b.pad[2 * d + 1]]
    return _ConvSpec(w, stride, tuple(pad), (1,) * dims)


def _pointwise(s: _ConvSpec) -> bool:
    return all(int(k) == 1 for k in s.weight.shape[2:])


def _conv_plan(ops: list[_Op], in_shape: tuple[int, ...]) -> bool:
    """Whether ``ops`` compose into one convolution exactly (structure only)."""
    if len(in_shape) < 2:
        return False
    pointwise_so_far = True
    for op in ops:
        if op.kind in ("reshape", "slice"):
            return False
        if op.kind == "core" and (op.affine is None or op.affine.kind != "conv"):
            return False
        if op.kind == "scale":
            assert op.k is not None
            if not _channel_uniform(op.k):
                return False
            continue
        if op.kind == "avgpool" and op.node is not None and _pool_as_conv(
            op.node, op.in_shape
        ) is None:
            return False
        padded = (op.kind in ("pad", "place") and any(op.pad[2:])) or (
            op.kind == "core" and op.affine is not None and any(op.affine.pad)
        ) or (op.kind == "avgpool" and isinstance(op.node, AvgPoolNode) and any(op.node.padding))
        if padded and not pointwise_so_far:
            return False
        if op.kind == "core" and op.affine is not None:
            if any(int(k) != 1 for k in op.affine.weight.shape[2:]):
                pointwise_so_far = False
        elif op.kind == "avgpool":
            pointwise_so_far = False
    return True


def _flatten_linear(ops: list[_Op]) -> bool:
    """``ops`` are reshapes and then one Linear: the Linear itself, read through a flatten
    route (reshapes keep the C order of the values, so any chain of them ending 1-d is the
    flatten), whatever the Linear's size."""
    if not ops or ops[-1].kind != "core" or len(ops[-1].in_shape) != 1:
        return False
    last = ops[-1].affine
    return (last is not None and last.kind == "linear"
            and all(op.kind == "reshape" for op in ops[:-1]))


def _plan(ops: list[_Op], in_shape: tuple[int, ...]) -> str | None:
    """How ``ops`` (applied to a population's routed values of ``in_shape``) become one edge:
    ``"conv"``, ``"linear"`` (a flatten and the Linear as it is), ``"dense"`` (the composition
    as one Linear) or None (not realisable as one map)."""
    out_shape = ops[-1].out_shape if ops else in_shape
    if _conv_plan(ops, in_shape):
        return "conv"
    if _flatten_linear(ops):
        return "linear"
    if len(out_shape) == 1 and _numel(in_shape) * _numel(out_shape) <= DENSE_LIMIT:
        return "dense"
    return None


def _direct_conv(ops: list[_Op], in_shape: tuple[int, ...], ref: Tensor) -> Affine | None:
    """Fast path: one convolution-like op (a Conv, an average pool, or none = identity) with
    scalings, zero padding before it and channel blocks around it — keeps ``groups``."""
    like_ops = [i for i, op in enumerate(ops) if op.kind in ("core", "avgpool")]
    if len(like_ops) > 1:
        return None
    dims = len(in_shape) - 1
    if like_ops:
        i = like_ops[0]
        op = ops[i]
        if op.kind == "core":
            assert op.affine is not None
            a = replace(op.affine, weight=op.affine.weight.clone())
        else:
            assert op.node is not None
            geo = _pool_as_conv(op.node, op.in_shape)
            if geo is None:
                return None
            kernel, stride, padding, div = geo
            ch = op.in_shape[0]
            w = torch.full((ch, 1, *kernel), 1.0 / div, dtype=ref.dtype, device=ref.device)
            pad: list[int] = []
            for p in padding:
                pad += [p, p]
            a = Affine("conv", w, w.new_zeros(op.out_shape), op.in_shape, op.out_shape, dims,
                       tuple(stride), tuple(pad), (1,) * dims, ch)
        pre, post = ops[:i], ops[i + 1:]
    else:
        ch = in_shape[0]
        k = torch.ones(ch, dtype=ref.dtype, device=ref.device)
        a = Affine("conv", k.reshape(ch, 1, *([1] * dims)), k.new_zeros(in_shape), in_shape,
                   in_shape, dims, (1,) * dims, (0,) * (2 * dims), (1,) * dims, ch)
        pre, post = [op for op in ops if op.kind == "scale"], []
        if any(op.kind != "scale" for op in ops):
            return None
    for op in reversed(pre):
        if op.kind == "scale":
            assert op.k is not None
            a.scale_input(_channel_map(_per_channel(op.k), a.in_shape))
        elif op.kind == "pad" and op.pad[0] == 0 and op.pad[1] == 0:
            a.pad = tuple(x + y for x, y in zip(a.pad, op.pad[2:]))
            a.in_shape = op.in_shape
        elif op.kind in ("place", "pad") and not any(op.pad[2:]) and a.groups == 1:
            c0 = op.pad[0]
            a.weight = a.weight[:, c0:c0 + op.in_shape[0]].contiguous()
            a.in_shape = op.in_shape
        else:
            return None
    for op in post:
        if op.kind == "scale":
            assert op.k is not None
            if not _channel_uniform(op.k):
                return None
            a.scale_output(_per_channel(op.k))
        elif op.kind == "place" and not any(op.pad[2:]):
            w = _dense_weight(a)
            a.weight = F.pad(w, (0, 0) * (w.dim() - 1) + (op.pad[0], op.pad[1]))
            a.groups = 1
            a.out_shape = op.out_shape
            a.bias = a.weight.new_zeros(op.out_shape)
        else:
            return None
    a.bias = a.weight.new_zeros(a.out_shape)
    return a


def _realise(term: _Term, ref: Tensor) -> tuple[list[Route], Affine] | None:
    """The routes and the zero-bias Affine that compute ``term`` (None: not one map)."""
    in_shape = tuple(term.routes[-1].out_shape) if term.routes else term.pop_shape
    ops = term.ops
    plan = _plan(ops, in_shape)
    if plan is None:
        return None
    out_shape = term.shape
    routes = list(term.routes)
    if plan == "conv":
        ops_p = ops if ops else [_Op("scale", in_shape, in_shape, "identity",
                                     k=ref.new_ones(in_shape))]
        a = _direct_conv(ops_p, in_shape, ref)
        if a is None:
            spec: _ConvSpec | None = None
            for op in ops_p:
                s = _op_spec(op, ref)
                if s is None:
                    return None
                spec = s if spec is None else _compose(spec, s)
            assert spec is not None
            dims = len(in_shape) - 1
            a = Affine("conv", spec.weight, spec.weight.new_zeros(out_shape), in_shape,
                       out_shape, dims, spec.stride, spec.pad, spec.dilation, 1)
    elif plan == "linear":
        core = ops[-1].affine
        assert core is not None
        n_in = _numel(in_shape)
        if len(in_shape) != 1:
            routes.append(ReshapeRoute(in_shape, (n_in,), "flatten (folded Linear)"))
        w = core.weight.clone()
        a = Affine("linear", w, w.new_zeros(out_shape), (n_in,), out_shape)
    else:
        n_in, n_out = _numel(in_shape), _numel(out_shape)
        if n_in <= n_out:
            eye = torch.eye(n_in, dtype=ref.dtype, device=ref.device).reshape(n_in, *in_shape)
            w = _apply_ops(ops, eye).reshape(n_in, n_out).T.contiguous()
        else:
            x = torch.zeros((n_out, *in_shape), dtype=ref.dtype, device=ref.device,
                            requires_grad=True)
            with torch.enable_grad():
                y = _apply_ops(ops, x).reshape(n_out, n_out)
                y.backward(torch.eye(n_out, dtype=ref.dtype, device=ref.device))
            assert x.grad is not None
            w = x.grad.reshape(n_out, n_in).detach()
        if len(in_shape) != 1:
            routes.append(ReshapeRoute(in_shape, (n_in,), "flatten (folded Linear)"))
        a = Affine("linear", w, w.new_zeros(out_shape), (n_in,), out_shape)
    if not _probe_ok(ops, in_shape, routes[len(term.routes):], a, ref):
        return None
    return routes, a


def _apply_ops(ops: list[_Op], v: Tensor) -> Tensor:
    for op in ops:
        v = op(v)
    return v


def _probe_ok(ops: list[_Op], in_shape: tuple[int, ...], extra: list[Route], a: Affine,
              ref: Tensor) -> bool:
    """The realisation equals the operations on a random probe (a local generator: the
    global random state is left alone)."""
    gen = torch.Generator(device=ref.device).manual_seed(1234)
    x = torch.rand((2, *in_shape), generator=gen, dtype=ref.dtype, device=ref.device)
    want = _apply_ops(ops, x)
    v = x
    for r in extra:
        v = r(v)
    got = a.linear(v)
    scale = float(want.abs().max()) if want.numel() else 0.0
    err = float((got - want).abs().max()) if want.numel() else 0.0
    tol = _PROBE_RTOL * max(scale, 1.0) if ref.dtype == torch.float64 else 1e-4 * max(scale, 1)
    return err <= tol


# -- the pass ---------------------------------------------------------------------------------
def fold(graph: Graph, input_low: Tensor, input_high: Tensor) -> Folded:
    """Fold ``graph`` into populations; ``input_low``/``input_high`` are maps of the input
    shape giving the declared input range."""
    return _Folder(graph, input_low, input_high).run()


class _Folder:
    def __init__(self, graph: Graph, low: Tensor, high: Tensor) -> None:
        self.graph = graph
        self.low, self.high = low, high
        self.ref = low
        self.pops: list[FoldedPopulation] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.env: dict[str, _Expr | _Pooled] = {}

    # -- driver ----------------------------------------------------------------------------
    def run(self) -> Folded:
        graph = self.graph
        inp = graph.nodes[0]
        assert isinstance(inp, InputNode)
        shape = inp.out_shape
        self.shapes["input"] = shape
        k = (self.high - self.low).clone()
        term = _Term("input", shape)
        if not bool((k == 1).all()):
            term.ops.append(_Op("scale", shape, shape, "input range", k=k))
        const = None if bool((self.low == 0).all()) else self.low.clone()
        self.env[inp.name] = _Expr([term], const, shape)
        readout: FoldedPopulation | None = None
        routes: list[Route] = []
        for node in graph.nodes[1:]:
            if isinstance(node, OutputNode):
                readout, routes = self._readout(self.env[node.inputs[0]], node)
                break
            self.env[node.name] = self._node(node)
        assert readout is not None
        return Folded(shape, self.low, self.high, self._live(readout), readout, routes)

    def _live(self, readout: FoldedPopulation) -> list[FoldedPopulation]:
        """The populations the readout depends on, renumbered ``layer1 …`` in order (a
        branch that tried one realisation and fell back to another may leave some unread)."""
        by_name = {p.name: p for p in self.pops}
        live: set[str] = set()
        stack = [e.source for e in readout.edges]
        while stack:
            name = stack.pop()
            if name in live or name not in by_name:
                continue
            live.add(name)
            stack += [e.source for e in by_name[name].edges]
        pops = [p for p in self.pops if p.name in live]
        rename = {p.name: f"layer{i + 1}" for i, p in enumerate(pops)}
        for p in [*pops, readout]:
            for e in p.edges:
                e.source = rename.get(e.source, e.source)
        for p in pops:
            p.name = rename[p.name]
        return pops

    def _node(self, node: Node) -> _Expr | _Pooled:
        ins = [self.env[i] for i in node.inputs]
        x = ins[0] if ins else None
        if isinstance(node, (LinearNode, ConvNode)):
            return self._core(self._expr(x, node), node)
        if isinstance(node, BatchNormNode):
            kappa, shift = node.scale_shift()
            return self._elementwise(x, kappa, shift, node)
        if isinstance(node, ScaleNode):
            shape = node.out_shape
            kappa = torch.full((shape[0] if shape else 1,), node.scale, dtype=self.ref.dtype,
                               device=self.ref.device)
            shift = torch.full_like(kappa, node.shift)
            return self._elementwise(x, kappa, shift, node)
        if isinstance(node, ReLUNode):
            return self._relu(x, node)
        if isinstance(node, ClampNode):
            if math.isinf(node.high):
                return self._relu(x, node)
            return self._clamp(x, node)
        if isinstance(node, MaxPoolNode):
            return self._maxpool(x, node)
        if isinstance(node, (AvgPoolNode, AdaptiveAvgPoolNode)):
            e = self._expr(x, node)
            op = _Op("avgpool", e.shape, node.out_shape, node.source, node=node)
            return self._linear(e, op)
        if isinstance(node, FlattenNode):
            if isinstance(x, _Pooled):
                x.routes.append(ReshapeRoute(x.shape, node.out_shape, node.source))
                return replace(x, shape=node.out_shape)
            e = self._expr(x, node)
            return self._linear(e, _Op("reshape", e.shape, node.out_shape, node.source))
        if isinstance(node, SliceNode):
            e = self._expr(x, node)
            return self._linear(e, _Op("slice", e.shape, node.out_shape, node.source,
                                       slices=node.slices))
        if isinstance(node, PadNode):
            e = self._expr(x, node)
            kind = "place" if not any(node.pad[2:]) else "pad"
            return self._linear(e, _Op(kind, e.shape, node.out_shape, node.source,
                                       pad=node.pad))
        if isinstance(node, AddNode):
            return self._add([self._expr(v, node) for v in ins], node.coeffs, node)
        if isinstance(node, ConcatNode):
            return self._concat([self._expr(v, node) for v in ins], node)
        raise UnsupportedOperationError(type(node).__name__, node.source)  # pragma: no cover

    def _expr(self, x: _Expr | _Pooled | None, node: Node) -> _Expr:
        if isinstance(x, _Pooled):
            raise UnsupportedOperationError(
                type(node).__name__.replace("Node", ""), node.source,
                f"it reads max-pooled pre-activation values ({x.source}) that no ReLU "
                "follows",
                "Max pooling of values that are not a ReLU output must be followed by a ReLU "
                "(batch norm or constant scaling may sit between); apply the ReLU before the "
                "pool",
            )
        assert x is not None
        return x

    # -- linear operations ---------------------------------------------------------------------
    def _linear(self, e: _Expr, op: _Op) -> _Expr:
        """Apply the linear operation ``op`` to every term and to the constant."""
        terms: list[_Term] = []
        for t in e.terms:
            terms.extend(self._term_op(t, op))
        const = None if e.const is None else op(e.const[None])[0]
        return _Expr(terms, const, op.out_shape)

    def _term_op(self, t: _Term, op: _Op) -> list[_Term]:
        if op.kind in ("reshape", "slice") and t.scale_only():
            t = t.copy()
            in_shape = t.shape
            if op.kind == "reshape":
                t.routes.append(ReshapeRoute(in_shape, op.out_shape, op.source))
            else:
                t.routes.append(SliceRoute(op.slices, in_shape, op.out_shape, op.source))
            t.ops = [replace(s, in_shape=op.out_shape, out_shape=op.out_shape,
                             k=op(s.k[None])[0].clone() if s.k is not None else None)
                     for s in t.ops]
            return [t]
        if op.kind == "scale" and t.ops and t.ops[-1].kind == "scale":
            t = t.copy()
            last = t.ops[-1]
            assert last.k is not None and op.k is not None
            t.ops[-1] = replace(last, k=last.k * op.k)
            return [t]
        in_shape = tuple(t.routes[-1].out_shape) if t.routes else t.pop_shape
        if t.has_core() and _plan([*t.ops, op], in_shape) is None and _plan(t.ops, in_shape):
            # the composition is not one map: split the term's values into populations
            return [u for s in self._split_term(t, op.source) for u in self._term_op(s, op)]
        t = t.copy()
        t.ops.append(replace(op, in_shape=t.shape))
        return [t]

    def _split_term(self, t: _Term, why: str) -> list[_Term]:
        """Terms reading new populations that carry ``t``'s values: ``x_q`` when they are
        non-negative, else ``x_{q+} − x_{q−}`` (``y = ReLU(y) − ReLU(−y)``)."""
        shape = t.shape
        pools = [op for op in t.ops if op.kind == "avgpool"]
        scales = [op for op in t.ops if op.kind == "scale"]
        if pools and len(pools) + len(scales) == len(t.ops) and all(
            op.k is not None and _channel_uniform(op.k) for op in scales
        ):  # per-channel scalings commute with average pools: pool first (non-negative)
            k = self.ref.new_ones(t.pop_shape[0] if not t.routes else t.routes[-1].out_shape[0])
            for op in scales:
                assert op.k is not None
                k = k * _per_channel(op.k)
            u = t.copy()
            u.ops = [replace(op, in_shape=op.in_shape, out_shape=op.out_shape) for op in pools]
            q = self._materialise(_Expr([u], None, shape), role="pool", source=pools[-1].source)
            if bool((k == 1).all()):
                return [_Term(q.name, shape)]
            return [_Term(q.name, shape, [], [_Op("scale", shape, shape, scales[0].source,
                                                  k=_channel_map(k, shape))])]
        e = _Expr([t], None, shape)
        if self._nonnegative(e):
            q = self._materialise(e, role="pool", source=f"{t.ops[-1].source}")
            return [_Term(q.name, shape)]
        plus = self._materialise(e, role="split+", source=f"{why}: positive part")
        minus = self._materialise(self._scaled(e, -1.0), role="split-",
                                  source=f"{why}: negative part")
        neg = _Op("scale", shape, shape, "signed stream", k=self.ref.new_full(shape, -1.0))
        return [_Term(plus.name, shape), _Term(minus.name, shape, [], [neg])]

    def _core(self, e: _Expr, node: LinearNode | ConvNode) -> _Expr:
        assert node.weight is not None
        w = node.weight
        if isinstance(node, LinearNode):
            if len(e.shape) != 1:
                raise UnsupportedOperationError(
                    "Linear on a multi-dimensional tensor", node.source,
                    f"its input has per-sample shape {e.shape}",
                    "Flatten before the Linear (nn.Flatten / x.flatten(1))",
                )
            a = Affine("linear", w, w.new_zeros(node.out_shape), e.shape, node.out_shape)
        else:
            a = Affine("conv", w, w.new_zeros(node.out_shape), e.shape, node.out_shape,
                       node.dims, node.stride, node.pad, node.dilation, node.groups)
        op = _Op("core", e.shape, node.out_shape, node.source, affine=a)
        out = self._linear(e, op)
        if node.bias is not None:
            bmap = _channel_map(node.bias, node.out_shape)
            out.const = bmap if out.const is None else out.const + bmap
        return out

    def _elementwise(self, x: _Expr | _Pooled | None, kappa: Tensor, shift: Tensor,
                     node: Node) -> _Expr | _Pooled:
        """``y = kappa·x + shift`` per channel (batch norm, constant scalings)."""
        shape = node.out_shape
        if isinstance(x, _Pooled):
            if any(isinstance(r, ReshapeRoute) for r in x.routes):
                raise UnsupportedOperationError(
                    type(node).__name__.replace("Node", ""), node.source,
                    "batch norm after a reshape of pooled pre-activation values",
                )
            s = _sign(kappa)
            for r in x.routes:  # push the sign back across the pools (latest spike)
                assert isinstance(r, MaxPoolRoute)
                r.sign = s.clone() if r.sign is None else r.sign * s
            return replace(x, k=kappa * x.k, c=kappa * x.c + shift)
        assert x is not None
        kmap, cmap = _channel_map(kappa, shape), _channel_map(shift, shape)
        out = self._linear(x, _Op("scale", shape, shape, node.source, k=kmap)) if not bool(
            (kappa == 1).all()) else x
        if bool((shift == 0).all()):
            return out
        const = cmap if out.const is None else out.const + cmap
        return _Expr(out.terms, const, shape)

    def _scaled(self, e: _Expr, c: float) -> _Expr:
        op = _Op("scale", e.shape, e.shape, "coefficient", k=self.ref.new_full(e.shape, c))
        return self._linear(e, op)

    def _add(self, es: list[_Expr], coeffs: list[float], node: Node) -> _Expr:
        shapes = {e.shape for e in es}
        if len(shapes) != 1:
            raise UnsupportedOperationError(
                "addition", node.source, f"it broadcasts tensors of shapes {sorted(shapes)}",
                "Add tensors of the same shape",
            )
        terms: list[_Term] = []
        const: Tensor | None = None
        for e, c in zip(es, coeffs):
            if c == 0:
                continue
            s = e if c == 1 else self._scaled(e, c)
            terms += s.terms
            if s.const is not None:
                const = s.const if const is None else const + s.const
        return _Expr(terms, const, es[0].shape)

    def _concat(self, es: list[_Expr], node: ConcatNode) -> _Expr:
        blocks, off = [], 0
        for e in es:
            blocks.append((e, off))
            off += e.shape[node.dim]
        return self._placed_sum(blocks, node.dim, node.out_shape, node.source)

    def _placed_sum(self, blocks: list[tuple[_Expr, int]], dim: int,
                    out_shape: tuple[int, ...], source: str) -> _Expr:
        """``Σ_b place(e_b)``: every block's value at its ``offset`` along ``dim`` of
        ``out_shape`` (zeros elsewhere), as for a concatenation."""
        terms: list[_Term] = []
        const: Tensor | None = None
        for e, off in blocks:
            pad = [0] * (2 * len(out_shape))
            pad[2 * dim], pad[2 * dim + 1] = off, out_shape[dim] - off - e.shape[dim]
            placed = self._linear(e, _Op("place", e.shape, out_shape, source, pad=tuple(pad)))
            terms += placed.terms
            if placed.const is not None:
                const = placed.const if const is None else const + placed.const
        return _Expr(terms, const, out_shape)

    # -- non-linear operations -------------------------------------------------------------------
    def _nonnegative(self, e: _Expr) -> bool:
        """``e ≥ 0`` for every input: populations through non-negative maps only."""
        if e.const is not None and bool((e.const < 0).any()):
            return False
        for t in e.terms:
            for op in t.ops:
                if op.kind == "core":
                    return False
                if op.kind == "scale" and op.k is not None and bool((op.k < 0).any()):
                    return False
        return True

    def _relu(self, x: _Expr | _Pooled | None, node: Node) -> _Expr:
        if isinstance(x, _Pooled):
            inner = self._elementwise(x.inner, x.k, x.c, replace(node, out_shape=x.inner.shape))
            assert isinstance(inner, _Expr)
            p = self._materialise(inner, role="relu", source=node.source)
            routes = list(x.routes)
            for r in routes:
                if isinstance(r, MaxPoolRoute) and r.sign is not None and not bool(
                        (r.sign < 0).any()):
                    r.sign = None
            return _Expr([_Term(p.name, p.out_shape, routes, [])], None, x.shape)
        assert x is not None
        return self._relu_expr(x, node.source)

    def _relu_expr(self, e: _Expr, source: str, role: str = "relu") -> _Expr:
        if not e.terms:
            return _Expr([], None if e.const is None else e.const.clamp_min(0), e.shape)
        if self._nonnegative(e) and role == "relu":
            return e  # ReLU of non-negative values is inert
        blocks = self._blocks(e)
        if blocks is not None:  # ReLU acts block by block on a concatenation
            return self._placed_sum([(self._relu_expr(sub, source, role), off)
                                     for (_, off, _), sub in blocks],
                                    blocks[0][0][0], e.shape, source)
        p = self._materialise(e, role=role, source=source)
        return _Expr([_Term(p.name, p.out_shape)], None, e.shape)

    def _blocks(self, e: _Expr) -> list[tuple[tuple[int, int, int], _Expr]] | None:
        """Split ``e`` into the blocks of a concatenation when every term ends by placing
        its values into one block (blocks disjoint, at least two)."""
        keys: list[tuple[int, int, int]] = []
        for t in e.terms:
            if not t.ops or t.ops[-1].kind != "place":
                return None
            op = t.ops[-1]
            dims = [d for d in range(len(op.in_shape)) if op.in_shape[d] != op.out_shape[d]]
            if len(dims) != 1:
                return None
            d = dims[0]
            keys.append((d, op.pad[2 * d], op.in_shape[d]))
        uniq = sorted(set(keys))
        if len(uniq) < 2 or len({k[0] for k in uniq}) != 1:
            return None
        for (_, o1, n1), (_, o2, _) in itertools.pairwise(uniq):
            if o1 + n1 > o2:
                return None
        d = uniq[0][0]
        out = []
        covered = 0
        for key in uniq:
            _, off, n = key
            terms = []
            for t, k in zip(e.terms, keys):
                if k == key:
                    u = t.copy()
                    u.ops = u.ops[:-1]
                    terms.append(u)
            sl = [slice(None)] * len(e.shape)
            sl[d] = slice(off, off + n)
            const = None if e.const is None else e.const[tuple(sl)].clone()
            shape = list(e.shape)
            shape[d] = n
            out.append((key, _Expr(terms, const, tuple(shape))))
            covered += n
        if covered != e.shape[d] and e.const is not None:
            return None  # a constant-only block would be lost
        return out  # uncovered channels are zeros: ReLU(0) = 0

    def _clamp(self, x: _Expr | _Pooled | None, node: ClampNode) -> _Expr:
        """``min(max(z, 0), c) = ReLU(z) − ReLU(z − c)``."""
        e = self._relu(x, replace(node, source=node.source)) if isinstance(x, _Pooled) else None
        if e is not None:
            x = e
        assert isinstance(x, _Expr)
        pos = self._relu_expr(x, node.source)
        shifted_const = self.ref.new_full(x.shape, -node.high)
        if x.const is not None:
            shifted_const = shifted_const + x.const
        over = self._relu_expr(_Expr(x.terms, shifted_const, x.shape), f"{node.source} (clip)",
                               role="clip")
        out = self._add([pos, over], [1.0, -1.0], node)
        out.comonotone = True
        return out

    def _maxpool(self, x: _Expr | _Pooled | None, node: MaxPoolNode) -> _Expr | _Pooled:
        def route(sign: Tensor | None, in_shape: tuple[int, ...]) -> MaxPoolRoute:
            return MaxPoolRoute(node.dims, node.kernel, node.stride, node.padding,
                                node.dilation, node.ceil_mode, in_shape, node.out_shape,
                                sign, node.source)

        if isinstance(x, _Pooled):
            s = _sign(x.k)
            x.routes.append(route(s if bool((s < 0).any()) else None, x.shape))
            return replace(x, shape=node.out_shape)
        assert x is not None
        if not x.terms:
            assert x.const is not None
            return _Expr([], route(None, x.shape)(x.const[None])[0], node.out_shape)
        if len(x.terms) == 1 and x.terms[0].scale_only():
            t = x.terms[0].copy()
            k = t.ops[0].k if t.ops else None
            c = x.const
            if (k is not None and not _channel_uniform(k)) or (
                c is not None and not _channel_uniform(c)
            ):
                raise UnsupportedOperationError(
                    "MaxPool", node.source,
                    "the values it pools are scaled or shifted differently per position, so "
                    "the pool cannot be moved onto spikes",
                )
            sign = None
            if k is not None:
                s = _sign(_per_channel(k))
                sign = s if bool((s < 0).any()) else None
                t.ops = [replace(t.ops[0], in_shape=node.out_shape, out_shape=node.out_shape,
                                 k=_channel_map(_per_channel(k), node.out_shape))]
            t.routes.append(route(sign, x.shape))
            const = None if c is None else _channel_map(_per_channel(c), node.out_shape)
            return _Expr([t], const, node.out_shape)
        if x.comonotone and x.const is None and all(
            t.scale_only() and (not t.ops or (t.ops[0].k is not None and _channel_uniform(
                t.ops[0].k))) for t in x.terms
        ):
            terms = []
            for t in x.terms:
                u = t.copy()
                if u.ops:
                    assert u.ops[0].k is not None
                    u.ops = [replace(u.ops[0], in_shape=node.out_shape,
                                     out_shape=node.out_shape,
                                     k=_channel_map(_per_channel(u.ops[0].k), node.out_shape))]
                u.routes.append(route(None, x.shape))
                terms.append(u)
            return _Expr(terms, None, node.out_shape, comonotone=True)
        blocks = self._blocks(x)
        if blocks is not None and blocks[0][0][0] == 0:  # pool each channel block
            pooled_blocks = []
            for (_, off, n), sub in blocks:
                pooled = self._maxpool(sub, replace(node, out_shape=(n, *node.out_shape[1:])))
                if isinstance(pooled, _Pooled):
                    break  # populations made for earlier blocks are pruned at the end
                pooled_blocks.append((pooled, off))
            else:
                return self._placed_sum(pooled_blocks, 0, node.out_shape, node.source)
        if len(x.terms) == 1 and x.terms[0].ops and x.terms[0].ops[-1].kind == "scale":
            # k·P(x_p) + c with P non-negative (e.g. batch norm after an average pool of a
            # ReLU output): P becomes a population, the pool a (signed) route on it
            t = x.terms[0]
            prefix = _Expr([_Term(t.pop, t.pop_shape, list(t.routes), t.ops[:-1])], None,
                           t.ops[-1].in_shape)
            if prefix.terms[0].ops and self._nonnegative(prefix):
                q = self._materialise(prefix, role="pool", source=node.source)
                e = _Expr([_Term(q.name, q.out_shape, [], [t.ops[-1]])], x.const, x.shape)
                return self._maxpool(e, node)
        if self._nonnegative(x):  # e.g. the inert ReLU of a sum of ReLU outputs: the pool
            # reads a population carrying those values (its ReLU is inert as well)
            p = self._materialise(x, role="pool", source=node.source)
            return self._maxpool(_Expr([_Term(p.name, p.out_shape)], None, x.shape), node)
        ch = x.shape[0]
        one = self.ref.new_ones(ch)
        return _Pooled(x, [route(None, x.shape)], one, one.new_zeros(ch), node.out_shape,
                       node.source)

    # -- populations ---------------------------------------------------------------------------
    def _materialise(self, e: _Expr, *, role: str, source: str, readout: bool = False
                     ) -> FoldedPopulation:
        edges: list[Edge] = []
        for t in e.terms:
            got = _realise(t, self.ref)
            if got is None:
                culprit = next((op for op in reversed(t.ops) if op.kind != "scale"), None)
                where = culprit.source if culprit is not None else source
                raise UnsupportedOperationError(
                    culprit.kind if culprit is not None else "operation", where,
                    f"the linear map from {t.pop!r} through it into {source!r} is not one "
                    "Linear/Conv",
                    "Put a ReLU after it, or restructure so that each sum feeding a ReLU "
                    "reads every tensor through at most one Linear/Conv",
                )
            routes, a = got
            origin = " → ".join(op.source for op in t.ops if op.kind in ("core", "avgpool"))
            edges.append(Edge(t.pop, routes, a, origin or "identity"))
        bias = e.const.clone() if e.const is not None else self.ref.new_zeros(e.shape)
        name = "readout" if readout else f"layer{len(self.pops) + 1}"
        pop = FoldedPopulation(name, source, edges, bias, relu=not readout,
                               role="readout" if readout else role)
        if not readout:
            self.pops.append(pop)
            self.shapes[name] = pop.out_shape
        return pop

    def _readout(self, x: _Expr | _Pooled, node: OutputNode
                 ) -> tuple[FoldedPopulation, list[Route]]:
        if isinstance(x, _Pooled):
            raise UnsupportedModelError(
                f"the network's output is not produced by a Linear/Conv readout: it is "
                f"followed by pooling ({x.source}); the readout must be the last Linear/Conv "
                "(only batch norm, Flatten, Dropout and reshapes may follow it)"
            )
        if not any(t.has_core() and any(op.kind == "core" for op in t.ops) for t in x.terms):
            last = self.graph[node.inputs[0]].source
            raise UnsupportedModelError(
                f"the network's output is not produced by a Linear/Conv readout (it ends with "
                f"{last!r}); onespike maps the last Linear/Conv to the non-spiking readout, so "
                "the model must end with one (Flatten/Dropout may follow it)"
            )
        routes: list[Route] = []
        e = x
        while e.terms and all(t.ops and t.ops[-1].kind == "reshape" for t in e.terms):
            prev = e.terms[0].ops[-1].in_shape
            if any(t.ops[-1].in_shape != prev for t in e.terms):
                break
            terms = []
            for t in e.terms:
                u = t.copy()
                u.ops = u.ops[:-1]
                terms.append(u)
            routes.insert(0, ReshapeRoute(prev, e.shape, "output reshape"))
            const = None if e.const is None else e.const.reshape(prev)
            e = _Expr(terms, const, prev)
        return self._materialise(e, role="readout", source="readout", readout=True), routes
