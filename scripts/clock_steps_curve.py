"""Accuracy and agreement of the clock-driven engine versus ticks per window.

Converts a pretrained model (model A, zeta 0.5, calibrated on Fashion-MNIST training images),
then simulates the first ``--samples`` test images with the event engine once and with the
clock engine for every ``--steps`` value. For each it reports the accuracy, the agreement with
the ReLU network (argmax of the original model run in float64) and the largest |logit
difference| from the event engine; plots accuracy and agreement against the steps.

    .venv/bin/python scripts/clock_steps_curve.py --model vgg_fmnist --samples 200 \\
        --steps 4,8,16,32,64,128 --out docs/figures/clock_steps.png
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

import onespike
from onespike.apps.modelspec import load_model
from onespike.data import load_dataset


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vgg_fmnist",
                   help="built-in model name or model spec (default: vgg_fmnist)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--samples", type=int, default=200, help="first N test images")
    p.add_argument("--calibration-samples", type=int, default=2000)
    p.add_argument("--steps", default="4,8,16,32,64,128", help="comma-separated ticks per window")
    p.add_argument("--out", default="clock_steps.png", help="PNG file")
    p.add_argument("--json", default=None, help="JSON file (default: --out with .json)")
    args = p.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    json_path = Path(args.json) if args.json else Path(args.out).with_suffix(".json")

    model, origin = load_model(args.model)
    model.eval()
    calib = load_dataset(args.dataset, "train", limit=args.calibration_samples)
    snn = onespike.convert(copy.deepcopy(model), calib.images, input_range=calib.input_range,
                           progress=False)
    data = load_dataset(args.dataset, "test", limit=args.samples)
    x, y = data.images, data.labels.reshape(-1)
    with torch.no_grad():
        relu_logits = copy.deepcopy(model).double()(x.double())
    relu_pred = relu_logits.reshape(len(x), -1).argmax(dim=1)
    relu_acc = float((relu_pred == y).double().mean())

    def stats(out: torch.Tensor) -> tuple[float, float]:
        pred = out.reshape(len(x), -1).argmax(dim=1)
        return float((pred == y).double().mean()), float((pred == relu_pred).double().mean())

    t0 = time.perf_counter()
    ev = snn.simulate(x, engine="event", record=False)
    ev_s = time.perf_counter() - t0
    ev_acc, ev_agr = stats(ev.output)
    rows = []
    print(f"{origin}, {len(calib)} calibration images, {len(x)} {data.name} images; "
          f"ReLU (float64) accuracy {100 * relu_acc:.2f} %", flush=True)
    print(f"event engine: accuracy {100 * ev_acc:.2f} %, agreement {100 * ev_agr:.2f} % "
          f"({ev_s:.1f} s)", flush=True)
    for s in steps:
        t0 = time.perf_counter()
        sim = snn.simulate(x, engine="clock", steps=s, record=False)
        sec = time.perf_counter() - t0
        acc, agr = stats(sim.output)
        diff = float((sim.output - ev.output).abs().max())
        rows.append({"steps": s, "accuracy": acc, "agreement": agr,
                     "max_abs_logit_diff_vs_event": diff, "seconds": sec})
        print(f"steps {s:4d}: accuracy {100 * acc:6.2f} %, agreement {100 * agr:6.2f} %, "
              f"max |logit − event| {diff:.3g} ({sec:.1f} s)", flush=True)

    table = ["| steps per window | accuracy | agreement with ReLU "
             "| max \\|logit diff\\| vs event |",
             "|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['steps']} | {100 * r['accuracy']:.2f} % | "
                     f"{100 * r['agreement']:.2f} % | {r['max_abs_logit_diff_vs_event']:.3g} |")
    table.append(f"| event engine | {100 * ev_acc:.2f} % | {100 * ev_agr:.2f} % | 0 |")
    print("\n".join(table))

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    xs = [r["steps"] for r in rows]
    ax.plot(xs, [100 * r["accuracy"] for r in rows], marker="o", label="accuracy (clock engine)")
    ax.plot(xs, [100 * r["agreement"] for r in rows], marker="s",
            label="agreement with the ReLU network")
    ax.axhline(100 * relu_acc, color="0.3", ls="--", lw=1,
               label=f"ReLU network accuracy {100 * relu_acc:.2f} %")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(v) for v in xs])
    ax.minorticks_off()
    ax.set_xlabel("clock ticks per window")
    ax.set_ylabel("% of test images")
    ax.set_title(f"Clock engine vs ticks per window ({args.model}, model A, "
                 f"{len(x)} test images)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_ylim(0, 102)
    ax.legend(fontsize=8, loc="best")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120, format="png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "model": args.model,
        "samples": len(x), "calibration_samples": len(calib), "neuron": snn.neuron,
        "zeta": snn.zeta, "relu_accuracy_float64": relu_acc,
        "event": {"accuracy": ev_acc, "agreement": ev_agr, "seconds": ev_s},
        "clock": rows}, indent=2))
    print(f"wrote {args.out} and {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
