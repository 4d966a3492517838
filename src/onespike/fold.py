"""Fold the graph IR into a chain of affine spiking stages (step 2 of the pipeline).

Every stage is ``routes → z = W x + b → ReLU`` (the readout has no ReLU), where ``routes``
are max pools and reshapes that act on spikes. Folding, as in design note §5:

* the input range ``[p, q]`` becomes an affine map ``x = p + (q − p) x̂`` on the input
  ``x̂ ∈ [0, 1]`` and is folded forward into the first Linear/Conv;
* batch norm before a ReLU is folded into the preceding Linear/Conv (output side); batch norm
  after a ReLU (or on the input) is folded into the next Linear/Conv (input side), with the
  exact per-position bias map ``b' = conv(β'‑image) + b`` for zero padding (any kernel,
  stride, dilation, groups); across a max pool its negative scales turn that pool channel into
  a min pool (``sign = −1``);
* max pools between a Linear/Conv and its ReLU commute with the ReLU and move after it;
* average pools (and adaptive average pools) that lead into a Linear are folded into it;
  otherwise they become spiking layers of their own (depthwise convolutions with weights
  ``1/k``: non-negative inputs and weights, so the ReLU is inert and the layer is exact);
* Dropout, Identity and reshapes never change values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .affine import Affine
from .errors import UnsupportedModelError, UnsupportedOperationError
from .ir import (
    AdaptiveAvgPoolNode,
    AvgPoolNode,
    BatchNormNode,
    ConvNode,
    FlattenNode,
    Graph,
    LinearNode,
    MaxPoolNode,
    Node,
    ReLUNode,
)
from .routing import MaxPoolRoute, ReshapeRoute, Route

__all__ = ["Folded", "Stage", "fold"]


@dataclass
class Stage:
    """One spiking layer after folding: ``relu(affine(routes(v)))`` (no ReLU for the readout)."""

    name: str
    source: str
    routes: list[Route]
    affine: Affine
    relu: bool
    synthetic: bool = False  # True for an average pool realised as its own layer


@dataclass
class Folded:
    """The folded network: input ``x̂ = (x − low)/(high − low) ∈ [0, 1]`` of ``input_shape``,
    then the stages, then ``output_routes`` (reshapes) to the model's output shape."""

    input_shape: tuple[int, ...]
    input_low: Tensor
    input_high: Tensor
    stages: list[Stage]
    output_routes: list[Route] = field(default_factory=list)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.output_routes:
            return self.output_routes[-1].out_shape
        return self.stages[-1].affine.out_shape

    def forward_values(self, xhat: Tensor) -> list[Tensor]:
        """Run the folded ReLU network on ``x̂`` and return every stage's output (post-ReLU for
        hidden stages, the logits for the readout)."""
        outs: list[Tensor] = []
        v = xhat
        for st in self.stages:
            for r in st.routes:
                v = r(v)
            v = st.affine(v)
            if st.relu:
                v = v.clamp_min(0)
            outs.append(v)
        return outs


