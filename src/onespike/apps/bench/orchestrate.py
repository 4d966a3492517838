"""``onespike bench``: speed and memory of the simulation engines against the ReLU forward.

For every model, dtype and batch size the benchmark measures the per-image wall time and the
peak memory of

* ``relu``: the plain PyTorch forward of the original model (``model.to(dtype)`` under
  ``torch.no_grad()``) — the reference every ratio is taken against,
* ``closed``: ``snn.simulate(x, engine="closed", record=False, certify=False)``,
* ``closed-cert``: the same with ``certify=True``,
* ``event``: ``snn.simulate(x, engine="event", record=False)`` (exact dynamics),
* ``clock``: ``snn.simulate(x, engine="clock", record=False, steps=K)`` (time-stepped,
  ``K`` ticks per window; reported "n/a" when the engine is missing or fails),

together with the conversion time (calibration included), the fraction of neurons whose first
crossing needed the exact computation (``certificate.checked / neurons``) and the output error
against the float64 ReLU logits.

How each configuration (model, dtype, batch, engine) is measured:

1. **First run, in a fresh process** (forked from a clean fork server that has only imported
   ``torch`` and ``onespike``): the network (or the ReLU model) and the inputs are loaded, one
   cheap warm-up call on a single sample initialises the libraries, freed heap memory is
   returned to the system (``malloc_trim``), then the peak resident set size is reset
   (``/proc/self/clear_refs``; psutil sampling where that is not available) and the
   configuration is run once. Its peak memory minus the resident size just before the run
   is the configuration's **peak memory**; its outputs give the certificate and the error.
2. **Timing, in the benchmark process**: the engines of one (model, dtype, batch) are warmed up
   and then timed round-robin (so that load from other jobs hits them alike), up to
   ``repeats`` times each and no longer than ``budget`` seconds per engine; the **per-image
   time** is the median run time divided by the batch size. Runs shorter than 50 ms are
   repeated inside one timing sample. A configuration whose first run already took longer
   than ``budget`` is not repeated: its single fresh-process run is reported (``single``).
3. **Skipping**: a configuration whose run time, extrapolated linearly from the same engine at
   the next smaller batch, exceeds ``max_run`` seconds is skipped and reported with the
   estimate (the exact event engine on a randomly initialised VGG-16 is the case in point).

Float64 outputs of ``closed``, ``closed-cert`` and ``event`` must equal the ReLU logits within
``1e-9`` (relative to the largest logit); for ``event`` this is asserted where the certificate
holds (no early or saturated neuron — otherwise the spiking network legitimately differs). A
failure is recorded and makes the command exit with status 1.

Run ``onespike bench --help`` (or ``python benchmarks/run.py --help``). Measuring processes
are started with multiprocessing (fork server): a script calling :func:`run_benchmark` needs
the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import copy
import datetime as _dt
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import psutil
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "BENCH_MODELS",
    "DEFAULT_MODELS",
    "ENGINES",
    "QUICK_MODELS",
    "BenchModel",
    "bench_command",
    "build_model",
    "cli",
    "randomise_batchnorm",
    "run_benchmark",
    "to_markdown",
]

#: Engines measured (``relu`` is the reference forward of the original model).
ENGINES: tuple[str, ...] = ("relu", "closed", "closed-cert", "event", "clock")
#: dtype names accepted by ``--dtypes``.
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}
#: Relative error (to the largest |logit|) allowed between float64 outputs and ReLU logits.
AGREEMENT_TOL = 1e-9
#: Timing samples shorter than this are repeated inside one sample.
_MIN_SAMPLE_S = 0.05
_MIB = float(1 << 20)


@dataclass(frozen=True)
class BenchModel:
    """A model of the benchmark: how to build it and what it is fed.

    ``factory``: a :func:`onespike.models.get_model` name (or a tiny model of this module);
    ``data``: ``"fashion-mnist"`` (real images; random ones if the files are missing) or
    ``"random"`` (uniform in [0, 1]); ``calibration``: default number of calibration images.
    """

    key: str
    label: str
    factory: str
    input_shape: tuple[int, ...]
    data: str
    calibration: int = 1000
    kwargs: dict[str, Any] = field(default_factory=dict)


def _tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 16),
                         nn.ReLU(), nn.Linear(16, 3))


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3),
    )


_TINY: dict[str, Callable[[], nn.Module]] = {"tiny_mlp": _tiny_mlp, "tiny_cnn": _tiny_cnn}

#: Every model the benchmark knows, by ``--models`` key.
BENCH_MODELS: dict[str, BenchModel] = {
    m.key: m
    for m in (
        BenchModel("mlp_fmnist", "MLP 784-600-10", "mlp_fmnist", (1, 28, 28), "fashion-mnist"),
        BenchModel("lenet5_fmnist", "LeNet-5", "lenet5_fmnist", (1, 28, 28), "fashion-mnist"),
        BenchModel("vgg_fmnist", "VGG (Fashion-MNIST)", "vgg_fmnist", (1, 28, 28),
                   "fashion-mnist"),
        BenchModel("vgg16_cifar", "VGG-16 32×32", "vgg16_cifar", (3, 32, 32), "random"),
        BenchModel("vgg16_cifar64", "VGG-16 64×64", "vgg16_cifar", (3, 64, 64), "random",
                   kwargs={"in_size": 64}),
        BenchModel("resnet_fmnist", "ResNet (Fashion-MNIST)", "resnet_fmnist", (1, 28, 28),
                   "fashion-mnist"),
        BenchModel("densenet_fmnist", "DenseNet (Fashion-MNIST)", "densenet_fmnist",
                   (1, 28, 28), "fashion-mnist"),
        BenchModel("resnet18_cifar", "ResNet-18 32×32", "resnet18_cifar", (3, 32, 32),
                   "random"),
        BenchModel("tiny_mlp", "tiny MLP 64-24-16-3", "tiny_mlp", (1, 8, 8), "random",
                   calibration=32),
        BenchModel("tiny_cnn", "tiny CNN", "tiny_cnn", (1, 8, 8), "random", calibration=32),
    )
}
#: Models of the full benchmark.
DEFAULT_MODELS: tuple[str, ...] = ("mlp_fmnist", "lenet5_fmnist", "vgg_fmnist", "resnet_fmnist",
                                   "densenet_fmnist", "vgg16_cifar", "vgg16_cifar64",
                                   "resnet18_cifar")
#: Models of ``--quick``.
QUICK_MODELS: tuple[str, ...] = ("tiny_mlp", "tiny_cnn")


# -- models and data -------------------------------------------------------------------------
def _instantiate(spec: BenchModel) -> nn.Module:
    if spec.factory in _TINY:
        return _TINY[spec.factory]()
    from onespike.models import get_model

    return get_model(spec.factory, **spec.kwargs)


def randomise_batchnorm(model: nn.Module, sample: Tensor, *, seed: int = 0) -> None:
    """Give a randomly initialised model plausible batch-norm parameters and statistics.

    Affine parameters are drawn (``gamma ~ U(0.8, 1.2)``, ``beta ~ U(-0.1, 0.1)``); the
    running statistics are those of ``sample`` flowing through the network in training mode
    (so every layer sees roughly unit-scale inputs, as after training), then perturbed
    (means shifted by ``N(0, 0.1²)·std``, variances scaled by ``U(0.8, 1.25)``). The model is
    left in eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        model.eval()
        return
    with torch.no_grad():
        for bn in bns:
            if bn.affine:
                bn.weight.copy_(0.8 + 0.4 * torch.rand(bn.weight.shape, generator=g))
                bn.bias.copy_(0.2 * torch.rand(bn.bias.shape, generator=g) - 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the sample
        model.train()
        model(sample)
        for bn in bns:
            std = bn.running_var.sqrt()
            bn.running_mean.add_(0.1 * std * torch.randn(std.shape, generator=g))
            bn.running_var.mul_(0.8 + 0.45 * torch.rand(std.shape, generator=g))
            bn.momentum = 0.1
    model.eval()


def build_model(spec: BenchModel, *, seed: int = 0) -> tuple[nn.Module, str]:
    """The model in eval mode and where its weights come from: ``"pretrained"`` (shipped
    weights) or ``"random (…)"`` (seeded default initialisation, batch norm randomised by
    :func:`randomise_batchnorm`)."""
    from onespike.models import load_pretrained

    if spec.factory not in _TINY and not spec.kwargs:
        try:
            return load_pretrained(spec.factory).float().eval(), "pretrained"
        except (ValueError, FileNotFoundError, OSError, RuntimeError, ImportError) as exc:
            reason = type(exc).__name__
            if isinstance(exc, FileNotFoundError):
                reason = "no weight file"
            elif isinstance(exc, ValueError):
                reason = "none shipped"
    else:
        reason = "none shipped"
    torch.manual_seed(seed)
    model = _instantiate(spec).float()
    g = torch.Generator().manual_seed(seed + 1)
    randomise_batchnorm(model, torch.rand((64, *spec.input_shape), generator=g), seed=seed)
    return model.eval(), f"random ({reason})"


def bench_data(spec: BenchModel, n_eval: int, n_calib: int, *, seed: int = 0
               ) -> tuple[Tensor, Tensor, str]:
    """``(inputs, calibration, description)``: ``n_eval`` inputs to simulate (test split) and
    ``n_calib`` calibration images (train split), float32 in [0, 1]."""
    shape = spec.input_shape
    if spec.data == "fashion-mnist":
        try:
            from onespike.data import load_dataset

            test = load_dataset("fashion-mnist", "test", limit=n_eval).images
            train = load_dataset("fashion-mnist", "train", limit=n_calib).images
            if test.shape[0] == n_eval and train.shape[0] == n_calib:
                return test.contiguous(), train.contiguous(), "fashion-mnist (test / train)"
        except (OSError, ValueError) as exc:
            note = f"random [0, 1] (fashion-mnist unavailable: {type(exc).__name__})"
        else:
            note = "random [0, 1] (fashion-mnist too small)"
    else:
        note = "random [0, 1]"
    g = torch.Generator().manual_seed(seed + 7)
    return (torch.rand((n_eval, *shape), generator=g),
            torch.rand((n_calib, *shape), generator=g), note)


# -- running one configuration ---------------------------------------------------------------
Runner = Callable[[], tuple[Tensor, Any]]


def make_runner(engine: str, obj: Any, x: Tensor, *, clock_steps: int) -> Runner:
    """A call running ``engine`` once on ``x``; returns ``(output, certificate or None)``.
    ``obj`` is the ReLU model (engine ``relu``) or the spiking network."""
    if engine == "relu":
        def run() -> tuple[Tensor, Any]:
            with torch.no_grad():
                return obj(x), None
        return run
    options: dict[str, Any]
    if engine == "closed":
        name, options = "closed", {"certify": False}
    elif engine == "closed-cert":
        name, options = "closed", {"certify": True}
    elif engine == "event":
        name, options = "event", {}
    elif engine == "clock":
        name, options = "clock", {"steps": clock_steps}
    else:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")

    def run_snn() -> tuple[Tensor, Any]:
        res = obj.simulate(x, engine=name, record=False, **options)
        return res.output, res.certificate
    return run_snn


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """Peak resident memory of this process between :meth:`start` and :meth:`stop`, above
    the resident size at :meth:`start`. Linux: resets the kernel's high-water mark
    (``echo 5 > /proc/self/clear_refs``) and reads ``VmHWM``; elsewhere samples
    ``psutil`` every 2 ms."""

    def __init__(self) -> None:
        self.method = ""
        self.base = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        proc = psutil.Process()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
            if hwm is None or rss is None:
                raise OSError("no VmHWM")
            self.method = "VmHWM reset by /proc/self/clear_refs"
            self.base = rss * 1024
            return
        except OSError:
            pass
        self.method = "psutil RSS sampling every 2 ms"
        self.base = self._peak = proc.memory_info().rss

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, proc.memory_info().rss)
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Bytes of peak RSS above the start."""
        if self._thread is None:
            hwm = _status_kib("VmHWM")
            return max(0, (hwm or 0) * 1024 - self.base)
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, psutil.Process().memory_info().rss)
        return max(0, self._peak - self.base)


def release_free_memory() -> bool:
    """Return freed heap memory to the system (glibc ``malloc_trim``), so that a run's
    allocations are counted even where an earlier call (the warm-up) freed memory of the same
    size: without it, glibc keeps those pages and the run reuses them unseen. False where
    unavailable."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0) or True)
    except (OSError, AttributeError):
        return False


