"""``onespike robustness``: accuracy and agreement as one knob (window margin, jitter, α noise,
spike-time or weight bits) varies; a table and a PNG with error bars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from onespike.apps.cli.options import KnobChoice, engine_options
from onespike.apps.cli.plot import out_option, resolve_source, source_options
from onespike.apps.cli.resolve import check_output_file, progress_enabled

__all__ = ["robustness"]


def _parse_values(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("give numbers separated by commas, e.g. 0,0.01,0.05",
                                 param_hint="--values") from None
    if not vals:
        raise click.BadParameter("give at least one value", param_hint="--values")
    return vals


@click.command("robustness", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--knob", type=KnobChoice(), required=True,
              help="What to vary: window margin, spike-time jitter σ [τ_c], α noise σ "
              "(model A), spike-time bits per window, weight bits (0 = off for bits); "
              "alpha_noise etc. work as well.")
@click.option("--values", "values_text", required=True,
              help="Comma-separated knob values, e.g. 0,0.01,0.05.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds per value (deterministic settings run once).")
@click.option("--base-jitter", type=float, default=0.0, show_default=True,
              help="Jitter σ added to every run (e.g. to sweep zeta under jitter).")
@source_options(default_samples=500)
@engine_options(("event", "clock"))
@out_option("robustness.png")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the results as JSON.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar. Default: when stderr is a terminal, unless "
              "'onespike -q'.")
def robustness(knob: str, values_text: str, seeds: int, base_jitter: float, out: str,
               json_path: str | None, progress: bool | None, **opts: Any) -> None:
    """Sweep one robustness knob: accuracy and agreement with the ReLU network (mean ± std
    over seeds); prints a table and writes a PNG with error bars.

    \b
    onespike robustness --knob jitter --values 0,0.01,0.05 --seeds 3 \\
        --dataset fashion-mnist --model vgg_fmnist --samples 500
    """
    from onespike.analysis.robustness import sweep
    from onespike.simulation import Perturbation

    values = _parse_values(values_text)
    if json_path:
        check_output_file(json_path, "--json", "robustness.json")
    progress = progress_enabled(progress)
    src = resolve_source(opts)
    extra: dict[str, Any] = {}
    if opts["engine"] == "clock":
        extra["steps"] = opts["steps"]
    base = Perturbation(jitter=base_jitter) if base_jitter else None
    res = sweep(src.snn, src.images, src.labels, knob, values, seeds=seeds, base=base,
                engine=opts["engine"], clip=opts["clip"], progress=progress, **extra)
    click.echo(src.description)
    click.echo(res.format_table())
    res.plot(out)
    click.echo(f"wrote {out}")
    if json_path:
        Path(json_path).write_text(json.dumps(res.as_dict(), indent=2))
        click.echo(f"wrote {json_path}")
