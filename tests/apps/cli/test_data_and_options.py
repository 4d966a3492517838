"""Data paths, output paths and global options of the CLI: CIFAR archives given with
--root, truncated archives, missing files, ``--root DIR`` wording, ``--out`` checks made before
any work, ``--threads``, NaN results and ``--clip`` with ``--model`` in evaluate."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
import torch
from tests.apps.cli.helpers import TINY, assert_one_line_error
from tests.data.conftest import make_targz, write_cifar10

import onespike
import onespike.conversion
import onespike.network

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CIFAR_MODEL = "tests.apps.cli.factory_models:cifar_tiny"


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CIFAR-10 archive under its official name, in the real pickle format."""
    folder = tmp_path_factory.mktemp("cifar")
    write_cifar10(folder / "src", per_batch=4)
    archive = make_targz(folder / "src" / "cifar-10-batches-py", "cifar-10-batches-py")
    return archive.rename(folder / "cifar-10-python.tar.gz")


def _convert(cli, *args: object):
    return cli("convert", "--model", CIFAR_MODEL, "--calibration-samples", 8, *args)


# -- data ---------------------------------------------------------------------------------------
def test_root_takes_the_cifar_archive(cli, cifar: Path, tmp_path: Path) -> None:
    net = tmp_path / "c.onespike"
    out = _convert(cli, "--calibration", "cifar10", "--root", cifar, "--out", net)
    assert out.code == 0, out
    assert "cifar10/train (8 samples)" in out.stdout
    ev = cli("evaluate", "--snn", net, "--dataset", "cifar10", "--root", cifar, "--json")
    assert ev.code == 0, ev
    assert ev.json()["samples"] == 5  # the test batch of the tiny archive


