"""The tents of the grid certificate (``T(x)`` of the grid interval holding ``x``), computed in
cache-sized blocks: the very values of the whole-map formula, whatever the block size, the
map's shape or the result's dtype; and the grid certificate's verdicts do not depend on the
block size."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.patching import patch_package
from tests.simulation.engines.bounds.test_bounds import converted_layers, stress_inputs

from onespike.simulation.affine import Affine
from onespike.simulation.engines import bounds
from onespike.simulation.engines.bounds.tents import _tent_sum, _tents
from onespike.simulation.synapses import Synapses

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def whole_map_tents(x: torch.Tensor, knots: list[float], top: float) -> torch.Tensor:
    """The tents as whole-map operations: max(0, max over the intervals below ``top`` of
    (x − lo)(hi − x)/(hi − lo)), each product written as the block code writes it."""
    tent = torch.zeros_like(x)
    for lo, hi in pairwise(knots):
        if lo >= top:
            break
        part = (x - lo) * (x - hi) * (-1.0 / (hi - lo))
        tent = torch.maximum(tent, part)
    return tent


@SETTINGS
@given(seed=st.integers(0, 10_000), shape=st.sampled_from([(0, 3), (1,), (5, 7), (2, 3, 5, 4)]),
       block=st.sampled_from([1, 3, 16, 1 << 16]), n_knots=st.integers(0, 6),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       out=st.sampled_from([None, torch.bfloat16, torch.float64]))
def test_blocked_tents_equal_the_whole_map_formula(
        seed: int, shape: tuple[int, ...], block: int, n_knots: int, dtype: torch.dtype,
        out: torch.dtype | None) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    x = x * (torch.rand(shape, generator=g, dtype=torch.float64) > 0.3).to(dtype)
    inner = sorted({float(v) for v in torch.rand(n_knots, generator=g, dtype=torch.float64)})
    knots = [0.0, *inner, 1.0]
    top = float(x.max()) if x.numel() else 0.0
    with pytest.MonkeyPatch.context() as mp:
        patch_package(mp, bounds, "TENT_BLOCK", block)
        got = _tents(x, knots, top, out)
    want = whole_map_tents(x, knots, top)
    assert got.shape == x.shape and got.dtype == (dtype if out is None else out)
    assert torch.equal(got, want.to(got.dtype))


def test_blocked_tents_of_a_strided_map() -> None:
    x = torch.rand(6, 8, dtype=torch.float32).t()  # not contiguous
    knots = [0.0, 0.25, 0.5, 1.0]
    assert torch.equal(_tents(x, knots, 1.0), whole_map_tents(x, knots, 1.0))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("seed", range(3))
def test_grid_verdicts_do_not_depend_on_the_tent_block(
        seed: int, precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for layer in converted_layers(seed, "cnn"):
        x = stress_inputs(layer, 3, seed, 2.0)
        z = layer.z([x])
        verdicts = []
        for block in (1 << 16, 5):
            patch_package(monkeypatch, bounds, "TENT_BLOCK", block)
            verdicts.append(bounds.certify_grid(layer, [x], z.clone(), precision=precision))
        assert torch.equal(verdicts[0], verdicts[1])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocks_per_thread_give_the_same_tents(threads: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The block holds TENT_BLOCK entries per thread: the same values at any thread count,
    the last block shorter."""
    g = torch.Generator().manual_seed(threads)
    x = torch.rand(3, 5, 7, 11, generator=g) * (torch.rand(3, 5, 7, 11, generator=g) > 0.2)
    knots = [0.0, 0.2, 0.45, 0.7, 1.0]
    patch_package(monkeypatch, bounds, "TENT_BLOCK", 97)  # 97·threads does not divide 1155
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = _tents(x, knots, float(x.max()), torch.bfloat16)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got, whole_map_tents(x, knots, float(x.max())).to(torch.bfloat16))


@pytest.mark.parametrize("signs", [(True, False), (False, True), (False, False), (True, True)])
def test_tent_sum_leaves_out_edges_without_inhibition(signs: tuple[bool, bool]) -> None:
    """``_tent_sum`` computes the tents and sums of the edges with an inhibitory weight only:
    the same values as summing every edge (the others add exact zeros)."""
    g = torch.Generator().manual_seed(1)
    affines, xs, w_neg = [], [], []
    for has_neg in signs:
        w = torch.rand(4, 3, 3, 3, generator=g, dtype=torch.float64)
        neg = w * (torch.rand(w.shape, generator=g) < 0.5) if has_neg else torch.zeros_like(w)
        affines.append(Affine("conv", w, torch.zeros(4, 5, 5, dtype=torch.float64),
                              (3, 5, 5), (4, 5, 5), 2, (1, 1), (1, 1, 1, 1), (1, 1), 1))
        xs.append(torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64))
        w_neg.append(neg)
    syn = Synapses(affines)
    made: list[int] = []

    def tents(x: torch.Tensor) -> torch.Tensor:
        made.append(1)
        return _tents(x, [0.0, 0.3, 0.7, 1.0], 1.0)

    got = _tent_sum(syn, xs, w_neg, tents)
    want = syn.linear([_tents(x, [0.0, 0.3, 0.7, 1.0], 1.0) for x in xs], w_neg)
    assert len(made) == sum(signs)
    assert torch.allclose(got, want, rtol=1e-12, atol=0.0) and got.shape == want.shape
