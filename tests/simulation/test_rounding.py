"""``bf16_up``: the smallest bfloat16 at or above each entry, for either sign — so that a
bfloat16 value compares with a float32 threshold exactly as with the threshold rounded up
(the drive bound's one-edge comparison)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onespike.simulation.rounding import bf16_up


def _neighbours(t: torch.Tensor) -> torch.Tensor:
    """Every bfloat16 within a few units of the float32 entries of ``t``."""
    b = t.to(torch.bfloat16)
    out = [b]
    lo = hi = b
    for _ in range(3):
        lo = torch.nextafter(lo, torch.full_like(lo, float("-inf")))
        hi = torch.nextafter(hi, torch.full_like(hi, float("inf")))
        out += [lo, hi]
    return torch.cat(out)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1e-30, 1e-3, 1.0, 7.0, 1e30]))
def test_smallest_bfloat16_at_or_above(seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(500, generator=g, dtype=torch.float64) * scale).to(torch.float32)
    t = torch.cat([t, t.to(torch.bfloat16).to(torch.float32), torch.tensor([0.0, -0.0])])
    up = bf16_up(t)
    assert up.dtype == torch.bfloat16
    assert bool((up.to(torch.float32) >= t).all())
    below = torch.nextafter(up, torch.full_like(up, float("-inf")))
    assert bool((below.to(torch.float32) < t).all())  # no bfloat16 in [t, up)
    # hence a bfloat16 value compares with t exactly as with up (tried on t's neighbours)
    d = _neighbours(t)
    for i in range(0, t.numel(), 50):
        assert torch.equal(d[:, None].float() < t[None, i : i + 50],
                           d[:, None] < up[None, i : i + 50])


def test_round_to_nearest_would_not_do() -> None:
    """The nearest bfloat16 of a threshold just above a bfloat16 value lies below it: the
    comparison with it would refuse a value the exact one accepts."""
    d = torch.tensor([1.0], dtype=torch.bfloat16)
    t = torch.nextafter(torch.tensor([1.0]), torch.tensor([2.0]))  # just above 1 in float32
    assert bool(d.float() < t) and not bool(d < t.to(torch.bfloat16))
    assert bool(d < bf16_up(t))
