"""Issue-10 defects in the conversion core: each test fails on the release before the fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import onespike
from onespike import InputRangeError, UnsupportedOperationError


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_non_finite_input_range_refused() -> None:
    x = torch.rand(8, 1, 4, 4)
    with pytest.raises(ValueError, match="finite"):
        onespike.convert(_mlp(), x, input_range=(0.0, float("inf")), progress=False)
    with pytest.raises(ValueError, match="finite"):
        onespike.convert(_mlp(), x, input_range=(float("nan"), 1.0), progress=False)


def test_nan_output_makes_the_certificate_not_exact() -> None:
    x = torch.rand(4, 1, 4, 4)
    snn = onespike.convert(_mlp(), x, progress=False)
    with torch.no_grad():
        snn.readout.edge0_weight[0, 0] = float("nan")
    sim = snn.simulate(x)
    assert not sim.certificate.exact
    assert sim.certificate.nonfinite > 0
    assert "NaN" in str(sim.certificate)


@pytest.mark.parametrize("engine", ["event", "closed"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_hidden_values_make_the_certificate_not_exact(bad: float,
                                                                 engine: str) -> None:
    """A NaN or infinite bias in a hidden population is never exact: NaN values are counted
    whatever path the step took (its own finiteness test, then the driver's scan); an
    infinite bias gives an infinite closed form, or (event engine) a neuron that fires at
    once — an early spike."""
    x = torch.rand(4, 1, 4, 4)
    snn = onespike.convert(_mlp(), x, progress=False)
    layer = snn.hidden_layers[0]
    with torch.no_grad():
        layer.bias.view(-1)[1] = bad
    cert = snn.simulate(x, engine=engine).certificate
    assert not cert.exact
    if bad != bad or engine == "closed":
        assert cert.nonfinite >= x.shape[0]  # that neuron in every sample
    else:
        assert cert.early[0] >= x.shape[0] and cert.nonfinite == 0


@pytest.mark.parametrize(("mean", "std"), [(0.2860, 0.3530), (0.1307, 0.3081),
                                           (0.485, 0.229)])
def test_float32_normalised_data_within_its_rounding(mean: float, std: float) -> None:
    """(x - m)/s in float32 lies a few float32 ulps outside ((0 - m)/s, (1 - m)/s)."""
    torch.manual_seed(1)
    raw = torch.rand(64, 1, 4, 4)
    raw[0, 0, 0, 0], raw[0, 0, 0, 1] = 0.0, 1.0
    x = (raw - mean) / std  # float32
    low, high = (0 - mean) / std, (1 - mean) / std
    snn = onespike.convert(_mlp(), x, input_range=(low, high), progress=False)
    out = snn.simulate(x).output
    ref = _mlp().double()(x.double())
    assert float((out - ref).abs().max()) < 1e-5  # float32 data: the model sees the same x
    with pytest.raises(InputRangeError, match=r"\d\.\d{6,}"):
        snn.simulate(x * 1.01)  # a real violation still raises, with enough digits


def test_convert_leaves_the_global_random_state_alone() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8, 2)).eval()
    x = torch.rand(4, 1, 4, 4)
    state = torch.get_rng_state()
    onespike.convert(model, x, progress=False)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("noise", [{"jitter": 0.05, "alpha_noise": 0.05}, {"jitter": 0.2},
                                   {"alpha_noise": 0.1}])
def test_perturbed_results_do_not_depend_on_the_chunk_size(noise: dict, seed: int) -> None:
    """A neuron the walk computes in a chunk with late inputs (jitter) takes the closed form
    where its crossing follows every arrival, as it does in a chunk without: before, the
    two differed in the last bit, for four of these eighteen cases."""
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.rand(20, 1, 4, 4, generator=g)
    snn = onespike.convert(_mlp(), x, progress=False)
    p = onespike.Perturbation(**noise, seed=seed)
    one = snn.simulate(x, perturbation=p, chunk_size=20)
    for chunk in (1, 3):
        many = snn.simulate(x, perturbation=p, chunk_size=chunk)
        assert torch.equal(one.output, many.output)
        for a, b in zip(one.spike_times, many.spike_times):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_wide_linear_results_do_not_depend_on_the_batch(dtype: torch.dtype) -> None:
    """BLAS matrix products block by the number of rows (MKL on Intel CPUs rounds the same
    row differently at batch 1, 7 and 64 for a 784×600 layer): the spiking network's own
    z must not, so that chunk sizes and process counts cannot change a result."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 600), nn.ReLU(), nn.Linear(600, 600),
                          nn.ReLU(), nn.Linear(600, 10)).eval()
    x = torch.rand(70, 1, 28, 28)
    snn = onespike.convert(model, x, progress=False, dtype=dtype)
    whole = snn.simulate(x.to(dtype), chunk_size=70)
    for chunk in (1, 7, 64):
        part = snn.simulate(x.to(dtype), chunk_size=chunk)
        assert torch.equal(part.output, whole.output), chunk
        for a, b in zip(part.spike_times, whole.spike_times):
            assert torch.equal(a, b), chunk
    pop = snn.hidden_layers[0]
    xin = pop.routed(snn.encode(x.to(dtype)))
    rows = torch.cat([pop.z([xin[i : i + 1]]) for i in range(9)])
    assert torch.equal(rows, pop.z([xin[:9]]))


