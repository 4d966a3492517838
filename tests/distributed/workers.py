"""Process groups of 2–3 gloo processes on localhost (``spawn``) running test scenarios.

:func:`run_group` starts ``world`` processes, each joins the group and runs
``SCENARIOS[name](rank, world, **kwargs)``; it returns, per rank, ``("ok", value)`` or
``("error", facts)`` — or ``("missing", None)`` for a rank that died without answering.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import os
import queue
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
import torch.utils.data
from tests.distributed.helpers import free_port, make_image_folder, tiny_model


def run_group(world: int, name: str, timeout: float = 120.0, dist_timeout: float = 30.0,
              **kwargs: Any) -> list[tuple[str, Any]]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(r, world, port, name, kwargs, q, dist_timeout))
             for r in range(world)]
    for p in procs:
        p.start()
    results: dict[int, tuple[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(results) < world and time.monotonic() < deadline:
        try:
            rank, status, value = q.get(timeout=0.5)
            results[rank] = (status, value)
        except queue.Empty:
            if all(not p.is_alive() for p in procs) and q.empty():
                break
    for p in procs:
        p.join(timeout=max(1.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    return [results.get(r, ("missing", None)) for r in range(world)]


def _entry(rank: int, world: int, port: int, name: str, kwargs: dict[str, Any], q: Any,
           dist_timeout: float) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["ONESPIKE_DIST_TIMEOUT"] = str(dist_timeout)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        q.put((rank, "ok", SCENARIOS[name](rank, world, **kwargs)))
    except BaseException as exc:
        q.put((rank, "error", {"type": type(exc).__name__, "message": str(exc),
                               "rank": getattr(exc, "rank", None),
                               "cause": getattr(exc, "cause", None),
                               "traceback": traceback.format_exc()}))
    finally:
        dist.destroy_process_group()


# -- the data and the networks of the scenarios (the same in every process) --------------------
def seven_samples() -> tuple[Any, Any, Any]:
    """The tiny model, 7 inputs (3×8×8) and 7 labels."""
    g = torch.Generator().manual_seed(1)
    model = tiny_model(8)
    return model, torch.rand(7, 3, 8, 8, generator=g), torch.randint(0, 3, (7,), generator=g)


def comparable(d: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's JSON without what may differ between runs (time, world, shards)."""
    return {k: v for k, v in d.items() if k not in ("snn_seconds", "world_size", "shard_sizes")}


def network_digest(snn: Any, folder: Path, tag: str) -> str:
    import onespike

    path = onespike.save(snn, folder / f"{tag}.onespike")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _caught(fn: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        fn()
    except Exception as exc:
        return {"type": type(exc).__name__, "rank": getattr(exc, "rank", None),
                "cause": getattr(exc, "cause", None), "message": str(exc),
                "seconds": time.monotonic() - t0}
    return {"type": None, "seconds": time.monotonic() - t0}


class Failing(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Items of ``x`` / ``y``; item ``at`` raises ``error`` (``"kill"``: the process dies)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, at: int, error: str) -> None:
        self.x, self.y, self.at, self.error = x, y, at, error

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i == self.at:
            if self.error == "kill":
                os._exit(9)
            if self.error == "oom":
                raise MemoryError("cannot allocate 80 GiB")
            raise RuntimeError("boom")
        return self.x[i], self.y[i]


# -- scenarios ---------------------------------------------------------------------------------
def results(rank: int, world: int, folder: str) -> dict[str, Any]:
    """Evaluations (tensor and streamed folder) and conversions of this group."""
    import onespike
    from onespike.data import load_dataset

    root = Path(folder)
    model, x, y = seven_samples()
    snn = onespike.convert(model, x, progress=False)
    ev = onespike.evaluate(snn, x, y, model=model, batch_size=2, progress=False).as_dict()
    images = load_dataset(str(root / "imgs"), stream=True)
    snn_folder = onespike.convert(model, images, batch_size=4, progress=False)
    ev_stream = onespike.evaluate(snn_folder, images, batch_size=3, progress=False).as_dict()
    return {
        "evaluate": ev, "evaluate_stream": ev_stream,
        "convert": network_digest(snn, root, f"t{world}-{rank}"),
        "convert_stream": network_digest(snn_folder, root, f"s{world}-{rank}"),
    }


def faults(rank: int, world: int, folder: str) -> dict[str, Any]:
    """Failures on rank 1 (a bad file, an exception, out of memory) and a network that
    differs on rank 1: every rank must raise DistributedError naming rank 1."""
    import onespike
    from onespike.data import load_dataset

    root = Path(folder)
    model, x, y = seven_samples()
    snn = onespike.convert(model, x, progress=False)
    bad = root / "bad"
    if rank == 0:
        shutil.copytree(root / "imgs", bad)
        last = sorted(bad.rglob("*.png"))[-1]  # the last image: in rank 1's shard
        last.write_bytes(b"not a png")
    torch.distributed.barrier()
    stream = load_dataset(str(bad), stream=True)
    other = copy.deepcopy(snn)  # another network on rank 1: one weight changed
    if rank == 1:
        next(t for t in other.state_dict().values() if t.is_floating_point()).add_(1e-3)
    return {
        "bad_file": _caught(lambda: onespike.evaluate(snn, stream, batch_size=2,
                                                      progress=False)),
        "bad_calibration": _caught(lambda: onespike.convert(model, stream, batch_size=2,
                                                            progress=False)),
        "exception": _caught(lambda: onespike.evaluate(snn, Failing(x, y, 6, "raise"),
                                                       batch_size=1, progress=False)),
        "oom": _caught(lambda: onespike.evaluate(snn, Failing(x, y, 5, "oom"),
                                                 batch_size=1, progress=False)),
        "mismatch": _caught(lambda: onespike.evaluate(other, x, y, progress=False)),
        "convert_mismatch": _caught(lambda: onespike.convert(
            model, x, zeta=0.25 if rank == 1 else 0.5, progress=False)),
        "still_works": onespike.evaluate(snn, x, y, progress=False).samples,
    }


def killed(rank: int, world: int) -> dict[str, Any]:
    """Rank 1 dies (os._exit) in the middle of its shard."""
    import onespike

    model, x, y = seven_samples()
    snn = onespike.convert(model, x, progress=False)
    return _caught(lambda: onespike.evaluate(snn, Failing(x, y, 5, "kill"), batch_size=1,
                                             progress=False))


SCENARIOS = {"results": results, "faults": faults, "killed": killed}


def prepare(folder: Path, count: int = 23) -> Path:
    make_image_folder(folder / "imgs", count)
    return folder
