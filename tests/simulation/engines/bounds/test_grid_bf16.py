"""The bfloat16 form of the grid certificate (its convolutions on bfloat16 maps and weights,
float32 accumulation): never certifies a neuron whose brute-force ``max f`` reaches the
threshold, even within 1e-9·B of it, on float64 and float32 networks and with perturbed
``alpha``, its sums read as maps or gathered at the needed neurons alike; its margin is
needed (a mutation without it certifies wrong neurons); it clears most of what the float32
form clears; and spike times do not depend on which form runs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from tests.helpers.bf16 import BF16_ONLY, SETTINGS
from tests.helpers.gemm import gemm_everywhere
from tests.helpers.patching import patch_package
from tests.simulation.engines.bounds.test_bounds import (
    brute_max_f,
    converted_layers,
    move_to_threshold,
    stress_inputs,
)
from tests.simulation.engines.bounds.test_drive_bf16 import (
    MULTI_EDGE,
    assert_same_run,
    multi_edge_inputs,
    multi_edge_layers,
    random_cnn_case,
    resolvable,
)
from tests.simulation.engines.bounds.test_grid_patches import brute_max_f as grid_brute_max_f
from tests.simulation.engines.bounds.test_grid_patches import grid_form, stress_edges

from onespike.network.population import SpikingLayer
from onespike.simulation.engines import bounds, common
from onespike.simulation.engines.bounds.grid import _wx_pays
from onespike.simulation.engines.bounds.grid_bf16 import (
    _grid_abs_bf16,
    _grid_sums_bf16,
    _grid_weights_bf16,
)
from onespike.simulation.engines.bounds.inputs import _scale_term
from onespike.simulation.engines.bounds.precision import _bf16, _f32, _nchw64
from onespike.simulation.engines.bounds.reads import Reads

pytestmark = BF16_ONLY


def conv_layers(seed: int, dtype: torch.dtype = torch.float64) -> list[SpikingLayer]:
    """The layers of a random CNN where the bfloat16 form runs (convolution edges)."""
    return [ly for ly in converted_layers(seed, "cnn", dtype)
            if bounds.bf16_drive_available(ly, torch.device("cpu"))]


def breakpoints(layer: SpikingLayer, x: torch.Tensor) -> list[float]:
    """Grid points on (up to 64 of) the first sample's inputs: there ``f`` is evaluated
    exactly up to rounding, with no tent, so only the rounding margin separates a hair-thin
    early spike from a proof."""
    return sorted({_f32(float(v)) for v in x[0].reshape(-1)
                   if 0 < float(v) < layer.B_in})[:64]


def grid_bf16(layer: SpikingLayer, x: torch.Tensor, z: torch.Tensor, **kw) -> torch.Tensor:
    return bounds.certify_grid(layer, x, z, precision="bfloat16", **kw)


@SETTINGS
@given(seed=st.integers(0, 10_000), spread=st.sampled_from([1e-9, 1e-6, 1e-4, 1e-2]),
       dtype=st.sampled_from([torch.float64, torch.float32]), data=st.data())
def test_bf16_grid_never_certifies_a_neuron_that_fires_early(
        seed: int, spread: float, dtype: torch.dtype, data) -> None:
    """Biases moved so that the first sample's neurons peak within ±spread·B of the
    threshold (half of them fire early by a hair), with the default grid, an empty one,
    random points and the first sample's breakpoints (where ``max f`` is a bfloat16 sum)."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.float32:
        spread = max(spread, 1e-5)  # float32 biases cannot resolve less
    layers = conv_layers(seed, dtype)
    assume(layers)
    for i, layer in enumerate(layers):
        x = stress_inputs(layer, 3, seed + i, data.draw(st.sampled_from([1.0, 3.0, 8.0])))
        with torch.no_grad():
            move_to_threshold(layer, brute_max_f(layer, x)[0], spread, g, dtype)
        z = layer.affine(x)
        truth = brute_max_f(layer, x)
        assert bool((truth[0] >= 0).any())
        raw = data.draw(st.lists(st.floats(0.001, 0.999), max_size=6))
        for grid in (None, [], sorted({_f32(layer.B_in * r) for r in raw}),
                     breakpoints(layer, x)):
            ok = grid_bf16(layer, x, z, grid=grid)
            assert not bool((ok & (truth >= 0)).any()), (layer.name, grid)
            # a random third of the neurons: their sums gathered are the maps' very values
            need = torch.rand(z.shape, generator=g) < 0.33
            with grid_form("conv"):
                maps = grid_bf16(layer, x, z, grid=grid, need=need)
            with grid_form("gathered"):
                gathered = grid_bf16(layer, x, z, grid=grid, need=need)
            assert torch.equal(gathered, maps & need), (layer.name, grid)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(4))
