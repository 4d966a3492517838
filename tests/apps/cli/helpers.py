"""Shared constants and checks of the CLI tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from click.testing import Result

REPO = Path(__file__).resolve().parents[3]
TINY = "tests.apps.cli.factory_models:tiny"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


def outcome(result: Result) -> Outcome:
    return Outcome(result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(out: Outcome, *words: str, code: int | None = None) -> str:
    """Exit code ≠ 0, exactly one ``error:`` line (the last one), no traceback."""
    assert out.code != 0, out
    if code is not None:
        assert out.code == code, out
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], out.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]
