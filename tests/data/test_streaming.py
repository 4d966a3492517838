"""Streaming datasets (load_dataset(stream=True)) and the APIs that take them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.utils.data as tud
from click.testing import CliRunner
from tests.distributed.helpers import cli_env, make_image_folder, tiny_model

import onespike
from onespike.apps.cli import main
from onespike.data import DatasetFormatError, StreamingDataset, load_dataset


def _items(ds: StreamingDataset) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in range(len(ds))])


def test_streams_decode_what_the_in_memory_loaders_load(tmp_path: Path, formats) -> None:
    formats.write_fmnist(tmp_path / "fm")
    formats.write_cifar10(tmp_path / "c10")
    make_image_folder(tmp_path / "imgs", 9, size=6)
    cases = [("fashion-mnist", {"root": str(tmp_path / "fm")}),
             ("cifar10", {"root": str(tmp_path / "c10"), "limit": 4}),
             (str(tmp_path / "imgs"), {}),
             (str(tmp_path / "imgs"), {"normalize": ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))})]
    for name, opts in cases:
        mem = load_dataset(name, **opts)
        st = load_dataset(name, stream=True, **opts)
        assert isinstance(st, StreamingDataset) and len(st) == len(mem)
        assert torch.equal(_items(st), mem.images), name  # bit-identical
        assert torch.equal(st.labels, mem.labels) and st.classes == mem.classes
        assert st.input_range == mem.input_range and st.input_shape == mem.input_shape
        assert torch.equal(st.materialize().images, mem.images)
    assert len(load_dataset(str(tmp_path / "imgs"), stream=True, limit=4)) == 4


def test_a_bad_file_fails_when_its_item_is_read(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "imgs", 4)
    bad = sorted((tmp_path / "imgs").rglob("*.png"))[-1]
    bad.write_bytes(b"no")
    ds = load_dataset(str(tmp_path / "imgs"), stream=True)  # listing is enough
    ds[0]
    with pytest.raises(DatasetFormatError, match=bad.name):
        ds[3]


def test_every_api_takes_datasets_and_loaders(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "imgs", 13)
    model = tiny_model(8)
    st = load_dataset(str(tmp_path / "imgs"), stream=True)
    mem = st.materialize()
    snn = onespike.convert(model, mem.images, progress=False)
    blob = onespike.save(snn, tmp_path / "a.onespike").read_bytes()
    # calibration: a dataset, a DataLoader, an in-memory Dataset: the same network
    for calib in (st, tud.DataLoader(st, batch_size=5), mem):
        other = onespike.convert(model, calib, batch_size=4, progress=False)
        assert onespike.save(other, tmp_path / "b.onespike").read_bytes() == blob
    ref = onespike.evaluate(snn, mem.images, mem.labels, batch_size=5, progress=False)
    pairs = [(x, y) for x, y in zip(mem.images.split(5), mem.labels.split(5))]
    for data in (st, tud.DataLoader(st, batch_size=5), mem, pairs):
        ev = onespike.evaluate(snn, data, batch_size=5, progress=False)
        assert ev.as_dict() | {"snn_seconds": 0} == ref.as_dict() | {"snn_seconds": 0}
    ev = onespike.evaluate(snn, st, batch_size=5, workers=2, progress=False)
    assert ev.samples == 13 and ev.snn_accuracy == ref.snn_accuracy
    stats = onespike.measure(snn, st, batch_size=4)
    assert stats.samples == 13
    assert stats.as_dict() == onespike.measure(snn, mem.images).as_dict()
    res = onespike.sweep(snn, st, None, "jitter", [0.0], seeds=1)
    assert res.samples == 13 and res.points[0].accuracy_mean == ref.snn_accuracy


def test_evaluate_command_streams_with_workers(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    make_image_folder(tmp_path / "imgs", 10)
    (tmp_path / "tinynet.py").write_text(
        "from tests.distributed.helpers import tiny_model\n\ndef make():\n"
        "    return tiny_model(8)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    r = CliRunner().invoke(main, ["convert", "--model", "tinynet.py:make", "--calibration",
                                  "imgs", "--workers", "2", "--out", "n.onespike"])
    assert r.exit_code == 0, r.output
    outs = []
    for workers in ("0", "2"):
        r = CliRunner().invoke(main, ["evaluate", "--snn", "n.onespike", "--dataset", "imgs",
                                      "--workers", workers, "--batch-size", "3", "--json"])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.output) | {"snn_seconds": 0})
    assert outs[0] == outs[1] and outs[0]["samples"] == 10


_PEAK = """
import resource, sys
from onespike.apps.cli import main
main(sys.argv[1:], standalone_mode=False)
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def test_evaluate_peak_memory_does_not_grow_with_the_number_of_images(tmp_path: Path) -> None:
    """1,000 and 4,000 images of 3×48×48 (in memory, as float32: 28 and 110 MB): the peak
    RSS of ``onespike evaluate`` on the folder stays flat."""
    (tmp_path / "tinynet.py").write_text(
        "from tests.distributed.helpers import tiny_model\n\ndef make():\n"
        "    return tiny_model(48)\n")
    env = cli_env()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + ":" + env["PYTHONPATH"]
    # glibc's malloc raises its mmap threshold as large blocks are freed and then keeps freed
    # maps in its heap: the peak RSS then varies by 50-200 MB from run to run with the order
    # of the batches' allocations (measured: 'large' − 'small' from 31 to 134 MB on the same
    # files), and hides what is live. A fixed threshold hands every large block back when it
    # is freed, so the peak measures live memory (flat here, +83 MB if the images were kept).
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    make_image_folder(tmp_path / "small", 1000, size=48)
    make_image_folder(tmp_path / "large", 4000, size=48, seed=1)
    subprocess.run([sys.executable, "-c", _PEAK, "convert", "--model", "tinynet.py:make",
                    "--calibration", "small", "--calibration-samples", "64", "--out",
                    "n.onespike"], cwd=tmp_path, env=env, check=True, capture_output=True)
    peaks = {}
    for name in ("small", "large"):
        res = subprocess.run([sys.executable, "-c", _PEAK, "evaluate", "--snn", "n.onespike",
                              "--dataset", name, "--json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["samples"] == {"small": 1000, "large": 4000}[name]
        peaks[name] = int(res.stderr.split("PEAK_KB")[-1].split()[0]) / 1024
    # in memory the 3,000 more images alone would add 83 MB of float32 pixels
    assert peaks["large"] - peaks["small"] < 30, peaks