def test_bf16_grid_is_sound_in_the_gemm_form(seed: int, dtype: torch.dtype,
                                            monkeypatch) -> None:
    """The test above (spread 1e-5·B, the default grid and the breakpoints) with every
    convolution run as a matrix product over its patches."""
    calls = gemm_everywhere(monkeypatch)
    g = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(conv_layers(seed, dtype)):
        x = stress_inputs(layer, 3, seed + i, 3.0)
        with torch.no_grad():
            move_to_threshold(layer, brute_max_f(layer, x)[0], 1e-5, g, dtype)
        z = layer.affine(x)
        truth = brute_max_f(layer, x)
        assert bool((truth[0] >= 0).any())
        gemm = all(a.prefers_gemm for a in layer.synapses.affines)  # not grouped ones
        for grid in (None, breakpoints(layer, x)):
            before = len(calls)
            ok = grid_bf16(layer, x, z, grid=grid)
            assert (len(calls) > before) == gemm
            assert not bool((ok & (truth >= 0)).any()), (layer.name, grid)
    assert calls


@SETTINGS
@given(seed=st.integers(0, 10_000), sigma=st.sampled_from([0.01, 0.2]))
def test_bf16_grid_is_sound_with_perturbed_alpha(seed: int, sigma: float) -> None:
    g = torch.Generator().manual_seed(seed)
    layers = conv_layers(seed)
    assume(layers)
    for i, layer in enumerate(layers):
        x = stress_inputs(layer, 4, seed + i, 3.0)
        gain = 1.0 + sigma * torch.randn(layer.out_shape, generator=g, dtype=torch.float64)
        bias, leak = common._perturbed(layer.bias, layer.S, gain, layer.B_in)
        z = layer.affine.linear(x) + bias
        ok = grid_bf16(layer, x, z, bias=bias, leak=leak)
        assert not bool((ok & (brute_max_f(layer, x, bias, leak) >= 0)).any())


def _no_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: the bfloat16 sums taken at face value (no rounding allowance at all)."""
    patch_package(monkeypatch, bounds, "_UB", 0.0)
    real = _grid_weights_bf16

    def exact_weights(layer: SpikingLayer) -> dict:
        w = dict(real(layer))
        w["lo"] = torch.zeros_like(w["lo"])
        w["hat"] = torch.zeros_like(w["hat"])
        w["neg"] = [(-v).clamp_min(0).to(torch.bfloat16) for v in layer.synapses.weights]
        return w

    patch_package(monkeypatch, bounds, "_grid_weights_bf16", exact_weights)
    patch_package(monkeypatch, bounds, "_gamma", lambda n, unit: 0.0)


@pytest.mark.parametrize("gemm", [False, True])
def test_bf16_grid_margin_is_needed(gemm: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its rounding allowance the bfloat16 form certifies neurons whose brute-force
    maximum exceeds the threshold by 1e-4·B (with it, none: the tests above), also in the
    matrix-product form."""
    g = torch.Generator().manual_seed(0)
    _no_margin(monkeypatch)
    if gemm:
        gemm_everywhere(monkeypatch)
    wrong = 0
    for seed in range(12):
        for i, layer in enumerate(conv_layers(seed)):
            x = stress_inputs(layer, 3, seed + i, 3.0)
            with torch.no_grad():
                move_to_threshold(layer, brute_max_f(layer, x)[0], 1e-4, g, torch.float64)
            z = layer.affine(x)
            truth = brute_max_f(layer, x)
            ok = grid_bf16(layer, x, z, grid=breakpoints(layer, x))
            wrong += int((ok & (truth >= 0)).sum())
    assert wrong > 0


