"""Reproduce the paper's claim on Fashion-MNIST: SNN accuracy = ReLU accuracy.

    .venv/bin/python scripts/reproduce_fmnist.py            # all 10,000 test images
    .venv/bin/python scripts/reproduce_fmnist.py --limit 1000

Writes results/fmnist.json and results/fmnist.md (the README's table).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from onespike.apps.reproduce import FMNIST_MODELS, format_markdown, reproduce_fmnist, rows_as_dicts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=",".join(FMNIST_MODELS))
    p.add_argument("--neurons", default="alpha,constant-slope")
    p.add_argument("--calibration-samples", type=int, default=10_000)
    p.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--out", default="results/fmnist")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    rows = reproduce_fmnist(tuple(args.models.split(",")), tuple(args.neurons.split(",")),
                            calibration_samples=args.calibration_samples,
                            test_limit=args.limit)
    table = format_markdown(rows)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join(["python", *sys.argv]), "seconds": time.perf_counter() - t0,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine()}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows_as_dicts(rows)},
                                                   indent=2))
    out.with_suffix(".md").write_text(f"{table}\n\nCommand: `{meta['command']}`\n")
    return 0 if all(r.snn_accuracy == r.relu_accuracy and r.agreement == 1.0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
