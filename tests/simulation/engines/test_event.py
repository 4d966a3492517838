"""The event engine's step. ``delayed_values``: the values a delayed edge delivers,
``t_min − ((t_max(s) − v) + d)``, with arrivals at ``t_min`` that rounding put a few ulps
after it snapped to ``x = 0`` and nothing else changed (genuine late arrivals, silent
``−inf``, NaN). The model-A step's report of finite values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.simulation.engines.bounds.test_bounds import converted_layers, stress_inputs

from onespike.simulation.engines import closed
from onespike.simulation.engines.common import model_a_step
from onespike.simulation.engines.event import EventEngine, delayed_values
from onespike.simulation.neurons import AlphaNeuron
from onespike.simulation.ops import positive_part


def reference(v: torch.Tensor, t_max_s: float, d: float, t_min: float) -> torch.Tensor:
    """The rule written out: the arrival value, then every negative within 8 ulps of
    max(1, |t_min|) set to zero."""
    x = t_min - ((t_max_s - v) + d)
    tol = 8.0 * torch.finfo(x.dtype).eps * max(1.0, abs(t_min))
    return torch.where((x < 0) & (x > -tol), torch.zeros_like(x), x)


@settings(max_examples=80, deadline=None)
@given(t_max_s=st.floats(0.5, 50.0), d=st.floats(0.01, 5.0), seed=st.integers(0, 10_000),
       late=st.booleans(), special=st.booleans(),
       dtype=st.sampled_from([torch.float64, torch.float32]))
def test_delayed_values_follow_the_rule(t_max_s: float, d: float, seed: int, late: bool,
                                        special: bool, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(seed)
    t_min = t_max_s + d  # a spike at the source's t_max arrives at t_min
    v = torch.rand(200, generator=g, dtype=torch.float64) * t_max_s
    v[:40] = 0.0  # spikes at t_max: x = 0 up to rounding
    if late:  # genuine late arrivals: spikes after the source's window, by more than the
        # snapping tolerance (≤ 8·eps·max(1, t_min): 5e-5 in float32 here; a spike later by
        # less is a rounding by the rule, which `reference` checks)
        v[40:50] = -(0.01 + torch.rand(10, generator=g, dtype=torch.float64))
    v = v.to(dtype)
    if special:
        v[50] = float("-inf")
        v[51] = float("nan")
    src = v.clone()
    got = delayed_values(src, t_max_s, d, t_min)
    want = reference(v, t_max_s, d, t_min)
    assert torch.equal(torch.nan_to_num(src, nan=7.0), torch.nan_to_num(v, nan=7.0))  # read only
    assert torch.equal(torch.nan_to_num(got, nan=7.0), torch.nan_to_num(want, nan=7.0))
    tol = 8.0 * torch.finfo(dtype).eps * max(1.0, t_min)
    assert bool(((got[:40] >= 0) & (got[:40] < tol)).all())  # the arrivals at t_min
    if late:
        assert bool((got[40:50] < 0).all())  # late arrivals stay late


def test_no_delay_is_the_values_themselves() -> None:
    v = torch.rand(5, dtype=torch.float64)
    assert delayed_values(v, 3.0, 0.0, 3.0) is v


def test_rounding_negatives_snap_and_late_arrivals_stay() -> None:
    """Only rounding negatives (within the tolerance) become 0: alone, and beside a genuine
    late arrival."""
    v = torch.tensor([0.0, -1e-15, -3e-16, 0.5], dtype=torch.float64)
    assert bool((2.5 - ((2.0 - v[:3]) + 0.5) < 0).any())  # rounding negatives to snap
    x = delayed_values(v.clone(), 2.0, 0.5, 2.5)
    assert x[:3].tolist() == [0.0, 0.0, 0.0] and x[3] == 2.5 - ((2.0 - 0.5) + 0.5)
    v2 = torch.cat([v, torch.tensor([-0.25], dtype=torch.float64)])
    x2 = delayed_values(v2.clone(), 2.0, 0.5, 2.5)
    assert x2[:3].tolist() == [0.0, 0.0, 0.0] and x2[4] == 2.5 - ((2.0 + 0.25) + 0.5) < 0
    assert torch.equal(x2, reference(v2, 2.0, 0.5, 2.5))


@pytest.mark.parametrize("use_exact", [True, False])
@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), float("-inf")])
def test_model_a_step_tells_finite_values(bad: float | None, use_exact: bool) -> None:
    """The step's ``finite`` flag (which lets the driver skip its scan) is set only when every
    value is finite: ReLU(z) of a z with NaN or +inf is not; a z with −inf is reported
    conservatively as not finite too."""
    layer = converted_layers(0, "cnn")[0]
    x = stress_inputs(layer, 3, 0, 3.0)
    z = layer.z([x])
    if bad is not None:
        z.view(-1)[5] = bad
    step = model_a_step(layer, [x], z, use_exact=use_exact, late_possible=False)
    assert step.finite == (bad is None)
    if step.finite:
        assert bool(torch.isfinite(step.values).all())


def test_model_a_inputs_are_clipped_only_where_needed() -> None:
    """Inputs above ``B_in`` (spikes before the population integrates) act as if they
    arrived at ``t_min − B_in``: clipped into a new map; inputs within it are passed on as
    they are (no copy), and the event step does not write them."""
    model = AlphaNeuron()
    x = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    assert model.clip_inputs(x, 1.0) is x
    nan = torch.tensor([[0.5, float("nan"), 2.0]], dtype=torch.float64)
    assert model.clip_inputs(nan, 1.0)[0, 2] == 1.0  # a NaN does not hide the entry above
    high = torch.tensor([[0.25, 1.5, 3.0]], dtype=torch.float64)
    clipped = model.clip_inputs(high, 1.0)
    assert clipped is not high and clipped.tolist() == [[0.25, 1.0, 1.0]]
    assert high.tolist() == [[0.25, 1.5, 3.0]]
    layer = converted_layers(0, "cnn")[1]
    xs = stress_inputs(layer, 3, 0, layer.B_in).clamp_max(layer.B_in)
    before = xs.clone()
    engine = EventEngine()
    engine.hidden(layer, [xs], gain=None, perturbed=False)
    assert torch.equal(xs, before)


def test_closed_engine_copies_inputs_only_to_change_them() -> None:
    """The closed engine reads ``max(x, 0)``: ``x`` itself when nothing is negative, a new
    clamped map otherwise (the input unchanged); the certified step leaves its inputs as
    they were."""
    x = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    assert positive_part(x) is x
    nan = torch.tensor([[float("nan"), -0.5]], dtype=torch.float64)
    assert positive_part(nan)[0, 1] == 0.0  # a NaN does not hide the negative entry
    neg = torch.tensor([[-0.5, 0.5, float("-inf")]], dtype=torch.float64)
    assert positive_part(neg).tolist() == [[0.0, 0.5, 0.0]]
    assert neg.tolist() == [[-0.5, 0.5, float("-inf")]]
    layer = converted_layers(0, "cnn")[1]
    xs = stress_inputs(layer, 3, 0, layer.B_in)
    before = xs.clone()
    closed.ClosedEngine().hidden(layer, [xs], gain=None, perturbed=False)
    assert torch.equal(xs, before)
