"""Orchestration of the benchmark: parse the settings, build and convert every model, measure
every (model, dtype, batch, engine) in order (first run, then round-robin timing), and gather
the rows, the machine and the checks into the results; :func:`run_benchmark` is the entry."""

from __future__ import annotations

import copy
import datetime as _dt
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from onespike.apps.bench.measure import (
    AGREEMENT_TOL,
    ENGINES,
    MIB,
    Runner,
    bench_device,
    make_runner,
    measure_in_process,
    run_in_child,
    time_group,
)
from onespike.apps.bench.models import (
    BENCH_MODELS,
    DEFAULT_MODELS,
    DTYPES,
    QUICK_MODELS,
    bench_data,
    build_model,
)
from onespike.apps.bench.report import scaling
from onespike.conversion import convert
from onespike.errors import ArgumentError
from onespike.network import SpikingNetwork, save

__all__ = ["git_info", "machine_info", "run_benchmark"]

Row = dict[str, Any]
#: Engine → per-image time at the last batch measured; None: skipped or failed there.
PerImage = dict[str, float | None]


# -- machine ---------------------------------------------------------------------------------
def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """CPU, memory, library versions and thread settings of this machine, and the measured
    ``device`` (default: the CPU) with its name."""
    cpu_model = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable: int | None
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
        "load_average_start": _load_average(),
        **_device_info(device or torch.device("cpu")),
    }


