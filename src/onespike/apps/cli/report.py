"""How the commands print results: tables, the certificate line, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["certificate_line", "echo_json", "edges_text", "pct", "results_rows",
           "routes_text", "shape_text", "table"]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(rows: Sequence[tuple[str, ...]], align: str = "") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.rjust(w) if (align[i:i + 1] == "r") else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def pct(v: float | None) -> str:
    return "n/a (unlabelled)" if v is None else f"{100 * v:.2f} %"


def certificate_line(cert: Any, nonfinite: int = 0, samples_exact: int | None = None
                      ) -> str:
    d = cert.as_dict()
    if samples_exact is not None:
        d["samples_exact"] = samples_exact
    why = [f"{cert.violations} violations"] if not d["exact"] else []
    if nonfinite:
        why.append(f"{nonfinite} samples with NaN/inf logits or spike times")
    head = f"NOT exact ({', '.join(why)})" if why else "exact"
    per = ", ".join(f"{ly['layer']}: {ly['early']} early / {ly['saturated']} saturated / "
                    f"{ly['checked']} checked" for ly in d["layers"])
    return f"{head} on {d['samples_exact']}/{d['samples']} samples ({per})"


def results_rows(ev: Any, latency: float) -> list[tuple[str, str]]:
    rows = [
        ("samples", str(ev.samples)),
        ("ReLU accuracy", pct(ev.relu_accuracy)
         + ("" if ev.relu_source == "model" else f"  [{ev.relu_source}]")),
        (f"SNN accuracy ({ev.engine})", pct(ev.snn_accuracy)),
        ("agreement (argmax)", f"{100 * ev.agreement:.2f} %"),
        ("max |logit difference|", f"{ev.max_abs_logit_diff:.3g}"),
        ("certificate", certificate_line(ev.certificate, ev.nonfinite_samples,
                                          ev.samples_exact)),
    ]
    if ev.stats is not None:
        st = ev.stats
        rows += [
            ("spikes per neuron", f"{st.spikes_per_neuron:.3f}  ({st.spikes:,.0f} spikes, "
             f"{st.neurons:,} input+hidden neurons, per sample)"),
            ("synaptic events", f"{st.events:,.0f} per sample  (ANN: {st.macs:,} MACs)"),
        ]
    rows += [("latency", f"{latency:.4g} τ_c"),
             ("simulation time", f"{ev.snn_seconds:.2f} s"
              + (f" (summed over {ev.world_size} processes)" if ev.world_size > 1 else ""))]
    if ev.world_size > 1 and ev.shard_sizes is not None:
        rows.append(("processes", f"{ev.world_size} (samples per rank: "
                     f"{', '.join(map(str, ev.shard_sizes))})"))
    return rows


def routes_text(routes: list[dict[str, Any]]) -> str:
    parts = []
    for r in routes:
        if r["type"] == "maxpool":
            parts.append(("signed " if r.get("signed") else "") + "maxpool"
                         + "x".join(map(str, r["kernel"])))
        else:
            parts.append(str(r["type"]))
    return "+".join(parts) or "-"


def edges_text(edges: list[dict[str, Any]], key: Any) -> str:
    return ", ".join(key(e) for e in edges) or "-"


def shape_text(shape: Any) -> str:
    return "x".join(map(str, shape))
