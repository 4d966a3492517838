"""``onespike export``: write a saved spiking network in another format (NIR)."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["cli"]


@click.command("export")
@click.option("--snn", "snn_file", required=True, type=click.Path(dir_okay=False),
              help="A .onespike file written by 'onespike convert' or onespike.save.")
@click.option("--format", "fmt", type=click.Choice(["nir"]), default="nir", show_default=True,
              help="Output format: nir = Neuromorphic Intermediate Representation (HDF5, "
              "nir.read can load it); needs the extra onespike[nir].")
@click.option("--out", required=True, type=click.Path(), metavar="FILE",
              help="The graph file to write (e.g. net.nir).")
@click.option("--data-out", type=click.Path(), metavar="FILE",
              help="Also write reference spike trains (input, every population) and logits "
              "of --dataset samples in NIR's recorded-data format (nir.read_data).")
@click.option("--dataset", help="Samples for --data-out: a dataset name or folder, as in "
              "'onespike evaluate' (default: the dataset the network was calibrated on).")
@click.option("--split", type=click.Choice(["train", "test"]), default="test",
              show_default=True, help="Split of --dataset.")
@click.option("--limit", type=click.IntRange(min=1), default=16, show_default=True,
              help="Number of samples recorded by --data-out.")
@click.option("--root", type=click.Path(), metavar="DIR", help="Dataset folder (see convert).")
@click.option("--clip", is_flag=True, help="Clip --data-out inputs to the network's range.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def cli(snn_file: str, fmt: str, out: str, data_out: str | None, dataset: str | None,
        split: str, limit: int, root: str | None, clip: bool, as_json: bool) -> None:
    """Export a spiking network to NIR with the same continuous-time dynamics.

    Both neuron models are exported exactly (see docs/nir.md): the graph's inputs are
    'input' (spikes at t = 1 − x̂) and the clock nodes (one spike per channel at
    metadata onespike.clock_times); 'output' carries the readout potential, equal to the
    logits at onespike.readout_time. Networks with slicing routes, non-flatten reshapes,
    asymmetric padding or 1-d/dilated/ceil-mode max pools are refused with the reason.
    """
    import onespike

    from ..cli import _apply_normalization, check_output_file, load_data
    from .common import require_nir
    from .nir_data import export_nir_data
    from .nir_graph import export_nir

    require_nir("onespike export --format nir")
    out_path = check_output_file(out, "--out", "net.nir")
    data_path = check_output_file(data_out, "--data-out", "ref.nir-data") if data_out else None
    snn = onespike.load(snn_file)
    graph = export_nir(snn, out_path)
    summary: dict[str, Any] = {"snn": snn_file, "format": fmt, "out": str(out_path),
                               "nodes": len(graph.nodes), "edges": len(graph.edges),
                               "neuron": snn.neuron,
                               "readout_time": float(snn.readout.t_min),
                               "clock_times": [float(t) for t in
                                               graph.metadata["onespike.clock_times"]]}
    if data_path is not None:
        name = dataset or snn.meta.get("dataset")
        if not name:
            raise click.UsageError("--data-out needs --dataset (the network records no "
                                   "calibration dataset)")
        data = load_data(str(name), split, limit, root)
        images = _apply_normalization(data.images, snn.normalization)
        export_nir_data(snn, images.to(snn.dtype), data_path, clip=clip)
        summary.update({"data_out": str(data_path), "samples": int(images.shape[0])})
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"wrote {out_path}: NIR graph of {summary['nodes']} nodes, {summary['edges']} "
               f"edges ({snn.neuron} neurons); logits = output at t = "
               f"{summary['readout_time']:.6g} τ_c")
    if data_path is not None:
        click.echo(f"wrote {data_path}: recorded spikes and logits of {summary['samples']} "
                   "samples")
