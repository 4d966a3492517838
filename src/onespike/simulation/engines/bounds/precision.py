"""Rounding facts the certificates' margins rest on: whether float32 sums are IEEE on a
device (else they run in float64), float32/bfloat16 roundings of scalars, ``γ_n``, and the
float64 NCHW form in which the bfloat16 sums enter the margins (:func:`_nchw64`)."""

from __future__ import annotations

import math
import struct

import torch
from torch import Tensor

#: Unit roundoff of float32 (round to nearest).
_U32 = 2.0**-24


def float32_is_ieee(device: torch.device) -> bool:
    """Whether float32 matmuls and convolutions on ``device`` round as IEEE float32 under the
    current backend settings (no TF32/bf16 shortcuts). Reads the flags, never sets them."""
    backends = torch.backends
    new_api = hasattr(getattr(backends.cudnn, "conv", None), "fp32_precision")
    if device.type == "cuda":
        if new_api:
            mm = backends.cuda.matmul.fp32_precision
            conv = backends.cudnn.conv.fp32_precision  # type: ignore[attr-defined]
            mm_ok = mm == "ieee" or (mm == "none" and not backends.cuda.matmul.allow_tf32
                                     and torch.get_float32_matmul_precision() == "highest")
            return mm_ok and conv == "ieee"
        return not backends.cuda.matmul.allow_tf32 and not backends.cudnn.allow_tf32
    if device.type == "cpu":
        if new_api:
            return all(getattr(o, "fp32_precision", "none") in ("none", "ieee")
                       # torch's stubs omit the PropModule's matmul/conv (torch >= 2.9)
                       for o in (backends.mkldnn.matmul,  # type: ignore[attr-defined]
                                 backends.mkldnn.conv))  # type: ignore[attr-defined]
        return True
    return False


def sum_dtype(device: torch.device) -> torch.dtype:
    """dtype of the certificates' fast sums: float32 where it is IEEE, else float64."""
    return torch.float32 if float32_is_ieee(device) else torch.float64


def _f32_down(exact: Tensor) -> Tensor:
    """float64 ``exact`` rounded down to float32 (every entry ≤ ``exact``)."""
    t32 = exact.to(torch.float32)
    return torch.where(t32.to(torch.float64) > exact,
                       torch.nextafter(t32, torch.full_like(t32, float("-inf"))), t32)


#: IEEE binary32, and its bits as an unsigned integer (little-endian both).
_F32 = struct.Struct("<f")
_U32_BITS = struct.Struct("<I")


def _bits32(r: float) -> int:
    """The bits of the float32 value ``r`` (exactly representable)."""
    return int(_U32_BITS.unpack(_F32.pack(r))[0])


def _from_bits32(bits: int) -> float:
    """The float32 value whose bits are ``bits``."""
    return float(_F32.unpack(_U32_BITS.pack(bits))[0])


def _bf16(v: float) -> float:
    """``v`` rounded to the nearest bfloat16 (ties to even), as a tensor cast rounds: ``v`` to
    the nearest float32, then its bits rounded to the upper 16 (PyTorch's
    ``round_to_nearest_even``). Plain Python (called per grid point: a tensor round trip
    costs several microseconds)."""
    r = _f32(v)
    if math.isnan(r):
        return r
    bits = _bits32(r)
    return _from_bits32(((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16)


def _f32(v: float, *, up: bool = False) -> float:
    """``v`` rounded to the nearest float32 (``up``: to the nearest float32 ≥ v). Plain Python
    (C's round-to-nearest cast, as NumPy's and PyTorch's); beyond float32's range ±inf, as
    a cast gives."""
    try:
        r: float = _F32.unpack(_F32.pack(v))[0]
    except OverflowError:
        r = math.copysign(math.inf, v)
    if up and r < v:  # the next float32 up: one unit in the last place of its bits
        bits = _bits32(r)
        if r == 0.0:
            bits = 1  # the smallest positive subnormal
        elif r > 0.0:
            bits += 1
        else:
            bits -= 1
        r = _from_bits32(bits)
    return r


def _unit(dt: torch.dtype) -> float:
    """Unit roundoff of ``dt`` (round to nearest): ``2⁻²⁴`` for float32, ``2⁻⁵³`` for float64."""
    return torch.finfo(dt).eps / 2


def _gamma(n: int, unit: float) -> float:
    """``γ_n = n·u/(1 − n·u)``: relative error bound of an n-term floating-point sum."""
    nu = n * unit
    return nu / (1.0 - nu) if nu < 1.0 else float("inf")


def _nchw64(t: Tensor) -> Tensor:
    """``t`` in float64, NCHW-contiguous (a channels-last map reordered in the same pass)."""
    return t.to(torch.float64, memory_format=torch.contiguous_format)