@pytest.mark.parametrize("seed", range(4))
def test_bf16_grid_clears_most_of_what_float32_clears(seed: int) -> None:
    """Neurons 10 % of B below the threshold: the bfloat16 form's wider margin (about 2⁻⁶ of
    Σ|W|·max map) loses few of the float32 form's proofs."""
    g = torch.Generator().manual_seed(seed)
    both = f32 = 0
    for i, layer in enumerate(conv_layers(seed)):
        x = stress_inputs(layer, 3, seed + i, 3.0)
        with torch.no_grad():
            move_to_threshold(layer, brute_max_f(layer, x)[0], 0.1, g, torch.float64)
        z = layer.affine(x)
        ok32 = bounds.certify_grid(layer, x, z)
        ok16 = grid_bf16(layer, x, z)
        f32 += int(ok32.sum())
        both += int((ok32 & ok16).sum())
    assert f32 > 0
    assert both >= 0.8 * f32


@pytest.mark.parametrize("seed", range(3))
def test_spike_times_do_not_depend_on_the_grid_precision(seed: int, monkeypatch) -> None:
    snn, x = random_cnn_case(seed)
    monkeypatch.setattr(common, "GRID_MIN_ELEMENTS", 0)
    runs = []
    for precision in ("bfloat16", "float32"):
        monkeypatch.setattr(common, "GRID_STAGES", ((bounds.GRID_QUANTILES, precision),))
        runs.append(snn.simulate(x))
    assert_same_run(*runs)


def test_precision_is_checked() -> None:
    layer = conv_layers(0)[0]
    x = stress_inputs(layer, 2, 0, 1.0)
    with pytest.raises(ValueError, match="precision"):
        bounds.certify_grid(layer, x, layer.affine(x), precision="float16")