def test_float64_convolution_results_do_not_depend_on_the_batch_with_two_threads() -> None:
    """With two threads a lone sample's float64 convolution sums in another order than within a
    batch (a 128-channel 16×16 layer differs in the last bit): spike times and outputs must be
    the same for any chunk size, one sample included. (float32 convolutions run in oneDNN,
    which picks its algorithm by batch size: README, Limitations.)"""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 128, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(128 * 16 * 16, 10)).eval()
    x = torch.rand(5, 3, 16, 16, dtype=torch.float64)
    snn = onespike.convert(model.double(), x, progress=False)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        whole = snn.simulate(x, chunk_size=5)
        for chunk in (1, 2, 3):
            part = snn.simulate(x, chunk_size=chunk)
            assert torch.equal(part.output, whole.output), chunk
            for a, b in zip(part.spike_times, whole.spike_times):
                assert torch.equal(a, b), chunk
    finally:
        torch.set_num_threads(old)


def test_perturbation_seeds_give_different_noise() -> None:
    x = torch.rand(8, 1, 4, 4)
    snn = onespike.convert(_mlp(), x, progress=False)
    a = snn.simulate(x, perturbation=onespike.Perturbation(jitter=0.05, seed=1)).output
    b = snn.simulate(x, perturbation=onespike.Perturbation(jitter=0.05, seed=2)).output
    assert not torch.equal(a, b)
    gens = onespike.Perturbation(jitter=0.1, seed=1).sample_generators(0, 64, x.device)
    draws = torch.stack([torch.randn(4, generator=g) for g in gens])
    assert len({tuple(d.tolist()) for d in draws}) == 64  # every sample its own noise


def test_torchscript_object_gets_a_fitting_hint() -> None:
    scripted = torch.jit.script(_mlp())
    with pytest.raises(UnsupportedOperationError, match=r"original nn\.Module"):
        onespike.convert(scripted, torch.rand(2, 1, 4, 4), progress=False)


@pytest.mark.parametrize("form", ["shift", "affine_input", "maximum", "clamp_min"])
def test_linear_and_relu_in_disguise_convert(form: str) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 6)
            self.b = nn.Linear(6, 2)

        def forward(self, x):
            if form == "affine_input":
                x = (x - 0.5) / 0.25
            h = self.a(x)
            if form == "maximum":
                h = torch.maximum(h, torch.zeros_like(h))
            elif form == "clamp_min":
                h = h.clamp(min=0)
            else:
                h = torch.relu(h)
            if form == "shift":
                h = h + 0.5
            return self.b(h)

    torch.manual_seed(2)
    m = M().double().eval()
    x = torch.rand(16, 4, dtype=torch.float64)
    snn = onespike.convert(m, x, progress=False)
    assert float((snn(x) - m(x)).abs().max()) < 1e-10


