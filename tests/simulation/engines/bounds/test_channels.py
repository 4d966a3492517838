"""The channel-maximum bound (``max b_i + Σ_e Σ_c s_e,ic m_e,c < B`` proves a whole output
channel of a sample): never proves a plane holding a neuron whose exact drive reaches the
threshold, even within 1e-9·B of it (inputs that attain the bound: every channel constant);
its rounding margin is needed (a mutation without it proves wrong planes); it is tight; a
sample's verdict does not depend on its batch; and the drive certificate that uses it
proves a superset of what it proves alone, convolving fewer channels."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tests.helpers.bf16 import SETTINGS, bf16_anywhere
from tests.helpers.dag_nets import ZOO
from tests.simulation.engines.bounds.test_bounds import converted_layers, stress_inputs
from tests.simulation.engines.bounds.test_drive_bf16 import exact_multi_drive
from tests.simulation.engines.bounds.test_grid_patches import converted, stress_edges
from tests.simulation.engines.bounds.test_late_inputs import conv_net

import onespike
from onespike.network.population import Population
from onespike.simulation.engines import bounds
from onespike.simulation.engines.bounds import channels, drive
from onespike.simulation.engines.bounds.channels import proven_planes
from onespike.simulation.synapses import Synapses

MULTI_EDGE = ["bottleneck_identity", "resnet_basic", "basic_block_downsample",
              "inverted_residual", "sum3", "densenet", "mobilenet_v2"]


def conv_populations(seed: int, dtype: torch.dtype) -> list[Population]:
    """Convolution-only populations: a random CNN's, grouped/dilated/strided ones, and DAG
    models' populations with several edges (identity shortcuts, concatenations, depthwise)."""
    out = list(converted_layers(seed, "cnn", dtype))
    snn = onespike.convert(conv_net(), torch.rand(8, 1, 8, 8), progress=False, dtype=dtype)
    out += list(snn.hidden_layers)
    for name in MULTI_EDGE[seed % len(MULTI_EDGE)], MULTI_EDGE[(seed + 3) % len(MULTI_EDGE)]:
        out += list(converted(name, seed, dtype)[0].hidden_layers)
    return [ly for ly in out if all(a.kind == "conv" for a in ly.synapses.affines)]


