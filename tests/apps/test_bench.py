"""The benchmark's quick configuration: JSON structure, engine agreement, markdown, CLI.

Nothing here asserts how fast it runs: timings depend on the machine and its load, and
performance is measured by the benchmark itself, not by the test suite."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from onespike.apps.bench import AGREEMENT_TOL, CALLS, ENGINES, run_benchmark, to_markdown
from onespike.apps.bench.measure import EXACT_ENGINES, make_runner, time_group
from onespike.apps.cli.bench import bench_command

#: Engines with a certificate in their rows (``call``'s comes from a separate simulation).
CERTIFIED = ("closed-cert", "closed-cert-default", "event", "event-default", "call")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    md = out.with_suffix(".md")
    res = CliRunner().invoke(bench_command, ["--quick", "--no-progress", "--out", str(out),
                                             "--markdown", str(md)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return json.loads(out.read_text()), md.read_text()


def test_structure(quick: tuple[dict, str]) -> None:
    data = quick[0]
    for key in ("machine", "settings", "models", "results", "scaling", "checks", "elapsed_s"):
        assert key in data
    assert data["elapsed_s"] > 0  # recorded, not judged
    machine = data["machine"]
    for key in ("cpu_count", "torch", "torch_threads", "cpus_usable"):
        assert key in machine
    s = data["settings"]
    assert s["models"] == ["tiny_mlp", "tiny_cnn"] and s["batches"] == [2]
    assert s["repeats"] == 1 and s["dtypes"] == ["float64", "float32"]
    assert s["engines"] == list(ENGINES)
    assert len(data["models"]) == 2
    for m in data["models"]:
        assert m["weights"].startswith("random")
        assert m["calibration_images"] == 32
        assert set(m["conversion_s"]) == {"float64", "float32"}
        assert m["hidden_neurons"] > 0 and m["relu_macs"] > 0
    rows = data["results"]
    assert len(rows) == 2 * 2 * len(ENGINES)
    for r in rows:
        assert r["batch"] == 2
        if r["engine"] == "clock" and r["status"] != "ok":
            continue  # the clock engine may be missing: reported as n/a
        assert r["status"] == "ok", r
        assert r["per_image_s"] > 0 and len(r["samples_s"]) >= 1
        assert r["peak_mib"] >= 0 and r["memory_method"]
        assert r["peak_steady_mib"] >= 0  # a second, identical run in the same process
        assert r["ratio_to_relu"] > 0 and r["cpu_ratio_to_relu"] > 0
        assert r["per_image_cpu_s"] > 0 and len(r["cpu_samples_s"]) == len(r["samples_s"])
        if r["engine"] in CERTIFIED:
            assert 0 <= r["checked_fraction"] <= 1
            assert len(r["checked_per_layer"]) >= 1
        assert ("certificate_from" in r) == (r["engine"] == "call")
    relu = [r for r in rows if r["engine"] == "relu"]
    assert all(r["ratio_to_relu"] == pytest.approx(1.0) for r in relu)
    scaling = data["scaling"]["per_image_s_by_batch"]
    assert set(scaling) == {"tiny_mlp", "tiny_cnn"}


def test_engines_agree_with_relu(quick: tuple[dict, str]) -> None:
    data = quick[0]
    assert data["checks"]["float64_agreement_passed"]
    assert data["checks"]["agreement_checked"] == 2 * len(EXACT_ENGINES)  # × 2 models
    assert set(EXACT_ENGINES) == {"closed", "closed-cert", "closed-cert-default", "event",
                                  "event-default", "call"}
    for r in data["results"]:
        if r["dtype"] == "float64" and r["engine"] in EXACT_ENGINES:
            assert r["agrees"] is True
            assert r["max_rel_err"] <= AGREEMENT_TOL
            assert r["predictions_agree"] == 1.0
        if r["dtype"] == "float32" and r["engine"] != "clock":
            assert r["max_rel_err"] < 1e-4


def test_markdown(quick: tuple[dict, str]) -> None:
    data, md = quick
    assert md == to_markdown(data)
    assert "## Wall time per image" in md and "## CPU time per image" in md
    assert "## Peak memory" in md
    assert "tiny MLP" in md and "tiny CNN" in md
    assert "float64 agreement checks passed" in md
    # every column heading says which call it measures; the default path next to record=False
    time_table = md.split("## Wall time per image")[1].split("## CPU time")[0]
    header = next(ln for ln in time_table.splitlines() if ln.startswith("| model |"))
    for engine in ENGINES:
        if engine != "clock":
            assert f"`{CALLS[engine]}`" in header, engine
    assert header.index("`snn.simulate(x, engine=\"event\", record=False)`") < \
        header.index("`snn.simulate(x)`") < header.index("`snn(x)`")
    assert "default-path columns" in time_table
    assert "recipe plausible, seed 0" in md  # how the weights were made


def test_default_path_runners() -> None:
    """``event-default`` and ``closed-cert-default`` are the default-argument calls (spike
    times recorded); ``call`` is ``snn(x)``, without certificate; all equal ``event``."""
    import onespike
    from onespike.apps.bench import BENCH_MODELS, bench_data, build_model

    spec = BENCH_MODELS["tiny_cnn"]
    model, _ = build_model(spec)
    x, calib, _ = bench_data(spec, 4, 32)
    snn = onespike.convert(model, [calib], dtype=torch.float64, progress=False)
    x = x.double()
    outs = {e: make_runner(e, snn, x, clock_steps=4)()
            for e in ("event", "event-default", "call", "closed-cert-default")}
    assert outs["call"][1] is None
    for e in ("event", "event-default", "closed-cert-default"):
        assert outs[e][1] is not None
    for e in ("event-default", "call"):
        assert torch.equal(outs[e][0], outs["event"][0])
    assert snn.simulate(x).spike_times  # the default records


def test_default_path_engines_in_process() -> None:
    """Without the measuring processes (``memory=False``) ``call`` gets its certificate too."""
    res = run_benchmark(quick=True, models="tiny_mlp", dtypes="float64",
                        engines="event-default,call,closed-cert-default", memory=False,
                        progress=False)
    assert res["settings"]["engines"] == ["relu", "closed-cert-default", "event-default", "call"]
    assert res["checks"]["float64_agreement_passed"]
    assert res["checks"]["agreement_checked"] == 3
    rows = {r["engine"]: r for r in res["results"]}
    assert rows["call"]["certificate_from"] and "peak_mib" not in rows["call"]
    assert rows["call"]["checked"] == rows["event-default"]["checked"]


def test_bad_option() -> None:
    res = CliRunner().invoke(bench_command, ["--quick", "--engines", "warp"])
    assert res.exit_code != 0
    assert "unknown warp" in res.output


@pytest.mark.parametrize("cold", [False, True])
def test_time_group_warms_up_runners_whose_first_run_was_elsewhere(cold: bool) -> None:
    """A runner whose first run took long (> budget/4) is warmed up only when that first
    run happened in another process (peak-memory mode): its samples then never include the
    one-time cost."""
    import time

    calls = []

    def run():
        if not calls:
            time.sleep(0.3)  # one-time cost of a cold runner (caches)
        calls.append(1)
        return None, None

    out = time_group({"event": run}, {"event": 0.3}, repeats=2, budget=0.4, cold=cold)
    samples = out["event"]["samples_s"]
    if cold:
        assert max(samples) < 0.2
    else:
        assert max(samples) >= 0.3


def test_device_is_recorded(quick: tuple[dict, str]) -> None:
    data, md = quick
    assert data["settings"]["device"] == "cpu" and data["machine"]["device"] == "cpu"
    assert "peak RSS" in md and "Device " not in md


@pytest.mark.parametrize("device, why", [
    ("meta", "holds no values"),
    ("warp:0", "not a torch device"),
    pytest.param("cuda", "no CUDA GPU", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="a GPU is present")),
])
def test_bad_device(device: str, why: str) -> None:
    """An unusable device is refused before anything runs, with the reason and the way out."""
    from onespike.errors import ArgumentError

    with pytest.raises(ArgumentError, match=why):
        run_benchmark(quick=True, device=device, progress=False)
    res = CliRunner().invoke(bench_command, ["--quick", "--no-progress", "--device", device])
    assert res.exit_code != 0 and why in res.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_quick_benchmark_on_cuda() -> None:
    """The quick benchmark converts and runs on the GPU: float64 outputs equal the ReLU
    logits, peak memory is the device's."""
    res = run_benchmark(quick=True, device="cuda", engines="event-default,call", progress=False)
    assert res["checks"]["float64_agreement_passed"] and res["checks"]["agreement_checked"]
    assert res["machine"]["device"].startswith("cuda") and res["machine"]["device_name"]
    for r in res["results"]:
        assert r["status"] == "ok", r
        assert "torch.cuda" in r["memory_method"]
    assert "Device cuda" in to_markdown(res)
