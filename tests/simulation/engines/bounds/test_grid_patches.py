"""The grid certificate on populations with several edges and grouped convolutions, in each
of its forms — convolutions over the selected output channels (their sums read as maps, or
gathered at the needed neurons), and the sums over the gathered input patches of the needed
neurons — against a brute-force maximum of f over every
breakpoint; the channel selection of grouped edges; the identity-shortcut fast path; and the
event engine's spike times, which must not depend on which form or stage proves a neuron, nor
on the chunk size."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.dag_nets import ZOO
from tests.helpers.nets import random_cnn
from tests.helpers.patching import patch_package
from tests.simulation.engines.bounds.test_bounds import move_to_threshold

import onespike
from onespike.network.population import Population
from onespike.simulation import synapses
from onespike.simulation.affine import Affine
from onespike.simulation.engines import bounds, common
from onespike.simulation.engines.bounds import grid as bounds_grid

SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# DAG models with multi-edge populations, identity shortcuts (depthwise 1×1 edges), grouped
# and depthwise convolutions, concatenations
MODELS = ["bottleneck_identity", "basic_block_downsample", "resnet_basic", "mobilenet_v2",
          "inverted_residual", "densenet", "inception", "sum3"]
# (PATCH_COST, GATHER_FRACTION) forcing each form: convolutions with their sums read as maps
# or gathered at the needed neurons, or the needed neurons' input patches
FORMS = {"conv": (float("inf"), 0.0), "gathered": (float("inf"), float("inf")),
         "patch": (0.0, 0.0)}


@contextlib.contextmanager
def grid_form(form: str) -> Iterator[None]:
    """The grid bound in the form ``form`` (:data:`FORMS`) inside the block."""
    old = bounds_grid.PATCH_COST, bounds_grid.GATHER_FRACTION
    bounds_grid.PATCH_COST, bounds_grid.GATHER_FRACTION = FORMS[form]
    try:
        yield
    finally:
        bounds_grid.PATCH_COST, bounds_grid.GATHER_FRACTION = old


def set_grid_form(monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    """The grid bound in the form ``form`` (:data:`FORMS`) for the rest of the test."""
    cost, fraction = FORMS[form]
    patch_package(monkeypatch, bounds, "PATCH_COST", cost)
    patch_package(monkeypatch, bounds, "GATHER_FRACTION", fraction)


def brute_max_f(layer: Population, xs: list[torch.Tensor], bias: torch.Tensor | None = None,
                leak: torch.Tensor | None = None) -> torch.Tensor:
    """``max_{u ∈ [0, B_in]} f(u)`` per neuron over every edge, ``f(u) = b + Σ_j W_ij (x_j −
    u)⁺ − leak·u − B`` evaluated at every breakpoint, in float64, straight from the
    definition."""
    bsz = xs[0].shape[0]
    m = bsz * layer.num_neurons
    vals, ws = layer.synapses.gather(xs, torch.arange(m))
    vals, ws = vals.double(), ws.double()
    b = (layer.bias if bias is None else bias).double().reshape(-1).repeat(bsz)
    lk = ((1.0 - layer.S) if leak is None else leak).double().reshape(-1).repeat(bsz)
    out = torch.empty(m, dtype=torch.float64)
    for s in range(0, m, 256):  # bounded memory
        v, w = vals[s : s + 256], ws[s : s + 256]
        u = torch.cat([v.new_zeros(v.shape[0], 1), v, v.new_full((v.shape[0], 1), layer.B_in)],
                      dim=1)
        f = (b[s : s + 256, None] + (w[:, None, :] * (v[:, None, :] - u[:, :, None])
                                     .clamp_min(0)).sum(-1)
             - lk[s : s + 256, None] * u - layer.B)
        out[s : s + 256] = f.amax(dim=1)
    return out.reshape(bsz, *layer.out_shape)


def converted(name: str, seed: int, dtype: torch.dtype = torch.float64
              ) -> tuple[onespike.SpikingNetwork, torch.Tensor]:
    torch.manual_seed(seed)
    model, shape = ZOO[name]()
    x = torch.rand(12, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return onespike.convert(model.to(dtype), x.to(dtype), progress=False, dtype=dtype), x


def stress_edges(layer: Population, n: int, seed: int, skew: float,
                 dtype: torch.dtype) -> list[torch.Tensor]:
    """Inputs in [0, B_in] per edge: half zeros, the rest skewed towards small values, a few
    exactly B_in."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for e in layer.edges:
        shape = (n, *e.in_shape)
        x = layer.B_in * torch.rand(shape, generator=g, dtype=torch.float64) ** skew
        x = x * (torch.rand(shape, generator=g, dtype=torch.float64) > 0.5)
        x = torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < 0.01,
                        torch.full_like(x, layer.B_in), x)
        out.append(x.to(dtype).clamp_(max=layer.B_in))
    return out


