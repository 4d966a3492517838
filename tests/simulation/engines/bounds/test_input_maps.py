"""``InputMaps``: the float32/bfloat16 copies of a step's inputs are made once and shared by
the drive bound and the grid stages, which then decide exactly as with copies of their own;
the inputs themselves are never written."""

from __future__ import annotations

import pytest
import torch
from tests.simulation.engines.bounds.test_bounds import converted_layers, stress_inputs
from tests.simulation.engines.bounds.test_late_inputs import conv_net

import onespike
from onespike.simulation.engines import bounds
from onespike.simulation.engines.bounds import InputMaps, drive


def layers(seed: int, dtype: torch.dtype):
    yield from converted_layers(seed, "cnn", dtype)
    yield from converted_layers(seed, "mlp", dtype)
    snn = onespike.convert(conv_net(), torch.rand(8, 1, 8, 8), progress=False, dtype=dtype)
    yield from snn.hidden_layers  # grouped convolutions: channel selection reads input channels


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_shared_copies_decide_as_own_copies(seed: int, dtype: torch.dtype,
                                             monkeypatch) -> None:
    made = [0]  # float32 copies really made, by any InputMaps
    real = InputMaps.f32

    def counted(self: InputMaps) -> list[torch.Tensor]:
        made[0] += self._f32 is None
        return real(self)

    monkeypatch.setattr(InputMaps, "f32", counted)
    # the drive convolves every channel (the channel bound would leave the grid nothing)
    monkeypatch.setattr(drive, "CHANNEL_BOUND", False)
    for i, layer in enumerate(layers(seed, dtype)):
        x = stress_inputs(layer, 4, seed + i, 3.0)
        before = x.clone()
        z = layer.z([x])
        maps = InputMaps([x])
        made[0] = 0
        ok = bounds.certify_drive(layer, [x], maps=maps)
        need = ~ok
        shared = [bounds.certify_grid(layer, [x], z.clone(), need=need, precision=p, maps=maps)
                  for p in ("bfloat16", "float32")]
        assert made[0] == 1  # one float32 copy for the drive and every grid stage
        assert torch.equal(ok, bounds.certify_drive(layer, [x]))
        for p, got in zip(("bfloat16", "float32"), shared):
            own = bounds.certify_grid(layer, [x], z.clone(), need=need, precision=p)
            assert torch.equal(got, own), (layer.name, p)
        assert torch.equal(x, before)


def test_selected_maps_keep_the_copies_already_made() -> None:
    x = torch.rand(2, 4, 3, 3, dtype=torch.float64) - 0.5
    maps = InputMaps([x])
    f32, b16 = maps.f32()[0], maps.bf16()[0]
    assert bool((f32 >= 0).all()) and f32.dtype == torch.float32
    assert b16.is_contiguous(memory_format=torch.channels_last)
    idx = torch.tensor([0, 2])
    sel = maps.select(lambda ts: [t.index_select(1, idx) for t in ts])
    assert torch.equal(sel.f32()[0], f32.index_select(1, idx))
    assert torch.equal(sel.bf16()[0], b16.index_select(1, idx))
    assert torch.equal(sel.xs[0], x.index_select(1, idx))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(3, 5, 4, 6), (4, 7)])
def test_copies_are_the_rounded_positive_parts_and_the_inputs_stay(dtype: torch.dtype,
                                                                   shape: tuple) -> None:
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(shape, generator=g, dtype=dtype) - 0.3) * 3.0
    x.view(-1)[:3] = torch.tensor([-0.0, 1e-300 if dtype == torch.float64 else 1e-38, -1e-30])
    before = x.clone()
    maps = InputMaps([x])
    f32, b16 = maps.f32()[0], maps.bf16()[0]
    # the reference: round to float32, then clamp (rounding is monotone and keeps 0)
    assert torch.equal(f32, torch.clamp_min(x.to(torch.float32), 0.0))
    assert torch.equal(b16, f32.to(torch.bfloat16))
    assert f32.data_ptr() != x.data_ptr() and torch.equal(x, before)
    assert b16.is_contiguous(memory_format=torch.channels_last if len(shape) == 4
                             else torch.contiguous_format)


def test_some_edges_copies_are_the_same_and_made_once() -> None:
    """``bf16_at`` makes the bfloat16 copies of the edges asked for only; :meth:`bf16` then
    reuses them and makes the others — the same values as making them all at once."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64),
          torch.rand(2, 4, generator=g, dtype=torch.float64),
          torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64)]
    some = InputMaps(xs)
    (first,) = some.bf16_at([2])
    assert some.bf16_at([2])[0] is first
    assert set(some._bf16) == {2}
    every = some.bf16()
    assert every[2] is first
    for a, b in zip(every, InputMaps(xs).bf16()):
        assert a.dtype == torch.bfloat16 and torch.equal(a, b)
        assert a.is_contiguous(memory_format=torch.channels_last) == (a.dim() == 4)


def test_a_non_negative_float32_input_is_its_own_copy() -> None:
    """A float32 input without negative entries serves as its float32 copy (no new map); with a
    negative entry, or a NaN hiding one, the copy is a new clamped map and the input stays."""
    x = torch.rand(2, 3, 4, 4, dtype=torch.float32)
    assert InputMaps([x]).f32()[0] is x
    for bad in ([-0.5], [float("nan"), -0.5]):
        y = x.clone()
        y.view(-1)[: len(bad)] = torch.tensor(bad)
        before = y.clone()
        got = InputMaps([y]).f32()[0]
        assert got.data_ptr() != y.data_ptr() and float(got.view(-1)[len(bad) - 1]) == 0.0
        assert torch.equal(y.nan_to_num(), before.nan_to_num())
