"""What an engine returns for one hidden population of a batch."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["PopulationStep"]


@dataclass
class PopulationStep:
    """``values``: ``t_max − t`` per neuron (−inf = no spike); ``early`` / ``saturated`` /
    ``checked``: per-sample counts of neurons that fire before their window, whose activation
    exceeds the window, and that needed the exact first-crossing computation. ``finite``:
    the engine knows every value to be finite (no NaN or ±inf), so the driver need not scan
    them again."""

    values: Tensor
    early: Tensor
    saturated: Tensor
    checked: Tensor
    finite: bool = False
