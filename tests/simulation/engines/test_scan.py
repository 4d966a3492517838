"""The exact walk's prefix sums are added left to right on every device: an entry depends on
its own row's entries up to it only — not on how many rows are summed with it, nor on how
long they are — so a walked neuron's spike time does not depend on the other neurons walked
in the same call (chunk sizes, batch composition)."""

from __future__ import annotations

import pytest
import torch

from onespike.simulation.engines.crossing import first_crossing_sorted
from onespike.simulation.engines.scan import _by_columns, prefix_sums

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


def _terms(m: int, k: int, dtype: torch.dtype, device: str, seed: int = 0) -> torch.Tensor:
    """Terms of mixed sign and magnitudes over eight decades: every summation order rounds
    differently."""
    g = torch.Generator().manual_seed(seed)
    mag = 10.0 ** (torch.rand(m, k, generator=g, dtype=torch.float64) * 8 - 4)
    sign = torch.where(torch.rand(m, k, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    return (mag * sign).to(dtype=dtype, device=device)


def test_prefix_sums_are_left_to_right_additions() -> None:
    x = _terms(5, 200, torch.float64, "cpu")
    want = torch.empty_like(x)
    acc = torch.zeros(5, dtype=torch.float64)
    for j in range(x.shape[1]):
        acc = acc + x[:, j]
        want[:, j] = acc
    assert torch.equal(prefix_sums(x, out=torch.empty_like(x)), want)
    # a tree (pairwise) sum of the same terms differs: the test can tell the orders apart
    assert not torch.equal(x.sum(1), want[:, -1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prefix_sums_do_not_depend_on_other_rows_or_row_length(device: str,
                                                               dtype: torch.dtype) -> None:
    x = _terms(64, 700, dtype, device)
    full = prefix_sums(x, out=torch.empty_like(x))
    for m in (1, 2, 7, 64):
        for k in (1, 37, 300, 700):
            # written into a strided view, as the walk does
            buf = x.new_zeros((m, k + 1))
            part = prefix_sums(x[:m, :k].contiguous(), out=buf[:, 1:])
            assert torch.equal(part, full[:m, :k]), (m, k)
            assert bool((buf[:, 0] == 0).all())


@pytest.mark.parametrize("m", [1, 2, 9])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_column_route_equals_the_row_scan(m: int, dtype: torch.dtype) -> None:
    """The route taken off the CPU (rows summed as the columns of the transpose, a lone row
    padded to two), run here on the CPU: the same values as the row scan."""
    x = _terms(m, 123, dtype, "cpu", seed=m)
    want = torch.cumsum(x, dim=1)
    buf = x.new_full((m, 124), 7.0)
    got = _by_columns(x, out=buf[:, 1:])
    assert torch.equal(got, want)
    assert bool((buf[:, 0] == 7.0).all())


@pytest.mark.parametrize("device", DEVICES)
def test_walked_value_does_not_depend_on_the_other_walked_neurons(device: str) -> None:
    """A neuron walked alone, among many, or with its row cut after its last positive input
    (the early-only walk's truncation) gets the same value bit for bit."""
    g = torch.Generator().manual_seed(3)
    m, k = 300, 900
    xs = torch.rand(m, k, generator=g, dtype=torch.float64)
    xs[torch.rand(m, k, generator=g) < 0.4] = 0.0
    ws = (torch.rand(m, k, generator=g, dtype=torch.float64) - 0.48) * 0.02
    b = torch.rand(m, generator=g, dtype=torch.float64) * 0.6
    x_s, order = torch.sort(xs, dim=1, descending=True)
    w_s = torch.gather(ws, 1, order)
    leak = 1.0 - ws.sum(1)
    args = [t.to(device) for t in (x_s, w_s, b, leak)]
    kw = dict(B_in=1.0, B_out=0.5)
    every = first_crossing_sorted(args[0], args[1], args[2], leak=args[3], early_only=True, **kw)
    assert 10 < int((~torch.isnan(every)).sum()) < m - 10  # early crossings and others
    for i in (0, 17, m - 1):
        keep = max(1, int((x_s[i] > 0).sum()))
        alone = first_crossing_sorted(args[0][i:i + 1, :keep], args[1][i:i + 1, :keep],
                                      args[2][i:i + 1], leak=args[3][i:i + 1],
                                      early_only=True, **kw)
        assert torch.equal(alone.nan_to_num(-9.0), every[i:i + 1].nan_to_num(-9.0))
