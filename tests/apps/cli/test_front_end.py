"""One front end: every command takes the shared options with the same defaults and the
choices of the library's registries, and resolves networks and data the same way."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from tests.apps.cli.helpers import TINY, assert_one_line_error

from onespike.analysis.robustness import KNOBS
from onespike.apps.cli import main
from onespike.apps.cli.options import CALIBRATION_SAMPLES
from onespike.data import DATASET_NAMES
from onespike.simulation import ENGINES, NEURON_MODELS


def _commands() -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, cmd in main.commands.items():
        if isinstance(cmd, click.Group):
            out.update({f"{name} {sub}": c for sub, c in cmd.commands.items()})
        else:
            out[name] = cmd
    return out


def _option(cmd: click.Command, name: str) -> click.Option | None:
    return next((p for p in cmd.params if isinstance(p, click.Option) and name in p.opts), None)


CONVERTING = ("convert", "evaluate", "info", "plot raster", "plot trace", "plot hist",
              "plot output", "robustness")


@pytest.mark.parametrize("name", CONVERTING)
def test_conversion_options_are_shared(name: str) -> None:
    cmd = _commands()[name]
    for opt in ("--model", "--weights", "--demo", "--calibration", "--input-range",
                "--normalize", "--zeta", "--neuron", "--dtype", "--root"):
        assert _option(cmd, opt) is not None, (name, opt)
    assert _option(cmd, "--calibration-samples").default == CALIBRATION_SAMPLES
    assert list(_option(cmd, "--neuron").type.choices) == list(NEURON_MODELS)
    assert _option(cmd, "--zeta").default == 0.5
    assert _option(cmd, "--dtype").default == "float64"


def test_engines_and_knobs_come_from_the_registries() -> None:
    cmds = _commands()
    for name, cmd in cmds.items():
        opt = _option(cmd, "--engine")
        if opt is not None:
            assert set(opt.type.choices) <= set(ENGINES), name
            assert opt.default == "event", name
    assert set(_option(cmds["plot raster"], "--engine").type.choices) == set(ENGINES)
    knob = _option(cmds["robustness"], "--knob").type
    assert [k.replace("-", "_") for k in knob.choices] == list(KNOBS)
    for name in ("evaluate", "plot hist", "robustness"):
        text = _option(cmds[name], "--dataset").help
        assert all(d in text for d in DATASET_NAMES), name


def test_limit_and_samples_are_one_option() -> None:
    cmds = _commands()
    assert _option(cmds["evaluate"], "--samples") is _option(cmds["evaluate"], "--limit")
    assert _option(cmds["plot raster"], "--limit").default == 16


def test_plot_converts_a_model_with_the_conversion_options(cli, tmp_path: Path) -> None:
    """plot takes --model with --normalize and --calibration-samples like convert."""
    out = tmp_path / "r.png"
    res = cli("plot", "raster", "--model", TINY, "--dataset", "digits", "--normalize", "0",
              "1", "--calibration-samples", "200", "--samples", "2", "--out", out)
    assert res.code == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert TINY in res.stdout and "digits/test (2 samples)" in res.stdout


def test_info_describes_any_source(cli, tmp_path: Path) -> None:
    res = cli("info", "--model", TINY, "--calibration", "digits", "--calibration-samples",
              "100", "--json")
    assert res.code == 0, res.stderr
    d = res.json()
    assert d["file"] is None and d["hidden_neurons"] > 0
    net = tmp_path / "n.onespike"
    assert cli("convert", "--model", TINY, "--calibration", "digits", "--calibration-samples",
               "100", "--out", net).code == 0
    assert cli("info", "--snn", net, "--json").json()["hidden_neurons"] == d["hidden_neurons"]
    assert_one_line_error(cli("info", net, "--demo"), "not both", code=2)


def test_dataset_errors_name_the_option(cli) -> None:
    out = cli("evaluate", "--model", TINY, "--dataset", "cifar10", "--limit", "2")
    assert_one_line_error(out, "--root DIR", code=2)
