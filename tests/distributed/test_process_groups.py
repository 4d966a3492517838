"""onespike.evaluate / onespike.convert in gloo process groups of 2 and 3 processes on this
machine: results identical to one process, and the fault cases."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

import pytest
from tests.distributed.workers import comparable, prepare, run_group, seven_samples

import onespike
from onespike.data import load_dataset
from onespike.distributed import batch_shard_bounds, shard_bounds


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(tmp_path_factory.mktemp("groups"))


@pytest.fixture(scope="module")
def single(folder: Path) -> dict[str, Any]:
    """The one-process results the groups must reproduce."""
    model, x, y = seven_samples()
    snn = onespike.convert(model, x, progress=False)
    images = load_dataset(str(folder / "imgs"), stream=True)
    snn_folder = onespike.convert(model, images, progress=False)
    digest = {}
    for tag, net in (("convert", snn), ("convert_stream", snn_folder)):
        path = onespike.save(net, folder / f"single-{tag}.onespike")
        digest[tag] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        # the batch sizes of the groups (the certificate's "checked" counts depend on them)
        "evaluate": onespike.evaluate(snn, x, y, model=model, batch_size=2,
                                      progress=False).as_dict(),
        "evaluate_stream": onespike.evaluate(snn_folder, images, batch_size=3,
                                             progress=False).as_dict(),
        **digest,
    }


def test_shards_are_contiguous_disjoint_and_complete() -> None:
    for n in range(0, 12):
        for w in range(1, 5):
            bounds = [shard_bounds(n, r, w) for r in range(w)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1
    assert [shard_bounds(7, r, 2) for r in range(2)] == [(0, 4), (4, 7)]
    # whole batches of 2: 4 batches (2, 2, 2, 1) over 3 ranks
    assert [batch_shard_bounds(7, 2, r, 3) for r in range(3)] == [(0, 4), (4, 6), (6, 7)]
    assert [batch_shard_bounds(3, 256, r, 2) for r in range(2)] == [(0, 3), (3, 3)]


@pytest.mark.parametrize("world", [2, 3])
def test_group_results_equal_one_process(world: int, folder: Path,
                                         single: dict[str, Any]) -> None:
    out = run_group(world, "results", folder=str(folder))
    assert [s for s, _ in out] == ["ok"] * world, out
    n_stream = single["evaluate_stream"]["samples"]
    for _, got in out:
        # every rank returns the single-process result; world and shards recorded
        assert comparable(got["evaluate"]) == comparable(single["evaluate"])
        assert comparable(got["evaluate_stream"]) == comparable(single["evaluate_stream"])
        assert got["evaluate"]["world_size"] == world
        assert got["evaluate"]["shard_sizes"] == [b - a for a, b in
                                                  (batch_shard_bounds(7, 2, r, world)
                                                   for r in range(world))]
        assert sum(got["evaluate_stream"]["shard_sizes"]) == n_stream
        # windows bit-identical: the saved networks are byte-identical
        assert got["convert"] == single["convert"]
        assert got["convert_stream"] == single["convert_stream"]


def test_faults_stop_every_rank_naming_the_rank(folder: Path) -> None:
    out = run_group(2, "faults", folder=str(folder))
    assert [s for s, _ in out] == ["ok", "ok"], out
    for rank, (_, got) in enumerate(out):
        for case, cause in (("bad_file", "cannot read image"),
                            ("bad_calibration", "cannot read image"),
                            ("exception", "RuntimeError: boom"),
                            ("oom", "MemoryError"),
                            ("mismatch", "network"),
                            ("convert_mismatch", "zeta is 0.25 on rank 1")):
            err = got[case]
            assert err["type"] == "DistributedError", (rank, case, err)
            assert err["rank"] == 1, (rank, case, err)
            assert cause in err["cause"] and "rank 1" in err["message"], (rank, case, err)
            assert err["seconds"] < 30
        assert got["still_works"] == 7  # the group is usable after a failure


def test_a_killed_rank_stops_the_others_within_the_timeout() -> None:
    out = run_group(2, "killed", dist_timeout=4.0, timeout=90.0)
    assert out[1] == ("missing", None)  # it died without answering
    status, err = out[0]
    assert status == "ok" and err["type"] == "DistributedError", out
    assert err["rank"] == 1 and "stopped responding" in err["message"]
    assert err["seconds"] < 20
