"""The simulation driver and its result (step 6 of the pipeline).

One driver runs every engine (:mod:`onespike.simulation.engines`: ``event``, ``closed``,
``clock``): it
encodes the inputs, splits the batch into chunks within a memory budget, walks the
populations in topological order — each reads its edges' routed, delayed source spikes, which
are freed after their last consumer — applies the perturbations (random draws per sample, so
results do not depend on the chunk size), records spike times and merges the certificates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import psutil
import torch
from torch import Tensor
from tqdm.auto import tqdm

from onespike.errors import ArgumentError
from onespike.simulation.certificate import Certificate
from onespike.simulation.engines.step import PopulationStep
from onespike.simulation.ops import rsub
from onespike.simulation.perturb import Perturbation
from onespike.simulation.schedule import last_use

if TYPE_CHECKING:
    from onespike.simulation.protocols import NetworkLike, PopulationLike

__all__ = ["CHUNK_BYTES", "ENGINES", "SMALL_WORKING_SET", "Engine", "SimulationResult",
           "auto_chunk_size", "run_simulation", "sample_bytes"]

#: Engines of :meth:`SpikingNetwork.simulate`.
ENGINES = ("event", "closed", "clock")
# Default working set of one chunk (as :func:`auto_chunk_size` estimates it). Each chunk pays
# every population's fixed costs (a few hundred tensor operations and their dispatch), and
# only a chunk holding the whole batch records its spike times in place, so chunks should be
# large: at batch 64, float64, one thread, in one process, VGG-16 32×32 in one chunk runs
# 5–6 % faster than in chunks of 33 and 31, ResNet-18 recording its spike times 4 % faster
# than in two of 32, VGG-16 64×64 3 % faster than in three of 21–22. Their live memory in
# one chunk at batch 64 (fresh processes, fixed glibc mmap threshold; MiB above the loaded
# network, estimate / measured, their float64 forward): VGG-16 32×32 194 / 202 (362),
# ResNet-18 322 / 354 (426), VGG-16 64×64 774 / 626 (1418).
CHUNK_BYTES = 1 << 30
#: A batch whose working set (:func:`sample_bytes`) is at most this many bytes runs in one
#: chunk without the free-memory query of :func:`auto_chunk_size` (a tenth of a millisecond:
#: a tenth of a small network's call at batch 1).
SMALL_WORKING_SET = 64 << 20


class Engine(Protocol):
    """What an engine provides to the driver (per population)."""

    name: str

    def hidden(self, pop: PopulationLike, xs: list[Tensor], *, gain: Tensor | None,
               perturbed: bool) -> PopulationStep: ...

    def readout(self, pop: PopulationLike, xs: list[Tensor]) -> Tensor: ...


@dataclass
class SimulationResult:
    """Result of :meth:`SpikingNetwork.simulate`.

    ``output``: readout potentials at ``t_min`` of the readout (= logits), shaped like the
    model's output. ``spike_times``: input population, then every hidden population (in
    topological order), each (B, *shape), ``inf`` where a neuron does not fire (model B);
    empty if not recorded. ``windows``: ``(t_min, t_max)`` of the same list.
    ``certificate``: see :class:`~onespike.Certificate`.
    """

    output: Tensor
    spike_times: list[Tensor]
    layer_names: list[str]
    windows: list[tuple[float, float]]
    certificate: Certificate
    engine: str
    neuron: str
    latency: float
    extras: dict[str, object] = field(default_factory=dict)

    def activations(self) -> list[Tensor]:
        """Decoded values ``t_max − t`` (0 for no spike) of the ``spike_times`` list."""
        out = []
        for t, (_, t_max) in zip(self.spike_times, self.windows):
            v = rsub(t_max, t)  # t_max − t, as the times were recorded
            out.append(torch.where(torch.isfinite(t), v, torch.zeros_like(v)))
        return out

    @property
    def predictions(self) -> Tensor:
        return self.output.reshape(self.output.shape[0], -1).argmax(dim=1)


def auto_chunk_size(network: NetworkLike, record: bool, dtype: torch.dtype,
                    device: torch.device, max_memory: int | None = None) -> int:
    """Samples per chunk so that the working set (:func:`sample_bytes` per sample) stays
    within ``max_memory`` bytes (default: a quarter of the available memory, at most
    :data:`CHUNK_BYTES`)."""
    return _chunk_for(sample_bytes(network, record, dtype), device, max_memory)


def _chunk_for(per_sample: int, device: torch.device, max_memory: int | None) -> int:
    """Samples of ``per_sample`` bytes that fit in ``max_memory`` (None: a quarter of the
    memory available on ``device``, at most :data:`CHUNK_BYTES`), at least one."""
    if max_memory is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            avail = int(free)
        else:
            avail = int(psutil.virtual_memory().available)
        max_memory = min(CHUNK_BYTES, avail // 4)
    return max(1, int(max_memory // max(per_sample, 1)))


def sample_bytes(network: NetworkLike, record: bool, dtype: torch.dtype) -> int:
    """The working set of one sample, in bytes of ``dtype``: the largest, over the populations
    in order, of the maps still alive (with ``record``, every recorded one so far) plus the
    population's inputs plus four maps of its neurons — within about a quarter of the live
    memory measured on the benchmark's VGG-16s and ResNet-18 (:data:`CHUNK_BYTES`). Fixed
    costs (cached weight copies, the exact walk's gathers) are not per sample and not
    counted."""
    item = torch.empty((), dtype=dtype, device="cpu").element_size()
    sizes = {"input": math.prod(network.input_shape)}
    live = sizes["input"]
    per = 0
    last = last_use(list(network.layers))
    for i, pop in enumerate(network.layers):
        n_in = sum(math.prod(e.in_shape) for e in pop.edges)
        # beside every population still alive: the routed inputs' float32 and bfloat16 copies
        # (about one map of the inputs), z and the values, the certificates' sums, bounds and
        # masks (about four maps of the neurons)
        per = max(per, live + n_in + 4 * pop.num_neurons)
        sizes[pop.name] = pop.num_neurons
        live += pop.num_neurons
        if not record:  # (recorded maps stay: as the spike times, or copied into them)
            live -= sum(sizes[n] for n, j in last.items() if j == i)
    return per * item


def _nonfinite(v: Tensor, silent_ok: bool) -> int:
    """NaN entries, and infinities other than the silent ``−inf`` when ``silent_ok``."""
    if v.numel() == 0:
        return 0
    lo, hi = torch.aminmax(v)  # one pass; NaN propagates, and fails both comparisons
    if bool(hi < float("inf")) and (silent_ok or bool(lo > float("-inf"))):
        return 0
    bad = torch.isnan(v) | (v == float("inf")) if silent_ok else ~torch.isfinite(v)
    return int(bad.sum()) if bool(bad.any()) else 0


def run_simulation(
    network: NetworkLike,
    xhat: Tensor,
    engine: Any,
    *,
    record: bool,
    chunk_size: int | None,
    max_memory: int | None,
    progress: bool,
    perturbation: Perturbation | None,
    extras: dict[str, object] | None = None,
) -> SimulationResult:
    """Simulate normalised inputs ``x̂`` with ``engine`` (see the module docstring)."""
    n = xhat.shape[0]
    if chunk_size is None:
        per_sample = sample_bytes(network, record, network.dtype)
        if max_memory is None and n * per_sample <= SMALL_WORKING_SET:
            chunk_size = max(n, 1)  # one chunk, without asking the system for its free memory
        else:  # auto_chunk_size, on the estimate just made
            chunk_size = _chunk_for(per_sample, network.device, max_memory)
        # as few chunks as that allows, of equal sizes (64 in 45 + 19 costs the fixed costs
        # twice, as 32 + 32 does, with a larger working set)
        if n:
            chunks = -(-n // chunk_size)  # ceil(n / chunk_size)
            chunk_size = -(-n // chunks)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ArgumentError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    perturb = perturbation is not None and perturbation.active
    gains: dict[str, Tensor | None] = {}
    if perturb:
        assert perturbation is not None
        if perturbation.alpha_noise > 0 and not network.layers[0].model.has_alpha:
            raise ArgumentError("alpha noise applies to model A (neuron='alpha') only")
        gen = perturbation.generator(network.device)
        for pop in network.hidden_layers:
            gains[pop.name] = perturbation.alpha_gain(pop.out_shape, gen, network.dtype,
                                                      network.device)
    if n == 0:  # an empty batch: empty results, nothing to simulate
        return _empty_result(network, xhat, engine.name, record, extras)
    outs: list[Tensor] = []
    recorder = _Recorder(n) if record else None
    certs: list[Certificate] = []
    starts = range(0, n, chunk_size)
    with torch.no_grad():
        for s in tqdm(starts, desc=f"simulating ({engine.name})", unit="chunk",
                      disable=not progress or len(starts) < 2, leave=False):
            chunk = xhat[s : s + chunk_size]
            gens = (perturbation.sample_generators(s, chunk.shape[0], network.device)
                    if perturb and perturbation is not None else None)
            out, cert = _chunk(network, chunk, engine,
                               record=None if recorder is None else recorder.at(s),
                               perturbation=perturbation if perturb else None,
                               gains=gains, gens=gens)
            outs.append(out)
            certs.append(cert)
    hidden = network.hidden_layers
    return SimulationResult(
        output=outs[0] if len(outs) == 1 else torch.cat(outs),
        spike_times=[] if recorder is None else recorder.buffers,
        layer_names=["input"] + [p.name for p in hidden] if record else [],
        windows=[(0.0, 1.0)] + [(p.t_min, p.t_max) for p in hidden] if record else [],
        certificate=Certificate.merge(certs),
        engine=engine.name,
        neuron=network.neuron,
        latency=network.latency,
        extras=dict(extras or {}),
    )


def _empty_result(network: NetworkLike, xhat: Tensor, engine: str, record: bool,
                  extras: dict[str, object] | None) -> SimulationResult:
    hidden = network.hidden_layers
    empty = xhat.new_empty((0, *network.output_shape))
    cert = Certificate([p.name for p in hidden], [0] * len(hidden), [0] * len(hidden),
                       [0] * len(hidden), [0] * len(hidden),
                       torch.zeros(0, dtype=torch.bool, device=xhat.device))
    return SimulationResult(
        output=empty,
        spike_times=([xhat.new_empty((0, *network.input_shape))]
                     + [xhat.new_empty((0, *p.out_shape)) for p in hidden]) if record else [],
        layer_names=["input"] + [p.name for p in hidden] if record else [],
        windows=[(0.0, 1.0)] + [(p.t_min, p.t_max) for p in hidden] if record else [],
        certificate=cert, engine=engine, neuron=network.neuron, latency=network.latency,
        extras=dict(extras or {}),
    )


def _chunk(
    network: NetworkLike,
    xhat: Tensor,
    engine: Any,
    *,
    record: _ChunkRecord | None,
    perturbation: Perturbation | None,
    gains: dict[str, Tensor | None],
    gens: list[torch.Generator] | None,
) -> tuple[Tensor, Certificate]:
    """One chunk through every population (spike times written into ``record``)."""
    bsz = xhat.shape[0]
    pops = list(network.layers)
    last = last_use(pops)
    released: dict[int, list[str]] = {}  # step index -> the sources it read last
    windows = {"input": (0.0, 1.0)}
    state: dict[str, Tensor] = {}
    model = network.layers[0].model
    silent_ok = not model.zero_spikes
    early, sat, checked, neurons = [], [], [], []
    bad = torch.zeros(bsz, dtype=torch.bool, device=xhat.device)
    nonfinite = 0
    v = engine.encode(network, xhat) if hasattr(engine, "encode") else model.encode(xhat)
    if perturbation is not None:
        assert gens is not None
        v = engine.perturb(v, 1.0, 1.0, perturbation, gens) if hasattr(engine, "perturb") \
            else perturbation.spikes(v, 1.0, gens)
    state["input"] = v
    if record is not None:
        record.put(engine, v, 1.0)
    out: Tensor | None = None
    for i, pop in enumerate(pops):
        xs = [engine.edge_input(pop, j, state[e.source], windows[e.source])
              if hasattr(engine, "edge_input") else
              _edge_values(pop, j, state[e.source], windows[e.source][1])
              for j, e in enumerate(pop.edges)]
        for name in [nm for nm, j in last.items() if j == i]:
            state.pop(name, None)
            released.setdefault(i, []).append(name)
        if pop.readout:
            out = engine.readout(pop, xs)
            _release(record, released, i, state, out)
            continue
        step = engine.hidden(pop, xs, gain=gains.get(pop.name),
                             perturbed=perturbation is not None)
        v = step.values
        nf = 0 if step.finite else _nonfinite(v, silent_ok)
        if nf:
            nonfinite += nf
            bad |= (torch.isnan(v) | (v == float("inf"))).reshape(bsz, -1).any(dim=1)
        if perturbation is not None:
            assert gens is not None
            v = engine.perturb(v, pop.t_max, pop.B, perturbation, gens) if hasattr(
                engine, "perturb") else perturbation.spikes(v, pop.B, gens)
        early.append(int(step.early.sum()))
        sat.append(int(step.saturated.sum()))
        checked.append(int(step.checked.sum()))
        neurons.append(bsz * pop.num_neurons)
        bad |= (step.early > 0) | (step.saturated > 0)
        state[pop.name] = v
        windows[pop.name] = (pop.t_min, pop.t_max)
        if record is not None:
            record.adopt(engine, pop.name, v, pop.t_max)
            if pop.name not in last:  # read by no population: its times after this step
                released.setdefault(i, []).append(pop.name)
        _release(record, released, i, state, out)
    assert out is not None
    for r in network.output_routes:
        out = r(out)
    nf = _nonfinite(out, False)
    if nf:
        nonfinite += nf
        bad |= (~torch.isfinite(out)).reshape(bsz, -1).any(dim=1)
    hidden = [p.name for p in pops if not p.readout]
    cert = Certificate(hidden, early, sat, checked, neurons, ~bad, nonfinite)
    return out, cert


def _release(record: _ChunkRecord | None, released: dict[int, list[str]], i: int,
             state: dict[str, Tensor], out: Tensor | None) -> None:
    """After step ``i``: the recorded sources it read last become spike times."""
    if record is None:
        return
    names = released.pop(i, [])
    if names:
        live = [*state.values(), *([] if out is None else [out])]
        for name in names:
            record.release(name, live)


def _edge_values(pop: PopulationLike, i: int, v: Tensor, t_max_source: float) -> Tensor:
    """Routed source values as the population sees them after the edge's delay."""
    from onespike.simulation.engines.event import delayed_values

    e = pop.edges[i]
    return delayed_values(pop.route(i, v), t_max_source, e.delay, pop.t_min)


class _Recorder:
    """Spike times of every recorded population for the whole batch of ``n`` samples: one
    buffer per population, allocated at its first chunk, into which each chunk writes its
    rows (no per-chunk copies to concatenate at the end)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.buffers: list[Tensor] = []

    def at(self, start: int) -> _ChunkRecord:
        return _ChunkRecord(self, start)


class _ChunkRecord:
    """Where one chunk (rows from ``start``) writes its spike times, population by
    population in the order of :attr:`SimulationResult.spike_times`.

    When the chunk is the whole batch, a hidden population's values map becomes its spike
    times buffer itself (:meth:`adopt`): it is turned into ``t_max − v`` in place once the
    last population reading it has run (:meth:`release`) — the same values as writing them
    into a fresh buffer, without that buffer (its allocation, the page faults of first
    touching it, and its memory: VGG-16 32×32 at batch 64, 142 MB). The engines only read
    their inputs and return maps of their own; :meth:`release` checks that no map still in
    use shares the memory before writing."""

    def __init__(self, recorder: _Recorder, start: int) -> None:
        self.recorder, self.start, self.index = recorder, start, 0
        self._pending: dict[str, tuple[int, float]] = {}  # name -> (buffer index, t_max)

    def put(self, engine: Any, v: Tensor, t_max: float) -> None:
        bufs = self.recorder.buffers
        if self.index == len(bufs):
            bufs.append(torch.empty((self.recorder.n, *v.shape[1:]), dtype=v.dtype,
                                    device=v.device))
        dest = bufs[self.index][self.start : self.start + v.shape[0]]
        self.index += 1
        if hasattr(engine, "times"):
            dest.copy_(engine.times(v, t_max))
        else:
            rsub(t_max, v, out=dest)

    def adopt(self, engine: Any, name: str, v: Tensor, t_max: float) -> None:
        """Record population ``name``'s values ``v`` (a map the engine made for this step):
        kept as its buffer and converted by :meth:`release` when the chunk is the whole
        batch and the engine's times are ``t_max − v``; else as :meth:`put`."""
        bufs = self.recorder.buffers
        if (hasattr(engine, "times") or self.index != len(bufs) or self.start != 0
                or v.shape[0] != self.recorder.n or not v.is_contiguous()):
            self.put(engine, v, t_max)
            return
        bufs.append(v)
        self._pending[name] = (self.index, t_max)
        self.index += 1

    def release(self, name: str, live: list[Tensor]) -> None:
        """Population ``name``'s values are read no more: its adopted map becomes its spike
        times in place — in a fresh buffer instead should a ``live`` map share its memory."""
        entry = self._pending.pop(name, None)
        if entry is None:
            return
        i, t_max = entry
        bufs = self.recorder.buffers
        v = bufs[i]
        mine = v.untyped_storage().data_ptr()
        others = [*live, *(bufs[j] for j, _ in self._pending.values())]
        if any(t is not v and t.untyped_storage().data_ptr() == mine for t in others):
            bufs[i] = rsub(t_max, v)
        else:
            rsub(t_max, v, out=v)
