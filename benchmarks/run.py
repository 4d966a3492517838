#!/usr/bin/env python
"""Run the onespike benchmark (same options as ``onespike bench``; see benchmarks/README.md).

    python benchmarks/run.py --out benchmarks/results/cpu-2core.json \
        --markdown benchmarks/results/cpu-2core.md
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from onespike.apps.cli.bench import bench_command
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from onespike.apps.cli.bench import bench_command

if __name__ == "__main__":  # the guard matters: measuring processes are started by forking
    bench_command(prog_name="benchmarks/run.py")
