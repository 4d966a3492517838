"""Sanity of the zoo of non-chain models in ``tests/helpers/dag_nets.py`` (not of conversion):
each model runs forward, is ``torch.fx.symbolic_trace``-able, and really is a DAG."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.fx
from tests.helpers.dag_nets import ZOO
from torch import nn

ADDS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub,
        torch.cat, torch.concat}
ADD_METHODS = {"add", "add_", "sub", "sub_"}


def _is_merge(node: torch.fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in ADDS
    return node.op == "call_method" and node.target in ADD_METHODS


def test_zoo_is_large_enough() -> None:
    assert len(ZOO) >= 20
    for required in ("resnet_basic", "resnet_bottleneck", "cifar_option_a", "preact_resnet",
                     "mobilenet_v2", "densenet", "inception", "flatten_concat_linear",
                     "multi_consumer", "relu6_module", "hardtanh", "clamp"):
        assert required in ZOO


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model(name: str) -> None:
    torch.manual_seed(0)
    model, shape = ZOO[name]()
    assert isinstance(model, nn.Module) and isinstance(shape, tuple)
    assert not model.training
    assert all(p.dtype == torch.float64 for p in model.parameters())
    x = torch.rand(8, *shape, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    assert y.shape[0] == 8 and y.dtype == torch.float64
    assert torch.isfinite(y).all()
    assert y.std() > 0, "constant output: the model is degenerate"
    # small enough for the test suite (a size, not a wall-clock limit that flakes under load)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000

    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), y, rtol=0, atol=0)
    nodes = list(traced.graph.nodes)
    fan_out = [n for n in nodes if n.op != "output" and len(n.users) > 1]
    merges = [n for n in nodes if _is_merge(n)]
    assert fan_out or merges, f"{name} is a chain"


def test_zoo_is_seeded_by_caller() -> None:
    for name in ("resnet_basic", "densenet", "inception"):
        torch.manual_seed(3)
        a, _ = ZOO[name]()
        torch.manual_seed(3)
        b, _ = ZOO[name]()
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
