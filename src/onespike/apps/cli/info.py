"""``onespike info``: what a spiking network is made of."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from onespike.apps.cli.options import conversion_options, json_flag, network_options, root_option
from onespike.apps.cli.report import echo_json, edges_text, routes_text, shape_text, table
from onespike.apps.cli.resolve import resolve_network

__all__ = ["info"]


@click.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@network_options()
@conversion_options()
@root_option()
@json_flag()
def info(file: str | None, as_json: bool, **opts: Any) -> None:
    """Describe a spiking network: populations and the edges that feed them, windows,
    delays, latency, neuron and synapse counts.

    The network is FILE (a .onespike file), or any source the other commands take: --snn
    FILE, --model SPEC with the conversion options (converted now, nothing written), or
    --demo.
    """
    from onespike.network.io import FORMAT_VERSION

    if file is not None:
        if opts.get("snn_file") or opts.get("demo") or opts.get("model"):
            raise click.UsageError("give FILE or one of --snn, --model, --demo, not both")
        opts["snn_file"] = file
    elif not (opts.get("snn_file") or opts.get("model") or opts.get("demo")):
        raise click.UsageError("give FILE, --snn FILE, --model SPEC or --demo")
    src = resolve_network(opts, allow_reference_model=False)
    snn = src.snn
    s = snn.summary()
    name = src.file or src.origin
    if as_json:
        extra: dict[str, Any] = {"format_version": FORMAT_VERSION}
        if src.file:
            extra["bytes"] = Path(src.file).stat().st_size
        echo_json({"file": src.file, **extra, **s})
        return
    rows: list[tuple[str, ...]] = [("#", "layer", "from", "kind", "routes", "in", "out",
                                    "t_min", "t_max", "B", "neurons", "synapses")]
    for i, ly in enumerate(s["layers"]):
        b = ly["t_max"] - ly["t_min"]
        edges = ly.get("edges", [])
        rows.append((
            str(i), ly["name"],
            edges_text(edges, lambda e: e["source"] + (f" (+{e['delay']:.4g} τ_c)"
                                                       if e.get("delay") else "")),
            edges_text(edges, lambda e: e["kind"]),
            edges_text(edges, lambda e: routes_text(e.get("routes", []))),
            edges_text(edges, lambda e: shape_text(e["in_shape"])), shape_text(ly["out_shape"]),
            f"{ly['t_min']:.4g}", f"{ly['t_max']:.4g}",
            "readout" if ly["readout"] else f"{b:.4g}",
            f"{ly['neurons']:,}", f"{ly['synapses']:,}"))
    click.echo(f"{name}: {s['neuron']} neurons, zeta {s['zeta']:g}, {s['dtype']}, input "
               f"{shape_text(s['input_shape'])} -> output {shape_text(s['output_shape'])}")
    click.echo(table(rows, align="rlllllllrrrr"))
    delays = ""
    if s.get("delayed_edges"):
        delays = (f"; {s['delayed_edges']} of {s['edges']} edges delayed (up to "
                  f"{s['max_delay']:.4g} τ_c)")
    click.echo(f"latency {s['latency']:.4g} τ_c; neurons: {s['input_neurons']:,} input + "
               f"{s['hidden_neurons']:,} hidden; synapses {s['synapses']:,}{delays}")
    if s.get("normalization"):
        n = s["normalization"]
        click.echo(f"input normalisation: mean {n['mean']}, std {n['std']}")
    meta = {k: v for k, v in s["meta"].items() if k not in ("normalize",)}
    if meta:
        click.echo("meta: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
