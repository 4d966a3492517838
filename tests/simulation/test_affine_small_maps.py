"""float64 CPU convolutions with small output maps run as one matrix product per sample
(:func:`affine._conv_per_sample_mm`) where that pays (``SMALL_MAPS_AS_ROWS``: set here for
every test, whatever this CPU), else PyTorch's convolution in sample chunks; Linear edges as
fixed blocks of rows: every sample's values are bit for bit the same whatever batch it is
computed in (alone, at any offset, in any chunk, at one or two threads), within the float64
rounding of the fan-in sum of ``F.conv2d``'s; other geometries and dtypes keep their
paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onespike.simulation import affine
from onespike.simulation.affine import Affine


@pytest.fixture(autouse=True)
def _rows_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(affine, "SMALL_MAPS_AS_ROWS", True)


def _conv(c_in: int, c_out: int, k: int, stride: int, pad: tuple[int, int, int, int],
          dilation: int, h: int, w: int, groups: int = 1,
          dtype: torch.dtype = torch.float64) -> Affine:
    weight = torch.randn(c_out, c_in // groups, k, k, dtype=dtype)
    ho = (h + pad[0] + pad[1] - dilation * (k - 1) - 1) // stride + 1
    wo = (w + pad[2] + pad[3] - dilation * (k - 1) - 1) // stride + 1
    return Affine("conv", weight, torch.zeros(c_out, ho, wo, dtype=dtype), (c_in, h, w),
                  (c_out, ho, wo), 2, (stride, stride), pad, (dilation, dilation), groups)


def _reference(a: Affine, x: torch.Tensor) -> torch.Tensor:
    # Affine's pad is (top, bottom, left, right); F.pad takes (left, right, top, bottom)
    top, bottom, left, right = a.pad
    xp = F.pad(x, (left, right, top, bottom))
    return F.conv2d(xp, a.weight, None, a.stride, 0, a.dilation, a.groups)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c_in=st.integers(1, 40), c_out=st.integers(1, 24), k=st.integers(1, 3),
       stride=st.integers(1, 3), pad=st.tuples(*[st.integers(0, 2)] * 4),
       dilation=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6),
       batch=st.integers(1, 41), column_bytes=st.sampled_from([1, 5_000, 8 << 20]),
       seed=st.integers(0, 1000), as_rows=st.booleans())
def test_small_maps_are_batch_invariant_and_within_rounding(
        c_in: int, c_out: int, k: int, stride: int, pad: tuple[int, int, int, int],
        dilation: int, h: int, w: int, batch: int, column_bytes: int, seed: int,
        as_rows: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Either form (``as_rows``: the per-sample products, else the chunked convolution)."""
    monkeypatch.setattr(affine, "SMALL_MAPS_AS_ROWS", as_rows)
    span = dilation * (k - 1) + 1
    if h + pad[0] + pad[1] < span or w + pad[2] + pad[3] < span:
        return  # no output position
    torch.manual_seed(seed)
    a = _conv(c_in, c_out, k, stride, pad, dilation, h, w)
    positions = a.out_shape[1] * a.out_shape[2]
    x = torch.rand(batch, c_in, h, w, dtype=torch.float64)
    wide = affine.MID_MAP_WIDTH * positions
    small = positions <= affine.SMALL_MAP_POSITIONS or (
        positions <= affine.MID_MAP_POSITIONS and c_out >= wide and c_in * k * k >= wide)
    assert affine._small_map_conv(x, a.weight, 2, 1, positions) == (small and as_rows)
    if not small or a.is_channel_scale:
        return  # (a per-channel scale is one product per output: its own path)
    monkeypatch.setattr(affine, "COLUMN_BYTES", column_bytes)  # unfolded in chunks
    calls: list[int] = []
    real = affine._conv_per_sample_mm

    def spy(*args: object) -> torch.Tensor:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(affine, "_conv_per_sample_mm", spy)
    threads = torch.get_num_threads()
    try:
        for t in sorted({1, threads}):
            torch.set_num_threads(t)
            full = a.linear(x, rows_invariant=True)
            for i in sorted({0, batch // 2, batch - 1}):
                assert torch.equal(a.linear(x[i : i + 1], rows_invariant=True), full[i : i + 1])
            s = batch // 3
            assert torch.equal(a.linear(x[s:], rows_invariant=True), full[s:])
    finally:
        torch.set_num_threads(threads)
    assert bool(calls) == as_rows
    want = _reference(a, x)
    # |fl(Σ) − Σ| ≤ γ_K Σ |w||x| (any order), for this sum and for F.conv2d's
    k_terms = c_in * k * k
    gamma = k_terms * 2.0**-53 / (1 - k_terms * 2.0**-53)
    bound = 2 * gamma * _reference(Affine("conv", a.weight.abs(), a.bias, a.in_shape,
                                          a.out_shape, 2, a.stride, a.pad, a.dilation, 1), x)
    assert bool(((full - want).abs() <= bound + 1e-300).all())


@pytest.mark.parametrize("as_rows", [True, False])
def test_vgg_sized_layer_keeps_each_sample_apart_from_its_batch(
        as_rows: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VGG-16 2×2 layer (512 → 512 channels) and its 4×4 layer, as per-sample products or
    as the chunked convolution (batch 70: several chunks at one or two threads, the last
    one short)."""
    monkeypatch.setattr(affine, "SMALL_MAPS_AS_ROWS", as_rows)
    torch.manual_seed(0)
    a = _conv(512, 512, 3, 1, (1, 1, 1, 1), 1, 2, 2)
    x = torch.rand(70, 512, 2, 2, dtype=torch.float64)
    full = a.linear(x, rows_invariant=True)
    for i in (0, 3, 4, 37, 69):
        assert torch.equal(a.linear(x[i : i + 1], rows_invariant=True), full[i : i + 1])
    assert torch.equal(a.linear(x[5:12]), full[5:12])
    assert float((full - _reference(a, x)).abs().max()) < 1e-11
    a = _conv(512, 512, 3, 1, (1, 1, 1, 1), 1, 4, 4)
    x = torch.rand(9, 512, 4, 4, dtype=torch.float64)
    full = a.linear(x, rows_invariant=True)
    for i in (0, 4, 8):
        assert torch.equal(a.linear(x[i : i + 1], rows_invariant=True), full[i : i + 1])
    assert float((full - _reference(a, x)).abs().max()) < 1e-11


def test_wide_layers_on_8x8_maps_take_the_per_sample_products() -> None:
    """8×8 maps (64 positions) take the per-sample products when the layer is wide (at least
    256 output channels and fan-in terms: VGG-16's and ResNet-18's 8×8 layers, stride 2
    included): each sample's values do not depend on its batch, within the rounding of the
    fan-in sum; narrower layers and 1×1 convolutions keep PyTorch's convolution."""
    torch.manual_seed(1)
    for c_in, k, stride, size in ((128, 3, 1, 8), (128, 3, 2, 16)):
        a = _conv(c_in, 256, k, stride, (1, 1, 1, 1), 1, size, size)
        assert a.out_shape[1:] == (8, 8)
        x = torch.rand(5, c_in, size, size, dtype=torch.float64)
        assert affine._small_map_conv(x, a.weight, 2, 1, 64)
        full = a.linear(x, rows_invariant=True)
        for i in (0, 2, 4):
            assert torch.equal(a.linear(x[i : i + 1], rows_invariant=True), full[i : i + 1])
        assert torch.equal(a.linear(x[1:4], rows_invariant=True), full[1:4])
        assert float((full - _reference(a, x)).abs().max()) < 1e-11
    x = torch.rand(2, 128, 8, 8, dtype=torch.float64)
    assert not affine._small_map_conv(x, torch.zeros(128, 128, 3, 3, dtype=torch.float64),
                                      2, 1, 64)  # 128 output channels < 4 × 64
    assert not affine._small_map_conv(x, torch.zeros(256, 128, 1, 1, dtype=torch.float64),
                                      2, 1, 64)  # fan-in 128 < 4 × 64
    assert not affine._small_map_conv(x, torch.zeros(512, 128, 3, 3, dtype=torch.float64),
                                      2, 1, 81)  # 9×9 > MID_MAP_POSITIONS
    assert affine._small_map_conv(x, torch.zeros(68, 17, 2, 2, dtype=torch.float64),
                                  2, 1, 17)  # 17 positions, 68 channels and terms


def test_which_convolutions_take_the_per_sample_products() -> None:
    a = _conv(8, 4, 3, 1, (1, 1, 1, 1), 1, 2, 2)
    x = torch.rand(3, 8, 2, 2, dtype=torch.float64)
    assert affine._small_map_conv(x, a.weight, 2, 1, 16)
    assert not affine._small_map_conv(x, a.weight, 2, 1, 17)  # a larger map
    assert not affine._small_map_conv(x, a.weight, 2, 2, 4)  # groups
    assert not affine._small_map_conv(x, a.weight, 1, 1, 4)  # 1-d
    assert not affine._small_map_conv(x.float(), a.weight.float(), 2, 1, 4)  # oneDNN's own
    assert not affine._small_map_conv(x.requires_grad_(), a.weight, 2, 1, 4)
    with torch.no_grad():
        assert affine._small_map_conv(x, a.weight, 2, 1, 4)
    # grouped and float32 small maps keep their own paths and values
    g = _conv(8, 4, 3, 1, (1, 1, 1, 1), 1, 2, 2, groups=2)
    xd = x.detach()
    assert torch.equal(g.linear(xd), _reference(g, xd))


@pytest.mark.parametrize("features", [7, 33, 84, 512])
def test_linear_rows_are_batch_invariant_at_any_offset(features: int) -> None:
    """Linear edges with ``rows_invariant`` run in products of ROW_BLOCK rows, every row at a
    64-byte-aligned offset (rows of ``features`` not a multiple of 8 are copied into a block
    with a padded stride): each row gets the value it gets in the whole batch, at any
    offset (on an AMD EPYC, rows of 7 or 33 entries differed by their place otherwise)."""
    torch.manual_seed(features)
    w = torch.randn(33, features, dtype=torch.float64)
    a = Affine("linear", w, torch.zeros(33, dtype=torch.float64), (features,), (33,))
    x = torch.rand(40, features, dtype=torch.float64)
    full = a.linear(x, rows_invariant=True)
    for s in (1, 3, 17, 39):
        assert torch.equal(a.linear(x[s:], rows_invariant=True), full[s:])
        assert torch.equal(a.linear(x[s : s + 1], rows_invariant=True), full[s : s + 1])
    torch.testing.assert_close(full, x @ w.T, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("cpuinfo", "processor", "intel"), [
    ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)\n", "", True),
    ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n", "", False),
    (None, "Intel64 Family 6 Model 106 Stepping 6, GenuineIntel", True),  # (Windows)
    (None, "AMD64 Family 25 Model 17 Stepping 1, AuthenticAMD", False),
    (None, "arm", False),
    ("processor\t: 0\nBogoMIPS\t: 50.00\n", "", False),  # (aarch64 Linux: no vendor_id)
])
def test_intel_cpu_reads_the_vendor(cpuinfo: str | None, processor: str, intel: bool,
                                    tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-sample products are kept off Intel CPUs (``SMALL_MAPS_AS_ROWS``): the vendor
    comes from Linux's ``/proc/cpuinfo``, else from ``platform.processor()``."""
    import platform

    info = tmp_path / "cpuinfo"  # (not written: no such file)
    if cpuinfo is not None:
        info.write_text(cpuinfo, encoding="ascii")
    monkeypatch.setattr(platform, "processor", lambda: processor)
    assert affine._intel_cpu(str(info)) is intel
