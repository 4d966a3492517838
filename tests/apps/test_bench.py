"""The benchmark's quick configuration: JSON structure, engine agreement, markdown, CLI.

Nothing here asserts how fast it runs: timings depend on the machine and its load, and
performance is measured by the benchmark itself, not by the test suite."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from onespike.apps.bench import AGREEMENT_TOL, ENGINES, to_markdown
from onespike.apps.cli.bench import bench_command


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
        assert r["ratio_to_relu"] > 0 and r["cpu_ratio_to_relu"] > 0
        assert r["per_image_cpu_s"] > 0 and len(r["cpu_samples_s"]) == len(r["samples_s"])
        if r["engine"] in ("closed-cert", "event"):
            assert 0 <= r["checked_fraction"] <= 1
            assert len(r["checked_per_layer"]) >= 1
    relu = [r for r in rows if r["engine"] == "relu"]
    assert all(r["ratio_to_relu"] == pytest.approx(1.0) for r in relu)
    scaling = data["scaling"]["per_image_s_by_batch"]
    assert set(scaling) == {"tiny_mlp", "tiny_cnn"}


def test_engines_agree_with_relu(quick: tuple[dict, str]) -> None:
    data = quick[0]
    assert data["checks"]["float64_agreement_passed"]
    assert data["checks"]["agreement_checked"] == 2 * 3  # closed, closed-cert, event × 2 models
    for r in data["results"]:
        if r["dtype"] == "float64" and r["engine"] in ("closed", "closed-cert", "event"):
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


def test_bad_option() -> None:
    res = CliRunner().invoke(bench_command, ["--quick", "--engines", "warp"])
    assert res.exit_code != 0
    assert "unknown warp" in res.output
