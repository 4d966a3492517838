"""``onespike plot …`` and ``onespike robustness`` on a small saved network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import onespike
from onespike.data import load_dataset
from onespike.plots_cli import plot, robustness

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64, 10)).eval()
    calib = load_dataset("digits", "train", limit=200).images
    snn = onespike.convert(model, calib, progress=False)
    snn.meta["dataset"] = "digits"
    path = tmp_path_factory.mktemp("net") / "tiny.onespike"
    onespike.save(snn, path)
    return path


def _png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 8_000


@pytest.mark.parametrize("kind", ["raster", "trace", "hist", "output"])
def test_plot_subcommands(saved: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"{kind}.png"
    args = [kind, "--snn", str(saved), "--out", str(out), "--samples", "8"]
    if kind == "trace":
        args += ["--layer", "0", "--neurons", "0,5"]
    if kind == "hist":
        args += ["--engine", "clock", "--steps", "16"]
    res = CliRunner().invoke(plot, args)
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    _png(out)


def test_robustness_command(saved: Path, tmp_path: Path) -> None:
    out, js = tmp_path / "rob.png", tmp_path / "rob.json"
    res = CliRunner().invoke(robustness, [
        "--knob", "jitter", "--values", "0,0.2", "--seeds", "2", "--snn", str(saved),
        "--samples", "40", "--out", str(out), "--json", str(js), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "agreement" in res.output and "100.00 ± 0.00 %" in res.output
    _png(out)
    d = json.loads(js.read_text())
    assert d["knob"] == "jitter" and d["points"][0]["agreement"] == [1.0]


def test_usage_errors(saved: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(plot, ["raster", "--out", "x.png"])
    assert res.exit_code != 0 and "exactly one of" in res.output
    res = runner.invoke(robustness, ["--knob", "jitter", "--values", "a,b", "--snn",
                                     str(saved)])
    assert res.exit_code != 0 and "numbers" in res.output
    res = runner.invoke(plot, ["output", "--snn", str(saved), "--samples", "2",
                               "--sample", "5"])
    assert res.exit_code != 0 and "out of range" in res.output


def test_registered_in_the_main_group(saved: Path, tmp_path: Path) -> None:
    from onespike.cli import main

    out = tmp_path / "r.png"
    res = CliRunner().invoke(main, ["plot", "raster", "--snn", str(saved), "--out", str(out)])
    assert res.exit_code == 0, res.output
    _png(out)
    res = CliRunner().invoke(main, ["robustness", "--help"])
    assert res.exit_code == 0 and "--knob" in res.output
