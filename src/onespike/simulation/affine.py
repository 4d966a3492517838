"""The synaptic core of a spiking layer: a Linear or an N-d convolution with a per-position
bias map.

After folding (:mod:`onespike.conversion.fold`), every spiking layer computes ``z = W x + b`` where
``W``
is a dense matrix or a convolution kernel (any stride, zero padding, dilation, groups) and ``b``
is a map with the layer's full output shape: zero padding makes the folded bias depend on the
position (docs/method.md §5), so it is stored per position for every layer.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from onespike.simulation.ops import weight_fact

__all__ = ["COLUMN_BYTES", "GEMM_MAX_POSITIONS", "MID_MAP_POSITIONS", "MID_MAP_WIDTH",
           "ROW_BLOCK", "SMALL_MAPS_AS_ROWS", "SMALL_MAP_POSITIONS", "Affine", "bf16_map",
           "keep_packed"]

#: Rows per matrix product of a batch-invariant Linear edge (:meth:`Affine.linear`): every
#: product has this shape, whatever the batch (more rows are faster at large batches, fewer
#: at batch 1).
ROW_BLOCK = 16


#: Alignment (bytes) of the operands that keeps MKL's float64 products independent of where
#: a sample sits in its batch (:func:`_blocked_mm`, :func:`_conv_in_chunks`,
#: :func:`_conv_per_sample_mm`).
ALIGN_BYTES = 64


def _aligned(entries: int, element_size: int) -> bool:
    """Whether ``entries`` values of ``element_size`` bytes span a multiple of
    :data:`ALIGN_BYTES` (consecutive blocks of that size then all start aligned)."""
    return entries * element_size % ALIGN_BYTES == 0


def _blocked_mm(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w.T`` computed in products of exactly :data:`ROW_BLOCK` rows each.

    Each row of every product starts at a multiple of :data:`ALIGN_BYTES`: MKL's float64
    products may round a row by its alignment (seen on an AMD EPYC, for rows of an odd
    number of entries: a sample's value then depended on its place in the batch). Rows whose
    length or base breaks that are copied into a block whose row stride is padded (the
    padding is never read: the product sees ``K`` columns)."""
    m, r = x.shape[0], ROW_BLOCK
    k, esize = x.shape[1], x.element_size()
    wt = w.T
    out = x.new_empty((-(-m // r) * r, w.shape[0]))
    in_place = (_aligned(k, esize) and x.data_ptr() % ALIGN_BYTES == 0
                and x.stride() == (k, 1))
    block: Tensor | None = None  # rows copied at aligned offsets (a padded row stride)
    if not in_place:
        block = x.new_empty((r, -(-k * esize // ALIGN_BYTES) * ALIGN_BYTES // esize))[:, :k]
    for i in range(0, m, r):
        n = min(r, m - i)
        if in_place and n == r:
            rows = x[i : i + r]
        else:  # a copied block, or the zero-padded last rows
            if block is None:
                block = x.new_empty((r, k))
            block[n:].zero_()
            rows = block
            rows[:n].copy_(x[i : i + n])
        torch.mm(rows, wt, out=out[i : i + r])
    return out[:m]


#: Bytes of unfolded input patches per call of a float64 CPU convolution (:func:`_conv_in_chunks`).
COLUMN_BYTES = 8 << 20


def _float64_cpu_no_grad(x: Tensor, w: Tensor) -> bool:
    """A float64 map on the CPU, outside autograd: the convolutions onespike computes its own
    way (:func:`_conv_in_chunks`, :func:`_conv_per_sample_mm`)."""
    return (x.device.type == "cpu" and x.dtype == torch.float64
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)))


def _chunked_conv(x: Tensor, w: Tensor) -> bool:
    """Whether a convolution runs in sample chunks (:func:`_conv_in_chunks`): float64 on the
    CPU (oneDNN has no float64 convolution; PyTorch's own unfolds the whole batch), no
    autograd; several samples, or one sample with several threads (padded there: see
    :func:`_conv_in_chunks`)."""
    return _float64_cpu_no_grad(x, w) and (x.shape[0] > 1 or torch.get_num_threads() > 1)


def _conv_in_chunks(conv: Callable[..., Tensor], x: Tensor, w: Tensor, stride: tuple[int, ...],
                    padding: tuple[int, ...] | int, dilation: tuple[int, ...], groups: int,
                    out_positions: int) -> Tensor:
    """``conv(x, w, …)`` in chunks of samples whose unfolded input patches (samples × fan-in ×
    output positions) take about :data:`COLUMN_BYTES`. PyTorch's float64 CPU convolution
    unfolds the patches of the *whole batch* into one buffer before its per-sample matrix
    products (VGG-16's 32×32 layer at batch 64: 300 MB), so large batches run from main
    memory: two to three times slower per sample than batch 1 there. Each sample's
    convolution is computed alone in either case (the unfolding and the product are per
    sample), so the values are bit for bit those of the single call. PyTorch's convolution
    runs a chunk's samples in parallel, one share per thread: a chunk holds a multiple of the
    thread count (at least one sample per thread), else one thread idles through part of every
    chunk (two threads, chunks of 3 samples: a quarter of the time of ResNet-18's 16×16
    layers).

    A chunk of *one* sample with several threads is padded with a zero sample: PyTorch runs a
    lone sample's matrix product on every thread, which sums in another order than the
    one-thread product each sample of a larger chunk gets (VGG-16's 8×8 and 16×16 layers
    differed in the last bit), so a sample's values would depend on the batch or chunk it is
    computed in. Padded, every sample takes the one-thread product (at batch 1 and two
    threads VGG-16's convolutions then take about twice as long: 5.5 → 10.9 ms).

    Each sample's product reads its unfolded patches and writes its output at offsets that
    are multiples of its per-sample sizes (``K·H'·W'`` and ``C_out·H'·W'`` entries). MKL's
    float64 products may round differently with the alignment of their operands (its
    "conditional numerical reproducibility": seen on an AMD EPYC), so when either size is
    not a multiple of :data:`ALIGN_BYTES` a sample's values would depend on its place in
    its chunk: then every sample is computed alone, into a fresh (aligned) map."""
    bsz = x.shape[0]
    per_sample = max(1, w[0].numel() * out_positions * x.element_size())
    threads = max(1, torch.get_num_threads())
    aligned = _per_sample_aligned(w, out_positions, x.element_size())
    # (unaligned: chunks of one sample, each computed into a fresh map)
    step = max(threads, COLUMN_BYTES // per_sample // threads * threads) if aligned else 1
    if step >= bsz:
        return _conv_samples(conv, x, w, stride, padding, dilation, groups, threads)
    direct = (_slow_conv_into(x, w, stride, padding, dilation, groups)
              if conv is F.conv2d and aligned else None)
    out: Tensor | None = None
    for s in range(0, bsz, step):
        if out is not None and direct is not None and not _lone(bsz - s, threads):
            direct(x[s : s + step], out[s : s + step])  # straight into the output: no copy
            continue
        part = _conv_samples(conv, x[s : s + step], w, stride, padding, dilation, groups,
                             threads)
        if out is None:  # the output's shape, dtype and device come from the first chunk
            out = part.new_empty((bsz, *part.shape[1:]))
        out[s : s + step].copy_(part)
    assert out is not None
    return out


def _per_sample_aligned(w: Tensor, out_positions: int, element_size: int) -> bool:
    """Whether every sample's unfolded patches (``K·H'·W'`` entries, ``K`` the fan-in) and
    output (``C_out·H'·W'``) in a batched float64 convolution start at the same alignment
    (multiples of :data:`ALIGN_BYTES`), wherever the sample sits in its batch."""
    return (_aligned(w[0].numel() * out_positions, element_size)
            and _aligned(w.shape[0] * out_positions, element_size))


def _lone(samples: int, threads: int) -> bool:
    """Whether a chunk of ``samples`` runs padded (:func:`_conv_in_chunks`): one sample, several
    threads."""
    return samples == 1 and threads > 1


def _conv_samples(conv: Callable[..., Tensor], x: Tensor, w: Tensor, stride: tuple[int, ...],
                  padding: tuple[int, ...] | int, dilation: tuple[int, ...], groups: int,
                  threads: int) -> Tensor:
    """``conv(x, w, …)``, a lone sample padded with a zero sample when several threads run
    (:func:`_conv_in_chunks`)."""
    if not _lone(x.shape[0], threads):
        return conv(x, w, None, stride, padding, dilation, groups)
    pair = torch.cat([x, torch.zeros_like(x)])
    return conv(pair, w, None, stride, padding, dilation, groups)[:1]


def _slow_conv_into(x: Tensor, w: Tensor, stride: tuple[int, ...],
                    padding: tuple[int, ...] | int, dilation: tuple[int, ...], groups: int
                    ) -> Callable[[Tensor, Tensor], None] | None:
    """For the convolutions whose CPU kernel is PyTorch's ``_slow_conv2d_forward`` (2-d, no
    groups, no dilation; what ``F.conv2d`` runs for float64 there), a function computing a
    chunk straight into a slice of the output: the same kernel on the same chunk, so the
    very same values, without writing each chunk twice (VGG-16's 32×32 layer at batch 64:
    a tenth of its time). None where that does not apply."""
    op = getattr(torch.ops.aten, "_slow_conv2d_forward", None)
    if (op is None or w.dim() != 4 or groups != 1 or any(d != 1 for d in dilation)
            or not x.is_contiguous() or not w.is_contiguous()):
        return None
    pad = list(padding) if isinstance(padding, tuple) else [padding, padding]
    kernel, st = list(w.shape[2:]), list(stride)

    def run(chunk: Tensor, dest: Tensor) -> None:
        op.output(chunk, w, kernel, None, st, pad, output=dest)

    return run


#: A float64 CPU convolution whose output maps have at most this many positions per sample
#: runs as one matrix product per sample with the positions as rows
#: (:func:`_conv_per_sample_mm`).
SMALL_MAP_POSITIONS = 16

#: So does one with at most this many output positions per sample when its output channels
#: and its fan-in are both at least :data:`MID_MAP_WIDTH` times its positions. An AMD EPYC,
#: one thread, the network's own path against the per-sample products (medians of
#: alternated calls, batch 64 / batch 1): 8×8 maps 256 → 256 channels 214 → 186 / 3.42 →
#: 3.01 ms, 128 → 256 81 → 74 / 1.21 → 1.18, 512 → 512 673 → 600 / 10.2 → 9.4. Narrower
#: layers lose (``F.conv2d`` against the products at batch 64: 128 → 128 63 → 63–71 ms,
#: 64 → 128 21 → 28, 32 → 32 3.5 → 9.2), so do 1×1 convolutions (128 → 256 12 → 15–22) and
#: 16×16 maps (2–2.5 times slower). At two threads each sample's product runs on both:
#: batch 1 about twice as fast (256 → 256 3.52 → 1.97 ms), batch 64 1–10 % slower (94 → 103).
MID_MAP_POSITIONS = 64
MID_MAP_WIDTH = 4


def _intel_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU is an Intel one: Linux's ``vendor_id`` (``cpuinfo``), else
    ``platform.processor()`` (which names the vendor on Windows); False where neither tells."""
    text = ""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    text = line
                    break
    except OSError:
        pass
    if not text:
        text = platform.processor()
    return "GenuineIntel" in text


#: Whether small float64 maps run as :func:`_conv_per_sample_mm` at all: where MKL's float64
#: product with few columns is slow — measured on an AMD EPYC (see
#: :data:`MID_MAP_POSITIONS` and :func:`_conv_per_sample_mm`) — not on Intel CPUs, where
#: PyTorch's own convolution (in sample chunks: :func:`_conv_in_chunks`) is two to three
#: times faster (an Intel Xeon, Ice Lake, one thread, per-sample products against the
#: chunked convolution: VGG-16's 2×2 layers 3.9 → 1.6 ms at batch 1 and 231–268 → 83–86
#: ms at batch 64, its 4×4 layers 4.9–5.1 → 2.0–2.1 and 294–306 → 105–111 ms, its 8×8
#: layers 2.8–2.9 → 1.3–1.4 and 173–175 → 87–89 ms). Either form computes every sample
#: alone, so a sample's values do not depend on its batch or chunk on a given CPU.
SMALL_MAPS_AS_ROWS = not _intel_cpu()


def _small_map_conv(x: Tensor, w: Tensor, dims: int, groups: int, out_positions: int) -> bool:
    """Whether a convolution runs as :func:`_conv_per_sample_mm`: where that pays
    (:data:`SMALL_MAPS_AS_ROWS`), float64 on the CPU, 2-d, no
    groups, no autograd, at most :data:`SMALL_MAP_POSITIONS` output positions per sample —
    or at most :data:`MID_MAP_POSITIONS` with at least :data:`MID_MAP_WIDTH` times as many
    output channels and fan-in terms (VGG-16's and ResNet-18's 256-channel 8×8 layers)."""
    if not (SMALL_MAPS_AS_ROWS and _float64_cpu_no_grad(x, w) and w.dtype == torch.float64
            and dims == 2 and groups == 1 and out_positions > 0):
        return False
    if out_positions <= SMALL_MAP_POSITIONS:
        return True
    wide = MID_MAP_WIDTH * out_positions
    return (out_positions <= MID_MAP_POSITIONS and w.shape[0] >= wide
            and w[0].numel() >= wide)


def _conv_per_sample_mm(x: Tensor, w: Tensor, stride: tuple[int, ...],
                        padding: tuple[int, ...], dilation: tuple[int, ...],
                        out_hw: tuple[int, int]) -> Tensor:
    """The 2-d convolution ``conv2d(x, w)`` (symmetric zero ``padding``, no groups) as one
    matrix product per sample, ``U_nᵀ (H'·W' × K) @ Wᵀ (K × C_out)``: ``U_n`` the sample's
    unfolded input patches (``K = C·kh·kw``, padding as exact zeros), ``Wᵀ`` a view of the
    weights (no copy), the output positions as the rows of the result.

    PyTorch's float64 CPU convolution computes ``W @ U_n``, the positions as columns: on
    small maps (VGG-16's 2×2 and 4×4 layers: 4 and 16 columns against a 512 × 4,608 weight)
    the BLAS kernel, which vectorises along the product's long dimension, then gets the
    short one. With the positions as rows (one thread, an AMD EPYC: VGG-16's 2×2 layer
    3.2 → 1.6 ms at batch 1 and 197 → 94 ms at batch 64, its 512-channel 4×4 layer 6.1 →
    3.0 and 355 → 177 ms; a VGG-16 call at batch 1 103 → 82 ms).

    Every sample's product has the same shape and the same alignment (its operands are
    fresh maps, or slices at offsets that are multiples of :data:`ALIGN_BYTES`, else
    copied into fresh ones) whatever the batch, so each sample's values do not depend on
    the batch or chunk it is computed in — MKL may round by the operands' alignment and,
    in tiny products, by a row's place among the others (both seen on an AMD EPYC). They
    are the convolution's sums in another order (within the float64 rounding of the fan-in
    sum, as any order)."""
    bsz = x.shape[0]
    co = w.shape[0]
    ho, wo = out_hw
    hw = ho * wo
    wt = w.reshape(co, -1).T  # (K, C_out) view, K ordered (c, kh, kw) as unfold's rows
    k = wt.shape[0]
    esize = x.element_size()
    out = x.new_empty((bsz, hw, co))
    block = None if _aligned(k * hw, esize) else x.new_empty((hw, k))
    y = None if _aligned(hw * co, esize) else x.new_empty((hw, co))
    # unfolded patches of a chunk of samples at a time (memory: COLUMN_BYTES)
    chunk = max(1, COLUMN_BYTES // max(1, k * hw * esize))
    for s in range(0, bsz, chunk):
        u = F.unfold(x[s : s + chunk], tuple(w.shape[2:]), dilation, padding, stride)
        for b in range(u.shape[0]):
            ub = u[b].T if block is None else block.copy_(u[b].T)  # (H'·W', K)
            if y is None:
                torch.mm(ub, wt, out=out[s + b])
            else:
                out[s + b].copy_(torch.mm(ub, wt, out=y))
    return out.transpose(1, 2).contiguous().view(bsz, co, ho, wo)


#: Largest batch × input positions of a convolution run on packed weights: beyond it the
#: plain call's reordering of the weights is a small part of its cost (VGG-16's 2×2 layers
#: at batch 33: 15 % of it), and a packed copy would double the weights' memory for little.
PACK_MAX_POSITIONS = 128


def _cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (what PyTorch reports; False where it cannot tell)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


#: Whether bfloat16 convolutions on small inputs run on weights packed once for oneDNN
#: (:func:`_packable`): on CPUs with AMX tiles, where the plain call reorders the weights
#: into AMX's blocked layout at every call (an Intel Xeon: VGG-16's 2×2 and 4×4 layers at
#: batch 1, 1.3 ms plain, 0.3 ms packed). Elsewhere the plain call — the matrix product
#: :func:`_as_gemm` on maps of at most :data:`GEMM_MAX_POSITIONS` positions — is as fast
#: with the weights in cache and faster inside a simulation, where they come from memory
#: (an AMD EPYC with AVX512-BF16, no AMX, one thread, caches flushed before each call:
#: VGG-16's 2×2 layers 1.34–1.37 ms packed, 0.57–0.62 ms as a matrix product; its 8×8
#: layers 0.40–0.79 packed, 0.35–0.69 plain; the drive bound of a batch-1 call 13.7–16.4 →
#: 9.1–9.8 ms), and no packed copy of the weights is kept. The values are the same
#: primitive's either way (bfloat16 products, float32 accumulation).
PACK_WEIGHTS = _cpu_has_amx()


def keep_packed(w: Tensor) -> Tensor:
    """Mark ``w`` (a long-lived bfloat16 convolution weight, e.g. a certificate's cached
    copy) to be packed for oneDNN once, at its first CPU convolution on a small input where
    packing pays (:func:`_packable`); returns ``w`` —
    stored channels-last (2-d kernels), the layout of its convolutions (:func:`_as_gemm`,
    :func:`_channels_last_form`), so that no call reorders it."""
    if w.dim() == 4:
        w = w.contiguous(memory_format=torch.channels_last)
    if not hasattr(w, "_onespike_packed"):
        w._onespike_packed = {}  # type: ignore[attr-defined]
    return w


def _onednn_bf16(x: Tensor, w: Tensor) -> bool:
    """bfloat16 maps and weights on the CPU, without autograd, with oneDNN present: the
    conditions every bfloat16 fast path below shares."""
    return (x.device.type == "cpu" and x.dtype == torch.bfloat16 and w.dtype == torch.bfloat16
            and not x.requires_grad and not w.requires_grad
            and torch.backends.mkldnn.is_available())


def _packable(x: Tensor, w: Tensor, dims: int, *, prefers_gemm: bool = False) -> bool:
    """Whether a convolution runs with :func:`_packed` weights: where packing pays
    (:data:`PACK_WEIGHTS`), bfloat16 2-d convolutions on the CPU (oneDNN) with weights
    marked by :func:`keep_packed`. The plain call then reorders the weights into oneDNN's
    blocked layout at every call — most of its cost for small maps (VGG-16's 2×2 and 4×4
    layers at batch 1: 1.3 ms plain, 0.3 ms packed), so small maps
    (:data:`PACK_MAX_POSITIONS`) use the packed copy; for a weight used once, packing it
    costs more than the plain call. A layer that ``prefers_gemm`` (:attr:`Affine.prefers_gemm`)
    takes it at batch 1 only: from two samples on, its matrix product is faster (VGG-16's
    2×2 layers at 32 samples: 5.6 ms packed, 0.95 ms as :func:`_as_gemm`; the packed
    convolution's time grows linearly with the batch). The arithmetic is the very same
    primitive's (bfloat16 products, float32 accumulation)."""
    return (PACK_WEIGHTS and dims == 2 and _onednn_bf16(x, w)
            and not (prefers_gemm and x.shape[0] > 1)
            and 0 < x.shape[0] * x.shape[2] * x.shape[3] <= PACK_MAX_POSITIONS
            and hasattr(w, "_onespike_packed"))


def _packed(w: Tensor, padding: list[int], stride: list[int], dilation: list[int],
            groups: int) -> Tensor:
    """``w`` reordered for oneDNN once, kept on the weight tensor itself (it lives as long as
    ``w``: the certificates' cached bfloat16 weights keep theirs)."""
    key = (tuple(padding), tuple(stride), tuple(dilation), groups, w.shape, w.data_ptr(),
           w._version)
    store: dict[tuple, Tensor] = w._onespike_packed  # type: ignore[attr-defined]
    hit = store.get(key)
    if hit is None:
        store.clear()  # the weights changed in place, or another geometry: keep one
        hit = torch._C._nn.mkldnn_reorder_conv2d_weight(
            w.contiguous().to_mkldnn(), padding, stride, dilation, groups)
        store[key] = hit
    return hit


#: :meth:`Affine.patches` of a 2-d convolution gathers from a padded copy of the input when
#: the input has at most this many entries per gathered one (the copy, a fresh map, is then
#: cheaper than masking the entries gathered straight from the input). Measured on a
#: 64-channel 32×32 float64 input at batch 64 (4.2M entries): 1,817 patches of 576 (0.25
#: gathered per input entry) 17 ms direct against 36 ms from a padded copy; 20,000 patches
#: (2.7 per entry) 186 against 144 ms.
PAD_GATHER_FACTOR = 1


#: bfloat16 convolutions with at most this many output positions per sample (VGG's 4×4 and
#: 2×2 maps) run as one matrix product over their gathered input patches (:func:`_as_gemm`).
GEMM_MAX_POSITIONS = 16


def _gemm_form(x: Tensor, w: Tensor) -> bool:
    """Whether a convolution of an :attr:`Affine.prefers_gemm` layer runs as
    :func:`_as_gemm`: bfloat16 maps and weights on the CPU (oneDNN), unless it runs with
    packed weights (:func:`_packable`: at batch 1, where packing pays). oneDNN's direct
    convolution is several times slower than its matrix product on such small maps (VGG-16's
    2×2 layers at batch 33: 9.5 ms against 4.5 ms for gathering the patches and the
    product)."""
    return _onednn_bf16(x, w) and _LINEAR is not None


def _channels_last_form(x: Tensor, w: Tensor) -> bool:
    """Whether a bfloat16 2-d convolution on the CPU (oneDNN) runs on channels-last maps
    and weights (an NCHW input is reordered; the result is returned NCHW-contiguous, as
    the callers' masks and sums expect — reductions along channels of channels-last masks
    are several times slower — unless the caller takes ``any_layout``). oneDNN's bfloat16
    convolution is several times faster channels-last than on NCHW maps (VGG-16's
    64-channel 32×32 layer at batch 64: 15 ms against 3.6 ms, 14 ms against 1 ms for its
    3-channel first layer), more than the two reorderings cost (2.9 and 3.3 ms there;
    callers that convolve one map several times make it channels-last once). The
    arithmetic is the same primitive's (bfloat16 products, exact in float32, float32
    accumulation, the result rounded to bfloat16), in another order."""
    return _onednn_bf16(x, w)


def bf16_map(x: Tensor) -> Tensor:
    """``x`` rounded to bfloat16 in the layout of the CPU bfloat16 convolutions
    (:func:`_channels_last_form`): a 4-d map rounded first, then reordered channels-last
    (for maps convolved several times: reordered once, not at every call); others as they
    are. Two passes, but each a fast kernel: PyTorch's copy that converts and reorders at
    once is slower than both together (batch 64, one thread: 32 channels 28×28 2.3 → 1.0
    ms, 64 channels 32×32 11.1 → 9.5, 128 channels 16×16 2.8 → 2.0; in a simulation, all
    calls: Fashion-MNIST VGG in float32 5.2 → 2.9 ms, VGG-16 21.5 → 15.7, ResNet-18 99 →
    74). The values are the same: rounding is per entry."""
    if x.dim() != 4:
        return x.to(torch.bfloat16)
    return x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


def _onednn_linear() -> Callable[..., Tensor] | None:
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return None


#: oneDNN's matrix product (bfloat16 inputs, float32 accumulation, bfloat16 result).
_LINEAR = _onednn_linear()


def _as_gemm(x: Tensor, w: Tensor, padding: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...], out_hw: tuple[int, int]) -> Tensor:
    """The 2-d convolution ``conv2d(x, w)`` (symmetric zero ``padding``, no groups) as one
    oneDNN matrix product: the input patches gathered channels-last into a (B·H'·W', K)
    matrix (``K = kh·kw·C``, padding as exact zeros) times the weights reordered to
    (C_out, K). Each output is the same sum as the convolution's — the fan-in products,
    zeros for padding — in another order: bfloat16 products, exact in float32, float32
    accumulation (oneDNN's matmul, as its convolution), the result rounded to bfloat16."""
    bsz, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    ph, pw = int(padding[0]), int(padding[1])
    ho, wo = out_hw
    if ph or pw:
        xp = x.new_zeros((bsz, h + 2 * ph, wd + 2 * pw, c))
        xp[:, ph : ph + h, pw : pw + wd].copy_(x.permute(0, 2, 3, 1))
    else:
        xp = x.permute(0, 2, 3, 1).contiguous()
    sb, sh, sw, sc = xp.stride()
    patches = xp.as_strided((bsz, ho, wo, kh, kw, c),
                            (sb, sh * stride[0], sw * stride[1], sh * dilation[0],
                             sw * dilation[1], sc)).reshape(bsz * ho * wo, kh * kw * c)
    wm = w.permute(0, 2, 3, 1).reshape(co, kh * kw * c)  # a view for channels-last weights
    assert _LINEAR is not None  # _gemm_form
    out = _LINEAR(patches, wm, None, "none", [], "")
    return out.reshape(bsz, ho, wo, co).permute(0, 3, 1, 2).contiguous()


@dataclass
class Affine:
    """``z = W x + b`` on per-sample shapes ``in_shape`` → ``out_shape``.

    ``kind`` is ``"linear"`` (``weight``: (out, in)) or ``"conv"`` (``weight``: (C_out,
    C_in/groups, *kernel), ``dims`` spatial dimensions, ``pad`` = (left_0, right_0, left_1,
    right_1, …) zero padding). ``bias`` has shape ``out_shape``.
    """

    kind: str
    weight: Tensor
    bias: Tensor
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    dims: int = 0
    stride: tuple[int, ...] = ()
    pad: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    # -- evaluation -------------------------------------------------------------------------
    def linear(self, x: Tensor, weight: Tensor | None = None, *,
               rows_invariant: bool = False, any_layout: bool = False) -> Tensor:
        """``W x`` (no bias) for a batch ``x`` of shape (B, *in_shape); ``weight`` replaces W.

        ``any_layout``: the caller accepts the result in whichever memory layout the
        computation produced (a channels-last bfloat16 convolution's result is then not
        reordered to NCHW: for callers whose next passes are elementwise, which can fuse the
        reordering with one of them); otherwise 4-d results are NCHW-contiguous.

        ``rows_invariant``: each sample's result does not depend on the batch it is computed
        in (the network's own ``z``, so that results do not depend on chunk sizes or process
        counts). BLAS matrix products choose their blocking, hence their summation order,
        by the number of rows; a Linear edge is then computed in blocks of exactly
        :data:`ROW_BLOCK` rows (the last one zero-padded). float64 convolutions on the CPU
        compute each sample alike: in chunks of samples (:func:`_conv_in_chunks`, the same
        values; a lone sample with several threads padded), small output maps as one product
        per sample (:func:`_conv_per_sample_mm`), every product's operands 64-byte aligned
        (:data:`ALIGN_BYTES`) whatever the batch. float32
        and bfloat16 convolutions run in oneDNN, which picks its algorithm by the batch
        size: there a sample's values can differ in the last bits between chunk sizes
        (README, Limitations)."""
        w = self.weight if weight is None else weight
        if self.kind == "linear":
            x2 = x.reshape(x.shape[0], -1)
            out = _blocked_mm(x2, w) if rows_invariant else x2 @ w.T
            return out.reshape(x.shape[0], *self.out_shape)
        if self.is_channel_scale:  # one product per output: exactly the convolution's value
            strided, scale = self.channel_scale_operands(x, w)
            return strided * scale
        sym = all(self.pad[2 * i] == self.pad[2 * i + 1] for i in range(self.dims))
        padding: tuple[int, ...] | int = tuple(self.pad[0::2]) if sym else 0
        if not sym:
            torch_pad: list[int] = []
            for i in reversed(range(self.dims)):
                torch_pad += [self.pad[2 * i], self.pad[2 * i + 1]]
            x = F.pad(x, torch_pad)
        if _packable(x, w, self.dims, prefers_gemm=self.prefers_gemm):
            pad2 = list(padding) if isinstance(padding, tuple) else [padding] * 2
            return torch.mkldnn_convolution(
                x, _packed(w, pad2, list(self.stride), list(self.dilation), self.groups),
                None, pad2, list(self.stride), list(self.dilation), self.groups)
        if self.prefers_gemm and _gemm_form(x, w):
            gpad = padding if isinstance(padding, tuple) else (padding, padding)
            return _as_gemm(x, w, gpad, self.stride, self.dilation,
                            (int(self.out_shape[1]), int(self.out_shape[2])))
        conv = F.conv1d if self.dims == 1 else F.conv2d
        if self.dims == 2 and _channels_last_form(x, w):
            cl = torch.channels_last
            out = conv(x.contiguous(memory_format=cl), w.contiguous(memory_format=cl), None,
                       self.stride, padding, self.dilation, self.groups)
            return out if any_layout else out.contiguous()
        if _small_map_conv(x, w, self.dims, self.groups, math.prod(self.out_shape[1:])):
            spad = padding if isinstance(padding, tuple) else (padding, padding)
            return _conv_per_sample_mm(x, w, self.stride, spad, self.dilation,
                                    (int(self.out_shape[1]), int(self.out_shape[2])))
        if _chunked_conv(x, w):
            return _conv_in_chunks(conv, x, w, self.stride, padding, self.dilation, self.groups,
                                   math.prod(self.out_shape[1:]))
        return conv(x, w, None, self.stride, padding, self.dilation, self.groups)

    @property
    def prefers_gemm(self) -> bool:
        """A 2-d convolution without groups whose bfloat16 sums run as :func:`_as_gemm`
        (output maps of at most :data:`GEMM_MAX_POSITIONS` positions)."""
        return (self.kind == "conv" and self.dims == 2 and self.groups == 1
                and 0 < math.prod(self.out_shape[1:]) <= GEMM_MAX_POSITIONS)

    def channel_scale_operands(self, x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """For a :attr:`is_channel_scale` edge: its input subsampled by the stride (a view)
        and its weight as a per-channel view broadcasting against it — the edge's ``W x`` is
        their product."""
        strided = x[(slice(None), slice(None), *(slice(None, None, s) for s in self.stride))]
        return strided, weight.reshape((1, -1) + (1,) * self.dims)

    @property
    def is_channel_scale(self) -> bool:
        """A depthwise 1×1 convolution without padding (an identity shortcut after folding):
        ``W x`` is ``x`` times one weight per channel (subsampled by the stride)."""
        return (self.kind == "conv" and self.groups == self.in_shape[0] == self.out_shape[0]
                and all(k == 1 for k in self.weight.shape[1:]) and not any(self.pad))

    def __call__(self, x: Tensor) -> Tensor:
        """``W x + b``."""
        return self.linear(x) + self.bias

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def fan_in(self) -> int:
        """Synapses per neuron (kernel volume × input channels per group, or in_features)."""
        return int(self.weight[0].numel())

    def fan_in_sum(self) -> Tensor:
        """``S_i = Σ_j W_ij`` over the inputs each neuron really has (padding excluded), as a
        map of shape ``out_shape``."""
        ones = torch.ones((1, *self.in_shape), dtype=self.weight.dtype, device=self.weight.device)
        return self.linear(ones)[0]

    def macs(self) -> int:
        """Multiply-accumulates of ``W x`` for one sample (padding positions excluded)."""
        nz = (self.weight != 0).to(self.weight.dtype)
        ones = torch.ones((1, *self.in_shape), dtype=nz.dtype, device=nz.device)
        return round(float(self.linear(ones, nz).sum()))

    def fan_out_counts(self) -> Tensor:
        """Number of non-zero synapses leaving each input position, shape ``in_shape``."""
        nz = (self.weight != 0).to(self.weight.dtype)
        x = torch.zeros((1, *self.in_shape), dtype=nz.dtype, device=nz.device, requires_grad=True)
        with torch.enable_grad():
            self.linear(x, nz).sum().backward()
        assert x.grad is not None
        return x.grad[0].detach()

    # -- rescaling (used by folding and by the scaling step) -------------------------------
    def scale_output(self, factor: Tensor) -> None:
        """Multiply every output channel ``c`` (weights and bias) by ``factor[c]``."""
        view = (-1,) + (1,) * (self.weight.dim() - 1)
        self.weight = self.weight * factor.reshape(view)
        self.bias = self.bias * factor.reshape((-1,) + (1,) * (len(self.out_shape) - 1))

    def scale_input(self, factor_map: Tensor) -> None:
        """Multiply the weight of every input by ``factor_map`` (shape ``in_shape``).

        For a convolution the factor must be constant over the positions of each channel
        (checked by the caller)."""
        if self.kind == "linear":
            self.weight = self.weight * factor_map.reshape(1, -1)
            return
        per_channel = factor_map.reshape(factor_map.shape[0], -1)[:, 0]
        cg = self.weight.shape[1]
        c_out = self.weight.shape[0]
        group_of_out = torch.arange(c_out, device=self.weight.device) // (c_out // self.groups)
        idx = group_of_out[:, None] * cg + torch.arange(cg, device=self.weight.device)[None, :]
        f = per_channel[idx]  # (C_out, C_in/groups)
        self.weight = self.weight * f.reshape(*f.shape, *([1] * self.dims))

    # -- fan-in gathering (for the exact first-crossing computation) ------------------------
    def patch_keys(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """For flat neuron indices into (B, *out_shape), return ``(key, row)``: ``key``
        identifies the neuron's input patch (sample, group, position: neurons of one position
        and group read the same inputs) and ``row`` its weight row in ``weight.reshape(C, -1)``.
        """
        n_out = 1
        for s in self.out_shape:
            n_out *= int(s)
        b = index // n_out
        o = index % n_out
        if self.kind == "linear":
            return b, o
        n_sp = n_out // self.out_shape[0]
        co = o // n_sp
        g = co // (self.out_shape[0] // self.groups)
        return (b * self.groups + g) * n_sp + o % n_sp, co

    def patches(self, x: Tensor, key: Tensor, fill: float = 0.0) -> tuple[Tensor, Tensor]:
        """Input patches ``(xs, valid)`` of shape (U, fan_in) for patch ``key``s (see
        :meth:`patch_keys`), in the order of ``weight.reshape(C, -1)``'s columns; ``valid`` is
        False (and the value ``fill``) where the kernel covers zero padding."""
        if self.kind == "linear":
            xs = x.reshape(x.shape[0], -1).index_select(0, key)
            return xs, torch.ones_like(xs, dtype=torch.bool)
        if self.dims == 2:
            padded = x.numel() <= PAD_GATHER_FACTOR * key.numel() * self.fan_in
            return self._patches_2d(x, key, fill, padded=padded)
        spatial = self.out_shape[1:]
        n_sp = 1
        for s in spatial:
            n_sp *= int(s)
        sp = key % n_sp
        bg = key // n_sp
        b, g = bg // self.groups, bg % self.groups
        pos: list[Tensor] = []
        rem = sp
        for d in reversed(range(self.dims)):
            pos.insert(0, rem % spatial[d])
            rem = rem // spatial[d]
        cg = self.weight.shape[1]
        kernel = tuple(self.weight.shape[2:])
        dev = x.device
        u = key.numel()
        ci = g[:, None] * cg + torch.arange(cg, device=dev)[None, :]  # (U, cg)
        coords = []
        valid = torch.ones((u, *kernel), dtype=torch.bool, device=dev)
        for d in range(self.dims):
            k = torch.arange(kernel[d], device=dev)
            c = pos[d][:, None] * self.stride[d] + k[None, :] * self.dilation[d] - self.pad[2 * d]
            inside = (c >= 0) & (c < self.in_shape[1 + d])
            shape = [u] + [1] * self.dims
            shape[1 + d] = kernel[d]
            valid = valid & inside.reshape(shape)
            coords.append(c.clamp(0, self.in_shape[1 + d] - 1))
        # flat offsets into the contiguous x (one index_select: several times faster than
        # advanced indexing with four index tensors)
        h_in = self.in_shape[1]
        if self.dims == 1:
            flat = (b[:, None, None] * self.in_shape[0] + ci[:, :, None]) * h_in \
                + coords[0][:, None, :]
        else:
            w_in = self.in_shape[2]
            flat = ((b[:, None, None, None] * self.in_shape[0] + ci[:, :, None, None]) * h_in
                    + coords[0][:, None, :, None]) * w_in + coords[1][:, None, None, :]
        xs = x.contiguous().reshape(-1).index_select(0, flat.reshape(-1)).reshape(flat.shape)
        v = valid[:, None].expand_as(xs)
        xs = torch.where(v, xs, torch.full((), fill, dtype=xs.dtype, device=dev))
        return xs.reshape(u, -1), v.reshape(u, -1)

    def _patches_2d(self, x: Tensor, key: Tensor, fill: float, *, padded: bool
                    ) -> tuple[Tensor, Tensor]:
        """:meth:`patches` of a 2-d convolution: each patch entry's offset into the source map
        is the patch's base offset (its top-left corner) plus a fixed offset per kernel entry
        (one index sum, one gather). The source is a copy of ``x`` padded with ``fill``
        (``padded``: every entry then lies inside it), or ``x`` itself, where entries in the
        padding point elsewhere (clamped into ``x``) and are replaced by ``fill`` through
        ``valid`` — no padded copy, a fresh map that can cost more than the gather. The
        per-position corners and kernel-entry validity come from :meth:`_patch_table`."""
        n_sp = int(self.out_shape[1]) * int(self.out_shape[2])
        cg = int(self.weight.shape[1])
        sp, bg = key % n_sp, key // n_sp
        if padded:
            src = F.pad(x, (self.pad[2], self.pad[3], self.pad[0], self.pad[1]), value=fill)
        else:
            src = x.contiguous()
        c_in, h_src, w_src = (int(v) for v in src.shape[1:])
        corner, inside, whole, pattern = self._patch_table(padded, h_src, w_src, x.device)
        # the block of the patch's sample and group: (b·C_in + g·cg) planes of h_src·w_src
        if self.groups == 1:
            block = bg * (cg * h_src * w_src)
        else:
            block = (bg // self.groups * c_in + bg % self.groups * cg) * (h_src * w_src)
        offsets = (block + corner[sp])[:, None] + pattern[None, :]
        kernel = inside.shape[1]
        # valid: the kernel entry lies inside the unpadded input (per position, not channel)
        valid = inside[sp][:, None, :].expand(-1, cg, kernel).reshape(key.numel(), -1)
        if not padded:
            offsets.clamp_(0, max(0, src.numel() - 1))
        xs = src.reshape(-1).index_select(0, offsets.reshape(-1)).reshape(offsets.shape)
        if not padded and not bool(whole[sp].all()):
            xs = torch.where(valid, xs, torch.full((), fill, dtype=xs.dtype, device=xs.device))
        return xs, valid

    def _patch_table(self, padded: bool, h_src: int, w_src: int, device: torch.device
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per output position ``p``: ``corner[p]``, the offset of its patch's top-left corner
        in a source plane of ``h_src × w_src`` (padded copy or ``x`` itself: negative where
        the corner lies in the padding), ``inside[p]`` (kh·kw,) whether each kernel entry
        lies inside the unpadded input, ``whole[p]`` whether all do; and ``pattern``
        (cg·kh·kw,), each kernel entry's offset from the corner, in the order of
        ``weight.reshape(C, -1)``'s columns. Geometry only: kept on the weight
        (:func:`~onespike.simulation.ops.weight_fact`) for this layout."""
        name = (f"patch_table:{tuple(self.in_shape)}:{tuple(self.out_shape)}:{self.stride}:"
                f"{self.pad}:{self.dilation}:{self.groups}:{padded}:{h_src}:{w_src}:{device}")

        def make(w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            _, h_out, w_out = (int(v) for v in self.out_shape)
            cg, kh, kw = (int(v) for v in w.shape[1:])
            top, _, left, _ = self.pad
            shift_r, shift_c = (0, 0) if padded else (top, left)
            r = torch.arange(h_out, device=device) * self.stride[0] - top  # unpadded coords
            c = torch.arange(w_out, device=device) * self.stride[1] - left
            kr = torch.arange(kh, device=device) * self.dilation[0]
            kc = torch.arange(kw, device=device) * self.dilation[1]
            rows, cols = r[:, None] + kr[None, :], c[:, None] + kc[None, :]
            row_ok = (rows >= 0) & (rows < self.in_shape[1])  # (h_out, kh)
            col_ok = (cols >= 0) & (cols < self.in_shape[2])  # (w_out, kw)
            inside = (row_ok[:, None, :, None] & col_ok[None, :, None, :]).reshape(
                h_out * w_out, kh * kw)
            corner = ((r + top - shift_r)[:, None] * w_src
                      + (c + left - shift_c)[None, :]).reshape(-1)
            ci = torch.arange(cg, device=device)
            pattern = ((ci[:, None, None] * h_src + kr[None, :, None]) * w_src
                       + kc[None, None, :]).reshape(-1)
            return corner, inside, inside.all(dim=1), pattern

        return weight_fact(self.weight, name, make)

    def gather(self, x: Tensor, index: Tensor, fill: float = 0.0) -> tuple[Tensor, Tensor]:
        """Inputs and weights of selected neurons.

        ``x``: (B, *in_shape); ``index``: (M,) flat indices into (B, *out_shape). Returns
        ``(xs, ws)`` of shape (M, fan_in): the input values each neuron sees and the matching
        weights, with weight 0 (and value ``fill``) where the kernel covers zero padding.
        """
        key, row = self.patch_keys(index)
        xs, valid = self.patches(x, key, fill)
        ws = self.weight.reshape(self.weight.shape[0], -1)[row]
        return xs, torch.where(valid, ws, torch.zeros((), dtype=ws.dtype, device=ws.device))
