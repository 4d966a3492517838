"""Run an exported onespike network in a third-party NIR consumer (Norse, from PyPI) on its
time grid: agreement with the ReLU network and spikes per neuron vs dt.

    .venv/bin/python scripts/nir_consumer.py [--samples 64] [--dts 0.1 0.05 0.02 0.01]

Model: the shipped Fashion-MNIST MLP converted with model A (neuron="alpha"), exported with
onespike.export.export_nir_discrete (Affine + CubaLIF with no leak; see docs/nir.md) and
imported with norse.torch.from_nir. Writes docs/figures/nir_consumer.png and
docs/figures/nir_consumer.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import onespike
from onespike.data import load_dataset
from onespike.export import encode_input
from onespike.export.nir_discrete import export_nir_discrete, run_norse
from onespike.models import load_pretrained

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--dts", type=float, nargs="+", default=[0.2, 0.1, 0.05, 0.02])
    args = ap.parse_args()
    torch.manual_seed(0)
    data = load_dataset("fashion-mnist", "test", limit=32 + args.samples)
    model = load_pretrained("mlp_fmnist")
    snn = onespike.convert(model, data.images[:32], input_range=(0.0, 1.0), neuron="alpha")
    x = data.images[32:]
    with torch.no_grad():
        relu = model(x).argmax(1)
    # readout window: 1.5 x the largest logit on the calibration images
    window = 1.5 * float(snn.reference(data.images[:32])[-1].max())
    exact = snn.simulate(x, engine="event").predictions
    rows = []
    for dt in args.dts:
        exp = export_nir_discrete(snn, dt, readout_window=window)
        t0 = time.time()
        first, hidden, _ = run_norse(exp, encode_input(snn, x).reshape(x.shape[0], -1).float(),
                                     dt)
        pred = first.argmin(1)
        rows.append({"dt": dt, "agreement": float((pred == relu).float().mean()),
                     "spikes_per_hidden_neuron": float(hidden.mean()),
                     "max_spikes_of_a_neuron": float(hidden.max()),
                     "steps": int(exp.horizon / dt) + 1, "seconds": time.time() - t0})
        print(rows[-1])
    out = {"model": "mlp_fmnist", "neuron": "alpha", "consumer": "norse 1.1.0 (from_nir)",
           "samples": int(x.shape[0]),
           "event_engine_agreement": float((exact == relu).float().mean()),
           "latency": snn.latency, "rows": rows}
    fig_dir = ROOT / "docs" / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    (fig_dir / "nir_consumer.json").write_text(json.dumps(out, indent=2) + "\n")
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    dts = [r["dt"] for r in rows]
    ax[0].semilogx(dts, [100 * r["agreement"] for r in rows], "o-")
    ax[0].set_xlabel("dt (τ_c)")
    ax[0].set_ylabel("agreement with ReLU (%)")
    ax[0].invert_xaxis()
    ax[1].semilogx(dts, [r["spikes_per_hidden_neuron"] for r in rows], "o-")
    ax[1].set_xlabel("dt (τ_c)")
    ax[1].set_ylabel("spikes per hidden neuron")
    ax[1].set_ylim(0, 2)
    ax[1].invert_xaxis()
    fig.suptitle(f"Norse (NIR import) running mlp_fmnist, model A, {x.shape[0]} test images")
    fig.tight_layout()
    fig.savefig(fig_dir / "nir_consumer.png", dpi=120)
    print("wrote", fig_dir / "nir_consumer.png")


if __name__ == "__main__":
    main()
