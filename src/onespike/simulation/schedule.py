"""When a population's values can be freed: the index of its last consumer (internal)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["last_use"]


def last_use(pops: Sequence[Any]) -> dict[str, int]:
    """Index (in ``pops``) of the last population that reads each source."""
    last: dict[str, int] = {}
    for i, p in enumerate(pops):
        for e in p.edges:
            last[e.source] = i
    return last
