"""``onespike bench``: the benchmark harness (:mod:`onespike.apps.bench`) from the command
line; its options, and writing the results (JSON, markdown)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm.auto import tqdm

from onespike.apps.bench.measure import ENGINES
from onespike.apps.bench.models import BENCH_MODELS, DEFAULT_MODELS, DTYPES
from onespike.apps.bench.orchestrate import run_benchmark
from onespike.apps.bench.report import to_markdown
from onespike.apps.cli.resolve import progress_enabled

__all__ = ["bench", "bench_command"]



@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", default=None, metavar="LIST",
              help=f"Comma-separated models [default: {','.join(DEFAULT_MODELS)}; known: "
                   f"{','.join(BENCH_MODELS)}].")
@click.option("--batches", default=None, metavar="LIST", help="Batch sizes [default: 1,8,64].")
@click.option("--dtypes", default=None, metavar="LIST",
              help=f"{' and/or '.join(DTYPES)} [default: all].")
@click.option("--engines", default=None, metavar="LIST",
              help=f"Engines [default: {','.join(ENGINES)}]; relu is always measured. "
                   "event-default, closed-cert-default and call are snn.simulate(x), "
                   "snn.simulate(x, engine='closed') and snn(x) with every default.")
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Timed runs per configuration [default: 5; 1 with --quick].")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=8.0,
              show_default=True, help="Seconds of timed runs per configuration; a first run "
              "longer than this is reported alone.")
@click.option("--max-run", type=click.FloatRange(min=0, min_open=True), default=45.0,
              show_default=True, help="Skip configurations estimated to run longer (seconds).")
@click.option("--clock-steps", type=click.IntRange(min=1), default=16, show_default=True,
              help="Ticks per window of the clock engine.")
@click.option("--calibration-samples", "--calib", "calibration", type=click.IntRange(min=1),
              default=None, help="Calibration images for every model [default: each model's "
              "own, 1000 for the real ones (the committed results; every model is converted at "
              "each precision), 32 with --quick].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads of the measured runs [default: the global 'onespike "
              "--threads', 1 unless set; 1 is robust on a shared machine, see the README].")
@click.option("--device", default="cpu", show_default=True,
              help="Where the models are converted and run (cpu, cuda, cuda:1, …). On a GPU "
              "every measured call ends with a synchronisation and peak memory is the device "
              "memory PyTorch allocates.")
@click.option("--no-memory", is_flag=True,
              help="Do not measure peak memory (no subprocesses).")
@click.option("--quick", is_flag=True, help="Tiny configuration for tests (tiny MLP and CNN, "
              "batch 2, one repeat).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the results as JSON here.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Also write the markdown tables here.")
@click.option("--no-progress", is_flag=True, help="No progress bar (also: 'onespike -q').")
def bench_command(models: str | None, batches: str | None, dtypes: str | None,
                  engines: str | None, repeats: int | None, budget: float, max_run: float,
                  clock_steps: int, calibration: int | None, threads: int | None,
                  device: str, no_memory: bool, quick: bool, seed: int, out: str | None,
                  markdown_path: str | None, no_progress: bool) -> None:
    """Time and measure the memory of the engines against the ReLU forward."""
    if threads is None:
        ctx = click.get_current_context()
        root = ctx.find_root()
        threads = root.params.get("threads") if root is not ctx else None
        threads = threads if isinstance(threads, int) and threads > 0 else 1
    try:
        results = run_benchmark(
            models=models, batches=batches, dtypes=dtypes, engines=engines, repeats=repeats,
            budget=budget, max_run=max_run, clock_steps=clock_steps, calibration=calibration,
            threads=threads, memory=not no_memory, quick=quick, seed=seed, device=device,
            progress=not no_progress and progress_enabled(True),
            log=lambda msg: tqdm.write(msg, file=sys.stderr),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    text = to_markdown(results)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(text)
    click.echo(text)
    if not results["checks"]["float64_agreement_passed"]:
        raise click.ClickException("float64 outputs differ from the ReLU logits: "
                                   + "; ".join(results["checks"]["failures"][:3]))


#: The command as ``onespike`` registers it.
bench = bench_command
