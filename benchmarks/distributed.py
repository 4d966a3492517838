"""Evaluate throughput with 1 and 2 processes (one thread each, gloo on localhost), and the
per-image cost of a 224×224 VGG-16 (random weights) from which the time of a 36,500-image
validation set on 1, 8 and 64 workers is estimated.

    python benchmarks/distributed.py --out benchmarks/results/distributed-cpu-2core.json

``--skip-vgg224`` leaves out the 224×224 VGG-16 (about 2 GB of float64 weights and a minute
or more per image on one core). The estimate assumes linear scaling (the shards share nothing
until the final reduction, which costs milliseconds); it is an extrapolation, not a
measurement of 8 or 64 workers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import queue
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from torch import nn

VALIDATION_IMAGES = 36_500  # Places365 validation set


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model() -> nn.Module:
    from onespike.models.architectures import vgg16_cifar

    torch.manual_seed(0)
    return vgg16_cifar().eval()


def _data(n: int) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _worker(rank: int, world: int, port: int, n: int, batch: int, q: Any) -> None:
    import torch.distributed as dist

    import onespike

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=600))
    snn = onespike.load(os.environ["BENCH_SNN"])
    x = _data(n)
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    ev = onespike.evaluate(snn, x, None, batch_size=batch, progress=False)
    q.put((rank, time.perf_counter() - t0, ev.as_dict()))
    if world > 1:
        dist.destroy_process_group()


def throughput(n: int, batch: int, folder: Path) -> dict[str, Any]:
    import onespike

    torch.set_num_threads(1)
    snn = onespike.convert(_model(), _data(64), progress=False)
    path = onespike.save(snn, folder / "vgg16_cifar.onespike")
    os.environ["BENCH_SNN"] = str(path)
    out: dict[str, Any] = {"model": "vgg16_cifar (random weights, 3×32×32)", "samples": n,
                           "batch_size": batch, "threads_per_process": 1}
    results = {}
    for world in (1, 2):
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        port = _port()
        procs = [ctx.Process(target=_worker, args=(r, world, port, n, batch, q))
                 for r in range(world)]
        for p in procs:
            p.start()
        got = []
        for _ in range(world):
            try:
                got.append(q.get(timeout=1800))
            except queue.Empty:
                break
        for p in procs:
            p.join()
        wall = max(t for _, t, _ in got)
        d = got[0][2]
        results[world] = {"seconds": wall, "images_per_second": n / wall,
                          "shard_sizes": d["shard_sizes"], "snn_accuracy": d["snn_accuracy"],
                          "agreement": d["agreement"], "exact": d["exact"]}
        print(f"{world} process(es): {wall:.2f} s, {n / wall:.2f} images/s", flush=True)
    same = {k: v for k, v in results[1].items() if k not in ("seconds", "images_per_second",
                                                             "shard_sizes")}
    other = {k: v for k, v in results[2].items() if k not in ("seconds", "images_per_second",
                                                              "shard_sizes")}
    out["processes"] = results
    out["speedup_2_over_1"] = results[1]["seconds"] / results[2]["seconds"]
    out["same_result"] = same == other
    return out


def vgg16_224(images: int) -> dict[str, Any]:
    """Per-image cost of ``onespike.evaluate`` on a 224×224 VGG-16 (13 conv + 25088-4096-
    4096-1000), one thread, float64, event engine, folded ReLU reference included."""
    import onespike
    from onespike.models.architectures import VGG, VGG16_CFG

    torch.set_num_threads(1)
    torch.manual_seed(0)
    # the original VGG-16 (configuration D: no batch norm)
    layers: list[nn.Module] = []
    c = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
            c = int(v)
    # the classifier in its convolutional form (the same maps as Linear 25088→4096→4096→
    # 1000: a 7×7 conv and two 1×1 convs), as in the committed result; the Linear form
    # converts as well since the flatten-into-Linear fix of the folding pass
    model = VGG(nn.Sequential(*layers), nn.Sequential(
        nn.Conv2d(512, 4096, 7), nn.ReLU(), nn.Conv2d(4096, 4096, 1), nn.ReLU(),
        nn.Conv2d(4096, 1000, 1), nn.Flatten())).eval()
    x = torch.rand(images + 1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    snn = onespike.convert(model, x[:1], progress=False)
    convert_s = time.perf_counter() - t0
    del model
    onespike.evaluate(snn, x[1:2], None, batch_size=1, progress=False)  # warm-up
    t0 = time.perf_counter()
    ev = onespike.evaluate(snn, x[1:], None, batch_size=1, progress=False)
    per_image = (time.perf_counter() - t0) / images
    print(f"VGG-16 224×224: {per_image:.1f} s per image (convert {convert_s:.1f} s)",
          flush=True)
    est = {str(w): VALIDATION_IMAGES * per_image / w for w in (1, 8, 64)}
    return {"model": "VGG-16 224×224 (configuration D, 13 conv + the 25088-4096-4096-1000 "
                     "classifier as 7×7/1×1 convs, random weights)",
            "dtype": "float64", "engine": "event", "threads": 1, "images_timed": images,
            "seconds_per_image": per_image, "convert_seconds_1_calibration_image": convert_s,
            "exact": ev.exact,
            "estimate_seconds_36500_images": est,
            "estimate_note": "extrapolated from the measured per-image cost assuming linear "
                             "scaling over workers of one core each; not measured"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--vgg224-images", type=int, default=1)
    ap.add_argument("--skip-vgg224", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    folder = Path(args.out).parent if args.out else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    import tempfile

    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform":
                                          platform.platform(), "torch": torch.__version__,
                                          "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory() as tmp:
        report["throughput"] = throughput(args.samples, args.batch_size, Path(tmp))
    if not args.skip_vgg224:
        report["vgg16_224"] = vgg16_224(args.vgg224_images)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
