"""``torch.distributed`` scale-out: shards, failure handling and the final reductions.

:func:`onespike.evaluate` and :func:`onespike.convert` (and the CLI commands built on them)
run distributed whenever a default process group is initialised — by the CLI under
``torchrun`` (:func:`init_from_env`), or by the caller's own ``init_process_group``. The rules:

* **Shards.** The data are split into ``world_size`` contiguous blocks in rank order, no
  sample read twice and none dropped (no padding, unlike ``DistributedSampler``); a rank may
  get an empty shard. Evaluation splits the *batches* of a one-process run
  (:func:`batch_shard_bounds`: the first ``B % W`` of the ``B`` batches' ranks take one batch
  more), so that every batch, hence every count of the certificate (the ``checked`` neurons
  depend on the batch the bounds see), is the one-process one; calibration splits samples
  (:func:`shard_bounds`; a maximum does not depend on the batch). An iterable of batches that is
  neither a tensor, a dataset nor a DataLoader cannot be split: it is taken as *this rank's*
  share.
* **No collectives in the loop.** Between batches each rank only looks at the process
  group's key-value store for a failure posted by another rank (:meth:`Coordinator.poll`),
  so a failing rank stops the others at their next batch.
* **Start.** Every rank publishes a fingerprint (the onespike and torch versions and a hash
  of the network or model) and the data size; any mismatch is refused on every rank.
* **End.** Every rank posts "done" or its failure, waits (store polling, bounded by the
  timeout) until all have, then the results are reduced: integer counts by SUM (exact,
  whatever the order), float64 maxima by MAX (NaN-aware), per-sample flags gathered in rank
  order. The result is the single-process one; ``world_size`` and the shard sizes are
  recorded beside it.
* **Faults.** A failure (an unreadable file in a shard, an exception, out of memory) raises
  :class:`~onespike.DistributedError` on *every* rank, naming the rank and the cause; a rank
  that stops responding (killed) makes the others raise it once ``timeout`` has passed
  (``torchrun`` also stops the others as soon as a worker dies). Nothing is written before
  the end succeeded, and only rank 0 writes.

Backends: ``gloo`` on CPU, ``nccl`` when CUDA is available (device ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

from onespike.errors import DistributedError

__all__ = [
    "DEFAULT_TIMEOUT",
    "Coordinator",
    "batch_shard_bounds",
    "init_from_env",
    "is_distributed",
    "model_fingerprint",
    "shard_bounds",
    "world",
]

#: Seconds a rank waits for the others (at the start and at the end) before giving up;
#: ``ONESPIKE_DIST_TIMEOUT`` overrides it.
DEFAULT_TIMEOUT = 1800.0

_counter = itertools.count()


def timeout_seconds() -> float:
    """The timeout: ``ONESPIKE_DIST_TIMEOUT`` (seconds) or :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get("ONESPIKE_DIST_TIMEOUT", "")
    try:
        return float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT


def is_distributed() -> bool:
    """A default process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Initialise the default process group from the ``torchrun`` environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, …) when it says more than one process and none is
    initialised yet: NCCL with device ``cuda:LOCAL_RANK`` when CUDA is available, gloo
    otherwise; timeout :func:`timeout_seconds`. Returns whether this call initialised it."""
    if not dist.is_available() or dist.is_initialized():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "gloo"
    if torch.cuda.is_available():  # pragma: no cover - no GPU in the tests
        backend = "nccl"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend,
                            timeout=datetime.timedelta(seconds=timeout_seconds()))
    return True


