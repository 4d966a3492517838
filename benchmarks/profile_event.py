#!/usr/bin/env python
"""Where the simulation's time goes, per population: the forward (``z``), each proof tier
(channel-maximum bound, drive bound, grid bound stage by stage, late-input bound), the exact
walk, the routing and
the rest — and what share of each population's neurons each tier clears.

    python benchmarks/profile_event.py --model vgg16_cifar --batch 64
    python benchmarks/profile_event.py --model tiny_cnn --batch 8 --no-record --top 20

The measured call is ``snn.simulate(x, engine=ENGINE)`` with the library's defaults
(``record=True``; ``--no-record`` for ``record=False``), after a warm-up run. The engine's
functions are timed by wrapping them at run time (nothing in ``onespike.simulation`` is
edited): the engines' ``hidden``/``readout`` methods and the driver's ``_edge_values`` give
the population being stepped; ``Population.z`` (and ``Synapses.linear`` called directly by an
engine) is the forward; ``proven_planes`` (the channel-maximum bound, inside the drive
certificate), ``certify_drive``/``certify_model_a``, ``grid_stages`` (the grid
points), ``certify_grid`` (one column per stage: its k-th call in one ``model_a_step``),
``certify_late`` and ``exact_values`` are the tiers. Each function's time is its own
(exclusive of the wrapped functions it calls); ``rest`` is the rest of the population's step,
``driver`` what runs outside every population (encoding, recording, chunking, certificate
merge). The cleared counts come from the returned boolean masks (``exact_values``: the
neurons it is given). A function that is never called shows ``—``. On CUDA every timed call
is bracketed by ``torch.cuda.synchronize()``.

``--top N`` adds a cProfile of a separate run (the N functions with the largest own and
cumulative time).
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import importlib
import io
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

try:
    import onespike
except ImportError:  # source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import onespike
from onespike.apps.bench import BENCH_MODELS, DTYPES, bench_data, build_model
from onespike.apps.bench.measure import device_sync

#: Time columns, in order (``grid k`` columns are inserted after ``grid points``).
TIME_COLUMNS = ("routing", "forward", "channels", "drive", "late", "grid points", "exact",
                "rest")
#: Population of wrapped calls made outside every population step.
DRIVER = "(no population)"


@dataclass
class PopulationCost:
    """One population's time per column (seconds, exclusive) and cleared counts."""

    name: str
    readout: bool = False
    neurons: int = 0
    fan_in: int | None = None
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    #: tier → [cleared, considered] (``exact``: [walked, neurons]).
    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass
class Breakdown:
    """Result of :func:`profile_breakdown`."""

    call: str
    total_s: float
    populations: list[PopulationCost]
    driver_s: float
    overhead_s: float
    grid_stages: int
    result: Any

    def columns(self) -> list[str]:
        cols = list(TIME_COLUMNS)
        at = cols.index("grid points") + 1
        cols[at:at] = [f"grid {k}" for k in range(1, self.grid_stages + 1)]
        return cols

    @property
    def accounted_s(self) -> float:
        """Every population's columns, the driver and the profiler's own counting: equals
        ``total_s`` up to rounding."""
        return sum(p.total for p in self.populations) + self.driver_s + self.overhead_s


@dataclass
class _Frame:
    kind: str
    pop: str
    t0: float
    child: float = 0.0


class _Recorder:
    """Exclusive time per (population, column) of nested wrapped calls."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.stack: list[_Frame] = []
        self.pops: dict[str, PopulationCost] = {}
        self.grid_stage = 0
        self.max_stage = 0
        self.stage_grids: list[Any] = []  # the step's grid points, one list per stage
        self.top_s = 0.0  # inclusive time of the outermost frames
        self.overhead_s = 0.0
        self.top_overhead_s = 0.0

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def current(self) -> str:
        return self.stack[-1].pop if self.stack else DRIVER

    def parent_kind(self) -> str | None:
        return self.stack[-1].kind if self.stack else None

    def pop_cost(self, name: str) -> PopulationCost:
        if name not in self.pops:
            self.pops[name] = PopulationCost(name)
        return self.pops[name]

    def push(self, kind: str, pop: str) -> _Frame:
        frame = _Frame(kind, pop, self.now())
        self.stack.append(frame)
        return frame

    def close(self, frame: _Frame) -> None:
        total = self.now() - frame.t0
        popped = self.stack.pop()
        assert popped is frame
        self.pop_cost(frame.pop).seconds[frame.kind] += total - frame.child
        if self.stack:
            self.stack[-1].child += total
        else:
            self.top_s += total

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """The profiler's own work (reading masks): charged to nobody's column."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.overhead_s += dt
            if self.stack:
                self.stack[-1].child += dt
            else:
                self.top_overhead_s += dt