# -- helpers ---------------------------------------------------------------------------------
def _channel_map(vec: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Broadcast a per-channel vector (channel = dim 0 of ``shape``) to a full map."""
    return vec.reshape((-1,) + (1,) * (len(shape) - 1)).expand(shape).clone()


def _channel_uniform(m: Tensor) -> bool:
    flat = m.reshape(m.shape[0], -1)
    return bool((flat == flat[:, :1]).all())


def _sign(k: Tensor) -> Tensor:
    s = torch.sign(k)
    return torch.where(s == 0, torch.ones_like(s), s)


class _Pre:
    """Pending value-domain operations between the last routing op and the next Linear/Conv.

    ``ops`` entries: ("affine", k, c) elementwise maps; ("node", ir_node) for average pools and
    reshapes that can only be folded into a following Linear.
    """

    def __init__(self, ops: list[tuple[Any, ...]] | None = None) -> None:
        self.ops: list[tuple[Any, ...]] = ops or []

    @property
    def composite(self) -> bool:
        return any(op[0] == "node" for op in self.ops)

    def is_identity(self) -> bool:
        if self.composite:
            return False
        k, c = self.combined()
        return bool((k == 1).all() and (c == 0).all()) if k is not None else True

    def combined(self) -> tuple[Tensor | None, Tensor | None]:
        """(k, c) with pre(v) = k·v + c (only when not composite)."""
        k: Tensor | None = None
        c: Tensor | None = None
        for _, kk, cc in self.ops:
            if k is None:
                k, c = kk, cc
            else:
                k, c = k * kk, c * kk + cc
        return k, c

    def apply(self, v: Tensor) -> Tensor:
        for op in self.ops:
            if op[0] == "affine":
                v = v * op[1] + op[2]
            else:
                v = _apply_linear_node(op[1], v)
        return v


def _apply_linear_node(node: Node, v: Tensor) -> Tensor:
    if isinstance(node, AvgPoolNode):
        fn = F.avg_pool1d if node.dims == 1 else F.avg_pool2d
        kw: dict[str, Any] = {}
        if node.dims == 2:
            kw["divisor_override"] = node.divisor_override
        return fn(v, node.kernel, node.stride, node.padding, node.ceil_mode,
                  node.count_include_pad, **kw)
    if isinstance(node, AdaptiveAvgPoolNode):
        fn = F.adaptive_avg_pool1d if node.dims == 1 else F.adaptive_avg_pool2d
        return fn(v, node.output_size)
    return v.reshape(v.shape[0], *node.out_shape)


def _affine_of(node: LinearNode | ConvNode, in_shape: tuple[int, ...]) -> Affine:
    assert node.weight is not None
    w = node.weight
    bias = node.bias if node.bias is not None else torch.zeros(
        w.shape[0], dtype=w.dtype, device=w.device
    )
    out_shape = node.out_shape
    if isinstance(node, LinearNode):
        if len(in_shape) != 1:
            raise UnsupportedOperationError(
                "Linear on a multi-dimensional tensor", node.source,
                f"its input has per-sample shape {in_shape}",
                "Flatten before the Linear (nn.Flatten / x.flatten(1))",
            )
        return Affine("linear", w, bias.clone(), in_shape, out_shape)
    bmap = _channel_map(bias, out_shape)
    return Affine("conv", w, bmap, in_shape, out_shape, node.dims, node.stride, node.pad,
                  node.dilation, node.groups)


def _avg_as_conv_params(node: AvgPoolNode | AdaptiveAvgPoolNode, in_shape: tuple[int, ...]
                        ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], float]:
    """Kernel, stride, padding and divisor of an average pool realised as a convolution."""
    if isinstance(node, AdaptiveAvgPoolNode):
        sizes = in_shape[1:]
        if any(s % o for s, o in zip(sizes, node.output_size)):
            raise UnsupportedOperationError(
                "AdaptiveAvgPool", node.source,
                f"input size {sizes} is not a multiple of output size {node.output_size} "
                "and no Linear follows it to fold it into",
            )
        k = tuple(s // o for s, o in zip(sizes, node.output_size))
        return k, k, (0,) * node.dims, float(torch.tensor(k).prod())
    if any(node.padding) and not node.count_include_pad and node.divisor_override is None:
        raise UnsupportedOperationError(
            "AvgPool(count_include_pad=False)", node.source,
            "a position-dependent divisor cannot be realised as a spiking layer",
            "Use count_include_pad=True or no padding",
        )
    floor_shape = tuple(
        (n + 2 * p - k) // s + 1
        for n, p, k, s in zip(in_shape[1:], node.padding, node.kernel, node.stride)
    )
    if node.ceil_mode and floor_shape != node.out_shape[1:]:
        raise UnsupportedOperationError(
            "AvgPool(ceil_mode=True)", node.source,
            "partial windows have position-dependent divisors", "Use ceil_mode=False",
        )
    div = float(node.divisor_override or torch.tensor(node.kernel).prod())
    return node.kernel, node.stride, node.padding, div


# -- the pass --------------------------------------------------------------------------------
def fold(graph: Graph, input_low: Tensor, input_high: Tensor) -> Folded:
    """Fold ``graph`` (a chain) into stages; ``input_low``/``input_high`` are maps of the input
    shape giving the declared input range."""
    chain = graph.as_chain()
    input_shape = chain[0].out_shape
    ops = chain[1:-1]
    state = _Folder(input_shape, input_low, input_high)
    segment: list[Node] = []
    for node in ops:
        if isinstance(node, ReLUNode):
            state.segment(segment, node)
            segment = []
        else:
            segment.append(node)
    state.segment(segment, None)
    assert state.output_routes is not None
    return Folded(input_shape, input_low, input_high, state.stages, state.output_routes)


class _Folder:
    def __init__(self, input_shape: tuple[int, ...], low: Tensor, high: Tensor) -> None:
        self.stages: list[Stage] = []
        self.routes: list[Route] = []
        self.shape = input_shape  # shape after the pending routes
        self.pre = _Pre([("affine", (high - low).clone(), low.clone())])
        self.output_routes: list[Route] | None = None
        self.last_relu: ReLUNode | None = None
        self.dtype = low.dtype

    # one segment = the operations between two ReLUs (or the last ReLU and the output)
    def segment(self, ops: list[Node], relu: ReLUNode | None) -> None:
        cores = [i for i, n in enumerate(ops) if isinstance(n, (LinearNode, ConvNode))]
        if len(cores) > 1:
            second = ops[cores[1]]
            raise UnsupportedOperationError(
                type(second).__name__.replace("Node", ""), second.source,
                f"it follows {ops[cores[0]].source} with no ReLU in between",
                "Two Linear/Conv layers in a row cannot be mapped to one spiking layer; "
                "merge them into one layer or put a ReLU between them",
            )
        if not cores:
            self._no_core(ops, relu)
            return
        i = cores[0]
        for j, node in enumerate(ops[:i]):
            self._pre_op(node, ops[j + 1 : i + 1])
        core = ops[i]
        assert isinstance(core, (LinearNode, ConvNode))
        affine = self._fold_pre_into(core)
        post_routes = self._post_ops(affine, ops[i + 1 :], core, relu)
        name = f"layer{len(self.stages) + 1}"
        self.stages.append(Stage(name, core.source, self.routes, affine, relu is not None))
        self.routes = post_routes
        self.shape = post_routes[-1].out_shape if post_routes else affine.out_shape
        self.pre = _Pre()
        self.last_relu = relu
        if relu is None:
            self.output_routes = post_routes

    def _no_core(self, ops: list[Node], relu: ReLUNode | None) -> None:
        if relu is None:
            only_reshapes = all(isinstance(n, FlattenNode) for n in ops)
            if self.last_relu is not None and self.stages and only_reshapes:
                raise UnsupportedOperationError(
                    "ReLU", self.last_relu.source,
                    f"the readout {self.stages[-1].source!r} is followed by a ReLU",
                    "The readout (last Linear/Conv) must give the logits; remove the final "
                    "activation",
                )
            last = ops[-1].source if ops else (self.last_relu.source if self.last_relu else "?")
            raise UnsupportedModelError(
                f"the network's output is not produced by a Linear/Conv readout (it ends with "
                f"{last!r}); onespike maps the last Linear/Conv to the non-spiking readout, so "
                "the model must end with one (Flatten/Dropout may follow it)"
            )
        for j, node in enumerate(ops):
            self._pre_op(node, ops[j + 1 :])
        if not self.pre.is_identity():
            raise UnsupportedOperationError(
                "ReLU", relu.source,
                "it is applied to batch-normed / rescaled values with no Linear/Conv between",
                "Put the batch norm before the preceding Linear/Conv's ReLU or after this ReLU",
            )
        # ReLU of non-negative values (after a ReLU or a max pool of one) is inert.
        self.last_relu = relu

    def _pre_op(self, node: Node, rest: list[Node]) -> None:
        if isinstance(node, BatchNormNode):
            kappa, shift = node.scale_shift()
            self.pre.ops.append(("affine", _channel_map(kappa, node.out_shape),
                                 _channel_map(shift, node.out_shape)))
        elif isinstance(node, FlattenNode):
            if self.pre.composite:
                self.pre.ops.append(("node", node))
            else:
                self.routes = [*self.routes, ReshapeRoute(self.shape, node.out_shape, node.source)]
                self.pre.ops = [("affine", k.reshape(node.out_shape), c.reshape(node.out_shape))
                                for _, k, c in self.pre.ops]
                self.shape = node.out_shape
        elif isinstance(node, MaxPoolNode):
            self._push_through_pool(node)
        elif isinstance(node, (AvgPoolNode, AdaptiveAvgPoolNode)):
            leads_to_linear = False
            for n in rest:
                if isinstance(n, LinearNode):
                    leads_to_linear = True
                if not isinstance(n, (BatchNormNode, FlattenNode, AvgPoolNode,
                                      AdaptiveAvgPoolNode)):
                    break
            if leads_to_linear or self.pre.composite:
                self.pre.ops.append(("node", node))
            else:
                self._avgpool_stage(node)
        else:  # pragma: no cover - trace only produces the node types above
            raise UnsupportedOperationError(type(node).__name__, node.source)

    def _simple_pre(self, node: Node, what: str) -> tuple[Tensor, Tensor]:
        if self.pre.composite:
            raise UnsupportedOperationError(
                type(node).__name__.replace("Node", ""), node.source,
                f"{what} after an average pool that is not followed by a Linear",
            )
        k, c = self.pre.combined()
        if k is None or c is None:
            one = torch.ones(self.shape, dtype=self.dtype)
            return one, torch.zeros_like(one)
        return k, c

    def _push_through_pool(self, node: MaxPoolNode) -> None:
        k, c = self._simple_pre(node, "max pooling")
        if not (_channel_uniform(k) and _channel_uniform(c)):
            raise UnsupportedOperationError(
                "MaxPool", node.source,
                "the values it pools are scaled or shifted differently per position, so the "
                "pool cannot be moved onto spikes",
            )
        kc = k.reshape(k.shape[0], -1)[:, 0]
        cc = c.reshape(c.shape[0], -1)[:, 0]
        sign = _sign(kc)
        self.routes = [*self.routes, MaxPoolRoute(
            node.dims, node.kernel, node.stride, node.padding, node.dilation, node.ceil_mode,
            self.shape, node.out_shape, sign if bool((sign < 0).any()) else None, node.source,
        )]
        self.shape = node.out_shape
        kmap, cmap = _channel_map(kc, self.shape), _channel_map(cc, self.shape)
        self.pre = _Pre() if bool((kc == 1).all() and (cc == 0).all()) else _Pre(
            [("affine", kmap, cmap)]
        )

    def _avgpool_stage(self, node: AvgPoolNode | AdaptiveAvgPoolNode) -> None:
        k, c = self._simple_pre(node, "average pooling")
        if not _channel_uniform(k):
            raise UnsupportedOperationError(
                "AvgPool", node.source, "its input is scaled differently per position",
            )
        kernel, stride, padding, div = _avg_as_conv_params(node, self.shape)
        ch = self.shape[0]
        dev = k.device
        weight = torch.full((ch, 1, *kernel), 1.0 / div, dtype=self.dtype, device=dev)
        pad: list[int] = []
        for p in padding:
            pad += [p, p]
        out_shape = node.out_shape
        affine = Affine("conv", weight, torch.zeros(out_shape, dtype=self.dtype, device=dev),
                        self.shape, out_shape, node.dims, stride, tuple(pad),
                        (1,) * node.dims, ch)
        # check the realisation against PyTorch's own pooling
        probe = torch.rand((2, *self.shape), dtype=self.dtype, device=dev)
        if not torch.allclose(affine(probe), _apply_linear_node(node, probe), atol=1e-12):
            raise UnsupportedOperationError(
                type(node).__name__.replace("Node", ""), node.source,
                "its PyTorch semantics (divisor at the border) cannot be realised exactly",
            )
        name = f"layer{len(self.stages) + 1}"
        self.stages.append(Stage(name, node.source, self.routes, affine, True, synthetic=True))
        self.routes = []
        kc = k.reshape(k.shape[0], -1)[:, 0]
        cmap = _apply_linear_node(node, c[None])[0]  # avgpool(k·y + c) = k·avgpool(y) + avg(c)
        self.shape = out_shape
        kmap = _channel_map(kc, out_shape)
        self.pre = _Pre() if bool((kc == 1).all() and (cmap == 0).all()) else _Pre(
            [("affine", kmap, cmap)]
        )

    def _fold_pre_into(self, core: LinearNode | ConvNode) -> Affine:
        if not self.pre.composite:
            k, c = self._simple_pre(core, "")
            affine = _affine_of(core, self.shape)
            affine.bias = affine(c[None])[0]  # b' = W·c + b, zero padding included
            if affine.kind == "conv" and not _channel_uniform(k):
                raise UnsupportedOperationError(
                    "Conv", core.source,
                    "its input is scaled differently per position (cannot fold into a kernel)",
                )
            affine.scale_input(k)
            return affine
        if not isinstance(core, LinearNode):
            raise UnsupportedOperationError(
                "Conv", core.source,
                "an average pool before it could not be folded (internal: composite pre-map)",
            )
        # Linear after average pools / reshapes / batch norms: compose into one dense matrix.
        assert core.weight is not None
        w = core.weight
        zeros = torch.zeros((1, *self.shape), dtype=self.dtype, device=w.device)
        with torch.no_grad():
            pre0 = self.pre.apply(zeros).reshape(1, -1)
        bias = pre0 @ w.T + (core.bias if core.bias is not None else 0.0)
        x = torch.zeros((w.shape[0], *self.shape), dtype=self.dtype, device=w.device,
                        requires_grad=True)
        with torch.enable_grad():
            y = self.pre.apply(x).reshape(w.shape[0], -1) - pre0
            (y * w).sum().backward()
        assert x.grad is not None
        composed = x.grad.reshape(w.shape[0], -1).detach()
        in_shape = (int(torch.tensor(self.shape).prod()),)
        if len(self.shape) != 1:
            self.routes = [*self.routes, ReshapeRoute(self.shape, in_shape, core.source)]
            self.shape = in_shape
        return Affine("linear", composed, bias.reshape(-1).detach(), in_shape, core.out_shape)

    def _post_ops(self, affine: Affine, ops: list[Node], core: Node,
                  relu: ReLUNode | None) -> list[Route]:
        routes: list[Route] = []
        ch = affine.out_channels
        k = torch.ones(ch, dtype=self.dtype, device=affine.weight.device)
        c = torch.zeros_like(k)
        shape = affine.out_shape
        for node in ops:
            if isinstance(node, BatchNormNode):
                if any(isinstance(r, ReshapeRoute) for r in routes):
                    raise UnsupportedOperationError(
                        "BatchNorm", node.source, "batch norm after a reshape of a layer's output",
                    )
                kappa, shift = node.scale_shift()
                s = _sign(kappa)
                for r in routes:  # push the scale back across earlier pools (§4)
                    assert isinstance(r, MaxPoolRoute)
                    r.sign = s if r.sign is None else r.sign * s
                k, c = kappa * k, kappa * c + shift
            elif isinstance(node, MaxPoolNode):
                if relu is None:
                    raise UnsupportedModelError(
                        f"the readout {core.source!r} is followed by max pooling "
                        f"({node.source!r}); the readout must be the last Linear/Conv"
                    )
                routes.append(MaxPoolRoute(
                    node.dims, node.kernel, node.stride, node.padding, node.dilation,
                    node.ceil_mode, shape, node.out_shape, None, node.source,
                ))
                shape = node.out_shape
            elif isinstance(node, FlattenNode):
                routes.append(ReshapeRoute(shape, node.out_shape, node.source))
                shape = node.out_shape
            else:
                where = "the readout" if relu is None else "a Linear/Conv and its ReLU"
                raise UnsupportedOperationError(
                    type(node).__name__.replace("Node", ""), node.source,
                    f"it sits between {where} ({core.source!r})",
                )
        if not bool((k == 1).all() and (c == 0).all()):
            affine.scale_output(k)
            affine.bias = affine.bias + _channel_map(c, affine.out_shape)
        for r in routes:
            if isinstance(r, MaxPoolRoute) and r.sign is not None and not bool((r.sign < 0).any()):
                r.sign = None
        return routes
