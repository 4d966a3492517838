"""Force the matrix-product form of the bfloat16 convolutions (:func:`affine._as_gemm`) on
every 2-d layer without groups, and count its products, so that the certificates'
soundness tests cover that form too."""

from __future__ import annotations

import pytest

from onespike.simulation import affine


def gemm_everywhere(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch the thresholds (no packed weights, any map size); returns a list that grows by
    one per matrix product run."""
    monkeypatch.setattr(affine, "PACK_MAX_POSITIONS", 0)
    monkeypatch.setattr(affine, "GEMM_MAX_POSITIONS", 1 << 30)
    calls: list[int] = []
    real = affine._LINEAR

    def counted(*args: object) -> object:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(affine, "_LINEAR", counted)
    return calls
