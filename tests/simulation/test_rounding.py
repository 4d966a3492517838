"""``bf16_up``: the smallest bfloat16 at or above each entry, for either sign — so that a
bfloat16 value compares with a float32 threshold exactly as with the threshold rounded up
(the drive bound's one-edge comparison)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onespike.simulation import rounding
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


def _round_up_whole(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The definition in one piece (an independent reference for the piecewise form)."""
    wb = w.to(dtype)
    up = torch.nextafter(wb, torch.full_like(wb, float("inf")))
    return torch.where(wb.to(w.dtype) < w, up, wb)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), piece=st.sampled_from([1, 7, 64, 1 << 16]),
       shape=st.sampled_from([(5,), (33, 4), (9, 3, 3, 3), (1, 70), (0, 4)]),
       part=st.sampled_from(["none", "positive", "negative", "abs"]),
       dtype=st.sampled_from([torch.bfloat16, torch.float32]))
def test_piecewise_rounding_is_the_whole_rounding(seed: int, piece: int,
                                                 shape: tuple[int, ...], part: str,
                                                 dtype: torch.dtype) -> None:
    """:func:`round_up` on pieces of rows (so that a large weight's copy needs no temporary
    of its size) gives bit for bit the rounding of the whole tensor, for the elementwise maps
    the certificates use, whatever the piece size (a piece of one row, of several rows, or
    the whole tensor)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64) * 10.0 ** float(seed % 7 - 3)
    maps = {"none": None, "positive": lambda t: t.clamp_min(0),
            "negative": lambda t: t.neg().clamp_min(0), "abs": torch.abs}
    fn = maps[part]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rounding, "PIECE_ELEMENTS", piece)
        got = rounding.round_up(w, dtype, fn)
    want = _round_up_whole(w if fn is None else fn(w), dtype)
    assert got.dtype == dtype and got.shape == w.shape and got.is_contiguous()
    assert torch.equal(got.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                       want.view(torch.int16 if dtype == torch.bfloat16 else torch.int32))


def test_pieces_cover_every_row_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rounding, "PIECE_ELEMENTS", 10)
    for rows, row in [(0, 3), (1, 50), (7, 3), (30, 4), (5, 0)]:
        seen = [i for s in rounding.pieces(rows, row) for i in range(rows)[s]]
        assert seen == list(range(rows))
        assert all(s.stop - s.start <= max(1, 10 // max(1, row))
                   for s in rounding.pieces(rows, row))