def needs(layer: Population, n: int, seed: int) -> list[torch.Tensor]:
    """Needed-neuron maps: every neuron, a random third, and a few neurons in one channel."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, *layer.out_shape)
    few = torch.zeros(shape, dtype=torch.bool)
    few.view(n, layer.out_shape[0], -1)[:, 0, :1] = True
    return [torch.ones(shape, dtype=torch.bool), torch.rand(shape, generator=g) < 0.33, few]


@SETTINGS
@given(seed=st.integers(0, 10_000), name=st.sampled_from(MODELS),
       skew=st.sampled_from([1.0, 3.0]), dtype=st.sampled_from([torch.float64, torch.float32]),
       grid=st.sampled_from(["default", "coarse", "none"]))
def test_both_forms_are_sound_on_multi_edge_populations(seed, name, skew, dtype, grid) -> None:
    snn, _ = converted(name, seed % 50, dtype)
    for i, layer in enumerate(snn.hidden_layers):
        xs = stress_edges(layer, 3, seed + i, skew, dtype)
        z = layer.z(xs)
        truth = brute_max_f(layer, xs)
        pts = {"default": None, "coarse": bounds.grid_points(xs, layer.B_in, (0.5,)),
               "none": []}[grid]
        for need in needs(layer, 3, seed + i):
            decided = {}
            for form in FORMS:
                with grid_form(form):
                    ok = bounds.certify_grid(layer, xs, z, grid=pts, need=need)
                assert not bool((ok & (truth >= 0)).any()), (name, layer.name, form)
                if form != "conv":  # only the needed neurons are computed
                    assert not bool((ok & ~need).any())
                decided[form] = ok & need
            # the gathered sums are the very values of the maps
            assert torch.equal(decided["conv"], decided["gathered"]), (name, layer.name)
            # the patch form is the same bound (only the float32 summation order differs)
            diff = int((decided["conv"] ^ decided["patch"]).sum())
            assert diff <= 2 + 0.01 * int(need.sum()), (name, layer.name, diff)


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spread", [1e-9, 1e-4])
def test_both_forms_are_sound_near_the_boundary(form, dtype, spread, monkeypatch) -> None:
    """Biases moved so that the first sample's neurons peak within ±spread·B of the threshold
    (half of them fire early by a hair), on multi-edge and grouped populations."""
    set_grid_form(monkeypatch, form)
    if dtype == torch.float32:
        spread = max(spread, 1e-5)  # float32 biases cannot resolve less
    above = below = 0
    for name in ("bottleneck_identity", "mobilenet_v2", "densenet"):
        snn, _ = converted(name, 1, dtype)
        g = torch.Generator().manual_seed(3)
        for i, layer in enumerate(snn.hidden_layers):
            xs = stress_edges(layer, 2, i, 3.0, dtype)
            with torch.no_grad():
                move_to_threshold(layer, brute_max_f(layer, xs)[0], spread, g, dtype)
            z = layer.z(xs)
            truth = brute_max_f(layer, xs)
            above += int((truth[0] >= 0).sum())
            below += int((truth[0] < 0).sum())
            for grid in (None, [], bounds.grid_points(xs, layer.B_in, (0.5,))):
                ok = bounds.certify_grid(layer, xs, z, grid=grid,
                                         need=torch.ones_like(truth, dtype=torch.bool))
                assert not bool((ok & (truth >= 0)).any()), (name, layer.name)
    assert above > 0 and below > 0


@pytest.mark.parametrize("form", list(FORMS))
def test_both_forms_are_sound_with_perturbed_alpha(form, monkeypatch) -> None:
    set_grid_form(monkeypatch, form)
    g = torch.Generator().manual_seed(0)
    for name in ("resnet_basic", "mobilenet_v2"):
        snn, _ = converted(name, 2)
        for i, layer in enumerate(snn.hidden_layers):
            xs = stress_edges(layer, 3, i, 3.0, torch.float64)
            gain = 1.0 + 0.2 * torch.randn(layer.out_shape, generator=g, dtype=torch.float64)
            bias, leak = common._perturbed(layer.bias, layer.S, gain, layer.B_in)
            z = layer.synapses.linear(xs) + bias
            truth = brute_max_f(layer, xs, bias, leak)
            ok = bounds.certify_grid(layer, xs, z, bias=bias, leak=leak,
                                     need=torch.ones_like(truth, dtype=torch.bool))
            assert not bool((ok & (truth >= 0)).any())


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("excess", [1e-12, 1e-9, 1e-6])
def test_both_forms_refuse_a_hair_thin_early_spike(form, excess, monkeypatch) -> None:
    """f peaks at +excess·B on a grid point (so no tent covers it): only the rounding margins
    refuse it; with them switched off (mutation: unit roundoff 0) the float32 sums certify
    it, so the margins are what the test checks."""
    from tests.simulation.engines.bounds.test_bounds import hair_thin_case

    set_grid_form(monkeypatch, form)
    layer, x, _, grid = hair_thin_case(excess)
    z = layer.affine(x)
    need = torch.ones_like(z, dtype=torch.bool)
    assert not bool(bounds.certify_grid(layer, [x], z, grid=grid, need=need).any())
    if excess <= 1e-9:
        patch_package(monkeypatch, bounds, "_U32", 0.0)  # mutation: no float32 rounding margins
        assert bool(bounds.certify_grid(layer, [x], z, grid=grid, need=need).all())


@pytest.mark.parametrize("name", ["mobilenet_v2", "bottleneck_identity", "inception"])
def test_channel_selection_of_grouped_edges(name: str) -> None:
    """select() keeps whole groups of grouped edges and reads only their input channels: its
    sums equal the full population's on the selected channels."""
    snn, _ = converted(name, 0)
    g = torch.Generator().manual_seed(0)
    for layer in snn.hidden_layers:
        syn = layer.synapses
        xs = stress_edges(layer, 2, 0, 1.0, torch.float64)
        full = syn.linear(xs)
        c = layer.out_shape[0]
        for mask in (torch.rand(c, generator=g) < 0.3, torch.arange(c) == c - 1):
            if not bool(mask.any()):
                continue
            closed = syn.channel_closure(mask)
            assert bool((closed | ~mask).all())  # a superset
            assert torch.equal(syn.channel_closure(closed), closed)
            for a in [a for a in syn.affines if a.groups > 1]:  # whole groups
                per = closed.reshape(a.groups, -1)
                assert bool((per.all(dim=1) | ~per.any(dim=1)).all())
            sel = closed.nonzero().reshape(-1)
            sub = syn.select(sel)
            part = sub.linear(syn.select_inputs(sel, xs))
            torch.testing.assert_close(part, full[:, sel], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identity_shortcut_fast_path_is_the_convolution(dtype: torch.dtype) -> None:
    """A depthwise 1×1 edge is computed as one product per output: bit for bit the value
    of the convolution."""
    g = torch.Generator().manual_seed(0)
    for stride in (1, 2):
        x = torch.randn(3, 5, 7, 7, generator=g, dtype=torch.float64).to(dtype)
        w = torch.randn(5, 1, 1, 1, generator=g, dtype=torch.float64).to(dtype)
        n = (7 - 1) // stride + 1
        a = Affine("conv", w, torch.zeros(5, n, n, dtype=dtype), (5, 7, 7), (5, n, n), 2,
                   (stride, stride), (0, 0, 0, 0), (1, 1), 5)
        assert a.is_channel_scale
        assert torch.equal(a.linear(x), F.conv2d(x, w, None, stride, 0, 1, 5))
    a = Affine("conv", w, torch.zeros(5, 9, 9, dtype=dtype), (5, 7, 7), (5, 9, 9), 2, (1, 1),
               (1, 1, 1, 1), (1, 1), 5)
    assert not a.is_channel_scale  # padding: the convolution path


def _early_net(seed: int) -> tuple[onespike.SpikingNetwork, torch.Tensor]:
    """A random CNN whose biases are raised until some neurons fire before their window."""
    model, shape = random_cnn(seed, 2)
    x = torch.rand(10, *shape, generator=torch.Generator().manual_seed(seed))
    snn = onespike.convert(model, x, progress=False)
    with torch.no_grad():
        for layer in snn.hidden_layers:
            layer.bias.add_(0.3 * layer.B)
    return snn, x


@pytest.mark.parametrize("seed", range(3))
def test_event_engine_is_unchanged_by_the_form_and_stages_of_the_grid(seed, monkeypatch
                                                                     ) -> None:
    """Same spike times, outputs and early counts with the grid bound in either form, in one
    or two stages, or not at all, and with any chunk size: the proofs only decide which
    neurons take the exact walk."""
    from tests.simulation.test_brute_force import adversarial_mlp, sparse_inputs

    x_adv = sparse_inputs(seed, 40)
    nets = [converted("resnet_basic", seed), converted("mobilenet_v2", seed),
            converted("densenet", seed), _early_net(seed),
            (onespike.convert(adversarial_mlp(seed), x_adv, zeta=0.0, progress=False), x_adv)]
    early = 0
    for snn, x in nets:
        x = x.to(snn.dtype)
        monkeypatch.setattr(common, "GRID_MIN_FRACTION", 2.0)
        ref = snn.simulate(x)
        early += sum(ref.certificate.early)
        monkeypatch.setattr(common, "GRID_MIN_FRACTION", 0.0)
        monkeypatch.setattr(common, "GRID_MIN_ELEMENTS", 0)
        for form in FORMS:
            for stages in (common.GRID_STAGES, ((bounds.GRID_QUANTILES, "float32"),),
                           ((bounds.GRID_QUANTILES, "bfloat16"),)):
                set_grid_form(monkeypatch, form)
                monkeypatch.setattr(common, "GRID_STAGES", stages)
                for chunk in (None, 3):
                    res = snn.simulate(x, chunk_size=chunk)
                    if chunk is None:
                        for a, b in zip(res.spike_times, ref.spike_times):
                            assert torch.equal(a, b)
                        assert torch.equal(res.output, ref.output)
                    else:  # Linear layers' matrix products round by batch shape (1 ulp)
                        for a, b in zip(res.spike_times, ref.spike_times):
                            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
                        torch.testing.assert_close(res.output, ref.output, rtol=1e-12,
                                                   atol=1e-12)
                    assert res.certificate.early == ref.certificate.early
                    assert sum(res.certificate.checked) <= sum(ref.certificate.checked)
    assert early > 0  # some network really fires early


@pytest.mark.parametrize("name", ["densenet", "inception", "resnet_basic"])
def test_edges_with_few_live_rows_are_computed_on_those_rows(name: str) -> None:
    """Concatenation edges (weights zero outside their block of output channels) are
    convolved on their non-zero rows only: the sum equals the edge-by-edge sum of the full
    maps (the skipped terms are exact zeros; a convolution over fewer rows may order its
    fan-in sums differently, which every rounding bound allows)."""
    snn, _ = converted(name, 0)
    restricted = 0
    for layer in snn.hidden_layers:
        syn = layer.synapses
        xs = stress_edges(layer, 3, 1, 1.0, torch.float64)
        naive = syn.affines[0].linear(xs[0])
        for a, x in zip(syn.affines[1:], xs[1:]):
            naive = naive + a.linear(x)
        torch.testing.assert_close(syn.linear(xs), naive, rtol=1e-13, atol=1e-13)
        restricted += sum(synapses._live_rows(a, a.weight) is not None for a in syn.affines
                          if len(syn.affines) > 1)
    if name == "densenet":
        assert restricted > 0  # the fast path is exercised


def test_live_rows_are_scanned_once_per_weight_version() -> None:
    """The live rows of a weight are kept on it while its storage and version stay: a second
    sum does not scan it again, an in-place change (a row zeroed, a row revived) does."""
    w = torch.zeros(8, 3, 3, 3, dtype=torch.float64)
    w[2] = 1.0
    a = synapses.Affine("conv", w, torch.zeros(8, 4, 4, dtype=torch.float64), (3, 4, 4),
                        (8, 4, 4), 2, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert synapses._live_rows(a, w).tolist() == [2]
    scans = []
    real = torch.Tensor.ne

    def counted(self, other):
        scans.append(1)
        return real(self, other)

    torch.Tensor.ne = counted  # type: ignore[method-assign]
    try:
        assert synapses._live_rows(a, w).tolist() == [2] and not scans  # kept
        w[5, 0, 0, 0] = -2.0  # in place: a new version
        assert synapses._live_rows(a, w).tolist() == [2, 5] and scans
        w[2].zero_()
        assert synapses._live_rows(a, w).tolist() == [5]
        w.fill_(1.0)  # every row live: all rows computed
        assert synapses._live_rows(a, w) is None
    finally:
        torch.Tensor.ne = real  # type: ignore[method-assign]


@SETTINGS
@given(seed=st.integers(0, 10_000), name=st.sampled_from(MODELS),
       dtype=st.sampled_from([torch.float64, torch.float32]),
       form=st.sampled_from(list(FORMS)), per_chunk=st.sampled_from([1, 2]),
       precision=st.sampled_from(["float32", "bfloat16"]))
def test_grid_in_chunks_of_samples(seed, name, dtype, form, per_chunk, precision) -> None:
    """The grid bound on chunks of samples (``GRID_CHUNK_NEURONS``: its maps bounded by a
    chunk's) uses the batch's grid points and input range in every chunk: each chunk's
    verdict is sound against the brute-force maximum of f, and it is the verdict of the
    whole batch, up to the float32 summation order of a convolution of another batch size
    (as between the forms)."""
    snn, _ = converted(name, seed % 50, dtype)
    g = torch.Generator().manual_seed(seed)
    early = 0
    for i, layer in enumerate(snn.hidden_layers):
        n = 4
        xs = stress_edges(layer, n, seed + i, 3.0, dtype)
        for x in xs:  # samples unlike each other: the first silent, the third at threshold
            x[0] = 0.0
        with torch.no_grad():
            move_to_threshold(layer, brute_max_f(layer, xs)[2], 1e-4, g, dtype)
        z = layer.z(xs)
        truth = brute_max_f(layer, xs)
        early += int((truth >= 0).sum())
        x_range = bounds.input_range(xs)
        pts = bounds.grid_points(xs, layer.B_in)
        for need in needs(layer, n, seed + i):
            with grid_form(form):
                whole = bounds.certify_grid(layer, xs, z, grid=pts, need=need,
                                            precision=precision, x_range=x_range)
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(bounds_grid, "GRID_CHUNK_NEURONS",
                               per_chunk * layer.num_neurons)
                    chunked = bounds.certify_grid(layer, xs, z, grid=pts, need=need,
                                                  precision=precision, x_range=x_range)
            assert not bool((chunked & (truth >= 0)).any()), (name, layer.name, form)
            diff = int(((whole ^ chunked) & need).sum())
            assert diff <= 2 + 0.01 * int(need.sum()), (name, layer.name, form, diff)
    assert early > 0  # some neurons do fire early


def test_grid_chunks_leave_spike_times_alone(monkeypatch) -> None:
    """With the grid bound forced into one-sample chunks, a simulation gives the same spike
    times, outputs and early counts (the proofs only decide which neurons walk) — and the
    chunks really run: each grid call sees at most one sample."""
    snn, x = converted("resnet_basic", 3)
    monkeypatch.setattr(common, "GRID_MIN_ELEMENTS", 0)
    ref = snn.simulate(x)
    seen: list[int] = []
    real = bounds_grid._certify_grid

    def spy(layer, z, *args):
        seen.append(int(z.shape[0]))
        return real(layer, z, *args)

    monkeypatch.setattr(bounds_grid, "_certify_grid", spy)
    monkeypatch.setattr(bounds_grid, "GRID_CHUNK_NEURONS", 1)
    res = snn.simulate(x)
    assert seen and max(seen) == 1 and len(seen) >= x.shape[0]
    for a, b in zip(res.spike_times, ref.spike_times):
        assert torch.equal(a, b)
    assert torch.equal(res.output, ref.output)
    assert res.certificate.early == ref.certificate.early
