"""``onespike export``: write a spiking network in another format (NIR), and optionally the
reference spike trains of some samples in NIR's recorded-data format."""

from __future__ import annotations

from typing import Any

import click

from onespike.apps.cli.options import (
    clip_option,
    conversion_options,
    data_options,
    json_flag,
    network_options,
)
from onespike.apps.cli.report import echo_json
from onespike.apps.cli.resolve import check_output_file, resolve_data, resolve_network

__all__ = ["export"]


@click.command("export")
@network_options()
@conversion_options()
@click.option("--format", "fmt", type=click.Choice(["nir"]), default="nir", show_default=True,
              help="Output format: nir = Neuromorphic Intermediate Representation (HDF5, "
              "nir.read can load it); needs the extra onespike[nir].")
@click.option("--out", required=True, type=click.Path(), metavar="FILE",
              help="The graph file to write (e.g. net.nir).")
@click.option("--data-out", type=click.Path(), metavar="FILE",
              help="Also write reference spike trains (input, every population) and logits "
              "of --dataset samples in NIR's recorded-data format (nir.read_data).")
@data_options(limit=16, what="Record (--data-out)")
@clip_option()
@json_flag("Print a JSON summary.")
def export(fmt: str, out: str, data_out: str | None, as_json: bool, **opts: Any) -> None:
    """Export a spiking network to NIR with the same continuous-time dynamics.

    Both neuron models are exported exactly (see docs/nir.md): the graph's inputs are
    'input' (spikes at t = 1 − x̂) and the clock nodes (one spike per channel at
    metadata onespike.clock_times); 'output' carries the readout potential, equal to the
    logits at onespike.readout_time. Networks with slicing routes, non-flatten reshapes,
    asymmetric padding or 1-d/dilated/ceil-mode max pools are refused with the reason.
    """
    from onespike.export.common import require_nir
    from onespike.export.nir_data import export_nir_data
    from onespike.export.nir_graph import export_nir

    require_nir("onespike export --format nir")
    out_path = check_output_file(out, "--out", "net.nir")
    data_path = check_output_file(data_out, "--data-out", "ref.nir-data") if data_out else None
    src = resolve_network(opts)
    snn = src.snn
    graph = export_nir(snn, out_path)
    summary: dict[str, Any] = {"snn": src.file or src.origin, "format": fmt, "out": str(out_path),
                               "nodes": len(graph.nodes), "edges": len(graph.edges),
                               "neuron": snn.neuron,
                               "readout_time": float(snn.readout.t_min),
                               "clock_times": [float(t) for t in
                                               graph.metadata["onespike.clock_times"]]}
    if data_path is not None:
        _, images = resolve_data(opts, src)
        export_nir_data(snn, images.to(snn.dtype), data_path, clip=opts["clip"])
        summary.update({"data_out": str(data_path), "samples": int(images.shape[0])})
    if as_json:
        echo_json(summary)
        return
    click.echo(f"wrote {out_path}: NIR graph of {summary['nodes']} nodes, {summary['edges']} "
               f"edges ({snn.neuron} neurons); logits = output at t = "
               f"{summary['readout_time']:.6g} τ_c")
    if data_path is not None:
        click.echo(f"wrote {data_path}: recorded spikes and logits of {summary['samples']} "
                   "samples")
