"""``onespike demo``: the shipped digits CNN against its spiking twin."""

from __future__ import annotations

import time
from pathlib import Path

import click

from onespike.apps.cli.options import CALIBRATION_SAMPLES, NEURON_CHOICE, json_flag
from onespike.apps.cli.report import echo_json, results_rows, table
from onespike.apps.cli.resolve import (
    check_output_file,
    convert_model,
    demo_model,
    progress_enabled,
    save_network,
)

__all__ = ["demo"]


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="onespike-out",
              show_default=True, help="Folder for the raster PNG and the converted network.")
@json_flag("Print a JSON summary instead of a table.")
@click.option("--neuron", type=NEURON_CHOICE, default="alpha", show_default=True,
              help="Neuron model of the spiking network.")
@click.option("--no-plot", is_flag=True, help="Do not write the raster PNG.")
def demo(out_dir: str, as_json: bool, neuron: str, no_plot: bool) -> None:
    """Convert the pretrained digits CNN and compare it with its spiking twin.

    Loads the shipped digits CNN (trains it first if the weights are missing), converts it
    with the digits train split as calibration data, runs the ReLU network and the spiking
    network (event engine) on the 450 held-out digits and prints accuracies, agreement, the
    largest logit difference, the exactness certificate, spikes per neuron, synaptic events
    and latency. Writes OUT/digits_cnn.onespike and a spike raster OUT/raster.png.
    """
    from onespike.analysis.evaluation import evaluate
    from onespike.data import load_dataset

    t_start = time.perf_counter()
    out = Path(out_dir)
    check_output_file(out / "digits_cnn.onespike", "--out", None)
    if not no_plot:
        check_output_file(out / "raster.png", "--out", None)
    progress = progress_enabled()
    model, weights = demo_model()
    test = load_dataset("digits", "test")
    t0 = time.perf_counter()
    snn, n_calib = convert_model(model, {"neuron": neuron,
                                         "calibration_samples": CALIBRATION_SAMPLES}, "digits")
    snn.meta["source"] = "built-in digits_cnn"
    t_convert = time.perf_counter() - t0
    ev = evaluate(snn, test.images, test.labels, model=model, engine="event", progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    snn_file = save_network(snn, out / "digits_cnn.onespike")
    raster = None
    if not no_plot:
        from onespike.analysis.plots import plot_raster

        sim = snn.simulate(test.images[:1], "event")
        raster = out / "raster.png"
        plot_raster(sim, raster, sample=0,
                    title=f"digits CNN as a single-spike network ({neuron}); test digit "
                    f"{int(test.labels[0])}")
    total = time.perf_counter() - t_start
    if as_json:
        d = ev.as_dict()
        d.pop("activity", None)
        echo_json({
            "model": "digits_cnn", "weights": weights, "neuron": neuron,
            "calibration_samples": n_calib, **d,
            "latency": snn.latency, "snn_file": str(snn_file),
            "raster": str(raster) if raster else None,
            "seconds": {"convert": round(t_convert, 3), "total": round(total, 3)},
        })
        return
    click.echo(f"digits CNN ({weights}), calibrated on {n_calib} training digits, "
               f"{neuron} neurons")
    click.echo(table(results_rows(ev, snn.latency)))
    click.echo(f"\nsaved {snn_file}" + (f" and {raster}" if raster else "")
               + f"  ({total:.1f} s in all)")
