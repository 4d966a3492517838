"""float64 CPU convolutions run in chunks of samples (:func:`affine._conv_in_chunks`) give bit
for bit the single call's result, for any geometry and chunk size, through
:meth:`Affine.linear` as well; a lone sample with several threads is padded so that it gets
the values it gets in a batch; other dtypes and autograd keep the single call."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onespike.simulation import affine
from onespike.simulation.affine import Affine


def _conv(dims: int, c_in: int, c_out: int, k: int, stride: int, pad: int, dilation: int,
          groups: int, size: int) -> Affine:
    w = torch.randn(c_out, c_in // groups, *(k,) * dims, dtype=torch.float64)
    out = (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    return Affine("conv", w, torch.zeros(c_out, *(out,) * dims, dtype=torch.float64),
                  (c_in, *(size,) * dims), (c_out, *(out,) * dims), dims, (stride,) * dims,
                  (pad,) * (2 * dims), (dilation,) * dims, groups)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dims=st.integers(1, 2), groups=st.sampled_from([1, 2, 3, 5]), depthwise=st.booleans(),
       k=st.integers(1, 3),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dilation=st.integers(1, 2),
       batch=st.integers(2, 37), column_bytes=st.integers(1, 40_000),
       seed=st.integers(0, 1000), wide=st.booleans())
def test_chunked_float64_convolution_is_the_single_call(
        dims: int, groups: int, depthwise: bool, k: int, stride: int, pad: int, dilation: int,
        batch: int, column_bytes: int, seed: int, wide: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sample's values are those it gets alone, whatever the chunks; where every
    sample's patches and outputs are 64-byte aligned in a batch (``wide``: 8 channels per
    group), the chunks run batched and give the single call's very values."""
    torch.manual_seed(seed)
    size = dilation * (k - 1) + 1 + seed % 6
    m = 8 if wide else 1
    c_in, c_out = (m * groups, m * groups) if depthwise else (2 * m * groups, 3 * m * groups)
    a = _conv(dims, c_in, c_out, k, stride, pad, dilation, groups, size)
    x = torch.rand(batch, c_in, *(size,) * dims, dtype=torch.float64)
    conv = F.conv1d if dims == 1 else F.conv2d
    want = conv(x, a.weight, None, stride, pad, dilation, groups)
    monkeypatch.setattr(affine, "COLUMN_BYTES", column_bytes)
    calls: list[int] = []

    def counting(*args: object) -> torch.Tensor:
        calls.append(1)
        return conv(*args)  # type: ignore[arg-type]

    positions = a.out_shape[1] ** dims
    threads = torch.get_num_threads()
    alone = torch.cat([affine._conv_samples(conv, x[i : i + 1], a.weight, (stride,) * dims, pad,
                                            (dilation,) * dims, groups, threads)
                       for i in range(batch)])
    got = affine._conv_in_chunks(counting, x, a.weight, (stride,) * dims, pad,
                                 (dilation,) * dims, groups, positions)
    assert torch.equal(got, alone)
    aligned = affine._per_sample_aligned(a.weight, positions, 8)
    assert aligned == (a.weight[0].numel() * positions % 8 == 0
                       and a.out_shape[0] * positions % 8 == 0)
    if wide:
        assert aligned
    per_sample = a.weight[0].numel() * positions * 8
    step = max(threads, column_bytes // per_sample // threads * threads)
    assert len(calls) == (-(-batch // step) if aligned else batch)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    if not aligned:
        return
    assert torch.equal(got, want)
    if affine._small_map_conv(x, a.weight, dims, groups, a.out_shape[1] ** dims):
        return  # the network's own path takes the per-sample products (test_affine_small_maps)
    assert torch.equal(a.linear(x), want)  # the network's own path takes the chunks too


@pytest.mark.parametrize(("threads", "fit", "want"),
                         [(2, 3, [2, 2, 2, 2, 2]), (2, 5, [4, 4, 2]), (3, 8, [6, 3]),
                          (1, 3, [3, 3, 3]), (3, 0, [3, 3, 3])])
def test_a_chunk_holds_a_multiple_of_the_thread_count(
        threads: int, fit: int, want: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """``fit`` samples' patches fit in COLUMN_BYTES: the chunk takes the largest multiple of
    the thread count not above it (each thread gets as many samples), and at least one sample
    per thread (``fit`` 0); a last chunk of one sample with several threads runs padded with a
    zero sample (two threads: 9 samples in chunks of 2 end with 1, run as 2)."""
    a = _conv(2, 4, 4, 3, 1, 1, 1, 1, 6)
    x = torch.rand(9, 4, 6, 6, dtype=torch.float64)
    per_sample = a.weight[0].numel() * 36 * 8
    monkeypatch.setattr(affine, "COLUMN_BYTES", fit * per_sample + per_sample // 2)
    sizes: list[int] = []

    def spy(xx: torch.Tensor, *args: object) -> torch.Tensor:
        sizes.append(xx.shape[0])
        return F.conv2d(xx, *args)  # type: ignore[arg-type]

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = affine._conv_in_chunks(spy, x, a.weight, (1, 1), 1, (1, 1), 1, 36)
    finally:
        torch.set_num_threads(old)
    assert sizes == want
    assert torch.equal(got, F.conv2d(x, a.weight, None, 1, 1))


def test_only_float64_batches_without_autograd_are_chunked() -> None:
    a = _conv(2, 4, 4, 3, 1, 1, 1, 1, 6)
    x = torch.rand(3, 4, 6, 6, dtype=torch.float64)
    assert affine._chunked_conv(x, a.weight)
    # a single sample too when several threads run (padded: test_a_lone_sample_...)
    assert affine._chunked_conv(x[:1], a.weight) == (torch.get_num_threads() > 1)
    assert not affine._chunked_conv(x.float(), a.weight.float())
    assert not affine._chunked_conv(x.requires_grad_(), a.weight)
    with torch.no_grad():
        assert affine._chunked_conv(x, a.weight)
    # through autograd the single call runs (fan_out_counts differentiates linear())
    assert torch.equal(a.fan_out_counts(), a.fan_out_counts())


@pytest.mark.parametrize(("groups", "dilation", "direct"),
                         [(1, 1, True), (2, 1, False), (1, 2, False)])
def test_chunks_are_written_straight_into_the_output_where_the_kernel_allows(
        groups: int, dilation: int, direct: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # PyTorch's own float64 kernel (no groups, no dilation) writes every chunk after the
    # first straight into the output; the values stay the single call's
    # (output maps of 6×6 and 5×5: larger than the per-sample products' small maps)
    a = _conv(2, 4, 6, 3, 2, 1, dilation, groups, 11)
    x = torch.rand(7, 4, 11, 11, dtype=torch.float64)
    monkeypatch.setattr(affine, "COLUMN_BYTES", 1)  # one chunk per thread
    into: list[int] = []
    real = affine._slow_conv_into

    def spy(*args: object) -> object:
        run = real(*args)  # type: ignore[arg-type]
        if run is None:
            return None

        def counted(chunk: torch.Tensor, dest: torch.Tensor) -> None:
            into.append(chunk.shape[0])
            run(chunk, dest)

        return counted

    monkeypatch.setattr(affine, "_slow_conv_into", spy)
    want = F.conv2d(x, a.weight, None, 2, 1, dilation, groups)
    assert torch.equal(a.linear(x), want)
    step = torch.get_num_threads()
    # after the first chunk, every chunk but a padded one-sample tail goes straight in
    later = [min(step, 7 - s) for s in range(step, 7, step)]
    assert sum(into) == (sum(n for n in later if n > 1 or step == 1) if direct else 0)


@pytest.mark.parametrize(("c", "size"), [(128, 16), (256, 8), (64, 32)])
def test_a_lone_sample_gets_the_values_it_gets_in_a_batch(c: int, size: int) -> None:
    """With several threads PyTorch runs a single sample's matrix product on every thread,
    which sums in another order than the one-thread product of each sample of a batch
    (VGG-16's 128-channel 16×16 and 256-channel 8×8 layers differ in the last bit): the
    network's own convolution pads a lone sample with a zero one, so that a sample's values
    do not depend on the batch or chunk it comes in."""
    torch.manual_seed(0)
    a = _conv(2, c, c, 3, 1, 1, 1, 1, size)
    x = torch.rand(5, c, size, size, dtype=torch.float64)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batch = a.linear(x)
        for i in range(x.shape[0]):
            assert torch.equal(a.linear(x[i : i + 1]), batch[i : i + 1]), i
        assert torch.equal(a.linear(x[1:4]), batch[1:4])
    finally:
        torch.set_num_threads(old)
