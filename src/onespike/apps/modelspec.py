"""Resolve what a user names on the command line: models, weights, calibration data, ranges.

Every failure raises :class:`~onespike.errors.ModelSpecError` (a ``ValueError``; also
known as ``SpecError``) whose one-line message says what
is wrong and how to fix it; nothing here unpickles arbitrary objects (``.pt`` weights are read
with ``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from onespike.errors import ModelSpecError

__all__ = [
    "ModelSpecError",
    "SpecError",
    "load_model",
    "load_tensor_file",
    "load_weights",
    "normalization_range",
    "parse_values",
]


#: Former name of :class:`onespike.errors.ModelSpecError`.
SpecError = ModelSpecError


MODEL_SPEC_HELP = (
    "give pkg.module:factory (a callable returning an nn.Module, or an nn.Module object), "
    "path/to/file.py:factory, a TorchScript .pt file (torch.jit.script of an nn.Sequential), "
    "a torch.export .pt2 file, or a built-in model name"
)


# -- models ---------------------------------------------------------------------------------
def _import_module(name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # like `python -m`: modules next to the user are importable
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise SpecError(
                f"cannot import module {name!r}: no module named {exc.name!r} (run from the "
                f"directory that contains it, add it to PYTHONPATH, or install it)"
            ) from None
        raise SpecError(f"importing module {name!r} failed: {exc}") from None
    except Exception as exc:
        raise SpecError(f"importing module {name!r} failed: {type(exc).__name__}: {exc}"
                        ) from None


def _import_file(path: Path) -> Any:
    import importlib.util

    if not path.is_file():
        raise SpecError(f"model file {path} does not exist")
    name = f"_onespike_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise SpecError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def _from_factory(spec: str) -> nn.Module:
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise SpecError(f"--model {spec!r}: expected module:factory; {MODEL_SPEC_HELP}")
    module = _import_file(Path(where)) if where.endswith(".py") else _import_module(where)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_")
                           and callable(getattr(module, n)))
            raise SpecError(f"module {where!r} has no attribute {attr!r} (callables there: "
                            f"{', '.join(names[:12]) or 'none'})")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise SpecError(f"{spec} is a {type(obj).__name__}, not a callable that returns an "
                        "nn.Module")
    try:
        model = obj()
    except TypeError as exc:
        raise SpecError(f"calling {spec}() failed: {exc} (the factory must work without "
                        "arguments; wrap it in a function that passes them)") from None
    except Exception as exc:
        raise SpecError(f"calling {spec}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise SpecError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def load_model(spec: str, weights: str | None = None) -> tuple[nn.Module, str]:
    """Build the model named by ``spec`` (see ``MODEL_SPEC_HELP``), load ``weights`` into it
    and return it in eval mode with a short description of where it came from.

    A built-in model name without ``weights`` loads its shipped pretrained weights.
    """
    from onespike.apps.rebuild import (
        RebuildError,
        from_exported,
        from_torchscript,
        is_torchscript_archive,
    )

    path = Path(spec)
    try:
        if spec.endswith(".pt2"):
            if not path.is_file():
                raise SpecError(f"model file {spec} does not exist")
            model, origin = from_exported(spec), f"torch.export program {spec}"
        elif path.suffix in (".pt", ".pth", ".ts", ".jit", ".zip") and ":" not in spec:
            if not path.is_file():
                raise SpecError(f"model file {spec} does not exist")
            if not is_torchscript_archive(spec):
                raise SpecError(
                    f"{spec} is not a TorchScript file; a state_dict goes to --weights, "
                    "with --model module:factory naming the architecture")
            model, origin = from_torchscript(spec), f"TorchScript {spec}"
        elif ":" in spec:
            model, origin = _from_factory(spec), spec
        else:
            model, origin = _builtin(spec, weights is None), f"built-in {spec}"
    except RebuildError as exc:
        raise SpecError(str(exc)) from None
    if weights is not None:
        load_weights(model, weights)
        origin += f" + {weights}"
    return model.eval(), origin


def _builtin(name: str, pretrained: bool) -> nn.Module:
    from onespike.models import MODEL_NAMES, PRETRAINED_NAMES, get_model, load_pretrained

    key = name.strip().lower().replace("-", "_")
    if key not in MODEL_NAMES:
        raise SpecError(f"--model {name!r}: no such file or built-in model; {MODEL_SPEC_HELP} "
                        f"(built-in: {', '.join(MODEL_NAMES)})")
    if not pretrained:
        return get_model(key)
    if key not in PRETRAINED_NAMES:
        raise SpecError(f"built-in model {key!r} ships without weights; pass --weights")
    return load_pretrained(key)


# -- weights --------------------------------------------------------------------------------
def _read_state(path: str) -> Mapping[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"weights file {path} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as exc:
            raise SpecError(f"cannot read weights {path} as safetensors: {exc}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        raise SpecError(
            f"weights {path} hold pickled Python objects that are not loaded for safety "
            f"(weights_only=True: {first}); save model.state_dict() with torch.save or "
            "safetensors instead") from None
    except Exception as exc:
        raise SpecError(f"cannot read weights {path}: {type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                        ) from None
    if isinstance(state, nn.Module):  # pragma: no cover - weights_only refuses modules
        return state.state_dict()
    if isinstance(state, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = state.get(key)
            if isinstance(inner, Mapping) and inner and all(
                    isinstance(v, Tensor) for v in inner.values()):
                return inner
        return state
    raise SpecError(f"weights {path} hold a {type(state).__name__}, not a state_dict")


def load_weights(model: nn.Module, path: str) -> None:
    """Load a ``state_dict`` file (``.safetensors`` or a ``torch.save`` file read with
    ``weights_only=True``) into ``model``, strictly: every key and shape must match."""
    state = dict(_read_state(path))
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise SpecError(f"weights {path}: entry {bad[0]!r} is not a tensor (not a state_dict)")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs model {list(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected key(s) ({', '.join(extra[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es) ({'; '.join(shapes[:2])})")
        raise SpecError(f"weights {path} do not match the model: {', '.join(parts)}; check "
                        "that --model builds the architecture the weights were trained with")
    model.load_state_dict(state, strict=True)


# -- data -----------------------------------------------------------------------------------
def load_tensor_file(path: str) -> Tensor:
    """A tensor of model inputs from a ``.pt`` (``weights_only=True``) or ``.safetensors``
    file; a file holding several tensors must name one ``inputs``, ``images`` or ``x``."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"calibration file {path}: file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(path)
        except Exception as exc:
            raise SpecError(f"cannot read {path} as safetensors: {exc}") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise SpecError(f"cannot read tensor file {path} (weights_only=True): "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
                            ) from None
    if isinstance(obj, Mapping):
        if len(obj) == 1:
            obj = next(iter(obj.values()))
        else:
            for key in ("inputs", "images", "x"):
                if key in obj:
                    obj = obj[key]
                    break
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], Tensor):
        obj = obj[0]
    if not isinstance(obj, Tensor):
        raise SpecError(f"{path} holds no input tensor (store one tensor, or a dict with key "
                        "'inputs', 'images' or 'x')")
    if not obj.is_floating_point():
        obj = obj.float()
    return obj


def parse_values(text: str, what: str) -> list[float]:
    """``"0.5"`` or ``"0.49,0.48,0.45"`` (one value per channel) → list of floats."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise SpecError(f"{what} {text!r}: expected a number or a comma-separated list "
                        "(one per channel)") from None
    if not values:
        raise SpecError(f"{what} is empty")
    return values


def normalization_range(mean: Sequence[float], std: Sequence[float]
                        ) -> tuple[list[float], list[float]]:
    """Input range of ``Normalize(mean, std)`` applied to pixels in ``[0, 1]``."""
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise SpecError(f"--normalize: {len(mean)} mean value(s) but {len(std)} std value(s)")
    n = max(len(mean), len(std))
    m = list(mean) * n if len(mean) == 1 else list(mean)
    s = list(std) * n if len(std) == 1 else list(std)
    if any(v <= 0 for v in s):
        raise SpecError(f"--normalize: std must be > 0, got {s}")
    return [(0 - a) / b for a, b in zip(m, s)], [(1 - a) / b for a, b in zip(m, s)]
