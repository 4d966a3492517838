"""Redraw the figure of an ``onespike robustness --json`` result, with a title on two lines.

``onespike robustness`` puts its whole description into a one-line title, which is cut off
at the figure's edge for the longer knob names (``time_bits``); this script rebuilds the
:class:`onespike.robustness.RobustnessResult` from the JSON file (no simulation) and draws the
same plot with the title wrapped.

    .venv/bin/python scripts/replot_robustness.py docs/figures/robustness_time_bits.json \\
        --out docs/figures/robustness_time_bits.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onespike.perturb import Perturbation
from onespike.robustness import RobustnessPoint, RobustnessResult

_LABELS = {
    "zeta": "window margin ζ",
    "jitter": "spike-time jitter σ [τ_c]",
    "alpha_noise": "α noise σ (relative)",
    "time_bits": "spike-time resolution [bits per window]",
    "weight_bits": "weight resolution [bits]",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="file written by onespike robustness --json")
    p.add_argument("--out", help="PNG file (default: the JSON file with .png)")
    p.add_argument("--title", help="title (default: two lines describing the sweep)")
    args = p.parse_args()
    d = json.loads(Path(args.json).read_text())
    points = [RobustnessPoint(pt["value"], pt["seeds"], pt["accuracy"], pt["agreement"],
                              pt["violations"]) for pt in d["points"]]
    base = Perturbation(**d["base"]) if d.get("base") else None
    res = RobustnessResult(d["knob"], points, d["samples"], d["neuron"], d["engine"],
                           d["reference_accuracy"], base)
    runs = max(len(pt.seeds) for pt in points)
    seeds = "deterministic, 1 run" if runs == 1 else f"{runs} seeds"
    title = args.title or (f"Robustness to {_LABELS[res.knob]}\n(neuron {res.neuron}, "
                           f"{res.engine} engine, {res.samples} samples, {seeds})")
    out = args.out or str(Path(args.json).with_suffix(".png"))
    res.plot(out, title=title)
    print(res.format_table())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
