"""Every user error: exit code ≠ 0, one ``error:`` line on stderr, no traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.apps.cli.helpers import TINY, assert_one_line_error

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")]


def _convert(cli, tiny, *extra: object, model: str = TINY, weights: object = None,
             calibration: object = "digits"):
    args: list[object] = ["convert", "--model", model]
    if weights is not None or model == TINY:
        args += ["--weights", weights if weights is not None else tiny.safetensors]
    if calibration is not None:
        args += ["--calibration", calibration]
    return cli(*args, "--calibration-samples", 200, *extra)


@pytest.mark.parametrize("model,words", [
    ("no_such_module_xyz:make", ("cannot import module 'no_such_module_xyz'",)),
    ("tests.apps.cli.factory_models:nope", ("has no attribute 'nope'", "tiny")),
    ("tests.apps.cli.factory_models:NOT_CALLABLE", ("not a callable",)),
    ("tests.apps.cli.factory_models:needs_args", ("without arguments",)),
    ("tests.apps.cli.factory_models:returns_dict", ("not a torch.nn.Module",)),
    ("tests.apps.cli.factory_models:explodes", ("factory exploded",)),
    ("tests.apps.cli.factory_models", ("no such file or built-in model",)),
    ("tests.apps.cli.factory_models:", ("expected module:factory",)),
    ("missing/model.pt2", ("does not exist",)),
    ("missing/model.pt", ("does not exist",)),
    ("missing/file.py:make", ("does not exist",)),
])
def test_bad_model_spec(cli, tiny, model: str, words: tuple[str, ...]) -> None:
    out = cli("convert", "--model", model, "--calibration", "digits")
    assert_one_line_error(out, *words, code=1)


def test_module_that_fails_to_import(cli, tiny, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "broken_user_mod.py").write_text("import torch\nraise ImportError('no gpu')\n")
    (tmp_path / "good_user_mod.py").write_text(
        "from torch import nn\n"
        "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), "
        "nn.Linear(5, 3))\n")
    monkeypatch.chdir(tmp_path)  # modules in the current folder are importable
    out = cli("convert", "--model", "broken_user_mod:make", "--calibration", "digits")
    monkeypatch.chdir(tmp_path)
    from click.testing import CliRunner

    from onespike.apps.cli import main

    r = CliRunner().invoke(main, ["convert", "--model", "broken_user_mod:make",
                                  "--calibration", "digits"])
    assert r.exit_code == 1 and "importing module 'broken_user_mod' failed" in r.stderr
    assert "Traceback" not in r.stderr
    r = CliRunner().invoke(main, ["convert", "--model", "good_user_mod:make",
                                  "--calibration", "digits", "--out", "g.onespike"])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "g.onespike").is_file()
    del out


def test_weights_that_do_not_match(cli, tiny, tmp_path: Path) -> None:
    from tests.apps.cli.factory_models import other

    bad = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other().state_dict().items()}, str(bad))
    out = _convert(cli, tiny, weights=bad)
    assert_one_line_error(out, "do not match the model", "missing key", "unexpected key")
    shapes = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    shapes["5.weight"] = torch.zeros(10, 63)
    wrong = tmp_path / "shape.pt"
    torch.save(shapes, wrong)
    assert_one_line_error(_convert(cli, tiny, weights=wrong), "shape mismatch", "5.weight")


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_weights_with_pickled_objects_are_refused(cli, tiny, tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"0.weight": _Payload()}, evil)
    out = _convert(cli, tiny, weights=evil)
    assert_one_line_error(out, "not loaded for safety", "weights_only")
    assert "unpickled!" not in out.stdout
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps([1, 2, 3])[:5])
    assert_one_line_error(_convert(cli, tiny, weights=junk), "junk.pt")
    assert_one_line_error(_convert(cli, tiny, weights=tmp_path / "none.safetensors"),
                          "does not exist")


def test_shape_mismatch_between_data_and_model(cli, tiny, tmp_path: Path) -> None:
    out = _convert(cli, tiny, calibration="fashion-mnist")
    assert_one_line_error(out)
    net = tmp_path / "d.onespike"
    assert _convert(cli, tiny, "--out", net).code == 0
    out = cli("evaluate", "--snn", net, "--dataset", "fashion-mnist", "--limit", 5)
    assert_one_line_error(out, "fashion-mnist/test", "shape (1, 28, 28)", "expects (1, 8, 8)")


def test_unknown_dataset(cli, tiny) -> None:
    assert_one_line_error(_convert(cli, tiny, calibration="nosuchdata"), "unknown dataset")
    assert_one_line_error(_convert(cli, tiny, calibration="cifar10"), "--root DIR", code=2)


def test_unsupported_model(cli, tiny) -> None:
    out = cli("convert", "--model", "tests.apps.cli.factory_models:with_sigmoid", "--calibration",
              "digits")
    assert_one_line_error(out, "unsupported operation", "Sigmoid")


def test_input_range_error(cli, tiny, tmp_path: Path) -> None:
    out = _convert(cli, tiny, "--input-range", "0", "0.5")
    assert_one_line_error(out, "outside the declared input_range", "--clip")
    assert _convert(cli, tiny, "--input-range", "0", "0.5", "--clip",
                    "--out", tmp_path / "c.onespike").code == 0


def test_corrupted_and_missing_files(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onespike"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert_one_line_error(cli("info", bad), "bad.onespike", "not valid JSON", code=1)
    assert_one_line_error(cli("evaluate", "--snn", bad, "--dataset", "digits"), "bad.onespike")
    assert_one_line_error(cli("info", tmp_path / "missing.onespike"), "missing.onespike",
                          "no such file")


def test_traced_torchscript_is_explained(cli, tiny, tmp_path: Path) -> None:
    traced = tmp_path / "traced.pt"
    torch.jit.save(torch.jit.trace(tiny.model, torch.rand(2, 1, 8, 8)), traced)
    out = cli("convert", "--model", traced, "--calibration", "digits")
    assert_one_line_error(out, "torch.jit.trace", "torch.export")
    state = tmp_path / "state.pt"
    torch.save(tiny.model.state_dict(), state)
    out = cli("convert", "--model", state, "--calibration", "digits")
    assert_one_line_error(out, "not a TorchScript file", "--weights")


@pytest.mark.parametrize("args,words", [
    (["convert", "--calibration", "digits"], ("give --model SPEC or --demo", "--help")),
    (["convert", "--model", TINY], ("--model needs --calibration DATA",)),
    (["convert", "--model", TINY, "--neuron", "lif", "--calibration", "digits"],
     ("'lif' is not one of",)),
    (["evaluate", "--dataset", "digits"], ("give --snn FILE, --model SPEC",)),
    (["nosuchcommand"], ("No such command",)),
    (["info"], ("give FILE, --snn FILE, --model SPEC or --demo",)),
])
def test_usage_errors(cli, args: list[str], words: tuple[str, ...]) -> None:
    assert_one_line_error(cli(*args), *words, code=2)


def test_conflicting_range_options(cli, tiny) -> None:
    out = _convert(cli, tiny, "--input-range", "0", "1", "--normalize", "0.5", "0.5")
    assert_one_line_error(out, "not both", code=2)
    out = _convert(cli, tiny, "--normalize", "0.5,0.4", "0.2")
    assert_one_line_error(out, "channel")
    out = _convert(cli, tiny, "--input-range", "zero", "1")
    assert_one_line_error(out, "expected a number")


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from onespike.apps.cli import main

    missing = str(tmp_path / "missing.onespike")
    r = CliRunner().invoke(main, ["--debug", "info", missing])
    assert r.exit_code != 0 and isinstance(r.exception, FileNotFoundError)
    monkeypatch.setenv("ONESPIKE_DEBUG", "1")
    r = CliRunner().invoke(main, ["info", missing])
    assert isinstance(r.exception, FileNotFoundError)


def test_conversion_options_with_a_converted_network(cli, tiny, tmp_path: Path) -> None:
    net = tmp_path / "n.onespike"
    assert _convert(cli, tiny, "--out", net).code == 0
    out = cli("evaluate", "--snn", net, "--zeta", "0.1", "--neuron", "alpha")
    assert_one_line_error(out, "--zeta, --neuron only apply when converting", code=2)
    out = cli("evaluate", "--snn", net, "--weights", tiny.pt)
    assert_one_line_error(out, "--weights needs --model", code=2)
