"""benchmarks/gpu.sh, the prepared GPU run, checked here on the CPU with the tiny models (the
same commands; only the device and the models differ). Nothing here asserts speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.sh"


def _run(mode: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OUT=str(out), DEVICE="cpu", MODELS="tiny_mlp,tiny_cnn",
               MEMORY_MODELS="tiny_cnn", PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), mode], env=env, capture_output=True,
                          text=True, timeout=600)


def test_speed_run(tmp_path: Path) -> None:
    res = _run("speed", tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    data = json.loads((tmp_path / "gpu-speed.json").read_text())
    assert data["settings"]["device"] == "cpu" and data["settings"]["batches"] == [1, 64, 256]
    assert data["settings"]["dtypes"] == ["float64", "float32"]
    assert data["checks"]["float64_agreement_passed"] and data["checks"]["agreement_checked"]
    assert all(r["status"] == "ok" for r in data["results"])
    assert (tmp_path / "gpu-speed.md").read_text().startswith("# onespike benchmark")


def test_unknown_mode(tmp_path: Path) -> None:
    res = _run("fast", tmp_path)
    assert res.returncode == 2 and "usage: bash benchmarks/gpu.sh tests|speed|memory" in res.stderr
