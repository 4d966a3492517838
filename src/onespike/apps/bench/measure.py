"""Measurement of one configuration: a runner per engine, the first run in a fresh process
with its peak resident memory, round-robin timing, and the error and certificate statistics
of the outputs against the float64 ReLU logits."""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import psutil
import torch
from torch import Tensor

from onespike.apps.bench.models import BENCH_MODELS, DTYPES, load_model
from onespike.errors import ArgumentError

if TYPE_CHECKING:  # ForkServerContext does not exist on Windows
    from multiprocessing.context import ForkServerContext, SpawnContext

__all__ = [
    "AGREEMENT_TOL",
    "CALLS",
    "ENGINES",
    "EVENT_ENGINES",
    "EXACT_ENGINES",
    "MIB",
    "MeasuredRun",
    "PeakCUDA",
    "PeakRSS",
    "Runner",
    "bench_device",
    "certificate_of_call",
    "device_sync",
    "make_runner",
    "measure_in_process",
    "measured_run",
    "release_free_memory",
    "run_in_child",
    "steady_peak",
    "time_group",
]

#: Engines measured (``relu`` is the reference forward of the original model), each a call
#: (:data:`CALLS`): the ``record=False`` ones, each next to the same engine through the
#: default API (``…-default``, ``call``).
ENGINES: tuple[str, ...] = ("relu", "closed", "closed-cert", "closed-cert-default", "event",
                            "event-default", "call", "clock")
#: The call each engine measures (``snn``: the spiking network, ``model``: the ReLU model).
CALLS: dict[str, str] = {
    "relu": "model(x)",
    "closed": 'snn.simulate(x, engine="closed", record=False, certify=False)',
    "closed-cert": 'snn.simulate(x, engine="closed", record=False)',
    "closed-cert-default": 'snn.simulate(x, engine="closed")',
    "event": 'snn.simulate(x, engine="event", record=False)',
    "event-default": "snn.simulate(x)",
    "call": "snn(x)",
    "clock": 'snn.simulate(x, engine="clock", record=False, steps=K)',
}
#: Engines whose float64 outputs must equal the ReLU logits (the event dynamics: where the
#: certificate holds).
EXACT_ENGINES: tuple[str, ...] = ("closed", "closed-cert", "closed-cert-default", "event",
                                  "event-default", "call")
#: Engines simulating the exact dynamics (their agreement depends on the certificate).
EVENT_ENGINES: tuple[str, ...] = ("event", "event-default", "call")
#: Relative error (to the largest |logit|) allowed between float64 outputs and ReLU logits.
AGREEMENT_TOL = 1e-9
#: Bytes in a MiB.
MIB = float(1 << 20)
#: Timing samples shorter than this are repeated inside one sample.
_MIN_SAMPLE_S = 0.05
#: The module the fork server imports before forking measuring processes: this one, which
#: imports torch and onespike (the child's entry point, :func:`_child_entry`, lives here).
_PRELOAD = "onespike.apps.bench.measure"

Runner = Callable[[], tuple[Tensor, Any]]
_T = TypeVar("_T")