def _rel_err(out: Tensor, ref: Tensor) -> float:
    out = out.detach().reshape(out.shape[0], -1).to(torch.float64)
    ref = ref.detach().reshape(ref.shape[0], -1).to(torch.float64)
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    diff = float((out - ref).abs().max()) if ref.numel() else 0.0
    return diff / scale if scale > 0 else diff


def _cert_stats(cert: Any) -> dict[str, Any]:
    if cert is None:
        return {}
    checked, neurons = sum(cert.checked), sum(cert.neurons)
    return {
        "checked": int(checked),
        "neurons": int(neurons),
        "checked_fraction": checked / neurons if neurons else 0.0,
        "checked_per_layer": [c / n if n else 0.0 for c, n in zip(cert.checked, cert.neurons)],
        "certificate_exact": bool(cert.exact),
        "violations": int(cert.violations),
    }


def _outcome(engine: str, dtype: str, out: Tensor, cert: Any, ref: Tensor) -> dict[str, Any]:
    res: dict[str, Any] = {"max_rel_err": _rel_err(out, ref)}
    res["predictions_agree"] = float(
        (out.reshape(out.shape[0], -1).argmax(1) == ref.reshape(ref.shape[0], -1).argmax(1))
        .to(torch.float64).mean())
    res.update(_cert_stats(cert))
    res["agrees"] = None
    if dtype == "float64" and engine in ("closed", "closed-cert", "event"):
        if engine == "event" and not res["certificate_exact"]:
            res["agreement_note"] = (f"certificate not exact ({res['violations']} violations): "
                                     "the spiking network differs from the ReLU network")
        else:
            res["agrees"] = res["max_rel_err"] <= AGREEMENT_TOL
    return res