def channel_max_bound(layer: Population, xs: list[torch.Tensor]) -> torch.Tensor:
    """``Σ_e Σ_c s_e,ic m_e,c`` (samples, C_out) in float64, group by group (independent of
    the library's dense block-diagonal form)."""
    total = None
    for a, x in zip(layer.synapses.affines, xs):
        w = a.weight.double().clamp_min(0)
        n, c_out, g = x.shape[0], w.shape[0], a.groups
        s = w.reshape(g, c_out // g, w.shape[1], -1).sum(dim=3)  # (groups, out/group, in/group)
        m = x.double().clamp_min(0).amax(dim=tuple(range(2, x.dim()))).reshape(n, g, -1)
        part = torch.einsum("ngc,goc->ngo", m, s).reshape(n, c_out)
        total = part if total is None else total + part
    assert total is not None
    return total


def constant_inputs(layer: Population, n: int, seed: int, dtype: torch.dtype
                    ) -> list[torch.Tensor]:
    """Per edge, every channel constant (in [0, B_in]; some zero, some B_in): each neuron
    that reads no padding then has exactly the channel-maximum bound as its drive."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for e in layer.edges:
        c = e.in_shape[0]
        m = layer.B_in * torch.rand((n, c), generator=g, dtype=torch.float64)
        m = torch.where(torch.rand((n, c), generator=g) < 0.2, torch.zeros_like(m), m)
        m = torch.where(torch.rand((n, c), generator=g) < 0.05, torch.full_like(m, layer.B_in), m)
        m = m.to(dtype).clamp_(max=layer.B_in)
        out.append(m.reshape(n, c, *(1,) * (len(e.in_shape) - 1)).expand(n, *e.in_shape)
                   .contiguous())
    return out


def place_channel_biases(layer: Population, peak: torch.Tensor, spread: float,
                         g: torch.Generator) -> None:
    """Every neuron of channel ``c`` gets the bias ``B − peak_c ± spread·B·size`` (signs
    alternating by channel): the plane's largest ``b + drive`` lands by a hair above or
    below the threshold."""
    c = layer.out_shape[0]
    sign = (torch.arange(c) % 2 * 2 - 1).to(torch.float64)
    size = 0.5 + torch.rand(c, generator=g, dtype=torch.float64)
    beta = layer.B - peak + spread * layer.B * sign * size
    with torch.no_grad():
        layer.bias.copy_(beta.reshape(c, *(1,) * (layer.bias.dim() - 1)).expand_as(layer.bias))


def plane_truth(layer: Population, xs: list[torch.Tensor]) -> torch.Tensor:
    """(samples, C_out): some neuron of the plane has ``b + drive ≥ B`` (exact, float64)."""
    reached = layer.bias.double() + exact_multi_drive(layer, xs) >= layer.B
    return reached.reshape(*reached.shape[:2], -1).any(dim=2)


@SETTINGS
@given(seed=st.integers(0, 10_000), spread=st.sampled_from([1e-9, 1e-6, 1e-3]),
       dtype=st.sampled_from([torch.float64, torch.float32]))
def test_channel_bound_never_proves_a_plane_at_or_above_threshold(
        seed: int, spread: float, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(seed)
    checked = 0
    for i, layer in enumerate(conv_populations(seed, dtype)):
        xs = constant_inputs(layer, 3, seed + i, dtype)
        place_channel_biases(layer, channel_max_bound(layer, xs)[0], spread, g)
        truth = plane_truth(layer, xs)
        proven = proven_planes(layer, xs)
        assert proven is not None and proven.shape == truth.shape
        assert not bool((proven & truth).any()), (layer.name, spread)
        checked += int(truth[0].sum())
    assert checked > 0  # planes at or above the threshold were offered


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_channel_bound_is_sound_on_any_inputs(seed: int, dtype: torch.dtype) -> None:
    """Stress inputs (not constant per channel) with biases placed at the bound: a proven
    plane never holds a neuron whose exact drive reaches the threshold."""
    g = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(conv_populations(seed, dtype)):
        xs = stress_edges(layer, 4, seed + 7 * i, 2.0, dtype)
        place_channel_biases(layer, channel_max_bound(layer, xs)[0], 1e-9, g)
        proven = proven_planes(layer, xs)
        assert proven is not None
        assert not bool((proven & plane_truth(layer, xs)).any()), layer.name


@pytest.mark.parametrize("seed", range(3))
def test_channel_bound_margin_is_needed(seed: int, monkeypatch) -> None:
    """Mutation: maxima and kernel sums rounded to nearest (not up) and the threshold of the
    exact condition (no rounding margin) prove planes at the threshold by 1e-9·B."""
    monkeypatch.setattr(channels, "round_up", lambda t, dt: t.to(dt))

    def no_margin(layer, dt, bias):
        b = layer.bias.reshape(layer.bias.shape[0], -1).amax(dim=1).double()
        return (layer.B - b).to(dt)

    monkeypatch.setattr(channels, "_plane_threshold", no_margin)
    g = torch.Generator().manual_seed(seed)
    wrong = 0
    for i, layer in enumerate(conv_populations(seed, torch.float64)):
        xs = constant_inputs(layer, 6, seed + i, torch.float64)
        place_channel_biases(layer, channel_max_bound(layer, xs)[0], 1e-9, g)
        layer._derived = {}  # (the mutation's caches)
        wrong += int((proven_planes(layer, xs) & plane_truth(layer, xs)).sum())
    assert wrong > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_channel_bound_is_tight(seed: int, dtype: torch.dtype) -> None:
    """Every plane whose largest bias plus the bound clears the threshold by 1e-4·B (the
    roundings allow a few 1e-5 on these layers) is proven; those above it never are."""
    g = torch.Generator().manual_seed(seed)
    for i, layer in enumerate(conv_populations(seed, dtype)):
        xs = stress_edges(layer, 3, seed + i, 1.0, dtype)
        bound = channel_max_bound(layer, xs)
        place_channel_biases(layer, bound[0], 1e-2, g)
        top = layer.bias.double().reshape(layer.out_shape[0], -1).amax(dim=1)
        slack = layer.B - (top[None, :] + bound)
        proven = proven_planes(layer, xs)
        assert bool(proven[slack > 1e-4 * layer.B].all()), layer.name
        assert not bool(proven[slack <= 0].any()), layer.name


def test_a_samples_verdict_does_not_depend_on_its_batch() -> None:
    g = torch.Generator().manual_seed(5)
    for i, layer in enumerate(conv_populations(5, torch.float64)):
        xs = stress_edges(layer, 37, 11 + i, 2.0, torch.float64)
        place_channel_biases(layer, channel_max_bound(layer, xs)[0], 1e-7, g)
        whole = proven_planes(layer, xs)
        for lo, hi in ((0, 1), (3, 20), (20, 37), (5, 6)):
            assert torch.equal(proven_planes(layer, [x[lo:hi] for x in xs]), whole[lo:hi])


def test_non_finite_inputs_prove_nothing_in_their_sample() -> None:
    layer = converted_layers(1, "cnn")[0]
    x = stress_inputs(layer, 3, 2, 3.0)
    with torch.no_grad():
        layer.bias.sub_(10 * layer.B)  # every plane provable
    assert bool(proven_planes(layer, [x]).all())
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[1, 0, 0, 0] = bad
        proven = proven_planes(layer, [y])
        assert not bool(proven[1].any()) and bool(proven[[0, 2]].all())


def test_linear_edges_are_left_to_the_drive() -> None:
    layers = converted_layers(0, "mlp")
    assert layers and all(proven_planes(ly, [stress_inputs(ly, 2, 0, 1.0)]) is None
                          for ly in layers)


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_drive_with_channel_bound_proves_more_and_convolves_fewer_channels(
        dtype: torch.dtype, bf16: bool, monkeypatch) -> None:
    """On populations with some provable channels the drive certificate convolves only the
    others, proves every neuron it proves without the bound, and never a neuron at or
    above the threshold (biases per neuron within 1e-6·B of it, half above)."""
    monkeypatch.setattr(drive, "BF16_DRIVE", bf16)
    bf16_anywhere(monkeypatch, bf16)
    monkeypatch.setattr(drive, "CHANNEL_MIN_MACS", 0)  # (these populations are small)
    selected = []
    real = Synapses.select

    def counted(self, chans, weights=None):
        selected.append(int(chans.numel()))
        return real(self, chans, weights)

    monkeypatch.setattr(Synapses, "select", counted)
    for i, layer in enumerate(conv_populations(4, dtype)):
        xs = stress_edges(layer, 3, 30 + i, 2.0, dtype)
        d = exact_multi_drive(layer, xs)
        with torch.no_grad():  # a neuron's bias at its first-sample drive ± 1e-6·B
            sign = (torch.arange(layer.num_neurons) % 2 * 2 - 1).double()
            layer.bias.copy_((layer.B - d[0] + 1e-6 * layer.B * sign.reshape(d[0].shape))
                             .to(layer.bias.dtype))
            c = layer.out_shape[0]
            far = torch.arange(c) % 3 == 0  # a third of the channels far below the threshold
            layer.bias[far] -= 10 * layer.B + d[:, far].amax()
        truth = layer.bias.double() + exact_multi_drive(layer, xs) >= layer.B
        monkeypatch.setattr(drive, "CHANNEL_BOUND", False)
        alone = bounds.certify_drive(layer, xs)
        monkeypatch.setattr(drive, "CHANNEL_BOUND", True)
        with_bound = bounds.certify_drive(layer, xs)
        assert bool(with_bound[:, far].all()), layer.name
        assert not bool((alone & ~with_bound).any()), layer.name
        assert not bool((with_bound & truth).any()), layer.name
    assert selected  # the drive ran on selected channels


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["resnet_basic", "mobilenet_v2", "densenet"])
def test_simulation_is_the_same_with_the_channel_bound(name: str, dtype: torch.dtype,
                                                       monkeypatch) -> None:
    """Spike times, output and certificate of whole networks (every population with it, as
    if large) equal those without the bound, and equal the ReLU network's output."""
    snn, _ = converted(name, 2, dtype)
    torch.manual_seed(2)
    model, shape = ZOO[name]()
    x = torch.rand(9, *shape, generator=torch.Generator().manual_seed(8), dtype=dtype)
    monkeypatch.setattr(drive, "CHANNEL_BOUND", False)
    ref = snn.simulate(x)
    monkeypatch.setattr(drive, "CHANNEL_BOUND", True)
    monkeypatch.setattr(drive, "CHANNEL_MIN_MACS", 0)
    calls = []
    real = channels.proven_planes

    def counted(*a, **k):
        out = real(*a, **k)
        calls.append(out is not None and bool(out.any()))
        return out

    monkeypatch.setattr(drive, "proven_planes", counted)
    got = snn.simulate(x)
    assert any(calls)  # planes were proven
    assert torch.equal(got.output, ref.output)
    for a, b in zip(got.spike_times, ref.spike_times):
        assert torch.equal(a, b)
    assert got.certificate.exact == ref.certificate.exact
    with torch.no_grad():
        want = model.to(dtype).eval()(x)
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    assert torch.allclose(got.output, want, rtol=tol, atol=tol * float(want.abs().max()))
