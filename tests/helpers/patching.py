"""Mutation tests on a package of implementation modules: a private name (a margin constant, a
helper) is imported by several modules, and a mutation must reach every one of them."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

import pytest


def patch_package(monkeypatch: pytest.MonkeyPatch, package: ModuleType, name: str,
                  value: Any) -> list[str]:
    """Set ``name`` to ``value`` in every module of ``package`` (and the package itself) that
    binds it to the same object as its defining module; returns the modules patched (a test
    can check it reached the one it means). Raises if no module holds ``name``."""
    mods = [package] + [importlib.import_module(f"{package.__name__}.{m.name}")
                        for m in pkgutil.iter_modules(package.__path__)]
    holders = [m for m in mods if name in vars(m)]
    if not holders:
        raise AttributeError(f"no module of {package.__name__} holds {name!r}")
    original = vars(holders[0])[name]
    patched = []
    for m in holders:
        if vars(m)[name] is original:
            monkeypatch.setattr(m, name, value)
            patched.append(m.__name__)
    return patched