def _device_info(device: torch.device) -> dict[str, Any]:
    """The measured device, and for a GPU its name, memory and CUDA version."""
    info: dict[str, Any] = {"device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name,
                    device_memory_gib=round(props.total_memory / (1 << 30), 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def _load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def git_info() -> dict[str, Any] | None:
    """Commit and locally modified source files of the checkout this module runs from
    (``src/onespike/apps/bench/`` below the repository root); None outside a checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[4]
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


# -- settings --------------------------------------------------------------------------------
def _parse_list(value: str | Sequence[Any], what: str, known: Sequence[str] | None = None
                ) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else \
        [str(v) for v in value]
    items = [v for v in items if v]
    if not items:
        raise ArgumentError(f"{what}: give at least one value")
    if known is not None:
        bad = [v for v in items if v not in known]
        if bad:
            raise ArgumentError(f"{what}: unknown {', '.join(bad)}; known: {', '.join(known)}")
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class _Plan:
    """The checked settings of one benchmark run."""

    models: list[str]
    batches: list[int]
    dtypes: list[str]
    engines: list[str]
    repeats: int
    budget: float
    max_run: float
    clock_steps: int
    calibration: int | None
    threads: int
    memory: bool
    quick: bool
    seed: int
    device: str = "cpu"

    @property
    def torch_device(self) -> torch.device:
        """Where the models are converted and run (:attr:`device`, checked by :func:`_plan`)."""
        return torch.device(self.device)

    @property
    def timeout(self) -> float:
        """Seconds a measuring process may take."""
        return 4 * self.max_run + 120

    def settings(self) -> dict[str, Any]:
        """The ``settings`` entry of the results."""
        return {
            "models": self.models, "batches": self.batches, "dtypes": self.dtypes,
            "engines": self.engines, "repeats": self.repeats, "budget_s": self.budget,
            "max_run_s": self.max_run, "clock_steps": self.clock_steps,
            "calibration_override": self.calibration, "seed": self.seed,
            "memory": self.memory, "quick": self.quick, "threads": self.threads,
            "device": self.device,
            "agreement_tolerance": AGREEMENT_TOL,
            "timing": "median over up to `repeats` round-robin runs after warm-up, per image; "
                      "runs longer than budget_s are reported from their single first run",
            "peak_memory": "fresh forked process per configuration: peak RSS during the run "
                           "minus RSS after setup and a 1-sample warm-up; steady: the same "
                           "for a second, identical run in that process",
        }


def _plan(*, models: Sequence[str] | str | None, batches: Sequence[int] | str | None,
          dtypes: Sequence[str] | str | None, engines: Sequence[str] | str | None,
          repeats: int | None, budget: float, max_run: float, clock_steps: int,
          calibration: int | None, threads: int, memory: bool, quick: bool, seed: int,
          device: str = "cpu") -> _Plan:
    """The arguments of :func:`run_benchmark` with their defaults filled in and checked."""
    model_list = _parse_list(models or (QUICK_MODELS if quick else DEFAULT_MODELS), "models",
                             list(BENCH_MODELS))
    batch_list = sorted({int(b) for b in _parse_list(batches or ([2] if quick else [1, 8, 64]),
                                                      "batches")})
    if batch_list[0] < 1:
        raise ArgumentError("batches must be >= 1")
    dtype_list = _parse_list(dtypes or list(DTYPES), "dtypes", list(DTYPES))
    engine_list = _parse_list(engines or list(ENGINES), "engines", list(ENGINES))
    if "relu" not in engine_list:
        engine_list.insert(0, "relu")  # every ratio needs it
    engine_list = [e for e in ENGINES if e in engine_list]
    repeats = int(repeats if repeats is not None else (1 if quick else 5))
    if repeats < 1 or budget <= 0 or max_run <= 0 or clock_steps < 1:
        raise ArgumentError("repeats, budget, max_run and clock_steps must be positive")
    return _Plan(models=model_list, batches=batch_list, dtypes=dtype_list, engines=engine_list,
                 repeats=repeats, budget=budget, max_run=max_run, clock_steps=clock_steps,
                 calibration=calibration, threads=threads, memory=memory, quick=quick,
                 seed=seed, device=str(bench_device(device)))


# -- the run ---------------------------------------------------------------------------------
@dataclass
class _Session:
    """What every step of one run shares: the plan, the progress bar, the log, the scratch
    folder and the rows gathered so far."""

    plan: _Plan
    bar: Any
    say: Callable[[str], None]
    tmp: str
    model_rows: list[Row] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def path(self, key: str, what: str) -> str:
        """A scratch file of model ``key``."""
        return f"{self.tmp}/{key}.{what}"


@dataclass
class _Prepared:
    """One model ready to convert and measure: the float32 ReLU model, its inputs and
    calibration images, the float64 reference logits, their files and the model's row."""

    key: str
    model: nn.Module
    x_all: Tensor
    calib: Tensor
    ref: Tensor
    weights_path: str
    data_path: str
    row: Row


@dataclass(frozen=True)
class _Config:
    """One (model, dtype, batch) of the run."""

    key: str
    dname: str
    batch: int

    @property
    def label(self) -> str:
        return f"{self.key} {self.dname} b={self.batch}"


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
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its results (JSON-friendly; see :mod:`onespike.apps.bench`).

    ``quick``: tiny MLP and CNN, batch 2, one repeat, 32 calibration images (for tests);
    explicit arguments still win. ``memory=False`` runs the first run in this process too
    (no peak memory). ``calibration`` overrides every model's calibration-set size.
    ``threads``: torch threads (default 1: on a machine shared with other jobs, OpenMP
    threads that wait for each other at every parallel region make small operations
    10–100× slower; the setting is recorded). It is restored afterwards. ``device``: where
    the models are converted and run (``cpu``, ``cuda``, …; the inputs and the float64
    reference logits are made on the CPU): on a GPU every measured call ends with a
    synchronisation, and peak memory is the device memory PyTorch allocates.
    """
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        plan = _plan(models=models, batches=batches, dtypes=dtypes, engines=engines,
                     repeats=repeats, budget=budget, max_run=max_run, clock_steps=clock_steps,
                     calibration=calibration, threads=int(threads), memory=memory, quick=quick,
                     seed=seed, device=device)
        return _run(plan, default_threads=old_threads, progress=progress,
                    say=log or (lambda _m: None))
    finally:
        torch.set_num_threads(old_threads)


def _run(plan: _Plan, *, default_threads: int, progress: bool,
         say: Callable[[str], None]) -> dict[str, Any]:
    """Every model in turn, then the results."""
    started = time.perf_counter()
    info = machine_info(plan.torch_device)
    info["torch_default_threads"] = default_threads
    info["git"] = git_info()
    n_cfg = len(plan.models) * len(plan.dtypes) * (1 + len(plan.batches) * len(plan.engines))
    bar = tqdm(total=n_cfg, desc="bench", unit="cfg", disable=not progress, leave=True,
               dynamic_ncols=True)
    with tempfile.TemporaryDirectory(prefix="onespike-bench-") as tmp:
        session = _Session(plan, bar, say, tmp)
        for key in plan.models:
            _bench_model(session, key)
            gc.collect()
    bar.close()
    info["load_average_end"] = _load_average()
    return _results(session, info, started)


def _bench_model(session: _Session, key: str) -> None:
    """Build, convert (every dtype) and measure one model."""
    prepared = _prepare(session, key)
    snns = _convert_all(session, prepared)
    for dname in session.plan.dtypes:
        _bench_dtype(session, prepared, dname, snns[dname])


def _prepare(session: _Session, key: str) -> _Prepared:
    """The model, its inputs and reference logits (also written for the measuring processes)
    and its row of the models table."""
    from safetensors.torch import save_file

    plan = session.plan
    spec = BENCH_MODELS[key]
    model, weights = build_model(spec, seed=plan.seed)
    n_calib = plan.calibration if plan.calibration is not None else spec.calibration
    x_all, calib, data_note = bench_data(spec, max(plan.batches), n_calib, seed=plan.seed)
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x_all.double())
    wpath, dpath = session.path(key, "weights.safetensors"), session.path(key, "data.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, wpath)
    save_file({"x": x_all.contiguous(), "ref": ref.contiguous()}, dpath)
    row: Row = {
        "model": key, "label": spec.label, "weights": weights, "data": data_note,
        "input_shape": list(spec.input_shape),
        "parameters": sum(p.numel() for p in model.parameters()),
        "relu_macs": None, "hidden_neurons": None, "spiking_layers": None,
        "calibration_images": int(calib.shape[0]), "conversion_s": {},
        "latency": None,
    }
    session.model_rows.append(row)
    return _Prepared(key, model, x_all, calib, ref, wpath, dpath, row)


def _convert_all(session: _Session, m: _Prepared) -> dict[str, SpikingNetwork]:
    """The spiking network of every dtype, timed, summarised in the model's row and saved."""
    snns: dict[str, SpikingNetwork] = {}
    dev = session.plan.torch_device
    model = m.model if dev.type == "cpu" else copy.deepcopy(m.model).to(dev)
    for dname in session.plan.dtypes:
        session.bar.set_description(f"bench {m.key} convert {dname}")
        gc.collect()
        t0 = time.perf_counter()
        snn = convert(model, [c.to(dev) for c in m.calib.split(100)], dtype=DTYPES[dname],
                      progress=False)
        m.row["conversion_s"][dname] = time.perf_counter() - t0
        summ = snn.summary()
        m.row["relu_macs"] = summ["synapses"]
        m.row["hidden_neurons"] = summ["hidden_neurons"]
        m.row["spiking_layers"] = len(summ["layers"])
        m.row["latency"] = summ["latency"]
        save(snn, session.path(m.key, f"{dname}.onespike"))
        snns[dname] = snn
        session.say(f"{m.key}: weights {m.row['weights']}; converted ({dname}, "
                    f"{m.calib.shape[0]} calibration images) in "
                    f"{m.row['conversion_s'][dname]:.2f} s")
        session.bar.update(1)
    return snns


def _runner_factory(relu_model: nn.Module, snn: SpikingNetwork, x: Tensor,
                    clock_steps: int) -> Callable[[str], Runner]:
    """``engine`` → a runner of that engine on ``x`` (the ReLU model for ``relu``)."""
    def make(engine: str) -> Runner:
        obj = relu_model if engine == "relu" else snn
        return make_runner(engine, obj, x, clock_steps=clock_steps)
    return make


def _bench_dtype(session: _Session, m: _Prepared, dname: str, snn: SpikingNetwork) -> None:
    """Every batch size and engine of one model in one dtype, batches in increasing order
    (so that a slow engine is skipped by extrapolation from the batch before)."""
    dtype = DTYPES[dname]
    dev = session.plan.torch_device
    relu_model = copy.deepcopy(m.model).to(device=dev, dtype=dtype).eval()
    per_image: PerImage = {}
    for b in session.plan.batches:
        cfg = _Config(m.key, dname, b)
        x = m.x_all[:b].to(device=dev, dtype=dtype)
        make = _runner_factory(relu_model, snn, x, session.plan.clock_steps)
        group = {engine: _first_run(session, m, cfg, engine, per_image, make, (snn, x))
                 for engine in session.plan.engines}
        _time_runs(session, cfg, group, make)
        _summarise(group, b, per_image)
        session.say(_group_line(cfg, group))


def _first_run(session: _Session, m: _Prepared, cfg: _Config, engine: str,
               per_image: PerImage, make: Callable[[str], Runner],
               net_and_x: tuple[SpikingNetwork, Tensor]) -> Row:
    """The row of one configuration after its first run (or why it was skipped);
    ``net_and_x``: the spiking network and the inputs the runners of ``make`` use."""
    session.bar.set_description(f"bench {cfg.label} {engine}")
    row: Row = {"model": cfg.key, "dtype": cfg.dname, "batch": cfg.batch, "engine": engine}
    if engine == "clock":
        row["clock_steps"] = session.plan.clock_steps
    session.rows.append(row)
    skipped = _skip(engine, cfg.batch, per_image, session.plan.max_run)
    if skipped is not None:
        row.update(skipped)
        per_image[engine] = None
    else:
        res = _measure_first(session, m, cfg, engine, make, net_and_x)
        if "error" in res:
            row.update(status="failed", error=res["error"])
            if "traceback" in res:
                row["traceback"] = res["traceback"]
            per_image[engine] = None
            session.say(f"{cfg.label} {engine}: n/a ({res['error']})")
        else:
            row.update(status="ok", **res)
            if "peak_bytes" in res:
                row["peak_mib"] = res["peak_bytes"] / MIB
            if "peak_steady_bytes" in res:
                row["peak_steady_mib"] = res["peak_steady_bytes"] / MIB
    session.bar.update(1)
    return row


def _skip(engine: str, b: int, per_image: PerImage, max_run: float) -> Row | None:
    """Why ``engine`` is not run at batch ``b``, or None: it was skipped or failed at a
    smaller batch, or its time extrapolated from there exceeds ``max_run``."""
    prev = per_image.get(engine)
    if engine in per_image and prev is None:
        return {"status": "skipped", "note": "skipped at a smaller batch (or failed there)"}
    if prev is not None and prev * b > max_run:
        return {"status": "skipped", "estimate_s": prev * b,
                "note": f"estimated {prev * b:.0f} s per run > max_run {max_run:.0f} s"}
    return None


def _measure_first(session: _Session, m: _Prepared, cfg: _Config, engine: str,
                   make: Callable[[str], Runner],
                   net_and_x: tuple[SpikingNetwork, Tensor]) -> dict[str, Any]:
    """The first run of one configuration: in a fresh process with its peak memory, or in
    this one with ``memory=False``; ``{"error": …}`` where it failed."""
    plan = session.plan
    job = {"model": cfg.key, "dtype": cfg.dname, "batch": cfg.batch, "engine": engine,
           "threads": plan.threads, "clock_steps": plan.clock_steps, "device": plan.device,
           "weights": m.weights_path, "data": m.data_path,
           "snn": session.path(cfg.key, f"{cfg.dname}.onespike")}
    if plan.memory:
        return run_in_child(job, plan.timeout)
    try:
        return measure_in_process(job, make(engine), m.ref[:cfg.batch], *net_and_x)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _time_runs(session: _Session, cfg: _Config, group: dict[str, Row],
               make: Callable[[str], Runner]) -> None:
    """Timing in this process, round-robin over the configurations that ran and whose first
    run fits the budget; a longer first run is reported alone (``single``)."""
    plan = session.plan
    runners: dict[str, Runner] = {}
    first: dict[str, float] = {}
    for engine, row in group.items():
        if row.get("status") != "ok":
            continue
        if row["first_run_s"] > plan.budget:
            row.update(samples_s=[row["first_run_s"]], cpu_samples_s=[row["first_run_cpu_s"]],
                       calls_per_sample=1, single=True)
            continue
        runners[engine] = make(engine)
        first[engine] = row["first_run_s"]
    if not runners:
        return
    session.bar.set_description(f"bench {cfg.label} timing")
    gc.collect()
    try:
        timed = time_group(runners, first, repeats=plan.repeats, budget=plan.budget,
                           cold=plan.memory)
    except Exception as exc:  # pragma: no cover - engines ran once already
        timed = {}
        for engine in runners:
            group[engine].update(status="failed", error=f"{type(exc).__name__}: {exc}")
    for engine, t in timed.items():
        group[engine].update(t, single=False)


def _summarise(group: dict[str, Row], b: int, per_image: PerImage) -> None:
    """Median run and per-image times of the rows that ran, and their ratios to ``relu``."""
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


def _group_line(cfg: _Config, group: dict[str, Row]) -> str:
    parts = []
    for engine, row in group.items():
        if row.get("per_image_s") is not None:
            parts.append(f"{engine} {row['per_image_s'] * 1e3:.3g} ms/img")
        else:
            parts.append(f"{engine} {row.get('status')}")
    return f"{cfg.label}: " + ", ".join(parts)


def _results(session: _Session, info: dict[str, Any], started: float) -> dict[str, Any]:
    """The results of the run (the JSON written by ``--out``)."""
    rows = session.rows
    failures = [
        f"{r['model']} {r['dtype']} batch {r['batch']} {r['engine']}: max rel err "
        f"{r['max_rel_err']:.3g} > {AGREEMENT_TOL:g}"
        for r in rows if r.get("agrees") is False
    ]
    return {
        "benchmark": "onespike engines vs ReLU forward",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": info,
        "settings": session.plan.settings(),
        "models": session.model_rows,
        "results": rows,
        "scaling": scaling(session.model_rows, rows),
        "checks": {"float64_agreement_passed": not failures, "failures": failures,
                   "agreement_checked": sum(1 for r in rows if r.get("agrees") is not None)},
        "elapsed_s": time.perf_counter() - started,
    }
