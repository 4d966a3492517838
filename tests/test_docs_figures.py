"""The result tables of the README and docs/robustness.md are the files their commands wrote
(the robustness curves' ``--json docs/figures/….json``, the Fashion-MNIST reproduction's
``results/*.md``): a rerun that changes a number must change its table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_JSON = re.compile(r"--json (docs/figures/robustness_[\w.-]+\.json)")
_BITS = ("time_bits", "weight_bits")


def _value(knob: str, value: float) -> str:
    if knob in _BITS:
        return "off" if value == 0 else str(int(value))
    return f"{value:g}"


def _expected(path: str, digits: int) -> list[tuple[str, str, str, str]]:
    data = json.loads((ROOT / path).read_text())
    knob = data["knob"]
    rows = []
    for p in data["points"]:
        value = _value(knob, p["value"])
        if digits == 1 and value == "off":
            value = "0"  # the README tables keep the knob's own value
        rows.append((value, str(len(p["seeds"])), _pm(p, "accuracy", digits),
                     _pm(p, "agreement", digits)))
    return rows


def _pm(point: dict, what: str, digits: int) -> str:
    mean, std = 100 * point[f"{what}_mean"], 100 * point[f"{what}_std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f} %"


def _readme_tables() -> list[tuple[str, list[tuple[str, ...]]]]:
    """(json path, rows) for each README table that follows a command with ``--json``."""
    lines = (ROOT / "README.md").read_text().splitlines()
    found, path = [], None
    for i, line in enumerate(lines):
        m = _JSON.search(line)
        if m:
            path = m.group(1)
        elif path and line.startswith("| value | seeds |"):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(tuple(c.strip() for c in row.strip("|").split("|")))
            found.append((path, rows))
            path = None
    return found


def _doc_tables() -> list[tuple[str, list[tuple[str, ...]]]]:
    """(json path, rows) for each plain-text table of docs/robustness.md after a command."""
    text = (ROOT / "docs" / "robustness.md").read_text()
    found = []
    for m in _JSON.finditer(text):
        rest = text[m.end():]
        start = rest.index("```\n\n```\n") + len("```\n\n```\n")
        block = rest[start:rest.index("```", start)].splitlines()
        dash = next(k for k, ln in enumerate(block) if ln.startswith("----"))
        rows = []
        for ln in block[dash + 1:]:
            if ln.startswith("ReLU network accuracy"):
                break
            cells = re.split(r"\s{2,}", ln.strip())
            rows.append((cells[0], cells[1], cells[2], cells[3]))
        found.append((m.group(1), rows))
    return found


def test_every_figure_table_is_found() -> None:
    readme = {p for p, _ in _readme_tables()}
    docs = {p for p, _ in _doc_tables()}
    assert len(readme) == 5 and len(docs) == 8
    for p in readme | docs:
        assert (ROOT / p).is_file(), p


@pytest.mark.parametrize(("path", "rows"), _readme_tables(), ids=lambda v: str(v)[:40])
def test_readme_table_is_its_json(path: str, rows: list[tuple[str, ...]]) -> None:
    assert rows == _expected(path, 1)


@pytest.mark.parametrize(("path", "rows"), _doc_tables(), ids=lambda v: str(v)[:40])
def test_robustness_doc_table_is_its_json(path: str, rows: list[tuple[str, ...]]) -> None:
    assert rows == _expected(path, 2)


def test_readme_fashion_mnist_table_is_the_reproduction_files() -> None:
    """The README's zero-loss table is results/fmnist.md (what ``scripts/reproduce_fmnist.py``
    wrote), row for row."""

    def rows(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if ln.startswith("| ") and "_fmnist |" in ln]

    readme = rows((ROOT / "README.md").read_text())
    files = rows((ROOT / "results" / "fmnist.md").read_text())
    assert len(files) == 10
    assert [r for r in readme if r.split("|")[1].strip().endswith("_fmnist")][:10] == files
