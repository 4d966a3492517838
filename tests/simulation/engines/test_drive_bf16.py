"""The bfloat16 form of the drive certificate (``b + Σ_j W⁺_ij x_j < B`` summed from bfloat16
inputs and weights with float32 accumulation): never certifies a neuron whose exact drive
reaches the threshold, even within 1e-9·B of it; its margin is needed (a mutation without it
certifies wrong neurons); it stays tight; and spike times do not depend on which form runs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.helpers.gemm import gemm_everywhere
from tests.helpers.nets import random_cnn
from tests.simulation.engines.test_bounds import converted_layers, move_to_threshold, stress_inputs

import onespike
from onespike.network.population import SpikingLayer
from onespike.simulation.engines import bounds

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

pytestmark = pytest.mark.skipif(not bounds._bf16_conv_native(),
                                reason="no native bfloat16 convolutions on this CPU")


def conv_layers(seed: int, dtype: torch.dtype) -> list[SpikingLayer]:
    return [ly for ly in converted_layers(seed, "cnn", dtype)
            if bounds.bf16_drive_available(ly, torch.device("cpu"))]


def exact_drive(layer: SpikingLayer, x: torch.Tensor) -> torch.Tensor:
    """``Σ_j W⁺_ij x_j`` in float64 (its rounding, ~1e-16 relative, is far below the gaps the
    tests resolve)."""
    aff = layer.affine
    return aff.linear(x.double().clamp_min(0), aff.weight.double().clamp_min(0))


def place_biases(layer: SpikingLayer, drive0: torch.Tensor, spread: float,
                 g: torch.Generator) -> None:
    """Biases with ``b + drive(sample 0) ≈ B ± spread·B·size`` (signs alternating): the
    drive condition's margin ``b + drive − B`` moved to the threshold like ``max f`` in
    :func:`move_to_threshold`."""
    with torch.no_grad():
        move_to_threshold(layer, layer.bias.double() + drive0 - layer.B, spread, g,
                          layer.bias.dtype)


@SETTINGS
@given(seed=st.integers(0, 10_000), spread=st.sampled_from([1e-9, 1e-6, 1e-4, 1e-2]),
       dtype=st.sampled_from([torch.float64, torch.float32]))
def test_bf16_drive_never_certifies_a_neuron_at_or_above_threshold(
        seed: int, spread: float, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(seed)
    layers = conv_layers(seed, dtype)
    assume(layers)
    for i, layer in enumerate(layers):
        x = stress_inputs(layer, 3, seed + i, 3.0)
        place_biases(layer, exact_drive(layer, x)[0], spread, g)
        truth = layer.bias.double() + exact_drive(layer, x) >= layer.B
        assert bool(truth[0].any())  # half the first sample's neurons sit at/above it
        ok = bounds.certify_drive(layer, x)
        assert not bool((ok & truth).any()), (layer.name, spread)


@pytest.mark.parametrize("spread", [1e-9, 1e-4])
@pytest.mark.parametrize("seed", range(4))
def test_bf16_drive_is_sound_in_the_gemm_form(seed: int, spread: float, monkeypatch) -> None:
    """The test above with every convolution run as a matrix product over its patches."""
    calls = gemm_everywhere(monkeypatch)
    g = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(conv_layers(seed, torch.float64)):
        x = stress_inputs(layer, 3, seed + i, 3.0)
        place_biases(layer, exact_drive(layer, x)[0], spread, g)
        truth = layer.bias.double() + exact_drive(layer, x) >= layer.B
        assert bool(truth[0].any())
        before = len(calls)
        ok = bounds.certify_drive(layer, x)
        # the drive ran as a matrix product (grouped convolutions keep theirs)
        assert (len(calls) > before) == all(a.prefers_gemm for a in layer.synapses.affines)
        assert not bool((ok & truth).any()), (layer.name, spread)
    assert calls


@pytest.mark.parametrize("gemm", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_bf16_drive_margin_is_needed(seed: int, gemm: bool, monkeypatch) -> None:
    """Mutation: weights rounded to nearest (not up) and the bfloat16 sums compared with the
    float32 threshold of the exact condition (no rounding margin) certify neurons whose exact
    drive exceeds the threshold by 1e-4·B."""
    g = torch.Generator().manual_seed(seed)
    layers = conv_layers(seed, torch.float64)
    assert layers
    if gemm:
        gemm_everywhere(monkeypatch)
    monkeypatch.setattr(bounds, "_drive_threshold_bf16",
                        lambda ly, bias=None: (ly.B - ly.bias).to(torch.float32))
    monkeypatch.setattr(SpikingLayer, "positive_weight_bf16", lambda ly: [
        ly.edge_weight(i).clamp_min(0).to(torch.bfloat16) for i in range(len(ly.edges))])
    wrong = 0
    for i, layer in enumerate(layers):
        x = stress_inputs(layer, 3, seed + i, 3.0)
        place_biases(layer, exact_drive(layer, x)[0], 1e-4, g)
        truth = layer.bias.double() + exact_drive(layer, x) >= layer.B
        wrong += int((bounds.certify_drive(layer, x) & truth).sum())
    assert wrong > 0


@pytest.mark.parametrize("seed", range(4))
def test_bf16_drive_is_tight(seed: int) -> None:
    """Every neuron whose drive clears the threshold by more than 2 % of the drive (the
    form's rounding allowance is below 1.6 %) is certified."""
    g = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(conv_layers(seed, torch.float64)):
        x = stress_inputs(layer, 3, seed + i, 3.0)
        drive = exact_drive(layer, x)
        place_biases(layer, drive[0], 0.1, g)
        gap = layer.B - layer.bias.double() - drive
        clear = gap > 0.02 * drive + 1e-12
        ok = bounds.certify_drive(layer, x)
        assert bool(clear.any())
        assert bool(ok[clear].all()), layer.name


def random_cnn_case(seed: int) -> tuple[onespike.SpikingNetwork, torch.Tensor]:
    """A converted :func:`random_cnn` and 16 inputs to simulate."""
    model, shape = random_cnn(seed, 2)
    g = torch.Generator().manual_seed(seed)
    snn = onespike.convert(model, torch.rand(64, *shape, generator=g), progress=False)
    return snn, torch.rand(16, *shape, generator=g)


def assert_same_run(a: onespike.SimulationResult, b: onespike.SimulationResult) -> None:
    """Bit-identical output and spike times, same early counts."""
    assert torch.equal(a.output, b.output)
    for ta, tb in zip(a.spike_times, b.spike_times):
        assert torch.equal(ta, tb)
    assert a.certificate.early == b.certificate.early


@pytest.mark.parametrize("seed", range(3))
def test_spike_times_do_not_depend_on_the_drive_form(seed: int, monkeypatch) -> None:
    snn, x = random_cnn_case(seed)
    fast = snn.simulate(x)
    monkeypatch.setattr(bounds, "BF16_DRIVE", False)
    assert_same_run(fast, snn.simulate(x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_one_edge_comparison_in_bfloat16_decides_as_in_float32(seed: int,
                                                                dtype: torch.dtype) -> None:
    """The one-edge drive is compared in bfloat16 with the threshold rounded up, on the
    convolution's channels-last result: the same decisions as comparing its NCHW copy with
    the float32 threshold, neurons placed on the threshold's bfloat16 neighbours included."""
    g = torch.Generator().manual_seed(seed)
    layers = [ly for ly in conv_layers(seed, dtype) if len(ly.synapses.affines) == 1]
    assert layers
    for i, layer in enumerate(layers):
        x = stress_inputs(layer, 3, seed + i, 3.0)
        maps = bounds.InputMaps([x])
        drive = layer.synapses.linear(maps.bf16(), layer.positive_weight_bf16())
        assert drive.dtype == torch.bfloat16 and drive.is_contiguous()
        # biases that put the float32 threshold T at the first sample's drives, or half a
        # bfloat16 step above or below them (T falls by f per unit of bias)
        b0 = layer.bias.double()
        t0 = bounds._drive_threshold_bf16(layer).double()
        layer.bias = (b0 + 1.0).to(dtype)
        f = float((t0 - bounds._drive_threshold_bf16(layer).double()).mean())
        d0 = drive[0]
        half = (torch.nextafter(d0, torch.full_like(d0, float("inf"))).double()
                - d0.double()) / 2
        step = torch.randint(-1, 2, d0.shape, generator=g).to(torch.float64)
        layer.bias = (b0 + (t0 - (d0.double() + step * half)) / f).to(dtype)
        want = drive < bounds._drive_threshold_bf16(layer)
        got = bounds.certify_drive(layer, x)
        assert got.is_contiguous() and torch.equal(got, want), layer.name
        assert bool(want[0].any()) and not bool(want[0].all())