def _name(obj: Any) -> str | None:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else None


def _count(rec: _Recorder, pop: str, tier: str, cleared: Tensor | int, considered: int) -> None:
    c = rec.pop_cost(pop).counts[tier]
    c[0] += int(cleared)
    c[1] += int(considered)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str) -> Any:
    return args[i] if len(args) > i else kwargs.get(name)


class _Instrument:
    """Wraps the engine's functions for a :class:`_Recorder` and restores them."""

    def __init__(self, rec: _Recorder) -> None:
        self.rec = rec
        self.undo: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, attr: str, value: Any) -> None:
        self.undo.append((owner, attr, owner.__dict__[attr] if isinstance(owner, type)
                          else getattr(owner, attr)))
        setattr(owner, attr, value)

    def restore(self) -> None:
        for owner, attr, value in reversed(self.undo):
            setattr(owner, attr, value)
        self.undo.clear()

    def everywhere(self, original: Any, wrapper: Any) -> None:
        """Replace ``original`` in every onespike module that holds it by name (modules that
        imported it with ``from … import``, too)."""
        for mod_name, mod in list(sys.modules.items()):
            if mod is None or not (mod_name == "onespike" or mod_name.startswith("onespike.")):
                continue
            for attr, value in list(vars(mod).items()):
                if value is original:
                    self.set(mod, attr, wrapper)

    def timed(self, fn: Callable[..., Any],
              kind: str | Callable[[tuple[Any, ...], dict[str, Any]], str], *,
              pop_of: Callable[[tuple[Any, ...], dict[str, Any]], str | None] | None = None,
              on_enter: Callable[[tuple[Any, ...], dict[str, Any], str], None] | None = None,
              on_exit: Callable[[tuple[Any, ...], dict[str, Any], Any, str, str | None],
                                None] | None = None,
              only_under: tuple[str, ...] | None = None) -> Callable[..., Any]:
        rec = self.rec

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if only_under is not None and rec.parent_kind() not in only_under:
                return fn(*args, **kwargs)
            pop = (pop_of(args, kwargs) if pop_of is not None else None) or rec.current()
            if on_enter is not None:
                on_enter(args, kwargs, pop)
            k = kind(args, kwargs) if callable(kind) else kind
            parent = rec.parent_kind()
            frame = rec.push(k, pop)
            try:
                out = fn(*args, **kwargs)
            finally:
                rec.close(frame)
            if on_exit is not None:
                with rec.counting():
                    on_exit(args, kwargs, out, pop, parent)
            return out
        return wrapper

    # -- the engine's call path ---------------------------------------------------------------
    def install(self) -> None:
        from onespike.network.population import Population
        from onespike.simulation import driver, synapses
        from onespike.simulation.engines import bounds, common
        from onespike.simulation.engines.bounds import drive

        for mod_name, cls_name in (("event", "EventEngine"), ("closed", "ClosedEngine"),
                                   ("clock", "ClockEngine")):
            try:
                mod = importlib.import_module(f"onespike.simulation.engines.{mod_name}")
            except ImportError:
                continue
            cls = getattr(mod, cls_name, None)
            if cls is None:
                continue
            if "hidden" in cls.__dict__:
                self.set(cls, "hidden", self.timed(cls.__dict__["hidden"], "rest",
                                                   pop_of=self._pop_arg(1),
                                                   on_enter=self._step_start,
                                                   on_exit=self._step_neurons))
            if "readout" in cls.__dict__:
                self.set(cls, "readout", self.timed(cls.__dict__["readout"], "rest",
                                                    pop_of=self._pop_arg(1, readout=True)))
            if "edge_input" in cls.__dict__:
                self.set(cls, "edge_input", self.timed(cls.__dict__["edge_input"], "routing",
                                                       pop_of=self._pop_arg(1)))
        if hasattr(driver, "_edge_values"):
            self.everywhere(driver._edge_values, self.timed(driver._edge_values, "routing",
                                                             pop_of=self._pop_arg(0)))
        if "z" in Population.__dict__:
            self.set(Population, "z", self.timed(Population.__dict__["z"], "forward"))
        if "linear" in synapses.Synapses.__dict__:  # an engine's own GEMM/convolution
            self.set(synapses.Synapses, "linear",
                     self.timed(synapses.Synapses.__dict__["linear"], "forward",
                                only_under=("rest",)))
        wrap: list[tuple[Any, str | Callable[[], str], Any, Any]] = [
            (getattr(common, "model_a_step", None), "rest", self._step_start, None),
            (getattr(drive, "proven_planes", None), "channels", None, self._channels_count),
            (getattr(common, "certify_drive", None), "drive", None, self._drive_count),
            (getattr(common, "certify_model_a", None), "drive", None, self._drive_count),
            (getattr(bounds, "certify_late", None), "late", None, self._late_count),
            (getattr(common, "grid_stages", None), "grid points", None, self._points_out),
            (getattr(common, "certify_grid", None), self._grid_kind, None, self._grid_count),
            (getattr(common, "exact_values", None), "exact", None, self._exact_count),
        ]
        for fn, kind, enter, leave in wrap:
            if fn is None or not callable(fn):
                continue
            pop_of = self._pop_arg(0) if fn is getattr(common, "model_a_step", None) else None
            self.everywhere(fn, self.timed(fn, kind, pop_of=pop_of, on_enter=enter,
                                           on_exit=leave))

    def _pop_arg(self, i: int, *, readout: bool = False
                 ) -> Callable[[tuple[Any, ...], dict[str, Any]], str | None]:
        def pop_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
            obj = _arg(args, kwargs, i, "pop")
            name = _name(obj)
            if name is not None:
                cost = self.rec.pop_cost(name)
                cost.readout = cost.readout or readout
                if cost.fan_in is None:
                    with contextlib.suppress(Exception):
                        cost.fan_in = int(obj.synapses.fan_in)
            return name
        return pop_of

    def _step_start(self, args: tuple[Any, ...], kwargs: dict[str, Any], pop: str) -> None:
        self.rec.grid_stage = 0

    def _step_neurons(self, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, pop: str,
                      parent: str | None) -> None:
        values = getattr(out, "values", None)
        if isinstance(values, Tensor):
            self.rec.pop_cost(pop).neurons += values.numel()

    def _points_out(self, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, pop: str,
                    parent: str | None) -> None:
        self.rec.stage_grids = list(out) if isinstance(out, list) else []

    def _grid_kind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        # the stage whose grid points the call was given (a stage may be left out: the
        # bfloat16 one for few neurons), else the next one
        grid = kwargs.get("grid")
        stage = next((i + 1 for i, g in enumerate(self.rec.stage_grids) if g is grid),
                     self.rec.grid_stage + 1)
        self.rec.grid_stage = stage
        self.rec.max_stage = max(self.rec.max_stage, stage)
        return f"grid {stage}"

    def _drive_count(self, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, pop: str,
                     parent: str | None) -> None:
        if parent != "drive" and isinstance(out, Tensor):  # not the drive inside model_a
            _count(self.rec, pop, "drive", out.sum(), out.numel())

    def _channels_count(self, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any,
                        pop: str, parent: str | None) -> None:
        layer = _arg(args, kwargs, 0, "layer")
        if isinstance(out, Tensor) and out.dim() == 2 and out.shape[1]:
            per_plane = int(layer.num_neurons) // int(out.shape[1])
            _count(self.rec, pop, "channels", out.sum() * per_plane, out.numel() * per_plane)

    def _late_count(self, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, pop: str,
                    parent: str | None) -> None:
        if isinstance(out, Tensor):
            _count(self.rec, pop, "late", out.sum(), out.numel())

    def _grid_count(self, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, pop: str,
                    parent: str | None) -> None:
        if not isinstance(out, Tensor):
            return
        need = kwargs.get("need")
        if isinstance(need, Tensor):
            _count(self.rec, pop, f"grid {self.rec.grid_stage}", (out & need).sum(),
                   int(need.sum()))
        else:
            _count(self.rec, pop, f"grid {self.rec.grid_stage}", out.sum(), out.numel())

    def _exact_count(self, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, pop: str,
                     parent: str | None) -> None:
        index = _arg(args, kwargs, 2, "index")
        if isinstance(index, Tensor):
            _count(self.rec, pop, "exact", index.numel(), 0)


