"""Exact first threshold crossing of model-A neurons (the event engine's slow path).

With ``u = t_min(n) − t`` and ``x_j = t_min(n) − t_j`` (input values, clipped to ``B_in``
because a neuron only integrates from ``t_min(n−1)``), design note §2 gives exactly

    V_i(t) − theta_i = G_i · f_i(u),
    f_i(u) = b_i + Σ_j W_ij (x_j − u)⁺ − (1 − S_i) u − B_n,

for every ``t ≥ t_min(n−1)`` (``u ≤ B_in``). ``f`` is piecewise linear with breakpoints at the
``x_j``; the spike is at the largest ``u ∈ [−B_n, B_in]`` (earliest time) with ``f(u) ≥ 0``,
or forced at ``u = −B_n`` (``t_max``). Sorting the inputs by arrival and walking the segments
finds it exactly; inputs arriving late (``x_j < 0``, e.g. under jitter) are handled the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["first_crossing"]


def first_crossing(
    xs: Tensor, ws: Tensor, b: Tensor, B_in: float, B_out: float, leak: Tensor | None = None
) -> Tensor:
    """Return ``u*`` (M,) for M neurons with inputs ``xs`` and weights ``ws`` (M, K), biases
    ``b`` (M,). ``xs`` must already be clipped to ``≤ B_in``; zero weights are ignored.

    ``leak`` (M,) replaces the coefficient ``1 − S_i`` of ``u`` (used when the constant current
    ``alpha`` is perturbed: see :func:`onespike.engines.common.model_a_step`)."""
    m = xs.shape[0]
    if m == 0:
        return xs.new_zeros(0)
    if leak is None:
        leak = 1.0 - ws.sum(dim=1)
    order = torch.argsort(xs, dim=1, descending=True)
    x_sorted = torch.gather(xs, 1, order)
    w_sorted = torch.gather(ws, 1, order)
    zero = xs.new_zeros((m, 1))
    cw = torch.cat([zero, torch.cumsum(w_sorted, dim=1)], dim=1)  # (M, K+1): Σ of first k
    cwx = torch.cat([zero, torch.cumsum(w_sorted * x_sorted, dim=1)], dim=1)
    A = b[:, None] + cwx - B_out  # f(u) = A_k − D_k u on segment k
    D = cw + leak[:, None]
    lo = torch.cat([x_sorted, xs.new_full((m, 1), -B_out)], dim=1).clamp(-B_out, B_in)
    hi = torch.cat([xs.new_full((m, 1), B_in), x_sorted], dim=1).clamp(-B_out, B_in)
    f_lo = A - D * lo
    f_start = A[:, 0] - D[:, 0] * B_in  # f(B_in): V(t_start) − theta
    hit = f_lo >= 0
    any_hit = hit.any(dim=1)
    k = torch.argmax(hit.to(torch.int8), dim=1)
    Ak = torch.gather(A, 1, k[:, None])[:, 0]
    Dk = torch.gather(D, 1, k[:, None])[:, 0]
    lok = torch.gather(lo, 1, k[:, None])[:, 0]
    hik = torch.gather(hi, 1, k[:, None])[:, 0]
    root = torch.where(Dk > 0, Ak / torch.where(Dk > 0, Dk, torch.ones_like(Dk)), hik)
    u = torch.minimum(torch.maximum(root, lok), hik)
    u = torch.where(any_hit, u, xs.new_full((m,), -B_out))
    return torch.where(f_start >= 0, xs.new_full((m,), B_in), u)
