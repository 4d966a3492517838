"""``onespike convert``: a trained ReLU model into a spiking network file."""

from __future__ import annotations

from typing import Any

import click

from onespike.apps.cli.options import (
    clip_option,
    conversion_options,
    json_flag,
    network_options,
    root_option,
    workers_option,
)
from onespike.apps.cli.report import echo_json
from onespike.apps.cli.resolve import check_output_file, resolve_network, save_network

__all__ = ["convert"]


@click.command()
@network_options(snn=False)
@conversion_options()
@root_option()
@workers_option()
@clip_option()
@click.option("--out", "out", type=click.Path(dir_okay=False), default="snn.onespike",
              show_default=True, help="Where to write the spiking network.")
@json_flag("Print a JSON summary.")
def convert(out: str, as_json: bool, **opts: Any) -> None:
    """Convert a trained ReLU model into a spiking network file (.onespike).

    Example: onespike convert --model mypkg.nets:make_cnn --weights cnn.safetensors
    --calibration digits --out cnn.onespike

    Under torchrun (torchrun --nproc-per-node N --no-python onespike convert …) every process
    calibrates its share of the calibration data and the maxima are all-reduced: the file
    rank 0 writes is byte-identical to a one-process conversion.
    """
    from onespike.distributed import world

    check_output_file(out)
    src = resolve_network(opts)
    snn = src.snn
    path = save_network(snn, out) if world()[0] == 0 else out  # rank 0 alone writes
    summary = snn.summary()
    if as_json:
        echo_json({"file": str(path), **summary})
        return
    click.echo(f"saved {path}: {len(snn.layers)} layers ({len(snn.hidden_layers)} spiking + "
               f"readout), {summary['hidden_neurons']:,} hidden neurons, "
               f"{summary['synapses']:,} synapses, latency {snn.latency:.4g} τ_c, "
               f"{snn.neuron} neurons, calibrated on {snn.meta['calibration']}")
