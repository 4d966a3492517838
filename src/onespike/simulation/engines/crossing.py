"""Exact first threshold crossing of model-A neurons (the event engine's slow path).

With ``u = t_min(n) − t`` and ``x_j = t_min(n) − t_j`` (input values, clipped to ``B_in``
because a neuron only integrates from ``t_min(n−1)``), docs/method.md §7 gives exactly

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

from onespike.simulation.engines.ordering import argsort_descending, first_true
from onespike.simulation.engines.scan import prefix_sums
from onespike.simulation.masks import any_along

__all__ = ["first_crossing", "first_crossing_sorted"]


def first_crossing(
    xs: Tensor, ws: Tensor, b: Tensor, B_in: float, B_out: float, leak: Tensor | None = None
) -> Tensor:
    """Return ``u*`` (M,) for M neurons with inputs ``xs`` and weights ``ws`` (M, K), biases
    ``b`` (M,). ``xs`` must already be clipped to ``≤ B_in``; zero weights are ignored.

    ``leak`` (M,) replaces the coefficient ``1 − S_i`` of ``u`` (used when the constant current
    ``alpha`` is perturbed: see :func:`onespike.simulation.engines.common.model_a_step`)."""
    m = xs.shape[0]
    if m == 0:
        return xs.new_zeros(0)
    if leak is None:
        leak = 1.0 - ws.sum(dim=1)
    order = argsort_descending(xs)
    return first_crossing_sorted(
        torch.gather(xs, 1, order), torch.gather(ws, 1, order), b, B_in, B_out, leak
    )


def first_crossing_sorted(
    x_sorted: Tensor,
    w_sorted: Tensor,
    b: Tensor,
    B_in: float,
    B_out: float,
    leak: Tensor,
    *,
    early_only: bool = False,
    closed_after: bool = False,
) -> Tensor:
    """:func:`first_crossing` for inputs already sorted by decreasing ``x`` (arrival order).

    With ``early_only`` the walk stops at ``u = 0`` (``t_min``) and returns NaN for neurons
    that do not cross before their window: for those, when every input has arrived by
    ``t_min``, the crossing is the closed form ``u = z − B``. Inputs with ``x ≤ 0`` may then
    be left out of ``x_sorted`` (they only act after ``t_min``) as long as ``leak`` keeps
    the full ``1 − S``.

    With ``closed_after`` (inputs may arrive after ``t_min``) NaN is returned for neurons
    whose crossing the closed form gives too: those that cross after ``t_min`` (``u < 0``)
    once every input with a non-zero weight has arrived (``f(u) = z − B − (S + leak)·u``
    there, a root ``(z − B)/(S + leak)``) or are forced at ``t_max``, all of those inputs
    having arrived by ``t_max``. Each neuron then gets the same value whether a certificate
    covered it or the walk did, and the walk's answer in a batch with late inputs equals
    its ``early_only`` answer for a neuron without any — so a result cannot depend on the
    other samples of its batch (chunk sizes, process counts). Both rest on the running sums
    being added in arrival order on every device (:func:`~.scan.prefix_sums`): a neuron's
    sums then do not depend on the rows walked with it, nor on where its row is cut.
    """
    m, k = x_sorted.shape
    floor = 0.0 if early_only else -B_out
    cw = x_sorted.new_zeros((m, k + 1))  # Σ of the first k weights (arrived inputs)
    cwx = x_sorted.new_zeros((m, k + 1))
    prefix_sums(w_sorted, out=cw[:, 1:])  # added in arrival order (.scan)
    prefix_sums(w_sorted * x_sorted, out=cwx[:, 1:])
    # segment j (after j arrivals): f(u) = A_j − D_j·u with A_j = b + CWX_j − B, D_j = CW_j + leak
    lo = x_sorted.new_empty((m, k + 1))
    lo[:, :k] = x_sorted
    lo[:, k] = floor
    lo.clamp_(floor, B_in)
    f_lo = cw.add_(leak[:, None])  # D (cw is not needed any more)
    D = f_lo.clone()
    f_lo.mul_(lo).neg_().add_(cwx).add_((b - B_out)[:, None])  # A − D·lo
    hit = f_lo >= 0
    any_hit = any_along(hit, 1)
    j = first_true(hit)[:, None]
    Aj = (torch.gather(cwx, 1, j) + (b - B_out)[:, None])[:, 0]
    Dj = torch.gather(D, 1, j)[:, 0]
    loj = torch.gather(lo, 1, j)[:, 0]
    prev = torch.gather(lo, 1, (j - 1).clamp_min(0))[:, 0]
    hij = torch.where(j[:, 0] == 0, torch.full_like(loj, B_in), prev)
    root = torch.where(Dj > 0, Aj / torch.where(Dj > 0, Dj, torch.ones_like(Dj)), hij)
    u = torch.minimum(torch.maximum(root, loj), hij)
    miss = float("nan") if early_only else -B_out
    u = torch.where(any_hit, u, torch.full_like(u, miss))
    if closed_after and k:
        # last: the inputs in arrival order up to the last one with a non-zero weight (the
        # segments from ``last`` on have every such input arrived), x_last its arrival
        nz = w_sorted != 0
        last = torch.where(nz, torch.arange(1, k + 1, device=nz.device), 0).amax(dim=1)
        x_last = torch.gather(x_sorted, 1, (last - 1).clamp_min(0)[:, None])[:, 0]
        all_by_t_max = (last == 0) | (x_last >= -B_out)
        after = (j[:, 0] >= last) & (Dj > 0) & (root < 0)
        closed = all_by_t_max & (after | ~any_hit)
        u = torch.where(closed, torch.full_like(u, float("nan")), u)
    f_start = b + 0.0 - B_out - leak * B_in  # f(B_in): V(t_start) − theta (nothing arrived)
    return torch.where(f_start >= 0, torch.full_like(u, B_in), u)