def call_text(engine: str, record: bool) -> str:
    """The measured call, as a user writes it."""
    opts = ([] if engine == "event" else [f'engine="{engine}"']) + \
        ([] if record else ["record=False"])
    return "snn.simulate(" + ", ".join(["x", *opts]) + ")"


def profile_breakdown(snn: onespike.SpikingNetwork, x: Tensor, *, engine: str = "event",
                      record: bool = True) -> Breakdown:
    """One instrumented ``snn.simulate(x, engine=engine, record=record)``: the cost of each
    population's forward, proof tiers, exact walk, routing and rest (module docstring)."""
    rec = _Recorder(cuda=x.device.type == "cuda")
    inst = _Instrument(rec)
    inst.install()
    try:
        t0 = rec.now()
        result = snn.simulate(x, engine=engine, record=record)
        total = rec.now() - t0
    finally:
        inst.restore()
    order = [p.name for p in snn.layers]
    pops = [rec.pops[n] for n in order if n in rec.pops]
    pops += [p for n, p in rec.pops.items() if n not in order and n != DRIVER]
    driver = total - rec.top_s - rec.top_overhead_s
    if DRIVER in rec.pops:  # wrapped calls made outside every population
        pops.append(rec.pops[DRIVER])
    for layer in snn.layers:
        if layer.name in rec.pops and layer.readout:
            rec.pops[layer.name].readout = True
    return Breakdown(call_text(engine, record), total, pops, driver, rec.overhead_s,
                     rec.max_stage, result)


