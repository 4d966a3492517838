"""The grid certificate's tents ``T(x)`` (how far an inhibitory term can rise above its chord
inside a grid interval) and their weighted sum ``D̂ = Σ_e Σ_j |W⁻_e,ij| T(x_j)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor

from onespike.simulation.ops import weight_fact
from onespike.simulation.synapses import Synapses

#: Elements of the input map per block of :func:`_tents` and per thread (its scratch maps
#: then stay in the CPU's cache: about 3× faster than whole-map passes on a 2-million-entry
#: map; a 4-million-entry map at two threads: 7.8 ms in blocks of 2 × 65,536, 10.2 ms in
#: blocks of 65,536, whose halves are too short for the threads' passes).
TENT_BLOCK = 1 << 16


def _tents(x32: Tensor, knots: Sequence[float], top: float,
           dtype: torch.dtype | None = None) -> Tensor:
    """``T(x)``: the tent of the grid interval holding ``x`` (the tents have disjoint
    supports and are negative outside them: T = max(0, tents)). Intervals that hold no
    input (above ``top ≥ max x``) are skipped: every tent is 0 at its knots. ``dtype``: of
    the result (the float32 tents rounded to it, as ``.to(dtype)`` rounds; default
    ``x32``'s). The map is processed in blocks of :data:`TENT_BLOCK` entries per thread with two
    scratch blocks (CPU): the very same float operations per entry as whole-map passes, so
    the same values, with far less memory traffic."""
    x = x32.contiguous().reshape(-1)
    out = torch.empty(x32.shape, dtype=x32.dtype if dtype is None else dtype,
                      device=x32.device)
    flat = out.view(-1)
    n = x.numel()
    if n == 0:
        return out
    # blocks on the CPU (TENT_BLOCK per thread); one block elsewhere (a GPU gains nothing from
    # it but kernel launches)
    size = min(TENT_BLOCK * max(1, torch.get_num_threads()), n) if x.device.type == "cpu" else n
    direct = out.dtype == x32.dtype  # the tents accumulate in the result itself
    part_buf = torch.empty(size, dtype=x32.dtype, device=x32.device)
    other_buf = torch.empty_like(part_buf)
    tent_buf = None if direct else torch.empty_like(part_buf)
    intervals = [(lo, hi) for lo, hi in pairwise(knots) if lo < top]
    for s in range(0, n, size):
        xb = x[s : s + size]
        m = xb.numel()
        part, other = part_buf[:m], other_buf[:m]
        tent = flat[s : s + m] if tent_buf is None else tent_buf[:m]
        tent.zero_()
        for lo, hi in intervals:
            # (x − lo)(hi − x)/(hi − lo), written without scalar − tensor (slow on CPU); the
            # negations are exact, so the values are the same
            torch.sub(xb, lo, out=part)
            torch.sub(xb, hi, out=other)
            part.mul_(other).mul_(-1.0 / (hi - lo))
            torch.maximum(tent, part, out=tent)
        if tent_buf is not None:
            flat[s : s + m].copy_(tent)
    return out


def _tent_sum(syn: Synapses, x32s: Sequence[Tensor], w_neg: Sequence[Tensor],
              tents: Callable[[Tensor], Tensor], **linear: Any) -> Tensor:
    """``D̂ = Σ_e Σ_j |W⁻_e,ij| T(x_j)`` (``syn.linear`` with ``linear``'s options) over the
    edges that have an inhibitory weight: an edge without any (e.g. an identity shortcut
    with positive scales) adds exact zeros, so neither its tents map nor its sum is
    computed. Fewer terms only lower the sum's rounding bound."""
    live = [i for i, w in enumerate(w_neg) if len(w_neg) == 1 or _has_nonzero(w)]
    if len(live) == len(w_neg):
        return syn.linear([tents(x) for x in x32s], list(w_neg), **linear)
    if not live:
        dtype = linear.get("out_dtype") or x32s[0].dtype
        return torch.zeros((x32s[0].shape[0], *syn.out_shape), dtype=dtype,
                           device=x32s[0].device)
    sub = Synapses([syn.affines[i] for i in live])
    return sub.linear([tents(x32s[i]) for i in live], [w_neg[i] for i in live], **linear)


def _has_nonzero(w: Tensor) -> bool:
    """Whether ``w`` has a non-zero entry (a fact kept on the weight: :func:`weight_fact`)."""
    return weight_fact(w, "has_nonzero", lambda t: bool(t.ne(0).any()))
