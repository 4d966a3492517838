"""Simulation driver and its result (step 6 of the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil
import torch
from torch import Tensor

from .certificate import Certificate
from .engines import closed_hidden, closed_readout, event_hidden, event_readout
from .perturb import Perturbation

if TYPE_CHECKING:
    from .network import SpikingNetwork

__all__ = ["CHUNK_BYTES", "ENGINES", "SimulationResult", "auto_chunk_size", "simulate_values"]

ENGINES = ("event", "closed")
# Default working set of one chunk of the event/closed engines: larger chunks are not faster
# (VGG-16 at 64×64, batch 64: 16-sample chunks run 18 % faster than one chunk) and cost memory.
CHUNK_BYTES = 256 << 20


@dataclass
class SimulationResult:
    """Result of :meth:`SpikingNetwork.simulate`.

    ``output``: readout potentials at ``t_min`` of the readout (= logits), shaped like the
    model's output. ``spike_times``: input layer, then every hidden spiking layer, each
    (B, *layer shape), ``inf`` where a neuron does not fire (model B); empty if not recorded.
    ``windows``: ``(t_min, t_max)`` of the same list. ``certificate``: see
    :class:`~onespike.Certificate`.
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
            v = t_max - t
            out.append(torch.where(torch.isfinite(t), v, torch.zeros_like(v)))
        return out

    @classmethod
    def from_chunks(
        cls,
        network: SpikingNetwork,
        outs: list[Tensor],
        recs: list[list[Tensor]],
        certs: list[Certificate],
        engine: str,
        record: bool,
        extras: dict[str, object] | None = None,
    ) -> SimulationResult:
        """Concatenate the per-chunk outputs, recorded spike times and certificates."""
        hidden = network.hidden_layers
        spike_times = ([torch.cat([r[i] for r in recs]) for i in range(len(recs[0]))]
                       if record else [])
        return cls(
            output=torch.cat(outs),
            spike_times=spike_times,
            layer_names=["input"] + [ly.name for ly in hidden] if record else [],
            windows=[(0.0, 1.0)] + [(ly.t_min, ly.t_max) for ly in hidden] if record else [],
            certificate=Certificate.merge(certs),
            engine=engine,
            neuron=network.neuron,
            latency=network.latency,
            extras=dict(extras or {}),
        )

    @property
    def predictions(self) -> Tensor:
        return self.output.reshape(self.output.shape[0], -1).argmax(dim=1)


def auto_chunk_size(network: SpikingNetwork, record: bool, dtype: torch.dtype,
                    device: torch.device, max_memory: int | None = None) -> int:
    """Samples per chunk so that the working set stays within ``max_memory`` bytes (default:
    a quarter of the available memory, at most :data:`CHUNK_BYTES`)."""
    if max_memory is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            avail = int(free)
        else:
            avail = int(psutil.virtual_memory().available)
        max_memory = min(CHUNK_BYTES, avail // 4)
    item = torch.empty((), dtype=dtype).element_size()
    per = 0
    recorded = 0
    prev = 1
    for s in network.input_shape:
        prev *= int(s)
    recorded += prev
    for layer in network.layers:
        n_in = 1
        for s in layer.in_shape:
            n_in *= int(s)
        # routed input and its float32 maps; z, values, the certificates' float32 sums and
        # float64 bounds (engines.bounds), masks
        per = max(per, (prev + 2 * n_in + 8 * layer.num_neurons) * item)
        prev = layer.num_neurons
        recorded += layer.num_neurons
    if record:
        per += recorded * item
    return max(1, int(max_memory // max(per, 1)))


def simulate_values(
    network: SpikingNetwork,
    xhat: Tensor,
    engine: str,
    *,
    record: bool,
    certify: bool,
    perturbation: Perturbation | None = None,
    gains: list[Tensor | None] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, list[Tensor], Certificate]:
    """Simulate one chunk of normalised inputs ``x̂``; returns the readout, the recorded
    spike times and the certificate of the chunk.

    ``perturbation`` (event engine only) perturbs spike times after every layer with
    ``generator``; ``gains`` are the per-layer alpha factors it drew."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES} (or 'clock'), got {engine!r}")
    perturb = perturbation is not None and perturbation.active
    if perturb and engine != "event":
        raise ValueError("perturbations are simulated by the event (or clock) engine only")
    bsz = xhat.shape[0]
    hidden = [ly for ly in network.layers if not ly.readout]
    early, sat, checked, neurons = [], [], [], []
    bad = torch.zeros(bsz, dtype=torch.bool, device=xhat.device)
    times: list[Tensor] = []
    if network.neuron == "alpha":
        v = xhat
    else:  # model B: an input value of 0 sends no spike
        v = torch.where(xhat > 0, xhat, torch.full_like(xhat, float("-inf")))
    if perturb:
        assert perturbation is not None and generator is not None
        v = perturbation.spikes(v, 1.0, generator)
    if record:
        times.append(1.0 - v)
    for i, layer in enumerate(hidden):
        v_in = layer.routed(v)
        gain = gains[i] if gains else None
        step = (event_hidden(layer, v_in, gain, perturbed=perturb) if engine == "event"
                else closed_hidden(layer, v_in, certify=certify))
        v = step.values
        if perturb:
            assert perturbation is not None and generator is not None
            v = perturbation.spikes(v, layer.B, generator)
        early.append(int(step.early.sum()))
        sat.append(int(step.saturated.sum()))
        checked.append(int(step.checked.sum()))
        neurons.append(bsz * layer.num_neurons)
        bad |= (step.early > 0) | (step.saturated > 0)
        if record:
            times.append(layer.t_max - v)
    readout = network.layers[-1]
    v_in = readout.routed(v)
    out = event_readout(readout, v_in) if engine == "event" else closed_readout(readout, v_in)
    for r in network.output_routes:
        out = r(out)
    cert = Certificate([ly.name for ly in hidden], early, sat, checked, neurons, ~bad)
    return out, times, cert
