"""The benchmark's report: the results as markdown tables (models and conversion, wall and CPU
time, peak memory, certificate and exactness, network size, checks) and the scaling summary
stored in the JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onespike.apps.bench.measure import AGREEMENT_TOL, CALLS, ENGINES, EVENT_ENGINES

__all__ = ["scaling", "to_markdown"]

Row = dict[str, Any]
#: ``(model, dtype, batch, engine)`` → result row.
Index = dict[tuple[Any, ...], Row]


def scaling(model_rows: list[Row], rows: list[Row]) -> dict[str, Any]:
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


# -- cells -----------------------------------------------------------------------------------
def _fmt_ms(s: float) -> str:
    ms = s * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    return f"{ms:.3g}"


def _fmt_s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _fmt_load(v: list[float] | None) -> str:
    return "?" if not v else "/".join(f"{x:.1f}" for x in v)


def _cell_time(r: Row | None, cpu: bool = False) -> str:
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


def _cell_mem(r: Row | None) -> str:
    if r is None:
        return "–"
    if r.get("status") == "skipped":
        return "skipped"
    if r.get("peak_mib") is None:
        return "n/a"
    steady = r.get("peak_steady_mib")
    return f"{r['peak_mib']:.1f}" + ("" if steady is None else f" / {steady:.1f}")


def _cell_cert(r: Row, engine: str) -> str:
    """``checked / error`` of one engine's row (its largest batch measured)."""
    frac = r.get("checked_fraction")
    text = (f"{100 * frac:.3g}%" if frac is not None else "–") + f" / {r['max_rel_err']:.1e}"
    if engine == "clock" and r.get("predictions_agree") is not None:
        text += f", argmax agrees {100 * r['predictions_agree']:.0f}%"
    if r.get("agrees") is False:
        text += " **FAIL**"
    return text


# -- sections --------------------------------------------------------------------------------
def _engine_names(s: dict[str, Any]) -> dict[str, str]:
    """Column headings: the engine key and the exact call it measures."""
    names = {}
    for e in ENGINES:
        call = CALLS[e].replace("steps=K", f"steps={s['clock_steps']}")
        names[e] = "ReLU forward `model(x)`" if e == "relu" else f"{e} `{call}`"
    return names


def _calls_note(s: dict[str, Any]) -> str:
    """What the columns are: the ``record=False`` calls and the default-path ones."""
    engines = s["engines"]
    default = [e for e in ("closed-cert-default", "event-default", "call") if e in engines]
    text = ("Columns: the call measured (`snn` = the spiking network, with the defaults of "
            "every argument not shown; `model` = the ReLU model under `torch.no_grad()`).")
    if default:
        text += (" The default-path columns (" + ", ".join(f"`{CALLS[e]}`" for e in default)
                 + ") are what a user gets without options: `record=True` (every layer's "
                 "spike times kept) and the default chunking for `simulate`; `snn(x)` is "
                 "`SpikingNetwork.forward`, the output only.")
    return text + "\n"


