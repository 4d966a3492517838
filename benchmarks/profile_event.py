#!/usr/bin/env python
"""Where the event engine's time goes: cProfile of one batch on a benchmark model, and
(``--breakdown``) which certificate clears how many neurons of each layer.

    python benchmarks/profile_event.py --model vgg16_cifar --batch 8 --dtype float64
    python benchmarks/profile_event.py --model vgg16_cifar --batch 64 --breakdown --top 0
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import click
import torch

try:
    import onespike
except ImportError:  # source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import onespike
from onespike.apps.bench import BENCH_MODELS, DTYPES, bench_data, build_model
from onespike.simulation.engines import bounds


@click.command()
@click.option("--model", default="vgg16_cifar", type=click.Choice(list(BENCH_MODELS)),
              show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--dtype", default="float64", type=click.Choice(list(DTYPES)), show_default=True)
@click.option("--engine", default="event", show_default=True)
@click.option("--calib", default=1000, show_default=True, help="Calibration images.")
@click.option("--threads", default=1, show_default=True)
@click.option("--top", default=25, show_default=True)
@click.option("--breakdown", is_flag=True,
              help="Per layer: neurons missed by the drive bound, and left by the grid bound.")
def main(model: str, batch: int, dtype: str, engine: str, calib: int, threads: int,
         top: int, breakdown: bool) -> None:
    torch.set_num_threads(threads)
    spec = BENCH_MODELS[model]
    net, weights = build_model(spec)
    x, cal, _ = bench_data(spec, batch, calib)
    snn = onespike.convert(net, list(cal.split(100)), dtype=DTYPES[dtype], progress=False)
    snn.simulate(x, engine=engine, record=False)  # warm-up (also fills the layer caches)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    res = snn.simulate(x, engine=engine, record=False)
    prof.disable()
    wall = time.perf_counter() - t0
    cert = res.certificate
    print(f"{spec.label} ({weights}), {dtype}, batch {batch}, engine {engine}: {wall:.2f} s "
          f"({wall / batch * 1e3:.0f} ms/image, {torch.get_num_threads()} thread(s)); checked "
          f"{sum(cert.checked)}/{sum(cert.neurons)} neurons "
          f"({100 * sum(cert.checked) / sum(cert.neurons):.2f}%)")
    for name, c, n in zip(cert.layers, cert.checked, cert.neurons):
        print(f"  {name:<8} checked {c:>8}/{n:<8} ({100 * c / n:5.1f}%)")
    if breakdown:
        print_breakdown(snn, x)
    for key in ("tottime", "cumulative") if top > 0 else ():
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(top)
        print(f"\n== top {top} by {key} ==")
        print("\n".join(ln for ln in buf.getvalue().splitlines()[6:] if ln.strip()))


def print_breakdown(snn: onespike.SpikingNetwork, x: torch.Tensor) -> None:
    """Per hidden population (model A, over all its edges): the fraction of neurons the drive
    bound misses, then the fraction the grid bound leaves (to the exact walk), on the batch's
    own inputs."""
    if snn.neuron != "alpha":
        return
    sim = snn.simulate(x, engine="closed", certify=False)
    values = dict(zip(sim.layer_names, sim.activations()))
    print("\n  layer     fan-in   drive bound misses   grid bound leaves")
    tot = missed = left = 0
    for layer in snn.hidden_layers:
        xs = [layer.route(i, values[e.source]).clamp(max=layer.B_in)
              for i, e in enumerate(layer.edges)]
        z = layer.z(xs)
        drive = bounds.certify_drive(layer, xs)
        grid = bounds.certify_grid(layer, xs, z, need=~drive)
        n, m, r = drive.numel(), int((~drive).sum()), int((~(drive | grid)).sum())
        tot, missed, left = tot + n, missed + m, left + r
        print(f"  {layer.name:<8} {layer.synapses.fan_in:>7} {m:>10} ({100 * m / n:6.3f}%) "
              f"{r:>10} ({100 * r / n:6.3f}%)")
    print(f"  {'all':<8} {'':>7} {missed:>10} ({100 * missed / tot:6.3f}%) "
          f"{left:>10} ({100 * left / tot:6.3f}%)")


if __name__ == "__main__":
    main()
