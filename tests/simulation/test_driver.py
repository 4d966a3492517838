"""The driver's recording: every chunk writes its rows of each population's spike times into
one buffer per population (a chunk holding the whole batch turns the populations' own maps
into their spike times in place) — the same times whatever the chunk size, for every engine,
with the shapes, dtype and device of the network."""

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


def test_a_small_working_set_runs_in_one_chunk_without_the_memory_query(monkeypatch) -> None:
    """Up to SMALL_WORKING_SET bytes the batch is one chunk and the free memory is never
    read; above it (here: a threshold of 0) it is, and the chunks follow from it."""
    import psutil

    from onespike.simulation import driver

    x = torch.rand(9, 1, 8, 8)
    snn = onespike.convert(cnn(), x, progress=False)
    assert 9 * driver.sample_bytes(snn, True, snn.dtype) <= driver.SMALL_WORKING_SET
    sizes: list[int] = []
    real = driver._chunk

    def spy(network, chunk, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(chunk.shape[0])
        return real(network, chunk, *args, **kwargs)

    def no_query():  # type: ignore[no-untyped-def]
        raise AssertionError("free memory queried")

    monkeypatch.setattr(driver, "_chunk", spy)
    monkeypatch.setattr(psutil, "virtual_memory", no_query)
    whole = snn.simulate(x)
    assert sizes == [9]
    queried: list[int] = []

    def tiny():  # type: ignore[no-untyped-def]
        queried.append(1)
        return type("Memory", (), {"available": 4 * 4 * driver.sample_bytes(snn, True,
                                                                            snn.dtype)})()

    monkeypatch.setattr(psutil, "virtual_memory", tiny)
    monkeypatch.setattr(driver, "SMALL_WORKING_SET", 0)
    sizes.clear()
    part = snn.simulate(x)  # a quarter of "available" holds 4 samples: chunks of 3
    assert queried and sizes == [3, 3, 3]
    assert torch.equal(part.output, whole.output)


def test_chunk_estimate_by_hand() -> None:
    """Per sample, the largest over the populations of (maps alive + inputs + 4 × neurons),
    in the network's dtype; recorded maps stay alive. 4 → 3 → 5 → 2: without recording 20,
    3 + 3 + 20 = 26 and 5 + 5 + 8 items (the input and layer 1 freed after their last
    reader); recording, 20, 7 + 3 + 20 = 30 and 12 + 5 + 8."""
    from onespike.simulation import driver

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 5), nn.ReLU(),
                        nn.Linear(5, 2)).eval()
    x = torch.rand(32, 4)
    snn = onespike.convert(mlp, x, progress=False)
    cpu = torch.device("cpu")
    assert driver.auto_chunk_size(snn, False, torch.float64, cpu, 26 * 8 * 10) == 10
    assert driver.auto_chunk_size(snn, False, torch.float64, cpu, 26 * 8 * 10 - 1) == 9
    assert driver.auto_chunk_size(snn, True, torch.float64, cpu, 30 * 8 * 10) == 10
    assert driver.auto_chunk_size(snn, True, torch.float64, cpu, 30 * 8 * 10 - 1) == 9
    assert driver.auto_chunk_size(snn, True, torch.float32, cpu, 30 * 4 * 10) == 10


@pytest.mark.parametrize("name", ["cnn", "resnet_basic", "inception"])
@pytest.mark.parametrize("engine", ["event", "closed"])
def test_a_whole_batch_chunk_records_its_own_maps_in_place(
        name: str, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One chunk holding the whole batch: every hidden population's values map becomes its
    spike times buffer in place (no buffer of its own is allocated: only the input is
    copied), after the last population reading it has run — the same times, bit for bit, as
    chunks writing into buffers, and the same outputs (a map turned into times too early would
    change what its readers see)."""
    from tests.helpers.dag_nets import ZOO

    from onespike.simulation import driver

    model, shape = (cnn(), (1, 8, 8)) if name == "cnn" else ZOO[name]()
    x = torch.rand(9, *shape)
    snn = onespike.convert(model.eval(), x, progress=False)
    puts: list[int] = []
    real = driver._ChunkRecord.put

    def counted(self: driver._ChunkRecord, *args: object) -> None:
        puts.append(1)
        real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(driver._ChunkRecord, "put", counted)
    whole = snn.simulate(x, engine=engine, chunk_size=9)
    assert len(puts) == 1  # the input alone
    chunked = snn.simulate(x, engine=engine, chunk_size=4)
    assert len(puts) == 1 + 3 * len(whole.spike_times)
    assert torch.equal(whole.output, chunked.output)
    assert torch.equal(whole.output, snn.simulate(x, engine=engine, record=False).output)
    for a, b in zip(whole.spike_times, chunked.spike_times):
        assert torch.equal(a, b)
    storages = {t.untyped_storage().data_ptr() for t in whole.spike_times}
    assert len(storages) == len(whole.spike_times)  # one buffer per population


class _Times:
    """An engine with its own spike times (the clock engine's kind): never adopted."""

    name = "stub"

    def times(self, v: torch.Tensor, t_max: float) -> torch.Tensor:
        return t_max - 2.0 * v


def test_an_adopted_map_still_in_use_is_copied_not_overwritten() -> None:
    from onespike.simulation import driver

    rec = driver._Recorder(2)
    chunk = rec.at(0)
    engine = onespike.simulation.engines.EventEngine()
    v = torch.tensor([[0.25, 1.0], [0.5, 2.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 0.0], [0.5, 0.75]], dtype=torch.float64)
    chunk.adopt(engine, "a", v, 3.0)
    chunk.adopt(engine, "b", w, 4.0)
    assert rec.buffers[0] is v and rec.buffers[1] is w
    alias = v.view(-1)  # a map still read elsewhere shares a's memory
    chunk.release("a", [alias])
    assert rec.buffers[0] is not v and torch.equal(v, torch.tensor([[0.25, 1.0], [0.5, 2.0]],
                                                                   dtype=torch.float64))
    assert torch.equal(rec.buffers[0], 3.0 - v)
    chunk.release("b", [alias])  # nothing shares b's memory: in place
    assert rec.buffers[1] is w and torch.equal(w, torch.tensor([[3.0, 4.0], [3.5, 3.25]],
                                                               dtype=torch.float64))
    chunk.release("b", [])  # released once only
    assert torch.equal(w, torch.tensor([[3.0, 4.0], [3.5, 3.25]], dtype=torch.float64))
    # engines with their own times, partial chunks and strided maps are written as before
    other = driver._Recorder(4)
    part = other.at(0)
    part.adopt(engine, "c", v, 3.0)  # 2 of 4 rows: a chunk, not the batch
    part.adopt(_Times(), "d", torch.zeros(4, 2, dtype=torch.float64), 1.0)
    part.adopt(engine, "e", torch.zeros(2, 4, dtype=torch.float64).T, 1.0)
    assert not part._pending and all(b.shape[0] == 4 for b in other.buffers)
    assert torch.equal(other.buffers[1], torch.ones(4, 2, dtype=torch.float64))
