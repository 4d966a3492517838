"""Fixtures of the certificate tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers.bf16 import bf16_anywhere


@pytest.fixture(scope="module")
def bf16_everywhere() -> Iterator[None]:
    """The certificates' bfloat16 forms on for a whole module (``BF16_ONLY``), on any CPU
    where oneDNN runs bfloat16 convolutions, emulated ones included."""
    with pytest.MonkeyPatch.context() as mp:
        bf16_anywhere(mp)
        yield
