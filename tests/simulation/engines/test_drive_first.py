"""The exact walk's float64 drive check (``exact_values(drive_first=True)``): a chunk of
neurons that all satisfy ``b + Σ_j W⁺_ij x_j < B`` on their gathered inputs is returned as
NaN (the closed form) without its walk. The walk gives NaN to exactly those neurons anyway,
so the results must equal the walk's, also with neurons moved to within 1e-9·B of the drive
threshold (half of them above it, some firing early); the check must really skip the walk
when it proves a chunk; and it must refuse rows at or above the threshold and NaN inputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.simulation.engines.bounds.test_bounds import (
    brute_max_f,
    converted_layers,
    stress_inputs,
)
from tests.simulation.engines.bounds.test_drive_bf16 import exact_drive, place_biases

from onespike.simulation.engines import common
from onespike.simulation.engines.bounds.drive import drive_holds


def _walk(layer, x: torch.Tensor, drive_first: bool) -> torch.Tensor:
    index = torch.arange(x.shape[0] * layer.num_neurons)
    return common.exact_values(layer, [x], index, early_only=True, drive_first=drive_first)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(
        torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), spread=st.sampled_from([1e-9, 1e-6, 1e-2]),
       kind=st.sampled_from(["cnn", "mlp"]),
       dtype=st.sampled_from([torch.float64, torch.float32]))
def test_equal_to_the_walk_near_the_drive_threshold(seed, spread, kind, dtype) -> None:
    g = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(converted_layers(seed, kind, dtype)):
        x = stress_inputs(layer, 2, seed + i, 3.0)
        if dtype == torch.float32:
            spread = max(spread, 1e-5)  # float32 biases cannot resolve less
        place_biases(layer, exact_drive(layer, x)[0], spread, g)
        walked = _walk(layer, x, False)
        assert _same(_walk(layer, x, True), walked), (layer.name, spread)
        # the walk itself: NaN exactly where no crossing comes before t_min
        early = brute_max_f(layer, x).reshape(-1) >= 0
        assert not bool((early & torch.isnan(walked)).any())
        # every neuron of every sample just below the drive threshold (by spread·B·size):
        # the check proves whole chunks, and the walk agrees
        size = 0.5 + torch.rand(layer.out_shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            drive = exact_drive(layer, x).amax(dim=0)
            layer.bias.copy_((layer.B - drive - spread * layer.B * size).to(dtype))
        walked = _walk(layer, x, False)
        assert bool(torch.isnan(walked).all())
        assert _same(_walk(layer, x, True), walked), (layer.name, spread)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_proven_chunk_skips_its_walk(dtype, monkeypatch) -> None:
    """Biases lowered so that every neuron clears the drive condition: no first crossing is
    computed, and every value is NaN (the closed form) — as the walk would say."""
    layer = converted_layers(3, "cnn", dtype)[0]
    x = stress_inputs(layer, 2, 3, 3.0)
    with torch.no_grad():
        drive = exact_drive(layer, x).amax(dim=0)
        layer.bias.copy_((layer.B - drive - 0.01 * layer.B).to(dtype))
    walked = _walk(layer, x, False)
    assert bool(torch.isnan(walked).all())
    calls = []
    real = common.first_crossing_sorted
    monkeypatch.setattr(common, "first_crossing_sorted",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    got = _walk(layer, x, True)
    assert not calls and bool(torch.isnan(got).all())
    _walk(layer, x, False)
    assert calls  # (the walk does run without the check)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_drive_check_refuses_the_threshold_and_nan(dtype) -> None:
    layer = converted_layers(0, "mlp", dtype)[0]
    B = layer.B
    k = 8
    w = torch.full((3, k), 0.25, dtype=dtype)
    x = torch.full((3, k), 0.5, dtype=dtype)  # d = 1 exactly
    b = torch.tensor([B - 1.0, B - 1.0 - 1e-9 * B, B - 1.0 - 1e-3 * B], dtype=torch.float64)
    assert not drive_holds(layer, x[:1], w[:1], b[:1].to(dtype))  # b + d = B
    assert drive_holds(layer, x[2:], w[2:], b[2:].to(dtype))
    x_nan = x.clone()
    x_nan[2, 0] = float("nan")
    assert not drive_holds(layer, x_nan[2:], w[2:], b[2:].to(dtype))
    # negative weights do not count, whatever their inputs
    w_mixed = w.clone()
    w_mixed[2, :4] = -5.0
    assert drive_holds(layer, x[2:], w_mixed[2:], b[2:].to(dtype))