def _cell(s: float | None, total: float) -> str:
    if not s:
        return "—"
    ms = 1e3 * s
    text = f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"
    return f"{text} ms {100 * s / total:4.1f}%"


def format_breakdown(b: Breakdown) -> str:
    """The time table (seconds and share of the simulate call per population and column) and
    the cleared-neurons table."""
    cols = b.columns()
    widths = [10, 10, 7] + [16] * (len(cols) + 1)
    head = ["population", "neurons", "fan-in", *cols, "total"]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                         enumerate(zip(cells, widths)))

    out = [f"time per population (cells: own time, share of the {b.total_s:.4f} s "
           f"simulate call)", line(head)]
    for p in b.populations:
        name = p.name + (" (readout)" if p.readout and "readout" not in p.name else "")
        out.append(line([name, f"{p.neurons:,}" if p.neurons else "—",
                         str(p.fan_in) if p.fan_in is not None else "—",
                         *[_cell(p.seconds.get(c), b.total_s) for c in cols],
                         _cell(p.total, b.total_s)]))
    out.append(line(["driver", "", "", *["" for _ in cols], _cell(b.driver_s, b.total_s)]))
    out.append(line(["profiler", "", "", *["" for _ in cols], _cell(b.overhead_s, b.total_s)]))
    col_sums = [sum(p.seconds.get(c, 0.0) for p in b.populations) for c in cols]
    out.append(line(["all", "", "", *[_cell(s, b.total_s) for s in col_sums],
                     _cell(b.accounted_s, b.total_s)]))

    stages = [f"grid {k}" for k in range(1, b.grid_stages + 1)]
    head2 = ["population", "neurons", "channels clear", "drive clears",
             *[f"{g} clears" for g in stages], "late clears", "exact walk gets"]
    w2 = [10, 10, 14, 14] + [22] * len(stages) + [14, 18]

    def line2(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                         enumerate(zip(cells, w2)))

    out += ["", "neurons cleared per tier (channels: the channel-maximum bound, inside the "
            "drive certificate, whose share includes it; grid k: share of the neurons it was "
            "given, i.e. of those the tiers before left; exact walk: share of all neurons)",
            line2(head2)]
    for p in b.populations:
        if p.readout or p.name == DRIVER:
            continue
        n = p.neurons
        cells = [p.name, f"{n:,}" if n else "—"]
        ch = p.counts.get("channels")
        cells.append(f"{100 * ch[0] / ch[1]:.2f}%" if ch and ch[1] else "—")
        d = p.counts.get("drive")
        cells.append(f"{100 * d[0] / d[1]:.2f}%" if d and d[1] else "—")
        for g in stages:
            c = p.counts.get(g)
            cells.append(f"{100 * c[0] / c[1]:.2f}% of {c[1]:,}" if c and c[1] else "—")
        late = p.counts.get("late")
        cells.append(f"{100 * late[0] / late[1]:.2f}%" if late and late[1] else "—")
        e = p.counts.get("exact")
        cells.append(f"{100 * e[0] / n:.3f}% ({e[0]:,})" if e and n else
                     ("0% (0)" if n else "—"))
        out.append(line2(cells))
    return "\n".join(out)


