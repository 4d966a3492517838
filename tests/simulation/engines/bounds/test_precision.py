"""The certificates' scalar roundings (``precision._f32``, ``_bf16``) are the casts NumPy and
PyTorch make, at every magnitude: subnormals, ties, the edges of float32's range."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from onespike.simulation.engines.bounds.precision import _bf16, _f32

_FLT_MAX = float(np.finfo(np.float32).max)
_TINY = float(np.finfo(np.float32).smallest_subnormal)


def _numpy_f32(v: float, up: bool) -> float:
    with np.errstate(over="ignore"):
        r = float(np.float32(v))
    if up and r < v:
        r = float(np.nextafter(np.float32(r), np.float32(np.inf)))
    return r


@settings(max_examples=400, deadline=None)
@given(v=st.floats(allow_nan=False) | st.floats(-1e-40, 1e-40)
       | st.floats(-4e38, 4e38, allow_nan=False), up=st.booleans())
@example(v=0.0, up=True)
@example(v=-0.0, up=True)
@example(v=_TINY / 4, up=True)
@example(v=-_TINY / 4, up=True)
@example(v=1.0 + 2.0**-24, up=False)  # a tie: to even
@example(v=1.0 + 3 * 2.0**-24, up=False)
@example(v=_FLT_MAX * (1 + 2.0**-25), up=False)  # rounds down to the largest float32
@example(v=_FLT_MAX * (1 + 2.0**-24), up=False)  # rounds to inf
@example(v=-3e38 * 2, up=True)
@example(v=math.inf, up=True)
@example(v=-math.inf, up=True)
def test_f32_is_numpys_cast(v: float, up: bool) -> None:
    got, want = _f32(v, up=up), _numpy_f32(v, up)
    assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want)
    if up and not math.isinf(v):
        assert got >= v


@settings(max_examples=400, deadline=None)
@given(v=st.floats(allow_nan=False) | st.floats(-1e-38, 1e-38)
       | st.floats(-4e38, 4e38, allow_nan=False))
@example(v=1.0 + 2.0**-8)  # a bfloat16 tie: to even (1.0)
@example(v=1.0 + 3 * 2.0**-8)  # a tie: to even (1 + 2⁻⁶)
@example(v=_FLT_MAX)  # rounds to inf
@example(v=-_FLT_MAX)
@example(v=_TINY)
def test_bf16_is_torchs_cast(v: float) -> None:
    got = _bf16(v)
    want = float(torch.tensor(v, dtype=torch.float32).to(torch.bfloat16))
    assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want)
    assert math.isnan(_bf16(math.nan))
