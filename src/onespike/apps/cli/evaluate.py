"""``onespike evaluate``: a spiking network against its ReLU network on labelled data."""

from __future__ import annotations

from typing import Any

import click

from onespike.apps.cli.options import (
    clip_option,
    conversion_options,
    data_options,
    engine_options,
    json_flag,
    network_options,
)
from onespike.apps.cli.report import echo_json, results_rows, table
from onespike.apps.cli.resolve import progress_enabled, resolve_network, resolve_stream

__all__ = ["evaluate"]


@click.command()
@network_options()
@conversion_options()
@data_options(limit=None, what="Evaluate")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Samples simulated at a time.")
@engine_options(("event", "closed"))
@clip_option()
@json_flag()
def evaluate(batch_size: int, engine: str, as_json: bool, **opts: Any) -> None:
    """Compare a spiking network with its ReLU network on a labelled dataset.

    Reports ReLU accuracy, SNN accuracy, agreement of the predictions, the largest logit
    difference, the exactness certificate, spikes per neuron and synaptic events. Without
    --model the ReLU logits come from the folded ReLU network stored in the spiking network
    (snn.reference), which equals the original model up to rounding.

    The conversion options (--calibration … --dtype) apply when --model is converted (no
    --snn; calibration default: the --dataset train split). --normalize also normalises the
    evaluation data; a network converted with --normalize remembers it.

    Image folders, CIFAR and Fashion-MNIST are streamed (--batch-size images at a time, read
    by --workers processes): memory does not grow with the number of images.

    \b
    Under torchrun every process evaluates a contiguous share and the counts are reduced;
    rank 0 prints the one-process result (plus world_size and shard_sizes):
    torchrun --standalone --nproc-per-node 4 --no-python onespike evaluate --snn net.onespike
    """
    from onespike.analysis.evaluation import evaluate as run_evaluation

    if not opts.get("snn_file") and opts.get("model") and not opts.get("dataset"):
        raise click.UsageError("--dataset is required with --model (its train split is also "
                               "the calibration data unless --calibration says otherwise)")
    from onespike.data import StreamingDataset
    from onespike.distributed import collective_device, is_distributed

    src = resolve_network(opts)
    data, images = resolve_stream(opts, src)
    snn, model = src.snn, src.model
    if is_distributed() and collective_device().type == "cuda":  # pragma: no cover - GPUs
        snn = snn.to(collective_device())
        model = None if model is None else model.to(collective_device())
    labels = None if isinstance(images, StreamingDataset) else data.labels
    ev = run_evaluation(snn, images, labels, model=model, engine=engine,
                        batch_size=batch_size, clip=opts.get("clip", False),
                        progress=progress_enabled(), workers=opts.get("workers") or 0)
    if as_json:
        d = ev.as_dict()
        d.update({"dataset": data.name, "latency": snn.latency,
                  "snn": src.file, "model": opts.get("model")})
        echo_json(d)
        return
    click.echo(f"{data.name}: {len(data)} samples, {snn.neuron} neurons, engine {engine}")
    click.echo(table(results_rows(ev, snn.latency)))
    if ev.relu_source != "model":
        click.echo("(ReLU accuracy from the folded ReLU network inside the spiking network; "
                   "pass --model to compare with the original model)")
