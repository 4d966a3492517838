"""The bfloat16 form of the drive certificate (``b + Σ_j W⁺_ij x_j < B`` summed from bfloat16
inputs and weights with float32 accumulation): never certifies a neuron whose exact drive
reaches the threshold, even within 1e-9·B of it; its margin is needed (a mutation without it
certifies wrong neurons); it stays tight; and spike times do not depend on which form runs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from tests.helpers.bf16 import BF16_ONLY, SETTINGS
from tests.helpers.gemm import gemm_everywhere
from tests.helpers.nets import random_cnn
from tests.helpers.patching import patch_package
from tests.simulation.engines.bounds.test_bounds import (
    converted_layers,
    move_to_threshold,
    stress_inputs,
)
from tests.simulation.engines.bounds.test_grid_patches import converted, stress_edges

import onespike
from onespike.network.population import Population, SpikingLayer
from onespike.simulation.engines import bounds
from onespike.simulation.engines.bounds.drive import _drive_threshold_bf16, int16_threshold
from onespike.simulation.synapses import Synapses

pytestmark = BF16_ONLY


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
    patch_package(monkeypatch, bounds, "_drive_threshold_bf16",
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
    patch_package(monkeypatch, bounds, "BF16_DRIVE", False)
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
        t0 = _drive_threshold_bf16(layer).double()
        layer.bias = (b0 + 1.0).to(dtype)
        f = float((t0 - _drive_threshold_bf16(layer).double()).mean())
        d0 = drive[0]
        half = (torch.nextafter(d0, torch.full_like(d0, float("inf"))).double()
                - d0.double()) / 2
        step = torch.randint(-1, 2, d0.shape, generator=g).to(torch.float64)
        layer.bias = (b0 + (t0 - (d0.double() + step * half)) / f).to(dtype)
        want = drive < _drive_threshold_bf16(layer)
        got = bounds.certify_drive(layer, x)
        assert got.is_contiguous() and torch.equal(got, want), layer.name
        assert bool(want[0].any()) and not bool(want[0].all())


# DAG models whose populations have several edges, identity shortcuts (per-channel scale
# edges) among them
MULTI_EDGE = ["bottleneck_identity", "resnet_basic", "basic_block_downsample",
              "inverted_residual", "sum3", "densenet"]


def multi_edge_layers(name: str, seed: int, dtype: torch.dtype) -> list[Population]:
    snn, _ = converted(name, seed, dtype)
    return [ly for ly in snn.hidden_layers if len(ly.synapses.affines) > 1
            and bounds.bf16_drive_available(ly, torch.device("cpu"))]


def multi_edge_inputs(name: str, model_seed: int, input_seed: int, dtype: torch.dtype
                      ) -> list[tuple[Population, list[torch.Tensor]]]:
    """The multi-edge populations of a DAG model with stress inputs per edge."""
    layers = multi_edge_layers(name, model_seed, dtype)
    assert layers
    return [(ly, stress_edges(ly, 3, input_seed + i, 2.0, dtype)) for i, ly in enumerate(layers)]


def resolvable(spread: float, dtype: torch.dtype) -> float:
    """The spread around the threshold that biases of ``dtype`` can resolve."""
    return max(spread, 1e-5) if dtype == torch.float32 else spread


def exact_multi_drive(layer: Population, xs: list[torch.Tensor]) -> torch.Tensor:
    """``Σ_e Σ_j W⁺_e,ij x_j`` in float64 over every edge."""
    return layer.synapses.linear([x.double() for x in xs],
                                 [w.double().clamp_min(0) for w in layer.synapses.weights])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spread", [1e-9, 1e-4])
@pytest.mark.parametrize("name", MULTI_EDGE)
def test_multi_edge_drive_never_certifies_a_neuron_at_or_above_threshold(
        name: str, spread: float, dtype: torch.dtype) -> None:
    """Several edges, identity shortcuts summed in float32 from their inputs' float32
    copies: biases moved so that the first sample's exact drive sits within ±spread·B of
    the threshold (half of them at or above it)."""
    spread = resolvable(spread, dtype)
    g = torch.Generator().manual_seed(7)
    for layer, xs in multi_edge_inputs(name, 3, 11, dtype):
        drive = exact_multi_drive(layer, xs)
        with torch.no_grad():
            move_to_threshold(layer, layer.bias.double() + drive[0] - layer.B, spread, g, dtype)
        truth = layer.bias.double() + drive >= layer.B
        assert bool(truth[0].any())
        ok = bounds.certify_drive(layer, xs)
        assert not bool((ok & truth).any()), (name, layer.name)


def test_multi_edge_drive_counts_the_shortcut_and_stays_tight(monkeypatch) -> None:
    """The identity shortcut's term is in the sum: without it (a mutation) neurons whose
    exact drive reaches the threshold are certified; and every neuron whose drive clears
    the threshold by 2 % of it is certified."""
    g = torch.Generator().manual_seed(3)
    layers = [ly for name in ("bottleneck_identity", "resnet_basic")
              for ly in multi_edge_layers(name, 5, torch.float64)
              if any(a.is_channel_scale for a in ly.synapses.affines)]
    assert layers
    cases = []
    for i, layer in enumerate(layers):
        xs = stress_edges(layer, 3, 21 + i, 2.0, torch.float64)
        drive = exact_multi_drive(layer, xs)
        with torch.no_grad():
            move_to_threshold(layer, layer.bias.double() + drive[0] - layer.B, 0.1, g,
                              torch.float64)
        gap = layer.B - layer.bias.double() - drive
        clear = gap > 0.02 * drive + 1e-12
        ok = bounds.certify_drive(layer, xs)
        assert bool(clear.any()) and bool(ok[clear].all()), layer.name
        cases.append((layer, xs, gap <= 0))
    # the mutant sums the edges without groups only: the depthwise shortcut is left out
    patch_package(monkeypatch, bounds, "_drive_sum_bf16", lambda syn, weights, maps: Synapses(
        [a for a in syn.affines if a.groups == 1]).linear(
        [x for a, x in zip(syn.affines, maps.bf16()) if a.groups == 1],
        [w for a, w in zip(syn.affines, weights) if a.groups == 1], out_dtype=torch.float32))
    wrong = sum(int((bounds.certify_drive(layer, xs) & above).sum())
                for layer, xs, above in cases)
    assert wrong > 0


def test_int16_threshold_decides_as_the_bfloat16_comparison() -> None:
    """Every bfloat16 drive (all 65,536 bit patterns) against thresholds of every kind (±0,
    negative, subnormal, normal, the largest finite, +inf, NaN): where the drive's sign
    bit is clear, ``bits(d̂) < int16_threshold(t)`` is exactly ``d̂ < t``; where it is set,
    it is never true unless ``d̂ < t`` — a NaN with its sign bit set aside (see
    :func:`~onespike.simulation.engines.bounds.drive.int16_threshold`)."""
    d = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    tiny = torch.tensor(1e-40).to(torch.bfloat16)  # subnormal
    t = torch.tensor([0.0, -0.0, -1.0, -3e38, 1e-38, 0.5, 1.0, 7.25, 3e38, float("inf"),
                      float("nan")]).to(torch.bfloat16)
    t = torch.cat([t, tiny.reshape(1), -tiny.reshape(1),
                   torch.nextafter(t[6:7], torch.tensor([2.0]).to(torch.bfloat16))])
    bits = int16_threshold(t)
    got = d.view(torch.int16)[:, None] < bits[None, :]
    want = d[:, None] < t[None, :]
    sign = (d.view(torch.int16) < 0)[:, None].expand_as(got)
    nan = torch.isnan(d)[:, None].expand_as(got)
    assert torch.equal(got[~sign], want[~sign])
    assert not bool((got & ~want & sign & ~nan).any())
    assert bool((got & ~want & sign & nan).any())  # the set-aside case exists (why it is named)
    # the mutation this guards against: bit patterns of t ≤ 0 kept as they are
    raw = d.view(torch.int16)[:, None] < t.view(torch.int16)[None, :]
    assert not torch.equal(raw[~sign], want[~sign]) or bool((raw & ~want & sign & ~nan).any())


@pytest.mark.parametrize(("instructions", "emulated", "enabled", "want"), [
    (True, False, True, True), (False, False, True, False), (False, True, True, True),
    (True, False, False, False)])
def test_bfloat16_forms_need_bfloat16_instructions_unless_emulation_is_allowed(
        instructions: bool, emulated: bool, enabled: bool, want: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The certificates sum in bfloat16 only on CPUs with bfloat16 instructions (oneDNN's own
    check also accepts plain AVX-512, where it emulates them, more slowly than float32), or
    with ``BF16_EMULATED``; never with ``BF16_DRIVE`` off, on Linear edges, or off the CPU."""
    from onespike.simulation.engines.bounds import drive

    monkeypatch.setattr(drive, "_bf16_instructions", lambda: instructions)
    monkeypatch.setattr(drive, "BF16_EMULATED", emulated)
    monkeypatch.setattr(drive, "BF16_DRIVE", enabled)
    layers = converted_layers(0, "cnn", torch.float64)
    convs = [ly for ly in layers if all(a.kind == "conv" for a in ly.synapses.affines)]
    linears = [ly for ly in layers if any(a.kind == "linear" for a in ly.synapses.affines)]
    assert convs and linears
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert all(bounds.bf16_drive_available(ly, cpu) is want for ly in convs)
    assert not any(bounds.bf16_drive_available(ly, cpu) for ly in linears)
    assert not any(bounds.bf16_drive_available(ly, meta) for ly in convs)
