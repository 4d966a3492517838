"""Max-pool routing: the tiled fast path is bit for bit ``max_pool2d`` (floor and ceil
modes, partial windows, −inf silent neurons, NaN, signed channels)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from onespike.simulation.routing import MaxPoolRoute


def _route(c: int, h: int, w: int, k: int, s: int, pad: int = 0, ceil: bool = False,
           sign: torch.Tensor | None = None) -> MaxPoolRoute:
    def out(n: int) -> int:
        f = math.ceil if ceil else math.floor
        return int(f((n + 2 * pad - k) / s)) + 1
    return MaxPoolRoute(2, (k, k), (s, s), (pad, pad), (1, 1), ceil, (c, h, w),
                        (c, out(h), out(w)), sign)


@pytest.mark.parametrize("h,w,k,s,pad,ceil", [
    (8, 8, 2, 2, 0, False), (7, 9, 2, 2, 0, False), (7, 9, 2, 2, 0, True),
    (9, 9, 3, 3, 0, False), (8, 8, 3, 2, 1, False), (6, 6, 2, 1, 0, False)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_route_is_max_pool(h: int, w: int, k: int, s: int, pad: int, ceil: bool,
                           dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(h * 31 + w)
    v = torch.rand((3, 4, h, w), generator=g, dtype=torch.float64).to(dtype)
    v[v < 0.2] = float("-inf")  # silent neurons (model B)
    v[0, 0, 0, 0] = float("nan")
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=dtype)
    for sg in (None, sign):
        r = _route(4, h, w, k, s, pad, ceil, sg)
        sv = v if sg is None else v * sg.reshape(-1, 1, 1)
        want = F.max_pool2d(sv, k, s, pad, 1, ceil)
        if sg is not None:
            want = want * sg.reshape(-1, 1, 1)
        got = r(v)
        assert got.shape == want.shape == (3, *r.out_shape)
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))


def test_tiled_path_is_taken_for_the_common_pool() -> None:
    assert _route(2, 8, 8, 2, 2)._tiles()
    assert _route(2, 7, 9, 2, 2)._tiles()  # floor mode: the partial window is dropped
    assert not _route(2, 7, 9, 2, 2, ceil=True)._tiles()  # ceil mode keeps it
    assert not _route(2, 8, 8, 3, 2, 1)._tiles()


@pytest.mark.parametrize("kernel", [(1, 1), (1, 2), (2, 1), (2, 3), (3, 2), (4, 4)])
def test_tiled_rectangular_windows_are_max_pool(kernel: tuple[int, int]) -> None:
    """Rows first, then columns: the same maxima as ``max_pool2d`` for any tiling window,
    partial windows dropped (floor mode), silent neurons and NaN included; a fresh map."""
    g = torch.Generator().manual_seed(kernel[0] * 7 + kernel[1])
    v = torch.rand((2, 3, 9, 10), generator=g, dtype=torch.float64)
    v[v < 0.2] = float("-inf")
    v[1, 2, 4, 5] = float("nan")
    out = (3, 9 // kernel[0], 10 // kernel[1])
    r = MaxPoolRoute(2, kernel, kernel, (0, 0), (1, 1), False, (3, 9, 10), out)
    assert r._tiles()
    got = r(v)
    want = F.max_pool2d(v, kernel, kernel)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))
    assert got.data_ptr() != v.data_ptr()
