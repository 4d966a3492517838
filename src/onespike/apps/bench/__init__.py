"""``onespike bench``: the benchmark harness (moved to :mod:`onespike.apps.bench.orchestrate`;
split by role in the next commit)."""

from onespike.apps.bench.orchestrate import *  # noqa: F403
from onespike.apps.bench.orchestrate import (  # noqa: F401
    AGREEMENT_TOL,
    DTYPES,
    bench_data,
)