def bench_device(name: str) -> torch.device:
    """The device ``name`` (``cpu``, ``cuda``, ``cuda:1``, …) if the benchmark can run there:
    a device this machine has, holding real values (not ``meta``); else
    :class:`~onespike.errors.ArgumentError` saying why."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ArgumentError(f"device {name!r} is not a torch device ({exc}); e.g. cpu, cuda, "
                            "cuda:1") from None
    if dev.type == "meta":
        raise ArgumentError("device 'meta' holds no values: benchmark on cpu or a GPU")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(f"device {name!r}: no CUDA GPU is available here "
                            "(torch.cuda.is_available() is False); leave --device out to "
                            "benchmark on the CPU")
    try:
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise ArgumentError(f"device {name!r} cannot be used here: {exc}") from None
    return dev


def device_sync(device: torch.device) -> Callable[[], None]:
    """What waits for the work queued on ``device`` (a no-op on the CPU, whose calls return
    when done): a GPU call returns once its kernels are queued, so each timed call is
    followed by this."""
    if device.type == "cpu":
        return lambda: None
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: torch.accelerator.synchronize(device)


def make_runner(engine: str, obj: Any, x: Tensor, *, clock_steps: int) -> Runner:
    """A call running ``engine`` once on ``x`` (:data:`CALLS`); returns ``(output,
    certificate or None)`` — None for ``relu`` and ``call`` (``snn(x)`` returns the output
    only). ``obj`` is the ReLU model (engine ``relu``) or the spiking network, on the device
    of ``x``; the call returns once the device has finished it (:func:`device_sync`)."""
    sync = device_sync(x.device)
    if engine == "relu":
        def run() -> tuple[Tensor, Any]:
            with torch.no_grad():
                out = obj(x)
            sync()
            return out, None
        return run
    if engine == "call":
        def call() -> tuple[Tensor, Any]:
            out = obj(x)
            sync()
            return out, None
        return call
    options: dict[str, Any]
    if engine == "closed":
        options = {"engine": "closed", "record": False, "certify": False}
    elif engine == "closed-cert":
        options = {"engine": "closed", "record": False, "certify": True}
    elif engine == "closed-cert-default":
        options = {"engine": "closed"}
    elif engine == "event":
        options = {"engine": "event", "record": False}
    elif engine == "event-default":
        options = {}
    elif engine == "clock":
        options = {"engine": "clock", "record": False, "steps": clock_steps}
    else:
        raise ArgumentError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")

    def run_snn() -> tuple[Tensor, Any]:
        res = obj.simulate(x, **options)
        sync()
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
        except OSError:
            hwm = rss = None
        if hwm is not None and rss is not None:
            self.method = "VmHWM reset by /proc/self/clear_refs"
            self.base = rss * 1024
            return
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
    """Error, class agreement and certificate statistics of one run's outputs; ``agrees``:
    whether float64 outputs of an exact engine equal ``ref`` within :data:`AGREEMENT_TOL`
    (None: not checked — other engines, float32, or an event engine whose certificate does
    not hold, where the spiking network legitimately differs)."""
    out = out.detach().cpu()  # (ref is on the CPU)
    res: dict[str, Any] = {"max_rel_err": _rel_err(out, ref)}
    res["predictions_agree"] = float(
        (out.reshape(out.shape[0], -1).argmax(1) == ref.reshape(ref.shape[0], -1).argmax(1))
        .to(torch.float64).mean())
    res.update(_cert_stats(cert))
    res["agrees"] = None
    if dtype == "float64" and engine in EXACT_ENGINES:
        if engine in EVENT_ENGINES and cert is None:
            res["agreement_note"] = "no certificate: not checked"
        elif engine in EVENT_ENGINES and not res["certificate_exact"]:
            res["agreement_note"] = (f"certificate not exact ({res['violations']} violations): "
                                     "the spiking network differs from the ReLU network")
        else:
            res["agrees"] = res["max_rel_err"] <= AGREEMENT_TOL
    return res


def certificate_of_call(engine: str, obj: Any, x: Tensor, cert: Any
                        ) -> tuple[Any, dict[str, Any]]:
    """``cert``, or for ``call`` — ``snn(x)`` returns the output only — the certificate of the
    same simulation, ``snn.simulate(x, engine="event", record=False)`` (what ``forward``
    runs), computed apart from the measured call, with a note saying so."""
    if engine != "call" or cert is not None:
        return cert, {}
    return obj.simulate(x, engine="event", record=False).certificate, {
        "certificate_from": 'snn.simulate(x, engine="event", record=False), run apart'}


@dataclass(frozen=True)
class MeasuredRun:
    """What :func:`measured_run` measured around one call."""

    peak_bytes: int  # peak RSS above the RSS at the start
    base_bytes: int  # the RSS at the start
    method: str  # how the peak was read
    wall_s: float
    cpu_s: float


class PeakCUDA:
    """Peak memory allocated by PyTorch on a CUDA ``device`` between :meth:`start` and
    :meth:`stop`, above what was allocated at :meth:`start` (``torch.cuda`` memory
    statistics: the tensors' memory, not the caching allocator's reserve)."""

    method = "torch.cuda.max_memory_allocated (device memory)"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = 0

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.base = torch.cuda.memory_allocated(self.device)

    def stop(self) -> int:
        """Bytes of peak allocated device memory above the start."""
        torch.cuda.synchronize(self.device)
        return max(0, torch.cuda.max_memory_allocated(self.device) - self.base)


def measured_run(run: Callable[[], _T], device: torch.device | None = None
                 ) -> tuple[_T, MeasuredRun]:
    """``run()`` with its peak memory, wall time and CPU time: on the CPU its peak resident
    memory, after a garbage collection and returning freed heap memory to the system
    (:func:`release_free_memory`), so that the call's allocations are counted even where an
    earlier call freed memory of the same size; on a CUDA ``device`` the device memory
    PyTorch allocates (:class:`PeakCUDA`)."""
    gc.collect()
    peak: PeakRSS | PeakCUDA
    if device is not None and device.type == "cuda":
        trimmed = False
        peak = PeakCUDA(device)
    else:
        trimmed = release_free_memory()
        peak = PeakRSS()
    peak.start()
    c0, t0 = time.process_time(), time.perf_counter()
    out = run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    extra = peak.stop()
    method = peak.method + (" after malloc_trim" if trimmed else "")
    return out, MeasuredRun(extra, peak.base, method, wall, cpu)


def steady_peak(run: Callable[[], Any], device: torch.device | None = None) -> int:
    """Bytes of peak memory above the start of ``run()`` called once more (after a first
    call): its working set without the one-time costs of a first call (the certificates'
    cached weight copies, the libraries' kernels for these shapes), measured as the first
    run is (:func:`measured_run`)."""
    return measured_run(run, device)[1].peak_bytes


def _measure_first_run(job: dict[str, Any]) -> dict[str, Any]:
    """One configuration's first run with its peak memory (meant for a fresh process), and the
    peak memory of a second, identical run (``peak_steady_bytes``)."""
    import resource

    from safetensors.torch import load_file

    from onespike.network import load

    torch.set_num_threads(int(job["threads"]))
    device = bench_device(job.get("device", "cpu"))
    spec = BENCH_MODELS[job["model"]]
    dtype = DTYPES[job["dtype"]]
    data = load_file(job["data"])
    b = int(job["batch"])
    x = data["x"][:b].to(device=device, dtype=dtype)
    ref = data["ref"][:b]
    if job["engine"] == "relu":
        obj: Any = load_model(spec, job["weights"], dtype).to(device)
        warm = make_runner("relu", obj, x[:1], clock_steps=1)
    else:
        obj = load(job["snn"], device)
        warm = make_runner("closed", obj, x[:1], clock_steps=1)
    run = make_runner(job["engine"], obj, x, clock_steps=int(job["clock_steps"]))
    warm()
    (out, cert), first = measured_run(run, device)
    steady = steady_peak(run, device)
    res = {"first_run_s": first.wall_s, "first_run_cpu_s": first.cpu_s,
           "peak_bytes": first.peak_bytes, "peak_steady_bytes": steady,
           "baseline_bytes": first.base_bytes, "memory_method": first.method,
           "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    cert, note = certificate_of_call(job["engine"], obj, x, cert)
    res.update(note)
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


_Context: TypeAlias = "ForkServerContext | SpawnContext"
_CTX: _Context | None = None


def _context() -> _Context:
    """A forkserver context whose server has imported only torch and onespike (fast,
    clean children), or spawn where forkserver does not exist."""
    global _CTX
    if _CTX is None:
        ctx: _Context
        try:
            forkserver = mp.get_context("forkserver")
            forkserver.set_forkserver_preload([_PRELOAD])
            ctx = forkserver
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


def measure_in_process(job: dict[str, Any], run: Runner, ref: Tensor,
                       snn: Any = None, x: Tensor | None = None) -> dict[str, Any]:
    """One configuration's first run in this process (no peak memory): its time and the
    outcome of its outputs against ``ref``. ``snn`` and ``x`` (the network and the inputs of
    ``run``) give engine ``call`` its certificate (:func:`certificate_of_call`)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out, cert = run()
    res = {"first_run_s": time.perf_counter() - t0, "first_run_cpu_s": time.process_time() - c0}
    if snn is not None and x is not None:
        cert, note = certificate_of_call(job["engine"], snn, x, cert)
        res.update(note)
    res.update(_outcome(job["engine"], job["dtype"], out, cert, ref))
    return res


def time_group(runners: dict[str, Runner], first: dict[str, float], *, repeats: int,
               budget: float, cold: bool = False) -> dict[str, dict[str, Any]]:
    """Warm up, then time the engines round-robin; returns per engine the wall-clock and the
    CPU-time (``time.process_time``) samples, in seconds per call. ``cold``: the first runs
    happened in other processes (peak-memory mode), so every runner is warmed up here —
    otherwise its first timed sample would include the network's one-time caches (the
    certificates' weight copies), and a median of two samples would be half cold."""
    number: dict[str, int] = {}
    for engine, run in runners.items():
        t_first = first[engine]
        if cold or t_first < budget / 4:  # full-size warm-up is cheap (or needed): do it
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