@click.command()
@click.option("--model", default="vgg16_cifar", type=click.Choice(list(BENCH_MODELS)),
              show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--dtype", default="float64", type=click.Choice(list(DTYPES)), show_default=True)
@click.option("--engine", default="event", type=click.Choice(["event", "closed", "clock"]),
              show_default=True, help="closed: with its default certify=True.")
@click.option("--record/--no-record", default=True, show_default=True,
              help="simulate's record argument (default: the library default, True).")
@click.option("--device", default="cpu", show_default=True,
              help="Device of the network and inputs (conversion runs on the CPU).")
@click.option("--calib", default=1000, show_default=True, help="Calibration images.")
@click.option("--threads", default=1, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--top", default=0, show_default=True,
              help="Also print cProfile's top N functions of a separate run (0: none).")
@click.option("--breakdown", is_flag=True, hidden=True,
              help="Accepted for compatibility: the per-population table is always printed.")
def main(model: str, batch: int, dtype: str, engine: str, record: bool, device: str,
         calib: int, threads: int, seed: int, top: int, breakdown: bool) -> None:
    """Per population: the cost of the forward, of each proof tier and of the exact walk, and
    the share of neurons each tier clears."""
    torch.set_num_threads(threads)
    spec = BENCH_MODELS[model]
    net, weights = build_model(spec, seed=seed)
    x, cal, _ = bench_data(spec, batch, calib, seed=seed)
    snn = onespike.convert(net, list(cal.split(100)), dtype=DTYPES[dtype], progress=False)
    snn = snn.to(device)
    x = x.to(device=device, dtype=DTYPES[dtype])
    sync = device_sync(x.device)
    snn.simulate(x, engine=engine, record=record)  # warm-up (also fills the layer caches)
    sync()
    t0 = time.perf_counter()
    snn.simulate(x, engine=engine, record=record)
    sync()
    plain = time.perf_counter() - t0
    b = profile_breakdown(snn, x, engine=engine, record=record)
    cert = b.result.certificate
    checked, neurons = sum(cert.checked), sum(cert.neurons)
    print(f"{spec.label} ({weights}), {dtype}, batch {batch}, {x.device}, "
          f"{torch.get_num_threads()} thread(s): {b.call} took {plain:.4f} s "
          f"({plain / batch * 1e3:.3g} ms/image); instrumented {b.total_s:.4f} s. Checked "
          f"(exact walk) {checked}/{neurons} neurons ({100 * checked / max(neurons, 1):.3f}%)\n")
    print(format_breakdown(b))
    if top > 0:
        prof = cProfile.Profile()
        prof.enable()
        snn.simulate(x, engine=engine, record=record)
        sync()
        prof.disable()
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(top)
            print(f"\n== cProfile: top {top} by {key} ==")
            lines = buf.getvalue().splitlines()
            start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")),
                         0)
            print("\n".join(ln for ln in lines[start:] if ln.strip()))


if __name__ == "__main__":
    main()
