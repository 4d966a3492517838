"""Node types of the onespike graph IR.

The IR is what :mod:`onespike.conversion.trace` produces from a torch.fx graph: one node per
operation
that changes values, with the parameters copied out of the PyTorch modules (detached, in the
conversion dtype). Dropout and Identity never appear (they are the identity at inference).
Shapes are per sample (no batch dimension).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = [
    "AdaptiveAvgPoolNode",
    "AddNode",
    "AvgPoolNode",
    "BatchNormNode",
    "ClampNode",
    "ConcatNode",
    "ConvNode",
    "FlattenNode",
    "InputNode",
    "LinearNode",
    "MaxPoolNode",
    "Node",
    "OutputNode",
    "PadNode",
    "ReLUNode",
    "ScaleNode",
    "SliceNode",
]


@dataclass
class Node:
    """Common fields: ``name`` (unique graph name), ``source`` (module path or function, for
    messages), ``inputs`` (names of the nodes feeding this one) and ``out_shape`` (per sample)."""

    name: str
    source: str
    inputs: list[str] = field(default_factory=list)
    out_shape: tuple[int, ...] = ()


@dataclass
class InputNode(Node):
    """The network input."""


@dataclass
class OutputNode(Node):
    """The network output (its single input is the readout)."""


@dataclass
class LinearNode(Node):
    """``y = x Wᵀ + b`` with ``weight`` (out, in) and ``bias`` (out,) or None."""

    weight: Tensor | None = None
    bias: Tensor | None = None


@dataclass
class ConvNode(Node):
    """N-d convolution (N = ``dims`` ∈ {1, 2}) with explicit integer padding per dimension.

    ``weight`` (out, in/groups, *kernel), ``bias`` (out,) or None. String paddings ('same',
    'valid') are resolved to integers by the tracer (asymmetric 'same' padding is resolved to
    the left/right amounts in ``pad``: (left_0, right_0, left_1, right_1, ...)).
    """

    weight: Tensor | None = None
    bias: Tensor | None = None
    dims: int = 2
    stride: tuple[int, ...] = ()
    pad: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1


@dataclass
class BatchNormNode(Node):
    """Inference batch norm: ``y = gamma (x - mean) / sqrt(var + eps) + beta`` per channel
    (channel = dim 1)."""

    mean: Tensor | None = None
    var: Tensor | None = None
    gamma: Tensor | None = None
    beta: Tensor | None = None
    eps: float = 1e-5

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """Return ``(kappa, beta')`` with ``y = kappa x + beta'``."""
        assert self.mean is not None and self.var is not None
        kappa = self.var.add(self.eps).rsqrt()
        if self.gamma is not None:
            kappa = kappa * self.gamma
        shift = -self.mean * kappa
        if self.beta is not None:
            shift = shift + self.beta
        return kappa, shift


@dataclass
class ReLUNode(Node):
    """``y = max(x, 0)``."""


@dataclass
class MaxPoolNode(Node):
    """N-d max pooling; ``pad`` as in :class:`ConvNode` (symmetric, -inf padded)."""

    dims: int = 2
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    ceil_mode: bool = False


@dataclass
class AvgPoolNode(Node):
    """N-d average pooling (``count_include_pad`` semantics of PyTorch)."""

    dims: int = 2
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None


@dataclass
class AdaptiveAvgPoolNode(Node):
    """N-d adaptive average pooling to ``output_size``."""

    dims: int = 2
    output_size: tuple[int, ...] = ()


@dataclass
class FlattenNode(Node):
    """Reshape every sample to ``out_shape`` (a flatten, or any other view of the same data
    order: spike times are unaffected by reshapes)."""


@dataclass
class AddNode(Node):
    """``y = Σ_k coeffs[k] · inputs[k]`` (``a + b``, ``a - b``, ``torch.add(a, b, alpha=c)``,
    in-place ``+=``). The same input may appear more than once."""

    coeffs: list[float] = field(default_factory=list)


@dataclass
class ScaleNode(Node):
    """``y = scale · x + shift`` with Python-number constants (``0.5 * a``, ``a / 4``,
    ``-a``, ``x - 0.5``)."""

    scale: float = 1.0
    shift: float = 0.0


@dataclass
class ClampNode(Node):
    """``y = min(max(x, 0), high)``: a clipped ReLU (``ReLU6``, ``Hardtanh(0, c)``,
    ``clamp(x, 0, c)``). ``high = inf`` is a plain ReLU written as a clamp."""

    high: float = float("inf")


@dataclass
class ConcatNode(Node):
    """``torch.cat(inputs, dim)``; ``dim`` counts per-sample dimensions (0 = channels)."""

    dim: int = 0


@dataclass
class SliceNode(Node):
    """Basic slicing of the per-sample dimensions: ``slices[d] = (start, stop, step)`` with
    non-negative resolved bounds (``x[:, :, ::2, ::2]``)."""

    slices: tuple[tuple[int, int, int], ...] = ()


@dataclass
class PadNode(Node):
    """Constant zero padding ``F.pad(x, pad, "constant", 0)``; ``pad`` = (before_0, after_0,
    before_1, after_1, …) over the per-sample dimensions (0 = channels), non-negative."""

    pad: tuple[int, ...] = ()
