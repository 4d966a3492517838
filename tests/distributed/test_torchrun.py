"""``torchrun --standalone --nproc-per-node N --no-python onespike …`` against one process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.distributed.helpers import (
    cli_env,
    make_image_folder,
    torchrun_cmd,
    write_model_file,
)
from tests.distributed.workers import comparable

from onespike.apps.cli import main


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("torchrun")
    make_image_folder(d / "imgs", 25)
    write_model_file(d)
    return d


def torchrun(nproc: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*torchrun_cmd(nproc), *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=120)


def one_process(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(cwd)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return res.output


CONVERT = ["convert", "--model", "tinynet.py:make", "--calibration", "imgs"]
EVALUATE = ["evaluate", "--snn", "one.onespike", "--dataset", "imgs", "--batch-size", "4",
            "--json"]


def test_convert_and_evaluate_match_one_process(work: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    one_process([*CONVERT, "--out", "one.onespike"], work, monkeypatch)
    two = torchrun(2, [*CONVERT, "--out", "two.onespike"], work)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("saved two.onespike") == 1  # rank 0 alone prints
    assert (work / "two.onespike").read_bytes() == (work / "one.onespike").read_bytes()

    single = json.loads(one_process(EVALUATE, work, monkeypatch))
    three = torchrun(3, [*EVALUATE, "--workers", "1"], work)
    assert three.returncode == 0, three.stderr
    got = json.loads(three.stdout)  # one JSON document: rank 0 alone prints
    assert comparable(got) == comparable(single)
    assert got["world_size"] == 3 and got["shard_sizes"] == [12, 8, 5]  # 7 batches of 4


def test_a_bad_file_stops_every_rank_and_nothing_is_written(work: Path) -> None:
    bad = work / "bad"
    make_image_folder(bad, 25)
    last = sorted(bad.rglob("*.png"))[-1]
    last.write_bytes(b"not a png")
    out = work / "half.onespike"
    res = torchrun(2, ["convert", "--model", "tinynet.py:make", "--calibration", "bad",
                       "--out", str(out)], work)
    assert res.returncode != 0
    assert res.stderr.count("error: calibrate stopped on all 2 ranks: rank 1 failed") == 2
    assert last.name in res.stderr
    assert not out.exists() and not list(work.glob(".half.onespike*"))


def test_commands_that_do_not_spread_are_refused(work: Path) -> None:
    res = torchrun(2, ["info", "one.onespike"], work)
    assert res.returncode != 0 and "runs in one process" in res.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_multi_node_launch_form_and_python_m(work: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The multi-machine form (c10d rendezvous, here one node on localhost) with
    ``-m onespike`` instead of the console script gives the one-process result."""
    import sys

    if not (work / "one.onespike").exists():
        one_process([*CONVERT, "--out", "one.onespike"], work, monkeypatch)
    single = json.loads(one_process(EVALUATE, work, monkeypatch))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "onespike-test",
           "-m", "onespike", *EVALUATE]
    res = subprocess.run(cmd, cwd=work, env=cli_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert comparable(got) == comparable(single) and got["world_size"] == 2
