"""benchmarks/profile_event.py: the per-population breakdown of the simulate call (forward,
proof tiers, exact walk) on the tiny bench models. Nothing here asserts how fast anything
runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import onespike
from onespike.apps.bench import BENCH_MODELS, bench_data, build_model
from onespike.simulation.engines import common

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "profile_event.py"


@pytest.fixture(scope="module")
def profile_event() -> ModuleType:
    spec = importlib.util.spec_from_file_location("profile_event", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["profile_event"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _network(key: str, batch: int) -> tuple[onespike.SpikingNetwork, torch.Tensor]:
    spec = BENCH_MODELS[key]
    model, _ = build_model(spec)
    x, calib, _ = bench_data(spec, batch, 32)
    return onespike.convert(model, [calib], dtype=torch.float64, progress=False), x.double()


def _check(b: Any, snn: onespike.SpikingNetwork) -> None:
    hidden = [p.name for p in snn.hidden_layers]
    assert [p.name for p in b.populations if not p.readout] == hidden
    assert b.total_s > 0
    assert b.accounted_s == pytest.approx(b.total_s, rel=1e-6, abs=1e-9)  # shares add up
    for p in b.populations:
        assert all(s >= 0 for s in p.seconds.values())
    cert = b.result.certificate
    for p, n, checked in zip([p for p in b.populations if not p.readout], cert.neurons,
                             cert.checked):
        assert p.neurons == n
        assert p.seconds["forward"] > 0
        assert p.counts["drive"][1] == n  # the drive bound looks at every neuron
        walked = p.counts["exact"][0] if "exact" in p.counts else 0
        assert walked == checked  # the exact walk gets what no tier proved
        grid = sum(c[0] for t, c in p.counts.items() if t.startswith("grid"))
        assert p.counts["drive"][0] + grid + walked == n


def test_main_tiny_cnn(profile_event: ModuleType) -> None:
    res = CliRunner().invoke(profile_event.main, ["--model", "tiny_cnn", "--batch", "8",
                                                  "--calib", "32"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    out = res.output
    assert "snn.simulate(x) took" in out
    times, cleared = out.split("neurons cleared per tier")
    snn, _ = _network("tiny_cnn", 8)
    for name in [p.name for p in snn.hidden_layers]:
        assert sum(ln.startswith(name + " ") for ln in times.splitlines()) == 1
        assert sum(ln.startswith(name + " ") for ln in cleared.splitlines()) == 1
    all_row = next(ln for ln in times.splitlines() if ln.startswith("all "))
    assert all_row.rstrip().endswith("100.0%")
    assert "—" in times  # tiers that did not run (grid, late)


@pytest.mark.parametrize(("key", "engine", "record"),
                         [("tiny_cnn", "event", True), ("tiny_mlp", "event", False),
                          ("tiny_cnn", "closed", True)])
def test_breakdown(profile_event: ModuleType, key: str, engine: str, record: bool) -> None:
    snn, x = _network(key, 8)
    b = profile_event.profile_breakdown(snn, x, engine=engine, record=record)
    _check(b, snn)
    assert b.call == profile_event.call_text(engine, record)
    assert bool(b.result.spike_times) == record
    assert torch.equal(b.result.output, snn.simulate(x, engine=engine, record=record).output)
    assert common.certify_drive.__name__ == "certify_drive"  # restored, not left wrapped
    assert not hasattr(common.certify_drive, "__wrapped__")
    text = profile_event.format_breakdown(b)
    assert all(p.name in text for p in b.populations)


def test_breakdown_grid_stages(profile_event: ModuleType, monkeypatch: pytest.MonkeyPatch
                               ) -> None:
    """With the grid bound's size thresholds removed it runs on the tiny CNN: its stages get
    their own columns and counts."""
    monkeypatch.setattr(common, "GRID_MIN_ELEMENTS", 0)
    monkeypatch.setattr(common, "BF16_STAGE_MIN_ELEMENTS", 0)
    snn, x = _network("tiny_cnn", 8)
    b = profile_event.profile_breakdown(snn, x)
    _check(b, snn)
    assert b.grid_stages >= 1
    assert any(p.counts.get("grid 1", [0, 0])[1] > 0 for p in b.populations)
    assert "grid 1" in b.columns()
    assert "grid 1 clears" in profile_event.format_breakdown(b)


def test_breakdown_names_a_stage_by_its_grid(profile_event: ModuleType,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage left out (the bfloat16 one, for few neurons) leaves its column empty: the
    float32 stage that runs first is still ``grid 2``."""
    monkeypatch.setattr(common, "GRID_MIN_ELEMENTS", 0)
    monkeypatch.setattr(common, "BF16_STAGE_MIN_ELEMENTS", 1 << 40)
    snn, x = _network("tiny_cnn", 8)
    b = profile_event.profile_breakdown(snn, x)
    _check(b, snn)
    assert not any(p.counts.get("grid 1", [0, 0])[1] for p in b.populations)
    assert any(p.counts.get("grid 2", [0, 0])[1] > 0 for p in b.populations)
