"""What the bfloat16 certificate tests share: they run wherever oneDNN runs bfloat16
convolutions — natively, or emulated on AVX-512 CPUs without bfloat16 instructions, where
the library itself keeps the float32 forms unless told otherwise (``BF16_EMULATED``, which
:func:`bf16_anywhere` sets) — with the same hypothesis settings."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from tests.helpers.patching import patch_package

from onespike.simulation.engines import bounds
from onespike.simulation.engines.bounds.drive import _bf16_conv_supported

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

#: ``pytestmark`` of a module whose tests check the bfloat16 forms: skipped where oneDNN runs
#: no bfloat16 convolutions, else run with the forms on (the ``bf16_everywhere`` fixture of
#: ``tests/simulation/engines/bounds/conftest.py``: :func:`bf16_anywhere` for the module).
BF16_ONLY = [pytest.mark.skipif(not _bf16_conv_supported(),
                                reason="oneDNN runs no bfloat16 convolutions on this CPU"),
             pytest.mark.usefixtures("bf16_everywhere")]


def bf16_anywhere(monkeypatch: pytest.MonkeyPatch, on: bool = True) -> None:
    """Let the certificates take their bfloat16 forms on this CPU even where oneDNN only
    emulates bfloat16 (the same arithmetic: what the tests check)."""
    patch_package(monkeypatch, bounds, "BF16_EMULATED", on)