def test_meta_default_device_catches_tensors_created_without_a_device() -> None:
    """Conversion and simulation create every tensor where the model's tensors live."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 3, padding=1),
                          nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2, 2)).eval()
    x = torch.rand(4, 1, 4, 4)
    torch.set_default_device("meta")
    try:
        snn = onespike.convert(model, x, progress=False)
        out = snn.simulate(x).output
    finally:
        torch.set_default_device(None)
    assert out.device.type == "cpu"
    assert float((out - model.double()(x.double())).abs().max()) < 1e-10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_smoke() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(48, 2)).eval().cuda()
    x = torch.rand(4, 1, 4, 4, device="cuda")
    snn = onespike.convert(model, x, progress=False)
    sim = snn.simulate(x)
    assert sim.output.device.type == "cuda" and sim.certificate.exact
    ref = model.double()(x.double())
    assert float((sim.output - ref).abs().max()) < 1e-9
    from onespike.analysis.plots import plot_histograms, plot_output, plot_raster, plot_trace

    for fig in (plot_raster(sim), plot_trace(snn, sim, 0), plot_histograms(sim),
                plot_output(snn, sim)):
        assert fig is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_random_vgg_with_every_proof_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    """A random VGG whose neurons the drive bound partly misses, every grid stage switched
    on: converted on the GPU and on the CPU, both networks reproduce the ReLU logits, and
    the GPU's spike times are the CPU's up to rounding."""
    from onespike.apps.bench.models import RECIPES, apply_recipe
    from onespike.models.architectures import VGG, _vgg_features
    from onespike.simulation.engines import common

    monkeypatch.setattr(common, "GRID_MIN_ELEMENTS", 0)
    monkeypatch.setattr(common, "BF16_STAGE_MIN_ELEMENTS", 0)
    assert "kaiming" in RECIPES
    torch.manual_seed(0)
    model = VGG(_vgg_features((8, 8, "M", 12), 3, bn_after_relu=False),
                nn.Sequential(nn.Flatten(), nn.Linear(12 * 4 * 4, 16), nn.ReLU(),
                              nn.Linear(16, 3)))
    g = torch.Generator().manual_seed(1)
    apply_recipe(model, "kaiming", torch.rand(64, 3, 8, 8, generator=g), seed=0)
    calib = torch.rand(64, 3, 8, 8, generator=g)
    x = torch.rand(16, 3, 8, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref = model.double()(x)
    scale = float(ref.abs().max())
    sims = {}
    for dev in ("cpu", "cuda"):
        snn = onespike.convert(model.float().to(dev), calib.to(dev), progress=False)
        sims[dev] = sim = snn.simulate(x.to(dev))
        assert sim.output.device.type == dev and sim.certificate.exact
        assert float((sim.output.cpu() - ref).abs().max()) <= 1e-9 * scale
    for a, b in zip(sims["cpu"].spike_times, sims["cuda"].spike_times):
        finite = torch.isfinite(a)
        assert torch.equal(finite, torch.isfinite(b.cpu()))
        assert float((a[finite] - b.cpu()[finite]).abs().max(initial=0.0)) <= 1e-9


@pytest.mark.parametrize("engine", ["event", "closed", "clock"])
def test_empty_batch_and_bad_chunk_size(engine: str) -> None:
    snn = onespike.convert(_mlp(), torch.rand(4, 1, 4, 4), progress=False)
    sim = snn.simulate(torch.rand(0, 1, 4, 4), engine=engine)
    assert sim.output.shape == (0, 3) and sim.certificate.exact
    assert [tuple(t.shape) for t in sim.spike_times] == [(0, 1, 4, 4), (0, 8)]
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="chunk_size"):
            snn.simulate(torch.rand(2, 1, 4, 4), engine=engine, chunk_size=bad)


def test_normalization_travels_with_the_network(tmp_path) -> None:
    torch.manual_seed(3)
    raw = torch.rand(32, 1, 4, 4)
    snn = onespike.convert(_mlp(), (raw - 0.2860) / 0.3530, normalization=(0.2860, 0.3530),
                           progress=False)
    assert snn.normalization == ([0.2860], [0.3530])
    assert float(snn.input_low.min()) == pytest.approx(-0.2860 / 0.3530)
    assert torch.equal(snn.normalize(raw), (raw - 0.2860) / 0.3530)
    onespike.save(snn, tmp_path / "n.onespike")
    back = onespike.load(tmp_path / "n.onespike")
    assert back.normalization == snn.normalization
    assert back.summary()["normalization"] == {"mean": [0.2860], "std": [0.3530]}
    with pytest.raises(ValueError, match="positive"):
        onespike.convert(_mlp(), raw, normalization=(0.5, 0.0), progress=False)
