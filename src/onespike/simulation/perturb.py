"""Perturbations of the spiking dynamics (robustness studies, docs/method.md §10).

They act *inside* the simulation, layer by layer, so their effects propagate:

* ``jitter``: Gaussian noise of standard deviation ``jitter`` (units of tau_c) added to every
  spike time (input and hidden layers);
* ``time_bits``: every spike time is rounded to one of ``2**time_bits`` levels spanning its
  layer's window (``t_min + k·B/(2**bits − 1)``), as a clock with that many ticks per window;
* ``alpha_noise``: model A only — every hidden neuron's constant current ``alpha`` is
  multiplied by a fixed ``1 + alpha_noise·N(0, 1)`` (one draw per neuron, shared by all
  samples), while ``theta`` and ``J`` keep ``alpha = 1``.

Neurons that do not fire (model B) stay silent. The noise of sample ``i`` comes from its own
generator, seeded from ``(seed, i)``, and the alpha factors from one seeded with ``seed``, so a
perturbed simulation does not depend on how the batch is chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from onespike.errors import ArgumentError

__all__ = ["Perturbation"]


@dataclass(frozen=True)
class Perturbation:
    """Noise applied by :meth:`SpikingNetwork.simulate` (``perturbation=...``)."""

    jitter: float = 0.0
    alpha_noise: float = 0.0
    time_bits: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.jitter < 0 or self.alpha_noise < 0:
            raise ArgumentError("jitter and alpha_noise must be >= 0")
        if self.time_bits is not None and self.time_bits < 1:
            raise ArgumentError("time_bits must be >= 1")

    @property
    def active(self) -> bool:
        return self.jitter > 0 or self.alpha_noise > 0 or self.time_bits is not None

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator of the alpha factors (one draw per neuron, shared by all samples)."""
        return torch.Generator(device=device).manual_seed(int(self.seed))

    def sample_generators(self, start: int, count: int, device: torch.device
                          ) -> list[torch.Generator]:
        """One generator per sample ``start … start + count − 1`` (global batch indices),
        seeded with ``fmix32(index + fmix32(seed))``: a bijection of the index for a given
        seed (32 bits: the CPU generator keeps only the low 32 bits of a seed)."""
        base = _fmix32(int(self.seed) & 0xFFFFFFFF)
        return [torch.Generator(device=device).manual_seed(_fmix32((base + start + i)
                                                                    & 0xFFFFFFFF))
                for i in range(count)]

    def spikes(self, values: Tensor, B: float,
               gen: torch.Generator | list[torch.Generator]) -> Tensor:
        """Perturb values ``v = t_max − t`` of one population whose window has size ``B``;
        ``gen``: one generator per sample (chunk-independent) or one for the batch."""
        v = values
        if self.jitter > 0:
            if isinstance(gen, list):
                noise = torch.stack([torch.randn(v.shape[1:], generator=g, device=v.device,
                                                 dtype=v.dtype) for g in gen]) if gen else (
                    torch.zeros_like(v))
            else:
                noise = torch.randn(v.shape, generator=gen, device=v.device, dtype=v.dtype)
            v = v - self.jitter * noise  # t' = t + sigma·N  ⇔  v' = v − sigma·N
        if self.time_bits is not None:
            step = B / (2**self.time_bits - 1)
            v = torch.round(v / step) * step
        return v

    def alpha_gain(self, shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype,
                   device: torch.device) -> Tensor | None:
        """Fixed per-neuron factor ``1 + alpha_noise·N(0, 1)`` for one layer (None if off)."""
        if self.alpha_noise <= 0:
            return None
        return 1.0 + self.alpha_noise * torch.randn(shape, generator=gen, device=device,
                                                    dtype=dtype)


def _fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser (a bijection on 32-bit integers)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h