@pytest.mark.parametrize("seed", range(3))
def test_bf16_maps_are_the_rounded_float32_maps(seed: int) -> None:
    """``min(x̂, ĉ)`` on the inputs rounded to bfloat16 once is bit for bit ``min(x, c)``
    rounded (rounding is monotone): grid points at inputs, at bfloat16 ties and at random."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(50_000, generator=g) * 7.0).float()
    ties = x[:1000].to(torch.bfloat16).float() * (1.0 + 2.0**-9)  # halfway, roughly
    x = torch.cat([x, ties])
    xb = x.to(torch.bfloat16)
    for c in [float(x[7]), float(ties[3]), float(ties[11]), 1e-30, 6.999, *torch.rand(
            20, generator=g).mul(7.0).tolist()]:
        c = _f32(c)
        assert torch.equal(xb.clamp_max(_bf16(c)), x.clamp_max(c).to(torch.bfloat16))


@pytest.mark.parametrize("fraction", [0.0, float("inf")])
@pytest.mark.parametrize("seed", range(3))
def test_bf16_grid_on_float32_networks_is_sound_with_either_bound_of_z(
        seed: int, fraction: float, monkeypatch) -> None:
    """The rounding of a float32 ``z`` bounded with the computed ``Σ|W|x`` (fraction 0) or
    the crude ``A·u_end`` (fraction ∞): sound either way, within 1e-5·B of the threshold."""
    patch_package(monkeypatch, bounds, "WX_CRUDE_FRACTION", fraction)
    g = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(conv_layers(seed, torch.float32)):
        x = stress_inputs(layer, 3, seed + i, 3.0)
        with torch.no_grad():
            move_to_threshold(layer, brute_max_f(layer, x)[0], 1e-5, g, torch.float32)
        z = layer.affine(x)
        pts = bounds.grid_points(x, layer.B_in)
        assert _wx_pays(layer, z, pts, layer.B_in) == (fraction == 0.0)
        truth = brute_max_f(layer, x)
        ok = grid_bf16(layer, x, z)
        assert not bool((ok & (truth >= 0)).any()), layer.name


def test_float64_networks_never_compute_the_sum_for_z() -> None:
    layer = conv_layers(0)[0]
    x = stress_inputs(layer, 2, 0, 1.0)
    assert not _wx_pays(layer, layer.affine(x), [1e-9], layer.B_in)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spread", [1e-9, 1e-4])
@pytest.mark.parametrize("name", MULTI_EDGE)
def test_bf16_grid_is_sound_on_multi_edge_populations(name: str, spread: float,
                                                       dtype: torch.dtype) -> None:
    """Residual sums, downsampling and identity shortcuts (summed in float32 from their float32
    inputs), inverted residuals, concatenations: biases moved so that the first sample's
    neurons peak within ±spread·B of the threshold; the default grid and the median alone."""
    spread = resolvable(spread, dtype)
    g = torch.Generator().manual_seed(5)
    for layer, xs in multi_edge_inputs(name, 2, 31, dtype):
        with torch.no_grad():
            move_to_threshold(layer, grid_brute_max_f(layer, xs)[0], spread, g, dtype)
        z = layer.z(xs)
        truth = grid_brute_max_f(layer, xs)
        assert bool((truth[0] >= 0).any())
        need = torch.ones(z.shape, dtype=torch.bool)
        third = torch.rand(z.shape, generator=g) < 0.33
        for grid in (None, bounds.grid_points(xs, layer.B_in, (0.5,))):
            ok = bounds.certify_grid(layer, xs, z, grid=grid, need=need, precision="bfloat16")
            assert not bool((ok & (truth >= 0)).any()), (name, layer.name, grid)
            # a third of the neurons, their sums read as maps or gathered: the same verdicts
            with grid_form("conv"):
                maps = bounds.certify_grid(layer, xs, z, grid=grid, need=third,
                                           precision="bfloat16")
            with grid_form("gathered"):
                gathered = bounds.certify_grid(layer, xs, z, grid=grid, need=third,
                                               precision="bfloat16")
            assert torch.equal(gathered, maps & third), (name, layer.name, grid)
            assert not bool((gathered & (truth >= 0)).any()), (name, layer.name, grid)


def test_bf16_grid_sums_count_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bfloat16 stage's running maximum over its grid points, ``low ≥ max_c (f(c) − (z −
    B)) = max_c (−(1 − S)·c − Σ_e Σ_j W_ij min(x_j, c))``, checked against float64 sums on
    populations with an identity shortcut (its term summed in float32): sound, and within
    the stage's allowance; with the shortcut's term counted twice (a mutation) it is not."""
    cases = []
    for name in ("bottleneck_identity", "resnet_basic"):
        for i, layer in enumerate(multi_edge_layers(name, 4, torch.float64)):
            if not any(a.is_channel_scale for a in layer.synapses.affines):
                continue
            xs = stress_edges(layer, 3, 41 + i, 2.0, torch.float64)
            x_max = max(float(x.max()) for x in xs)
            pts = bounds.grid_points(xs, layer.B_in)
            lk = (1.0 - layer.S).double()
            ref = None
            for c in (c for c in pts if c < x_max):
                f_c = -lk * c - layer.synapses.linear(
                    [x.clamp(max=c) for x in xs], [w.double() for w in layer.synapses.weights])
                ref = f_c if ref is None else torch.maximum(ref, f_c)
            cases.append((layer, xs, pts, x_max, lk, ref))
    assert cases

    def lows() -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        out = []
        for layer, xs, pts, x_max, lk, ref in cases:
            knots = sorted({0.0, *pts, x_max})
            low, _, _, _ = _grid_sums_bf16(
                layer, layer.synapses, bounds.InputMaps(xs), None, Reads(), pts, knots, x_max,
                max(layer.B_in, x_max), lk, need_wx=False)
            a = layer.synapses.channel_abs_sum().reshape(-1, 1, 1)
            out.append((_nchw64(low), ref, a * x_max))
        return out

    for low, ref, scale in lows():
        assert bool((low >= ref).all())
        assert bool((low - ref <= 2.0**-5 * scale).all())
    real = _scale_term
    patch_package(monkeypatch, bounds, "_scale_term",
                        lambda a, x32, w: (real(a, x32, w)[0], 2.0 * real(a, x32, w)[1]))
    assert any(bool((low < ref).any()) for low, ref, _ in lows())


@pytest.mark.parametrize("seed", [0, 1])
def test_grid_weight_copies(seed: int) -> None:
    """The cached bfloat16 weights: ``|W|`` rounded up (its own cache, for float32 networks'
    ``Σ|W|x``) is the smallest bfloat16 ≥ ``|W|``; ``wmax`` is its largest entry; the shared
    cache holds no ``|W|`` copy, so a float64 network never makes one."""
    for layer in conv_layers(seed):
        w = layer.synapses.weights[0]
        cached = _grid_weights_bf16(layer)
        assert "abs" not in cached and "grid_bf16_abs" not in layer._derived
        (mag,) = _grid_abs_bf16(layer)
        m = mag.to(torch.float64)
        assert bool((m >= w.abs()).all())
        below = torch.nextafter(mag, torch.zeros_like(mag)).to(torch.float64)
        assert bool(((below < w.abs()) | (mag == 0)).all())  # the smallest such bfloat16
        assert cached["wmax"] == float(m.max())
