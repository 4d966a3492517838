"""Redraw the figure of an ``onespike robustness --json`` result without simulating again.

It rebuilds the :class:`onespike.analysis.robustness.RobustnessResult` from the JSON file and draws
the
same plot as ``onespike robustness`` (optionally with another ``--title``): useful after a
change to the plot, or to retitle a figure.

    .venv/bin/python scripts/replot_robustness.py docs/figures/robustness_time_bits.json \\
        --out docs/figures/robustness_time_bits.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onespike.analysis.robustness import RobustnessPoint, RobustnessResult
from onespike.simulation.perturb import Perturbation


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="file written by onespike robustness --json")
    p.add_argument("--out", help="PNG file (default: the JSON file with .png)")
    p.add_argument("--title", help="title (default: the sweep's own, on two lines)")
    args = p.parse_args()
    d = json.loads(Path(args.json).read_text())
    points = [RobustnessPoint(pt["value"], pt["seeds"], pt["accuracy"], pt["agreement"],
                              pt["violations"]) for pt in d["points"]]
    base = Perturbation(**d["base"]) if d.get("base") else None
    res = RobustnessResult(d["knob"], points, d["samples"], d["neuron"], d["engine"],
                           d["reference_accuracy"], base)
    out = args.out or str(Path(args.json).with_suffix(".png"))
    res.plot(out, title=args.title)
    print(res.format_table())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