def _load_model(spec: BenchModel, weights: str, dtype: torch.dtype) -> nn.Module:
    from safetensors.torch import load_file

    model = _instantiate(spec)
    model.load_state_dict(load_file(weights), strict=True)
    return model.to(dtype).eval()


def _measure_first_run(job: dict[str, Any]) -> dict[str, Any]:
    """One configuration's first run with its peak memory (meant for a fresh process)."""
    import resource

    from safetensors.torch import load_file

    import onespike

    torch.set_num_threads(int(job["threads"]))
    spec = BENCH_MODELS[job["model"]]
    dtype = DTYPES[job["dtype"]]
    data = load_file(job["data"])
    b = int(job["batch"])
    x = data["x"][:b].to(dtype)
    ref = data["ref"][:b]
    if job["engine"] == "relu":
        obj: Any = _load_model(spec, job["weights"], dtype)
        warm = make_runner("relu", obj, x[:1], clock_steps=1)
    else:
        obj = onespike.load(job["snn"])
        warm = make_runner("closed", obj, x[:1], clock_steps=1)
    run = make_runner(job["engine"], obj, x, clock_steps=int(job["clock_steps"]))
    warm()
    gc.collect()
    trimmed = release_free_memory()
    peak = PeakRSS()
    peak.start()
    c0, t0 = time.process_time(), time.perf_counter()
    out, cert = run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    extra = peak.stop()
    res = {"first_run_s": elapsed, "first_run_cpu_s": cpu, "peak_bytes": extra,
           "baseline_bytes": peak.base,
           "memory_method": peak.method + (" after malloc_trim" if trimmed else ""),
           "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    res.update(_outcome(job["engine"], job["dtype"], out, cert, ref))
    return res


def _child_entry(conn: Any, job: dict[str, Any]) -> None:
    try:
        res = _measure_first_run(job)
    except BaseException as exc:  # reported to the parent, which carries on
        res = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
               "traceback": traceback.format_exc(limit=6)}
    conn.send(res)
    conn.close()


_CTX: Any = None


def _context() -> Any:
    """A forkserver context whose server has imported only torch and onespike (fast,
    clean children), or spawn where forkserver does not exist."""
    global _CTX
    if _CTX is None:
        try:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["onespike.apps.bench"])
        except ValueError:
            ctx = mp.get_context("spawn")
        _CTX = ctx
    return _CTX


