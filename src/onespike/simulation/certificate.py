"""The exactness certificate of a simulation."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Certificate"]


@dataclass
class Certificate:
    """Per hidden spiking layer, over all simulated samples:

    * ``early``: neurons that fire before their own window (model A; the network then differs
      from the ReLU network),
    * ``saturated``: neurons whose activation ``z`` exceeds the window ``B`` (clipped),
    * ``checked``: neurons that no certificate proved (``engines.bounds``: the drive bound, the
      grid bound), so their first crossing was computed exactly,
    * ``neurons``: neurons simulated (batch × layer size).

    ``nonfinite`` counts NaN (and, outside the silent ``−inf`` of model B, infinite) values
    and outputs: any makes the simulation not exact. ``sample_exact`` (B,) tells which
    samples were free of violations; ``exact`` is True when every sample was.
    """

    layers: list[str]
    early: list[int]
    saturated: list[int]
    checked: list[int]
    neurons: list[int]
    sample_exact: Tensor = field(repr=False)
    nonfinite: int = 0

    @property
    def exact(self) -> bool:
        return not any(self.early) and not any(self.saturated) and self.nonfinite == 0

    @property
    def violations(self) -> int:
        return int(sum(self.early) + sum(self.saturated) + self.nonfinite)

    @classmethod
    def merge(cls, parts: list[Certificate]) -> Certificate:
        first = parts[0]
        n = len(first.layers)
        return cls(
            list(first.layers),
            [sum(p.early[i] for p in parts) for i in range(n)],
            [sum(p.saturated[i] for p in parts) for i in range(n)],
            [sum(p.checked[i] for p in parts) for i in range(n)],
            [sum(p.neurons[i] for p in parts) for i in range(n)],
            torch.cat([p.sample_exact for p in parts]),
            sum(p.nonfinite for p in parts),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "exact": self.exact,
            "samples": int(self.sample_exact.numel()),
            "samples_exact": int(self.sample_exact.sum()),
            "nonfinite": self.nonfinite,
            "layers": [
                {"layer": name, "early": e, "saturated": s, "checked": c, "neurons": n}
                for name, e, s, c, n in zip(
                    self.layers, self.early, self.saturated, self.checked, self.neurons
                )
            ],
        }

    def __str__(self) -> str:
        head = "exact" if self.exact else f"NOT exact ({self.violations} violations)"
        rows = [f"certificate: {head} over {self.sample_exact.numel()} samples"]
        if self.nonfinite:
            rows.append(f"  {self.nonfinite} NaN/inf values or outputs")
        for name, e, s, c, n in zip(
            self.layers, self.early, self.saturated, self.checked, self.neurons
        ):
            rows.append(f"  {name:<10} early={e:<6} saturated={s:<6} checked={c}/{n}")
        return "\n".join(rows)
