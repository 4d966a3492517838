"""What the bfloat16 certificate tests share: they run only where oneDNN has native bfloat16
convolutions, with the same hypothesis settings."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from onespike.simulation.engines.bounds.drive import _bf16_conv_native

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

#: ``pytestmark`` of a module whose tests need native bfloat16 convolutions.
NATIVE_BF16_ONLY = pytest.mark.skipif(not _bf16_conv_native(),
                                      reason="no native bfloat16 convolutions on this CPU")
