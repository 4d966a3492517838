"""Fixtures of the CLI tests: the repository root as working directory, a trained tiny model
and its weights in several formats, and a CliRunner wrapper."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from tests.apps.cli.helpers import REPO, Outcome, outcome

from onespike.apps.cli import main
from onespike.apps.training import train
from onespike.data import load_dataset


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch):
    """``cli(*args)`` runs the onespike command in-process from the repository root."""
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("ONESPIKE_DEBUG", raising=False)

    def run(*args: str) -> Outcome:
        return outcome(CliRunner().invoke(main, [str(a) for a in args]))

    return run


@dataclass
class Tiny:
    model: torch.nn.Module
    safetensors: Path
    pt: Path
    calib_pt: Path
    calib_safetensors: Path
    folder: Path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """The tiny digits CNN trained for a few epochs, its weights (.safetensors and a
    torch.save state_dict) and calibration tensors (.pt and .safetensors)."""
    from tests.apps.cli.factory_models import tiny as make

    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = make()
    train(model, load_dataset("digits", "train"), epochs=6, seed=0, batch_size=64,
          progress=False)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "tiny.safetensors"))
    torch.save(state, folder / "tiny.pt")
    calib = load_dataset("digits", "train", limit=300).images
    torch.save(calib, folder / "calib.pt")
    save_file({"inputs": calib}, str(folder / "calib.safetensors"))
    return Tiny(model.eval(), folder / "tiny.safetensors", folder / "tiny.pt",
                folder / "calib.pt", folder / "calib.safetensors", folder)