def _header(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    s = results["settings"]
    peak = ("peak RSS of a fresh process during the run minus its RSS"
            if m.get("device", "cpu") == "cpu" else
            "peak device memory PyTorch allocates in a fresh process during the run minus what "
            "it had allocated")
    return [
        f"# onespike benchmark — {results['date']}\n",
        _device_line(m)
        + f"{m['cpu_model']}, {m['cpus_usable']} usable CPU(s) (cpu_count {m['cpu_count']}), "
        f"torch {m['torch']} with {s['threads']} thread(s), Python {m['python']}; load "
        f"average at start {_fmt_load(m.get('load_average_start'))}, at end "
        f"{_fmt_load(m.get('load_average_end'))}. Total time {results['elapsed_s'] / 60:.1f} "
        "min.\n",
        f"Per-image time = median over up to {s['repeats']} round-robin runs after "
        f"warm-up (at most {s['budget_s']:g} s of runs per configuration), divided by the batch "
        "size; (×r) = ratio to the ReLU forward of the same model, dtype and batch in the same "
        "run. ¹ = single run (it took longer than the budget). Configurations estimated to take "
        f"more than {s['max_run_s']:g} s per run (linear in the batch from the next smaller "
        f"batch) are skipped. Peak memory = {peak} after loading the network and inputs (first "
        "run / a second, identical run in the same process: without the first call's one-time "
        "costs, such as the certificates' cached weight copies).\n",
    ]


def _device_line(m: dict[str, Any]) -> str:
    """The measured device, when it is not the CPU (older result files have no entry)."""
    device = m.get("device", "cpu")
    if device == "cpu":
        return ""
    name = m.get("device_name")
    return (f"Device {device}" + (f" ({name}, {m.get('device_memory_gib')} GiB, CUDA "
                                  f"{m.get('cuda')})" if name else "")
            + ": every measured call ends with a synchronisation. Host: ")


def _models_table(results: dict[str, Any]) -> list[str]:
    out = ["## Models and conversion\n",
           "| model | weights | inputs | hidden neurons | MACs / image | calibration images "
           "| convert float64 (s) | convert float32 (s) |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for mr in results["models"]:
        conv = mr["conversion_s"]
        out.append(
            f"| {mr['label']} | {mr['weights']} | {mr['data']} | {mr['hidden_neurons']:,} "
            f"| {mr['relu_macs']:,} | {mr['calibration_images']} | "
            f"{_fmt_s(conv.get('float64'))} | {_fmt_s(conv.get('float32'))} |")
    return [*out, ""]


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


def _time_and_memory_tables(s: dict[str, Any], index: Index, names: dict[str, str],
                            labels: dict[str, str]) -> list[str]:
    engines = s["engines"]
    out = ["## Wall time per image (ms), ratio to the ReLU forward\n", _calls_note(s)]
    out += _config_table(s, engines, names, labels, lambda k: _cell_time(index.get(k)))
    out.append("## CPU time per image (ms), ratio to the ReLU forward\n")
    out.append("The same runs measured with `time.process_time` (the CPU time of the "
               "process: with one thread, insensitive to the time other jobs hold the "
               "cores).\n")
    out += _config_table(s, engines, names, labels, lambda k: _cell_time(index.get(k), True))
    if s.get("memory", True):
        out.append("## Peak memory above the loaded network (MiB)\n")
        out.append("Each cell: the first run in a fresh process / a second, identical run "
                   "there (the first includes one-time costs, such as the certificates' "
                   "cached weight copies, which the network keeps for later calls).\n")
        out += _config_table(s, engines, names, labels, lambda k: _cell_mem(index.get(k)))
    return out


def _certificate_table(s: dict[str, Any], index: Index, names: dict[str, str],
                       labels: dict[str, str]) -> list[str]:
    out = ["## Certificate and exactness\n",
           "Checked = fraction of hidden neurons that no certificate (drive bound, grid "
           "bound: docs/certificates.md) proved, whose first crossing was computed exactly "
           "by the walk (the clock engine simulates every "
           "neuron). Error = max |output − float64 ReLU logits| / max |logit| over the "
           "largest batch measured (clock: also the fraction of images whose class agrees "
           "with the ReLU network's). Columns: the engine keys of the time tables; "
           "`call` (`snn(x)`, which returns the output only) shows the certificate of "
           "`snn.simulate(x, engine=\"event\", record=False)` on the same inputs.\n"]
    cert_engines = [e for e in s["engines"] if e != "relu"]
    out.append("| model | dtype | " + " | ".join(
        f"{e}: checked / error" for e in cert_engines) + " | certificate |")
    out.append("|---|---|" + "---:|" * len(cert_engines) + "---|")
    for key in s["models"]:
        for dname in s["dtypes"]:
            cells = []
            exact = None
            for e in cert_engines:
                ok = [r for b in s["batches"] if (r := index.get((key, dname, b, e))) is not None
                      and r.get("status") == "ok"]
                if not ok:
                    cells.append("n/a")
                    continue
                r = ok[-1]
                cells.append(_cell_cert(r, e))
                if e in EVENT_ENGINES and exact is None and "certificate_exact" in r:
                    exact = (f"exact (b={r['batch']})" if r.get("certificate_exact") else
                             f"{r.get('violations')} violations (b={r['batch']})")
            out.append(f"| {labels[key]} | {dname} | " + " | ".join(cells) +
                       f" | {exact or '–'} |")
    return [*out, ""]


def _size_table(results: dict[str, Any], names: dict[str, str]) -> list[str]:
    size = results["scaling"].get("vgg16_64_over_32") or {}
    if not size.get("time_ratio"):
        return []
    out = ["## Network size: VGG-16 64×64 over 32×32 (per-image time ratio)\n"]
    mac = size.get("mac_ratio")
    out.append((f"MAC ratio {mac:.2f}. " if mac else "") + "Cells: wall-time ratio / "
               "CPU-time ratio.\n")
    wall, cpu_r = size["time_ratio"], size.get("cpu_time_ratio", {})
    bs = sorted({int(b) for d in wall.values() for e in d.values() for b in e})
    out.append("| dtype | engine | " + " | ".join(f"batch {b}" for b in bs) + " |")
    out.append("|---|---|" + "---:|" * len(bs))
    for dname, es in wall.items():
        for e in results["settings"]["engines"]:
            if e in es:
                cs = cpu_r.get(dname, {}).get(e, {})
                out.append(f"| {dname} | {names[e]} | " + " | ".join(
                    (f"{es[e][str(b)]:.2f} / " + (f"{cs[str(b)]:.2f}" if str(b) in cs
                                                  else "–"))
                    if str(b) in es[e] else "–" for b in bs) + " |")
    return [*out, ""]


def _checks(results: dict[str, Any]) -> list[str]:
    checks = results["checks"]
    out = ["## Checks\n"]
    if checks["float64_agreement_passed"]:
        out.append(f"All {checks['agreement_checked']} float64 agreement checks passed "
                   "(the closed engine with and without certificate and — where the "
                   "certificate holds — the event engine, every call measured, equal the ReLU "
                   f"logits within {AGREEMENT_TOL:g} relative; `snn(x)` is checked with the "
                   "certificate of the same simulation run apart).")
    else:
        out.append("float64 agreement FAILED:\n")
        out.extend(f"- {f}" for f in checks["failures"])
    failed = [r for r in results["results"] if r.get("status") == "failed"]
    if failed:
        out.append("\nNot measured (n/a):\n")
        out.extend(f"- {r['model']} {r['dtype']} batch {r['batch']} {r['engine']}: "
                   f"{r.get('error')}" for r in failed)
    return out


def to_markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables (models, time, memory, certificate, scaling)."""
    s = results["settings"]
    names = _engine_names(s)
    index: Index = {(r["model"], r["dtype"], r["batch"], r["engine"]): r
                    for r in results["results"]}
    labels = {mr["model"]: mr["label"] for mr in results["models"]}
    out = [*_header(results), *_models_table(results),
           *_time_and_memory_tables(s, index, names, labels),
           *_certificate_table(s, index, names, labels), *_size_table(results, names),
           *_checks(results)]
    return "\n".join(out) + "\n"