def collective_device() -> torch.device:
    """Where the tensors of a collective live: ``cuda:LOCAL_RANK`` under NCCL, else CPU."""
    if dist.get_backend() == "nccl":  # pragma: no cover - no GPU in the tests
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous shard of ``n`` samples (the first
    ``n % world_size`` ranks get one more)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def batch_shard_bounds(n: int, batch_size: int, rank: int, world_size: int
                       ) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s shard made of whole batches: the
    ``ceil(n / batch_size)`` batches of a one-process run are split contiguously
    (:func:`shard_bounds`), so every rank simulates exactly the batches one process would —
    the certificate's per-batch counts (``checked``) then match too."""
    batches = -(-n // batch_size)
    lo, hi = shard_bounds(batches, rank, world_size)
    return min(n, lo * batch_size), min(n, hi * batch_size)


def model_fingerprint(module: Any) -> str:
    """A hash of a module's (or a network's) tensors, names, dtypes and shapes."""
    h = hashlib.sha256(type(module).__name__.encode())
    state = module.state_dict() if hasattr(module, "state_dict") else {}
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r}".encode())
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _cause(exc: BaseException) -> str:
    """``"Type: message"``; for an error re-raised from a DataLoader worker, the original
    message (the last line of the worker's traceback) and the worker."""
    raw = str(exc)
    if "Original Traceback" in raw:
        lines = [ln for ln in raw.strip().splitlines() if ln.strip()]
        head = lines[0].split(" in ", 1)[-1].rstrip(".") if lines else "a loader worker"
        last = lines[-1].split(": ", 1)[-1] if lines else ""
        return f"{type(exc).__name__}: {last} (in {head})"
    text = " ".join(raw.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Coordinator:
    """One distributed operation (``"evaluate"``, ``"calibrate"``) on the default process
    group: the start check, failure posting and polling, the end barrier and the
    reductions (see the module docstring). With no process group every method is local."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.rank, self.world_size = world()
        self.active = self.world_size > 1
        self.timeout = timeout_seconds()
        self._key = f"onespike/{next(_counter)}/{operation}"
        self._store: Any = None
        if self.active:
            self._store = dist.distributed_c10d._get_default_store()

    # -- failures ---------------------------------------------------------------------------
    def _error(self, rank: int | None, cause: str, what: str | None = None) -> DistributedError:
        who = f"rank {rank}" if rank is not None else "a rank"
        return DistributedError(
            f"{self.operation} stopped on all {self.world_size} ranks: {what or who + ' failed'}"
            f": {cause}", rank=rank, cause=cause, world_size=self.world_size,
            operation=self.operation)

    def fail(self, exc: BaseException) -> DistributedError:
        """Post this rank's failure for the others; returns the error to raise here."""
        if isinstance(exc, DistributedError):
            return exc
        cause = _cause(exc)
        if self.active:
            try:
                self._store.set(f"{self._key}/failed", f"{self.rank}\t{cause}")
            except Exception:
                pass
        err = self._error(self.rank, cause)
        err.__cause__ = exc
        return err

    def poll(self) -> None:
        """Raise :class:`~onespike.DistributedError` if another rank posted a failure (a
        look at the store, not a collective)."""
        if self.active and self._store.check([f"{self._key}/failed"]):
            raise self._posted()

    def _posted(self) -> DistributedError:
        text = self._store.get(f"{self._key}/failed").decode("utf-8", "replace")
        rank, _, cause = text.partition("\t")
        return self._error(int(rank), cause)

    @contextmanager
    def loop(self, bar: Any) -> Iterator[None]:
        """The shard loop of every rank: an exception inside (locally: re-raised at once) is
        posted for the other ranks; ``bar`` (a progress bar) is closed; then the end barrier
        (:meth:`finish`) runs."""
        error: Exception | None = None
        try:
            yield
        except Exception as exc:
            if not self.active:
                raise
            error = exc
        finally:
            bar.close()
        self.finish(error)

    def finish(self, exc: BaseException | None = None) -> None:
        """The end barrier: post "done" (or ``exc``), wait until every rank has, and raise
        :class:`~onespike.DistributedError` on every rank if any failed or did not answer
        within the timeout. Locally (no process group), re-raise ``exc``."""
        if not self.active:
            if exc is not None:
                raise exc
            return
        if exc is not None:
            raise self.fail(exc)
        self._store.set(f"{self._key}/done/{self.rank}", "1")
        keys = [f"{self._key}/done/{r}" for r in range(self.world_size)]
        deadline = time.monotonic() + self.timeout
        pause = 0.01
        while True:
            self.poll()
            if self._store.check(keys):
                return
            if time.monotonic() > deadline:
                missing = [r for r, k in enumerate(keys) if not self._store.check([k])]
                raise self._error(missing[0] if missing else None,
                                  f"no answer within {self.timeout:g} s (killed or hung?)",
                                  f"rank(s) {', '.join(map(str, missing))} stopped responding")
            time.sleep(pause)
            pause = min(0.2, pause * 2)

    # -- checks and reductions ---------------------------------------------------------------
    def check_same(self, facts: dict[str, Any]) -> None:
        """Every rank must have the same ``facts`` (versions, network hash, data size);
        a mismatch raises on every rank, naming the first rank that differs and the fact."""
        if not self.active:
            return
        everyone = self.gather(facts)
        for r, other in enumerate(everyone):
            for key in sorted(set(facts) | set(other)):
                if everyone[0].get(key) != other.get(key):
                    raise self._error(r, f"{key} is {other.get(key)!r} on rank {r} but "
                                      f"{everyone[0].get(key)!r} on rank 0", f"rank {r} differs")

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (``[obj]`` locally)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        try:
            dist.all_gather_object(out, obj)
        except RuntimeError as exc:
            raise self._error(None, _cause(exc), "a rank stopped responding") from exc
        return out

    def sum_ints(self, values: Sequence[int]) -> list[int]:
        """Element-wise SUM over the ranks (int64: exact)."""
        if not self.active or not values:
            return [int(v) for v in values]
        t = torch.tensor([int(v) for v in values], dtype=torch.int64,
                         device=collective_device())
        self._all_reduce(t, dist.ReduceOp.SUM)
        return [int(v) for v in t.tolist()]

    def max_floats(self, values: Sequence[float]) -> list[float]:
        """Element-wise MAX over the ranks (float64; a NaN on any rank gives NaN)."""
        if not self.active or not values:
            return [float(v) for v in values]
        vals = [float(v) for v in values]
        nan = torch.tensor([1 if math.isnan(v) else 0 for v in vals], dtype=torch.int64,
                           device=collective_device())
        t = torch.tensor([-math.inf if math.isnan(v) else v for v in vals],
                         dtype=torch.float64, device=collective_device())
        self._all_reduce(t, dist.ReduceOp.MAX)
        self._all_reduce(nan, dist.ReduceOp.SUM)
        return [math.nan if k else float(v) for v, k in zip(t.tolist(), nan.tolist())]

    def _all_reduce(self, t: torch.Tensor, op: Any) -> None:
        try:
            dist.all_reduce(t, op=op)
        except RuntimeError as exc:
            raise self._error(None, _cause(exc), "a rank stopped responding") from exc
