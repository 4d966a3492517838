"""The installed ``onespike`` console script, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.apps.cli.helpers import REPO, TINY

SCRIPT = Path(sys.executable).with_name("onespike")

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")


def _run(*args: object, cwd: Path = REPO, timeout: float = 300,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "ONESPIKE_DEBUG"}
    full_env.update({"PYTHONWARNINGS": "ignore", **(env or {})})
    return subprocess.run([str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("demo")
    proc = _run("demo", "--json", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), out


def test_demo_json(demo: tuple[dict, Path]) -> None:
    d, out = demo
    for key in ("relu_accuracy", "snn_accuracy", "agreement", "max_abs_logit_diff",
                "certificate", "spikes_per_neuron", "synaptic_events", "latency", "samples",
                "raster", "snn_file", "seconds", "neuron"):
        assert key in d, key
    assert d["samples"] == 450 and d["neuron"] == "alpha"
    assert d["snn_accuracy"] == d["relu_accuracy"] >= 0.95
    assert d["agreement"] == 1.0
    assert d["certificate"]["exact"] is True
    assert d["certificate"]["samples_exact"] == 450
    assert d["spikes_per_neuron"] == 1.0
    assert d["synaptic_events"] > 0 and d["latency"] > 1
    assert d["max_abs_logit_diff"] < 1e-4
    assert Path(d["raster"]).is_file() and Path(d["raster"]).stat().st_size > 1000
    assert Path(d["snn_file"]) == out / "digits_cnn.onespike"


def test_info_and_evaluate_on_demo_output(demo: tuple[dict, Path]) -> None:
    _, out = demo
    info = _run("info", out / "digits_cnn.onespike")
    assert info.returncode == 0, info.stderr
    assert "layer1" in info.stdout and "readout" in info.stdout and "latency" in info.stdout
    ev = _run("evaluate", "--snn", out / "digits_cnn.onespike", "--json", "--limit", 100)
    assert ev.returncode == 0, ev.stderr
    e = json.loads(ev.stdout)
    assert e["agreement"] == 1.0 and e["certificate"]["exact"]


def test_convert_from_repo_root(tiny, tmp_path: Path) -> None:
    """``--model tests.apps.cli.factory_models:tiny`` imports from the current folder."""
    net = tmp_path / "tiny.onespike"
    proc = _run("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
                "digits", "--out", net)
    assert proc.returncode == 0, proc.stderr
    assert net.is_file()


def test_errors_are_one_line(tmp_path: Path) -> None:
    proc = _run("info", tmp_path / "missing.onespike")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.onespike'}: "
                                                 "no such file"]
    proc = _run("convert", "--model", "no_such_mod:f", "--calibration", "digits")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: cannot import module 'no_such_mod'")
    proc = _run("convert", "--calibration", "digits")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_debug_prints_traceback(tmp_path: Path) -> None:
    proc = _run("--debug", "info", tmp_path / "missing.onespike")
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    proc = _run("info", tmp_path / "missing.onespike", env={"ONESPIKE_DEBUG": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr
