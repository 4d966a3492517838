"""The driver's recording: every chunk writes its rows of each population's spike times into
one buffer per population — the same times whatever the chunk size, for every engine, with
the shapes, dtype and device of the network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import onespike


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 3)
                         ).eval()


@pytest.mark.parametrize("engine", ["event", "closed", "clock"])
def test_recorded_times_do_not_depend_on_the_chunk_size(engine: str) -> None:
    x = torch.rand(11, 1, 8, 8)
    snn = onespike.convert(cnn(), x, progress=False)
    whole = snn.simulate(x, engine=engine, chunk_size=11)
    names = ["input"] + [p.name for p in snn.hidden_layers]
    assert whole.layer_names == names and len(whole.spike_times) == len(names)
    shapes = [snn.input_shape] + [p.out_shape for p in snn.hidden_layers]
    for t, shape in zip(whole.spike_times, shapes):
        assert t.shape == (11, *shape) and t.dtype == snn.dtype and t.device == x.device
    for chunk in (1, 4):
        part = snn.simulate(x, engine=engine, chunk_size=chunk)
        assert torch.equal(part.output, whole.output)
        for a, b in zip(part.spike_times, whole.spike_times):
            assert torch.equal(a, b)


def test_no_recording() -> None:
    x = torch.rand(5, 1, 8, 8)
    snn = onespike.convert(cnn(), x, progress=False)
    sim = snn.simulate(x, record=False, chunk_size=2)
    assert sim.spike_times == [] and sim.layer_names == []
    assert torch.equal(sim.output, snn.simulate(x, chunk_size=5).output)


def test_automatic_chunks_are_as_few_as_the_budget_allows_and_equal(monkeypatch) -> None:
    from onespike.simulation import driver

    x = torch.rand(64, 1, 8, 8)
    snn = onespike.convert(cnn(), x, progress=False)
    per_sample = driver.auto_chunk_size(snn, True, snn.dtype, x.device, 1 << 30) / (1 << 30)
    sizes: list[int] = []
    real = driver._chunk

    def spy(network, chunk, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(chunk.shape[0])
        return real(network, chunk, *args, **kwargs)

    monkeypatch.setattr(driver, "_chunk", spy)
    # a budget for 45 samples: two chunks, of 32 each (not 45 + 19)
    budget = int(45.5 / per_sample)
    assert driver.auto_chunk_size(snn, True, snn.dtype, x.device, budget) == 45
    whole = snn.simulate(x, chunk_size=64)
    sizes.clear()
    auto = snn.simulate(x, max_memory=budget)
    assert sizes == [32, 32]
    assert torch.equal(auto.output, whole.output)
    sizes.clear()
    snn.simulate(x[:7], max_memory=budget)  # fits in one chunk
    assert sizes == [7]
