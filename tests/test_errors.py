"""One error tree: every exception onespike raises on purpose derives from OnespikeError and
keeps its facts as attributes; front ends render them in their own words."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
from pathlib import Path

import pytest

import onespike
from onespike import errors
from onespike.errors import (
    ArgumentError,
    DatasetNotFoundError,
    OnespikeError,
    UnsupportedOperationError,
)

SRC = Path(onespike.__file__).resolve().parent
#: Raised by design outside the tree: abstract methods and module ``__getattr__``.
ALLOWED = {"NotImplementedError"}


def _modules() -> list[str]:
    names = ["onespike"]
    for info in pkgutil.walk_packages([str(SRC)], prefix="onespike."):
        names.append(info.name)
    return names


def test_every_exception_class_of_the_package_is_in_the_tree() -> None:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("onespike")):
                found.append(obj)
                assert issubclass(obj, OnespikeError), f"{obj.__module__}.{obj.__qualname__}"
    assert len(set(found)) >= 15


def _raised_names(path: Path) -> list[tuple[int, str, str]]:
    """(line, raised class name, enclosing function) of every ``raise Name(...)``."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Raise) and child.exc is not None:
                target = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(target, ast.Name):
                    out.append((child.lineno, target.id, func))
                elif isinstance(target, ast.Attribute):
                    out.append((child.lineno, target.attr, func))
            visit(child, f)

    visit(tree, "")
    return out


def test_every_raise_uses_an_onespike_error() -> None:
    bad = []
    builtin = {n for n in dir(__builtins__) if n.endswith(("Error", "Exception"))} | {
        "KeyError", "IndexError", "StopIteration"}
    for path in sorted(SRC.rglob("*.py")):
        for line, name, func in _raised_names(path):
            if name in ALLOWED or (func == "__getattr__" and name == "AttributeError"):
                continue
            if name in builtin:
                bad.append(f"{path.relative_to(SRC)}:{line} raise {name}")
    assert not bad, "\n".join(bad)


def test_facts_are_attributes_and_rendering_spells_parameters() -> None:
    e = DatasetNotFoundError("no data in /x; pass {root} as the folder", params=("root",),
                             path=Path("/x"))
    assert str(e) == "no data in /x; pass root= as the folder"
    assert e.render(lambda p: f"--{p} DIR") == "no data in /x; pass --root DIR as the folder"
    assert e.path == Path("/x") and isinstance(e, FileNotFoundError)
    u = UnsupportedOperationError("Softmax", "head.act", "not a ReLU", "remove it")
    assert (u.operation, u.where, u.reason, u.hint) == ("Softmax", "head.act", "not a ReLU",
                                                        "remove it")
    a = ArgumentError("limit must be >= 0", argument="limit")
    assert a.argument == "limit" and isinstance(a, ValueError)


@pytest.mark.parametrize("exc", [
    DatasetNotFoundError("missing {root}", params=("root",), path="/p"),
    UnsupportedOperationError("Softmax", "head", "why", "fix"),
    errors.InputRangeError("x out of range", tensor="x", observed=(0.0, 2.0)),
    ArgumentError("bad", argument="a"),
])
def test_errors_survive_pickling(exc: OnespikeError) -> None:
    """Errors cross process boundaries (benchmark children, distributed ranks) intact."""
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc) and back.facts == exc.facts


def test_real_errors_carry_facts(tmp_path: Path) -> None:
    from onespike.data import load_dataset

    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root=str(tmp_path / "nowhere"))
    assert info.value.path == tmp_path / "nowhere" and "root=" in str(info.value)
    with pytest.raises(ArgumentError) as info2:
        load_dataset("cifar10")
    assert info2.value.argument == "root"
