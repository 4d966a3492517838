"""``onespike plot …`` and ``onespike robustness`` on a small saved network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import onespike
from onespike.apps.cli.plot import plot
from onespike.apps.cli.robustness import robustness
from onespike.data import load_dataset

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
    assert res.exit_code != 0 and "give --snn FILE, --model SPEC or --demo" in res.output
    res = runner.invoke(robustness, ["--knob", "jitter", "--values", "a,b", "--snn",
                                     str(saved)])
    assert res.exit_code != 0 and "numbers" in res.output
    res = runner.invoke(plot, ["output", "--snn", str(saved), "--samples", "2",
                               "--sample", "5"])
    assert res.exit_code != 0 and "out of range" in res.output


def test_registered_in_the_main_group(saved: Path, tmp_path: Path) -> None:
    from onespike.apps.cli import main

    out = tmp_path / "r.png"
    res = CliRunner().invoke(main, ["plot", "raster", "--snn", str(saved), "--out", str(out)])
    assert res.exit_code == 0, res.output
    _png(out)
    res = CliRunner().invoke(main, ["robustness", "--help"])
    assert res.exit_code == 0 and "--knob" in res.output


@pytest.mark.parametrize("spelling", ["alpha-noise", "alpha_noise"])
def test_robustness_knob_spellings(saved: Path, tmp_path: Path, spelling: str) -> None:
    """The README writes alpha-noise; the Python API's name alpha_noise works too."""
    js = tmp_path / "k.json"
    res = CliRunner().invoke(robustness, [
        "--knob", spelling, "--values", "0,0.0001", "--seeds", "1", "--snn", str(saved),
        "--samples", "8", "--out", str(tmp_path / "k.png"), "--json", str(js),
        "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads(js.read_text())["knob"] == "alpha_noise"
    res = CliRunner().invoke(robustness, ["--knob", "time-bits", "--values", "4", "--snn",
                                          str(saved), "--samples", "4", "--out",
                                          str(tmp_path / "t.png"), "--no-progress"])
    assert res.exit_code == 0, res.output


def _sweep_args(saved: Path, tmp_path: Path) -> list[str]:
    return ["robustness", "--knob", "jitter", "--values", "0,0.1", "--seeds", "1", "--snn",
            str(saved), "--samples", "8", "--out", str(tmp_path / "q.png")]


def test_quiet_silences_the_robustness_progress_bar(saved: Path, tmp_path: Path) -> None:
    from onespike.apps.cli import main

    runner = CliRunner()
    loud = runner.invoke(main, [*_sweep_args(saved, tmp_path), "--progress"])
    assert loud.exit_code == 0, loud.output
    assert "sweeping jitter" in loud.stderr  # the bar, asked for
    for args in (["-q", *_sweep_args(saved, tmp_path)],
                 ["-q", *_sweep_args(saved, tmp_path), "--progress"],
                 _sweep_args(saved, tmp_path)):  # default: only on a terminal
        res = runner.invoke(main, args)
        assert res.exit_code == 0, res.output
        assert "sweeping" not in res.stderr, args


@pytest.mark.parametrize("args,words", [
    (["--layer", "99"], ("--layer", "layer 99 is out of range", "2 layers")),
    (["--layer", "-4"], ("--layer", "out of range",)),
    (["--layer", "nope"], ("--layer", "no layer 'nope'")),
    (["--layer", "0", "--neurons", "0,99999"], ("--neurons", "neuron 99999 is out of range")),
    (["--neurons", "a,b"], ("--neurons", "integers")),
])
def test_trace_option_errors_name_the_option(saved: Path, tmp_path: Path, args: list[str],
                                             words: tuple[str, ...]) -> None:
    from tests.apps.cli.helpers import assert_one_line_error, outcome

    from onespike.apps.cli import main

    res = CliRunner().invoke(main, ["plot", "trace", "--snn", str(saved), "--out",
                                    str(tmp_path / "t.png"), *args])
    line = assert_one_line_error(outcome(res), *words, code=2)
    assert "IndexError" not in line and "Error:" not in line
    assert not (tmp_path / "t.png").exists()


def test_plot_out_and_json_are_checked_first(saved: Path, tmp_path: Path) -> None:
    from tests.apps.cli.helpers import assert_one_line_error, outcome

    from onespike.apps.cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    res = CliRunner().invoke(main, ["plot", "raster", "--snn", str(saved), "--out",
                                    str(afile / "r.png")])
    assert_one_line_error(outcome(res), "--out", "is a file, not a folder", code=2)
    res = CliRunner().invoke(main, [*_sweep_args(saved, tmp_path), "--json",
                                    f"{tmp_path / 'new'}/"])
    assert_one_line_error(outcome(res), "--json", "is a folder", code=2)
    assert not (tmp_path / "q.png").exists()  # refused before the sweep


def test_plot_root_takes_a_cifar_archive(tmp_path: Path) -> None:
    from tests.data.conftest import make_targz, write_cifar10

    write_cifar10(tmp_path / "src", per_batch=4)
    archive = make_targz(tmp_path / "src" / "cifar-10-batches-py", "cifar-10-batches-py")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 10)).eval()
    calib = load_dataset("cifar10", "train", root=str(archive))
    snn = onespike.convert(model, calib.images, progress=False)
    snn.meta["dataset"] = "cifar10"
    net = tmp_path / "c.onespike"
    onespike.save(snn, net)
    out = tmp_path / "o.png"
    res = CliRunner().invoke(plot, ["output", "--snn", str(net), "--root", str(archive),
                                    "--samples", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    _png(out)