def run_in_child(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run :func:`_measure_first_run` in a fresh process; ``{"error": …}`` on failure."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_entry, args=(send, job), daemon=True)
    proc.start()
    send.close()
    try:
        if recv.poll(timeout):
            res = recv.recv()
        else:
            res = {"error": f"timed out after {timeout:.0f} s"}
    except EOFError:
        res = {"error": "the measuring process died (out of memory?)"}
    finally:
        recv.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if proc.exitcode not in (0, None) and "error" not in res:
        res["warning"] = f"measuring process exit code {proc.exitcode}"
    return res


def _measure_in_process(job: dict[str, Any], run: Runner, ref: Tensor) -> dict[str, Any]:
    c0, t0 = time.process_time(), time.perf_counter()
    out, cert = run()
    res = {"first_run_s": time.perf_counter() - t0, "first_run_cpu_s": time.process_time() - c0}
    res.update(_outcome(job["engine"], job["dtype"], out, cert, ref))
    return res


def _time_group(runners: dict[str, Runner], first: dict[str, float], *, repeats: int,
                budget: float) -> dict[str, dict[str, Any]]:
    """Warm up, then time the engines round-robin; returns per engine the wall-clock and the
    CPU-time (``time.process_time``) samples, in seconds per call."""
    number: dict[str, int] = {}
    for engine, run in runners.items():
        t_first = first[engine]
        if t_first < budget / 4:  # full-size warm-up is cheap: do it
            t0 = time.perf_counter()
            run()
            t_first = time.perf_counter() - t0
        number[engine] = 1 if t_first >= _MIN_SAMPLE_S else \
            min(1000, max(1, math.ceil(_MIN_SAMPLE_S / max(t_first, 1e-6))))
    samples: dict[str, list[float]] = {e: [] for e in runners}
    cpu: dict[str, list[float]] = {e: [] for e in runners}
    spent = dict.fromkeys(runners, 0.0)
    for _ in range(repeats):
        for engine, run in runners.items():
            if samples[engine] and spent[engine] >= budget:
                continue
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(number[engine]):
                run()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            spent[engine] += dt
            samples[engine].append(dt / number[engine])
            cpu[engine].append(dc / number[engine])
    return {e: {"samples_s": samples[e], "cpu_samples_s": cpu[e],
                "calls_per_sample": number[e]} for e in runners}


# -- the benchmark ---------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """CPU, memory, library versions and thread settings of this machine."""
    cpu_model = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import numpy

    from onespike._version import __version__

    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpus_usable": usable,
        "memory_total_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "onespike": __version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def git_info() -> dict[str, Any] | None:
    """Commit and locally modified source files of the checkout this module runs from."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "modified_sources": [ln[3:] for ln in status.splitlines()]}


def _parse_list(value: str | Sequence[Any], what: str, known: Sequence[str] | None = None
                ) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else \
        [str(v) for v in value]
    items = [v for v in items if v]
    if not items:
        raise ValueError(f"{what}: give at least one value")
    if known is not None:
        bad = [v for v in items if v not in known]
        if bad:
            raise ValueError(f"{what}: unknown {', '.join(bad)}; known: {', '.join(known)}")
    return list(dict.fromkeys(items))


def run_benchmark(
    *,
    models: Sequence[str] | str | None = None,
    batches: Sequence[int] | str | None = None,
    dtypes: Sequence[str] | str | None = None,
    engines: Sequence[str] | str | None = None,
    repeats: int | None = None,
    budget: float = 8.0,
    max_run: float = 45.0,
    clock_steps: int = 16,
    calibration: int | None = None,
    threads: int = 1,
    memory: bool = True,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its results (JSON-friendly; see the module docstring).

    ``quick``: tiny MLP and CNN, batch 2, one repeat, 32 calibration images (for tests);
    explicit arguments still win. ``memory=False`` runs the first run in this process too
    (no peak memory). ``calibration`` overrides every model's calibration-set size.
    ``threads``: torch threads (default 1: on a machine shared with other jobs, OpenMP
    threads that wait for each other at every parallel region make small operations
    10–100× slower; the setting is recorded). It is restored afterwards.
    """
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _run_benchmark(
            models=models, batches=batches, dtypes=dtypes, engines=engines, repeats=repeats,
            budget=budget, max_run=max_run, clock_steps=clock_steps, calibration=calibration,
            threads=int(threads), default_threads=old_threads, memory=memory, quick=quick,
            seed=seed, progress=progress, log=log)
    finally:
        torch.set_num_threads(old_threads)


def _run_benchmark(
    *,
    models: Sequence[str] | str | None,
    batches: Sequence[int] | str | None,
    dtypes: Sequence[str] | str | None,
    engines: Sequence[str] | str | None,
    repeats: int | None,
    budget: float,
    max_run: float,
    clock_steps: int,
    calibration: int | None,
    threads: int,
    default_threads: int,
    memory: bool,
    quick: bool,
    seed: int,
    progress: bool,
    log: Callable[[str], None] | None,
) -> dict[str, Any]:
    from safetensors.torch import save_file

    import onespike

    say = log or (lambda _m: None)
    models = _parse_list(models or (QUICK_MODELS if quick else DEFAULT_MODELS), "models",
                         list(BENCH_MODELS))
    batch_list = sorted({int(b) for b in _parse_list(batches or ([2] if quick else [1, 8, 64]),
                                                      "batches")})
    if batch_list[0] < 1:
        raise ValueError("batches must be >= 1")
    dtype_list = _parse_list(dtypes or list(DTYPES), "dtypes", list(DTYPES))
    engine_list = _parse_list(engines or list(ENGINES), "engines", list(ENGINES))
    if "relu" not in engine_list:
        engine_list.insert(0, "relu")  # every ratio needs it
    engine_list = [e for e in ENGINES if e in engine_list]
    repeats = int(repeats if repeats is not None else (1 if quick else 5))
    if repeats < 1 or budget <= 0 or max_run <= 0 or clock_steps < 1:
        raise ValueError("repeats, budget, max_run and clock_steps must be positive")
    started = time.perf_counter()
    info = machine_info()
    info["torch_default_threads"] = default_threads
    info["git"] = git_info()
    settings = {
        "models": models, "batches": batch_list, "dtypes": dtype_list, "engines": engine_list,
        "repeats": repeats, "budget_s": budget, "max_run_s": max_run,
        "clock_steps": clock_steps, "calibration_override": calibration, "seed": seed,
        "memory": memory, "quick": quick, "threads": threads,
        "agreement_tolerance": AGREEMENT_TOL,
        "timing": "median over up to `repeats` round-robin runs after warm-up, per image; "
                  "runs longer than budget_s are reported from their single first run",
        "peak_memory": "fresh forked process per configuration: peak RSS during the run "
                       "minus RSS after setup and a 1-sample warm-up",
    }
    n_cfg = len(models) * len(dtype_list) * (1 + len(batch_list) * len(engine_list))
    bar = tqdm(total=n_cfg, desc="bench", unit="cfg", disable=not progress, leave=True,
               dynamic_ncols=True)
    model_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    timeout = 4 * max_run + 120
    n_eval = max(batch_list)
    with tempfile.TemporaryDirectory(prefix="onespike-bench-") as tmp:
        for key in models:
            spec = BENCH_MODELS[key]
            model, weights = build_model(spec, seed=seed)
            n_calib = calibration if calibration is not None else spec.calibration
            x_all, calib, data_note = bench_data(spec, n_eval, n_calib, seed=seed)
            with torch.no_grad():
                ref = copy.deepcopy(model).double()(x_all.double())
            wpath, dpath = f"{tmp}/{key}.weights.safetensors", f"{tmp}/{key}.data.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, wpath)
            save_file({"x": x_all.contiguous(), "ref": ref.contiguous()}, dpath)
            mrow: dict[str, Any] = {
                "model": key, "label": spec.label, "weights": weights, "data": data_note,
                "input_shape": list(spec.input_shape),
                "parameters": sum(p.numel() for p in model.parameters()),
                "relu_macs": None, "hidden_neurons": None, "spiking_layers": None,
                "calibration_images": int(calib.shape[0]), "conversion_s": {},
                "latency": None,
            }
            model_rows.append(mrow)
            snns: dict[str, Any] = {}
            for dname in dtype_list:
                bar.set_description(f"bench {key} convert {dname}")
                gc.collect()
                t0 = time.perf_counter()
                snn = onespike.convert(model, list(calib.split(100)), dtype=DTYPES[dname],
                                       progress=False)
                mrow["conversion_s"][dname] = time.perf_counter() - t0
                summ = snn.summary()
                mrow["relu_macs"] = summ["synapses"]
                mrow["hidden_neurons"] = summ["hidden_neurons"]
                mrow["spiking_layers"] = len(summ["layers"])
                mrow["latency"] = summ["latency"]
                onespike.save(snn, f"{tmp}/{key}.{dname}.onespike")
                snns[dname] = snn
                say(f"{key}: weights {weights}; converted ({dname}, {calib.shape[0]} "
                    f"calibration images) in {mrow['conversion_s'][dname]:.2f} s")
                bar.update(1)
            for dname in dtype_list:
                dtype = DTYPES[dname]
                relu_model = copy.deepcopy(model).to(dtype).eval()
                snn = snns[dname]
                per_image: dict[str, float] = {}  # engine → per-image time, last batch
                for b in batch_list:
                    x = x_all[:b].to(dtype)
                    group: dict[str, dict[str, Any]] = {}
                    for engine in engine_list:
                        bar.set_description(f"bench {key} {dname} b={b} {engine}")
                        row: dict[str, Any] = {"model": key, "dtype": dname, "batch": b,
                                               "engine": engine}
                        if engine == "clock":
                            row["clock_steps"] = clock_steps
                        group[engine] = row
                        rows.append(row)
                        prev = per_image.get(engine)
                        if engine in per_image and prev is None:
                            row.update(status="skipped",
                                       note="skipped at a smaller batch (or failed there)")
                            bar.update(1)
                            continue
                        if prev is not None and prev * b > max_run:
                            row.update(status="skipped", estimate_s=prev * b,
                                       note=f"estimated {prev * b:.0f} s per run > max_run "
                                            f"{max_run:.0f} s")
                            per_image[engine] = None  # type: ignore[assignment]
                            bar.update(1)
                            continue
                        job = {"model": key, "dtype": dname, "batch": b, "engine": engine,
                               "threads": threads, "clock_steps": clock_steps,
                               "weights": wpath, "data": dpath,
                               "snn": f"{tmp}/{key}.{dname}.onespike"}
                        if memory:
                            res = run_in_child(job, timeout)
                        else:
                            obj = relu_model if engine == "relu" else snn
                            try:
                                res = _measure_in_process(
                                    job, make_runner(engine, obj, x, clock_steps=clock_steps),
                                    ref[:b])
                            except Exception as exc:
                                res = {"error": f"{type(exc).__name__}: {exc}"}
                        if "error" in res:
                            row.update(status="failed", error=res["error"])
                            if "traceback" in res:
                                row["traceback"] = res["traceback"]
                            per_image[engine] = None  # type: ignore[assignment]
                            say(f"{key} {dname} b={b} {engine}: n/a ({res['error']})")
                        else:
                            row.update(status="ok", **res)
                            if "peak_bytes" in res:
                                row["peak_mib"] = res["peak_bytes"] / _MIB
                        bar.update(1)
                    # timing in this process, round-robin over the cheap configurations
                    runners: dict[str, Runner] = {}
                    first: dict[str, float] = {}
                    for engine, row in group.items():
                        if row.get("status") != "ok":
                            continue
                        if row["first_run_s"] > budget:
                            row.update(samples_s=[row["first_run_s"]],
                                       cpu_samples_s=[row["first_run_cpu_s"]], calls_per_sample=1,
                                       single=True)
                            continue
                        obj = relu_model if engine == "relu" else snn
                        runners[engine] = make_runner(engine, obj, x, clock_steps=clock_steps)
                        first[engine] = row["first_run_s"]
                    if runners:
                        bar.set_description(f"bench {key} {dname} b={b} timing")
                        gc.collect()
                        try:
                            timed = _time_group(runners, first, repeats=repeats, budget=budget)
                        except Exception as exc:  # pragma: no cover - engines ran once already
                            timed = {}
                            for engine in runners:
                                group[engine].update(status="failed",
                                                     error=f"{type(exc).__name__}: {exc}")
                        for engine, t in timed.items():
                            group[engine].update(t, single=False)
                    for engine, row in group.items():
                        if row.get("status") != "ok":
                            continue
                        med = statistics.median(row["samples_s"])
                        row["run_s"] = med
                        row["per_image_s"] = med / b
                        row["per_image_cpu_s"] = statistics.median(row["cpu_samples_s"]) / b
                        per_image[engine] = med / b
                    relu = group.get("relu", {})
                    base, base_cpu = relu.get("per_image_s"), relu.get("per_image_cpu_s")
                    for row in group.values():
                        if row.get("per_image_s") is not None and base:
                            row["ratio_to_relu"] = row["per_image_s"] / base
                        if row.get("per_image_cpu_s") is not None and base_cpu:
                            row["cpu_ratio_to_relu"] = row["per_image_cpu_s"] / base_cpu
                    say(_group_line(key, dname, b, group))
            del snns, relu_model
            gc.collect()
    bar.close()
    info["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    failures = [
        f"{r['model']} {r['dtype']} batch {r['batch']} {r['engine']}: max rel err "
        f"{r['max_rel_err']:.3g} > {AGREEMENT_TOL:g}"
        for r in rows if r.get("agrees") is False
    ]
    results = {
        "benchmark": "onespike engines vs ReLU forward",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": info,
        "settings": settings,
        "models": model_rows,
        "results": rows,
        "scaling": _scaling(model_rows, rows),
        "checks": {"float64_agreement_passed": not failures, "failures": failures,
                   "agreement_checked": sum(1 for r in rows if r.get("agrees") is not None)},
        "elapsed_s": time.perf_counter() - started,
    }
    return results


def _group_line(key: str, dname: str, b: int, group: dict[str, dict[str, Any]]) -> str:
    parts = []
    for engine, row in group.items():
        if row.get("per_image_s") is not None:
            parts.append(f"{engine} {row['per_image_s'] * 1e3:.3g} ms/img")
        else:
            parts.append(f"{engine} {row.get('status')}")
    return f"{key} {dname} b={b}: " + ", ".join(parts)


def _scaling(model_rows: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-image time against batch size, and VGG-16 64×64 against 32×32."""
    tables: dict[str, dict[str, Any]] = {"per_image_s": {}, "per_image_cpu_s": {}}
    for what, by_batch in tables.items():
        for r in rows:
            if r.get(what) is None:
                continue
            d = by_batch.setdefault(r["model"], {}).setdefault(r["dtype"], {}) \
                .setdefault(r["engine"], {})
            d[str(r["batch"])] = r[what]
    size: dict[str, Any] = {}
    macs = {m["model"]: m["relu_macs"] for m in model_rows}
    by_batch = tables["per_image_s"]
    if "vgg16_cifar" in by_batch and "vgg16_cifar64" in by_batch:
        size = {"models": ["vgg16_cifar", "vgg16_cifar64"],
                "mac_ratio": (macs["vgg16_cifar64"] / macs["vgg16_cifar"]
                              if macs.get("vgg16_cifar") else None)}
        for what, key in (("per_image_s", "time_ratio"), ("per_image_cpu_s", "cpu_time_ratio")):
            size[key] = {}
            small, large = tables[what]["vgg16_cifar"], tables[what]["vgg16_cifar64"]
            for dname, engines in large.items():
                for engine, bs in engines.items():
                    for b, t in bs.items():
                        t0 = small.get(dname, {}).get(engine, {}).get(b)
                        if t0:
                            size[key].setdefault(dname, {}).setdefault(engine, {})[b] = t / t0
    return {"per_image_s_by_batch": tables["per_image_s"],
            "per_image_cpu_s_by_batch": tables["per_image_cpu_s"], "vgg16_64_over_32": size}


# -- reporting -------------------------------------------------------------------------------
def _fmt_ms(s: float) -> str:
    ms = s * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    return f"{ms:.3g}"


def _cell_time(r: dict[str, Any] | None, cpu: bool = False) -> str:
    if r is None:
        return "–"
    if r.get("status") == "skipped":
        est = r.get("estimate_s")
        return f"skipped (est. {est:.0f} s/run)" if est is not None else "skipped"
    key, ratio = ("per_image_cpu_s", "cpu_ratio_to_relu") if cpu else \
        ("per_image_s", "ratio_to_relu")
    if r.get("status") != "ok" or r.get(key) is None:
        return "n/a"
    text = _fmt_ms(r[key])
    if r["engine"] != "relu" and r.get(ratio) is not None:
        text += f" (×{r[ratio]:.3g})"
    if r.get("single"):
        text += " ¹"
    return text


def _cell_mem(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    if r.get("status") == "skipped":
        return "skipped"
    if r.get("peak_mib") is None:
        return "n/a"
    return f"{r['peak_mib']:.1f}"


def _config_table(s: dict[str, Any], engines: list[str], names: dict[str, str],
                  labels: dict[str, str], cell: Callable[[tuple[Any, ...]], str]) -> list[str]:
    """Markdown rows (header, then one row per model, dtype and batch, a blank line after):
    ``cell((model, dtype, batch, engine))`` fills each engine's column."""
    rows = ["| model | dtype | batch | " + " | ".join(names[e] for e in engines) + " |",
            "|---|---|---:|" + "---:|" * len(engines)]
    for key in s["models"]:
        for dname in s["dtypes"]:
            for b in s["batches"]:
                cells = [cell((key, dname, b, e)) for e in engines]
                rows.append(f"| {labels[key]} | {dname} | {b} | " + " | ".join(cells) + " |")
    return [*rows, ""]


def to_markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables (models, time, memory, certificate, scaling)."""
    m = results["machine"]
    s = results["settings"]
    engines = s["engines"]
    names = {"relu": "ReLU forward", "closed": "closed", "closed-cert": "closed+certify",
             "event": "event", "clock": f"clock ({s['clock_steps']} steps/window)"}
    out: list[str] = []
    out.append(f"# onespike benchmark — {results['date']}\n")
    out.append(
        f"{m['cpu_model']}, {m['cpus_usable']} usable CPU(s) (cpu_count {m['cpu_count']}), "
        f"torch {m['torch']} with {s['threads']} thread(s), Python {m['python']}; load "
        f"average at start {_fmt_load(m.get('load_average_start'))}, at end "
        f"{_fmt_load(m.get('load_average_end'))}. Total time {results['elapsed_s'] / 60:.1f} "
        "min.\n")
    out.append(
        f"Per-image time = median over up to {s['repeats']} round-robin runs after "
        f"warm-up (at most {s['budget_s']:g} s of runs per configuration), divided by the batch "
        "size; (×r) = ratio to the ReLU forward of the same model, dtype and batch in the same "
        "run. ¹ = single run (it took longer than the budget). Configurations estimated to take "
        f"more than {s['max_run_s']:g} s per run (linear in the batch from the next smaller "
        "batch) are skipped. Peak memory = peak RSS of a fresh process during the run minus its "
        "RSS after loading the network and inputs.\n")
    out.append("## Models and conversion\n")
    out.append("| model | weights | inputs | hidden neurons | MACs / image | calibration images "
               "| convert float64 (s) | convert float32 (s) |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|")
    for mr in results["models"]:
        conv = mr["conversion_s"]
        out.append(
            f"| {mr['label']} | {mr['weights']} | {mr['data']} | {mr['hidden_neurons']:,} "
            f"| {mr['relu_macs']:,} | {mr['calibration_images']} | "
            f"{_fmt_s(conv.get('float64'))} | {_fmt_s(conv.get('float32'))} |")
    out.append("")
    index = {(r["model"], r["dtype"], r["batch"], r["engine"]): r for r in results["results"]}
    labels = {mr["model"]: mr["label"] for mr in results["models"]}
    for cpu in (False, True):
        if cpu:
            out.append("## CPU time per image (ms), ratio to the ReLU forward\n")
            out.append("The same runs measured with `time.process_time` (the CPU time of the "
                       "process: with one thread, insensitive to the time other jobs hold the "
                       "cores).\n")
        else:
            out.append("## Wall time per image (ms), ratio to the ReLU forward\n")
        out += _config_table(s, engines, names, labels,
                             lambda k, cpu=cpu: _cell_time(index.get(k), cpu))
    if s.get("memory", True):
        out.append("## Peak memory above the loaded network (MiB)\n")
        out += _config_table(s, engines, names, labels, lambda k: _cell_mem(index.get(k)))
    out.append("## Certificate and exactness\n")
    out.append("Checked = fraction of hidden neurons that no certificate (drive bound, grid "
               "bound: docs/certificates.md) proved, whose first crossing was computed exactly "
               "by the walk (the clock engine simulates every "
               "neuron). Error = max |output − float64 ReLU logits| / max |logit| over the "
               "largest batch measured (clock: also the fraction of images whose class agrees "
               "with the ReLU network's).\n")
    cert_engines = [e for e in engines if e != "relu"]
    out.append("| model | dtype | " + " | ".join(
        f"{names[e]}: checked / error" for e in cert_engines) + " | certificate |")
    out.append("|---|---|" + "---:|" * len(cert_engines) + "---|")
    for key in s["models"]:
        for dname in s["dtypes"]:
            cells = []
            exact = None
            for e in cert_engines:
                ok = [index.get((key, dname, b, e)) for b in s["batches"]]
                ok = [r for r in ok if r is not None and r.get("status") == "ok"]
                if not ok:
                    cells.append("n/a")
                    continue
                r = ok[-1]
                frac = r.get("checked_fraction")
                text = (f"{100 * frac:.3g}%" if frac is not None else "–") + \
                    f" / {r['max_rel_err']:.1e}"
                if e == "clock" and r.get("predictions_agree") is not None:
                    text += f", argmax agrees {100 * r['predictions_agree']:.0f}%"
                if r.get("agrees") is False:
                    text += " **FAIL**"
                cells.append(text)
                if e == "event":
                    exact = (f"exact (b={r['batch']})" if r.get("certificate_exact") else
                             f"{r.get('violations')} violations (b={r['batch']})")
            out.append(f"| {labels[key]} | {dname} | " + " | ".join(cells) +
                       f" | {exact or '–'} |")
    out.append("")
    size = results["scaling"].get("vgg16_64_over_32") or {}
    if size.get("time_ratio"):
        out.append("## Network size: VGG-16 64×64 over 32×32 (per-image time ratio)\n")
        mac = size.get("mac_ratio")
        out.append((f"MAC ratio {mac:.2f}. " if mac else "") + "Cells: wall-time ratio / "
                   "CPU-time ratio.\n")
        wall, cpu_r = size["time_ratio"], size.get("cpu_time_ratio", {})
        bs = sorted({int(b) for d in wall.values() for e in d.values() for b in e})
        out.append("| dtype | engine | " + " | ".join(f"batch {b}" for b in bs) + " |")
        out.append("|---|---|" + "---:|" * len(bs))
        for dname, es in wall.items():
            for e in engines:
                if e in es:
                    cs = cpu_r.get(dname, {}).get(e, {})
                    out.append(f"| {dname} | {names[e]} | " + " | ".join(
                        (f"{es[e][str(b)]:.2f} / " + (f"{cs[str(b)]:.2f}" if str(b) in cs
                                                      else "–"))
                        if str(b) in es[e] else "–" for b in bs) + " |")
        out.append("")
    checks = results["checks"]
    out.append("## Checks\n")
    if checks["float64_agreement_passed"]:
        out.append(f"All {checks['agreement_checked']} float64 agreement checks passed "
                   f"(closed, closed+certify and — where the certificate holds — event equal "
                   f"the ReLU logits within {AGREEMENT_TOL:g} relative).")
    else:
        out.append("float64 agreement FAILED:\n")
        out.extend(f"- {f}" for f in checks["failures"])
    failed = [r for r in results["results"] if r.get("status") == "failed"]
    if failed:
        out.append("\nNot measured (n/a):\n")
        out.extend(f"- {r['model']} {r['dtype']} batch {r['batch']} {r['engine']}: "
                   f"{r.get('error')}" for r in failed)
    return "\n".join(out) + "\n"


def _fmt_s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _fmt_load(v: list[float] | None) -> str:
    return "?" if not v else "/".join(f"{x:.1f}" for x in v)


# -- command line ----------------------------------------------------------------------------
@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", default=None, metavar="LIST",
              help=f"Comma-separated models [default: {','.join(DEFAULT_MODELS)}; known: "
                   f"{','.join(BENCH_MODELS)}].")
@click.option("--batches", default=None, metavar="LIST", help="Batch sizes [default: 1,8,64].")
@click.option("--dtypes", default=None, metavar="LIST",
              help="float64 and/or float32 [default: both].")
@click.option("--engines", default=None, metavar="LIST",
              help=f"Engines [default: {','.join(ENGINES)}]; relu is always measured.")
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Timed runs per configuration [default: 5; 1 with --quick].")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=8.0,
              show_default=True, help="Seconds of timed runs per configuration; a first run "
              "longer than this is reported alone.")
@click.option("--max-run", type=click.FloatRange(min=0, min_open=True), default=45.0,
              show_default=True, help="Skip configurations estimated to run longer (seconds).")
@click.option("--clock-steps", type=click.IntRange(min=1), default=16, show_default=True,
              help="Ticks per window of the clock engine.")
@click.option("--calib", "calibration", type=click.IntRange(min=1), default=None,
              help="Calibration images for every model [default: 1000; 32 with --quick].")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads (1: robust on a shared machine; see the README).")
@click.option("--no-memory", is_flag=True,
              help="Do not measure peak memory (no subprocesses).")
@click.option("--quick", is_flag=True, help="Tiny configuration for tests (tiny MLP and CNN, "
              "batch 2, one repeat).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the results as JSON here.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Also write the markdown tables here.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def bench_command(models: str | None, batches: str | None, dtypes: str | None,
                  engines: str | None, repeats: int | None, budget: float, max_run: float,
                  clock_steps: int, calibration: int | None, threads: int,
                  no_memory: bool, quick: bool, seed: int, out: str | None,
                  markdown_path: str | None, no_progress: bool) -> None:
    """Time and measure the memory of the engines against the ReLU forward."""
    try:
        results = run_benchmark(
            models=models, batches=batches, dtypes=dtypes, engines=engines, repeats=repeats,
            budget=budget, max_run=max_run, clock_steps=clock_steps, calibration=calibration,
            threads=threads, memory=not no_memory, quick=quick, seed=seed,
            progress=not no_progress, log=lambda msg: tqdm.write(msg, file=sys.stderr),
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


#: The name :data:`onespike.apps.cli.PLUGIN_COMMANDS` loads (``"bench":
#: "onespike.apps.bench:cli"``).
cli = bench_command