@pytest.mark.parametrize("name", ["cifar-10-python.tar.gz", "download.tar.gz"])
def test_truncated_archive_says_truncated(cli, cifar: Path, tmp_path: Path,
                                          name: str) -> None:
    raw = cifar.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(raw[: len(raw) // 2])
    for args in (["--calibration", cut], ["--calibration", "cifar10", "--root", cut]):
        line = assert_one_line_error(_convert(cli, *args), str(cut), code=1)
        assert "truncated" in line.replace(str(cut), "")  # tmp_path holds the word too
        assert "unknown dataset" not in line


def test_archive_found_by_its_content(cli, cifar: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "my-data.tar.gz"
    renamed.write_bytes(cifar.read_bytes())
    out = _convert(cli, "--calibration", renamed, "--out", tmp_path / "r.onespike")
    assert out.code == 0, out


@pytest.mark.parametrize("missing", ["nowhere/calib.pt", "calib.safetensors",
                                     "nowhere/cifar-10-python.tar.gz", "nowhere/images"])
def test_missing_calibration_file_is_not_found(cli, tmp_path: Path, missing: str) -> None:
    path = tmp_path / missing
    line = assert_one_line_error(_convert(cli, "--calibration", path), "not found", str(path),
                                 code=1)
    assert "unknown dataset" not in line


def test_existing_file_that_is_no_dataset(cli, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    assert_one_line_error(_convert(cli, "--calibration", junk), "is a file but not a dataset")


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10", "cifar100", "imagefolder"])
def test_messages_name_the_root_option(cli, tmp_path: Path, dataset: str) -> None:
    absent = tmp_path / "absent"
    line = assert_one_line_error(_convert(cli, "--calibration", dataset, "--root", absent),
                                 str(absent), "does not exist")
    assert "root=" not in line
    if dataset != "imagefolder":  # its message has no hint about where the files go
        assert "--root DIR" in line


def test_dataset_without_root_is_a_usage_error(cli) -> None:
    line = assert_one_line_error(_convert(cli, "--calibration", "cifar100"), "--root DIR",
                                 code=2)
    assert "root=" not in line


# -- output paths -------------------------------------------------------------------------------
def test_out_is_checked_before_converting(cli, tiny, tmp_path: Path, monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(onespike.conversion, "convert", lambda *a, **k: calls.append(1))
    base = ["convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
            "digits"]
    folder = tmp_path / "folder"
    folder.mkdir()
    assert_one_line_error(cli(*base, "--out", folder), "--out", "is a directory", code=2)
    slash = f"{tmp_path / 'new'}{os.sep}"
    assert_one_line_error(cli(*base, "--out", slash), "--out", "is a folder", code=2)
    assert not (tmp_path / "new").exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line_error(cli(*base, "--out", afile / "net.onespike"), "--out",
                          "is a file, not a folder", code=2)
    assert calls == []


def test_save_failure_names_the_target_not_the_temporary_file(cli, tiny, tmp_path: Path,
                                                              monkeypatch) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    net = tmp_path / "net.onespike"
    out = cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
              "digits", "--calibration-samples", 50, "--out", net)
    line = assert_one_line_error(out, f"cannot write {net}", "permission denied", code=1)
    assert ".tmp" not in line


def test_demo_refuses_an_unwritable_network_path_first(cli, tmp_path: Path,
                                                       monkeypatch) -> None:
    import onespike.models

    monkeypatch.setattr(onespike.models, "load_pretrained",
                        lambda *a, **k: pytest.fail("demo did work before checking --out"))
    (tmp_path / "digits_cnn.onespike").mkdir()
    line = assert_one_line_error(cli("demo", "--out", tmp_path, "--no-plot"), "--out",
                                 "digits_cnn.onespike is a folder", code=2)
    assert ".tmp" not in line


# -- --threads ----------------------------------------------------------------------------------
def test_threads(cli, monkeypatch) -> None:
    seen: list[int] = []

    def probe(path: object) -> None:
        seen.append(torch.get_num_threads())
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(onespike.network, "load", probe)
    before = torch.get_num_threads()
    assert cli("info", "x.onespike").code == 1
    assert cli("--threads", "2", "info", "x.onespike").code == 1
    monkeypatch.setenv("ONESPIKE_THREADS", "3")
    assert cli("info", "x.onespike").code == 1
    assert cli("--threads", "0", "info", "x.onespike").code == 1  # torch's own default
    assert seen == [1, 2, 3, before]
    assert torch.get_num_threads() == before  # restored after each command
    monkeypatch.delenv("ONESPIKE_THREADS")
    assert_one_line_error(cli("--threads", "-1", "info", "x.onespike"), "--threads", code=2)
    text = cli("--help").stdout
    assert "--threads" in text and "default: 1" in text and "10x slower" in text


# -- evaluate ---------------------------------------------------------------------------------
def test_evaluate_reports_nan_outputs(cli, tiny, tmp_path: Path) -> None:
    net = tmp_path / "n.onespike"
    assert cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
               "digits", "--calibration-samples", 100, "--out", net).code == 0
    snn = onespike.load(net)
    with torch.no_grad():
        snn.readout.bias.reshape(-1)[:] = float("nan")
    onespike.save(snn, net)
    out = cli("evaluate", "--snn", net, "--limit", 20)
    assert out.code == 0, out
    rows = dict(re.split(r"\s{2,}", ln.strip(), maxsplit=1)
                for ln in out.stdout.splitlines()[1:] if re.search(r"\S\s{2,}\S", ln))
    assert rows["max |logit difference|"] == "nan"
    assert rows["agreement (argmax)"] != "100.00 %"
    assert rows["certificate"].startswith("NOT exact")
    d = cli("evaluate", "--snn", net, "--limit", 20, "--json").json()
    assert d["exact"] is False and d["nonfinite_samples"] == 20
    assert math.isnan(d["max_abs_logit_diff"]) and d["agreement"] < 1


def test_evaluate_with_model_and_clip_compares_clipped_inputs(cli, tiny, tmp_path: Path) -> None:
    """With --clip the original model sees the clipped inputs the spiking network sees."""
    net = tmp_path / "c.onespike"
    assert cli("convert", "--model", TINY, "--weights", tiny.safetensors, "--calibration",
               "digits", "--input-range", "0", "0.5", "--clip", "--out", net).code == 0
    out = cli("evaluate", "--snn", net, "--model", TINY, "--weights", tiny.safetensors,
              "--clip", "--limit", 100, "--json")
    assert out.code == 0, out
    d = out.json()
    assert d["relu_source"] == "model" and d["exact"] is True
    assert d["max_abs_logit_diff"] < 1e-9  # float64 network and model on the same inputs
    assert d["agreement"] == 1.0
