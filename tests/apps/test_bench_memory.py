"""The benchmark's peak memory: the first run of a call counts what it allocates and keeps
(a cache made on first use) and what it only uses; the steady peak of a second, identical
call counts only the latter."""

from __future__ import annotations

import sys

import pytest
import torch

from onespike.apps.bench.measure import measured_run, steady_peak

MIB = 1 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS high-water mark: Linux")
def test_steady_peak_leaves_out_what_the_first_call_keeps() -> None:
    # blocks above glibc's largest mmap threshold (32 MiB): always fresh mappings, counted in
    # full whatever the heap of this process holds from earlier tests
    cache: list[torch.Tensor] = []

    def call() -> float:
        if not cache:  # one-time cost, kept for later calls (as a weight cache)
            cache.append(torch.ones(96 * MIB // 8, dtype=torch.float64))
        work = torch.ones(48 * MIB // 8, dtype=torch.float64)  # working set, freed
        return float(work.sum() + cache[0][0])

    _, first = measured_run(call)
    first_bytes = first.peak_bytes
    steady = steady_peak(call)
    assert first_bytes >= 130 * MIB  # the cache and the working set
    assert 40 * MIB <= steady < 80 * MIB  # the working set only
