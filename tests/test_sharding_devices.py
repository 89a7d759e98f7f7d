"""The device plumbing behind ``sharding.placement``: mesh shapes, the forced-device child, skips.

The clause's verdicts on implementations are the spec run's business (and the mutants' in
``tests/mutants/sharding.py``); these tests pin the parts that decide *where* it runs: which mesh a device
count gets, that a child without the forced devices turns into a skip with its reason rather than a pass
or a failure, that a crashed child fails loudly, and that a state whose pytree does not expose its
Variables is still placed (entry by entry).
"""

from __future__ import annotations

import jax
import pytest

from nnx_conformance.spec.isolation import IsolatedResult
from nnx_conformance.spec.properties import sharding


@pytest.mark.parametrize(
    ("devices", "shape"),
    [(1, (1, 1)), (2, (1, 2)), (4, (1, 4)), (6, (3, 2)), (8, (2, 4)), (16, (4, 4))],
)
def test_mesh_uses_every_device_with_model_up_to_four(devices, shape):
    assert sharding._mesh_shape(devices) == shape
    data, model = shape
    assert data * model == devices


def test_forced_mode_without_the_forced_devices_returns_the_reason():
    if jax.default_backend() == "cpu" and jax.device_count() == sharding.FORCED_DEVICES:
        pytest.skip("this process itself has the forced device count")
    from nnx_conformance.spec.adapters.core import CoreAdapter

    result = sharding._placement_check(CoreAdapter(), "forced")
    assert "skip" in result
    assert f"could not force {sharding.FORCED_DEVICES} host CPU devices" in result["skip"]
    assert f"{jax.device_count()} {jax.default_backend()} device(s)" in result["skip"]


def _fake_child(monkeypatch, result: IsolatedResult) -> list[dict]:
    calls: list[dict] = []

    def fake(adapter, func, *args, env=None, timeout=300):
        calls.append({"func": func, "args": args, "env": env})
        return result

    monkeypatch.setattr(sharding, "run_isolated", fake)
    return calls


def test_forced_run_skips_with_the_childs_reason(monkeypatch):
    calls = _fake_child(monkeypatch, IsolatedResult(0, value={"skip": "could not force 8 host CPU devices"}))
    with pytest.raises(pytest.skip.Exception, match="could not force 8 host CPU devices"):
        sharding.test_placement_on_forced_cpu_devices(impl=object())
    (call,) = calls
    assert call["func"].endswith(":_placement_check") and call["args"] == ("forced",)
    assert "--xla_force_host_platform_device_count=8" in call["env"]["XLA_FLAGS"]
    assert call["env"]["JAX_PLATFORMS"] == "cpu"


def test_forced_run_keeps_the_users_xla_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    calls = _fake_child(monkeypatch, IsolatedResult(0, value={"skip": "x"}))
    with pytest.raises(pytest.skip.Exception):
        sharding.test_placement_on_forced_cpu_devices(impl=object())
    flags = calls[0]["env"]["XLA_FLAGS"].split()
    assert flags == ["--xla_cpu_enable_fast_math=false", "--xla_force_host_platform_device_count=8"]


def test_crashed_child_fails_with_its_stderr(monkeypatch):
    _fake_child(monkeypatch, IsolatedResult(-11, stderr="Fatal Python error: Segmentation fault"))
    with pytest.raises(AssertionError, match=r"crashed(.|\n)*Segmentation fault"):
        sharding.test_placement_on_forced_cpu_devices(impl=object())


def test_failures_from_the_child_are_listed(monkeypatch):
    value = {
        "backend": "cpu",
        "devices": 8,
        "mesh": [2, 4],
        "cases": 4,
        "failures": ["Linear(4, 8, sharding=(None, 'model')) on mesh {'data': 2, 'model': 4}: boom"],
    }
    _fake_child(monkeypatch, IsolatedResult(0, value=value))
    with pytest.raises(AssertionError, match=r"8 forced CPU devices.*1 problem\(s\):\s+Linear\(4, 8"):
        sharding.test_placement_on_forced_cpu_devices(impl=object())


def test_a_state_whose_pytree_skips_its_variables_is_placed_entry_by_entry():
    """``StatePytreeDropsSharding``'s state flattens straight to values: ``device_put`` with a prefix of
    per-Variable shardings cannot apply, so placement goes through ``make_state`` and must still pass."""
    from mutants.sharding import StatePytreeDropsSharding

    result = sharding._placement_check(StatePytreeDropsSharding(), "real")
    assert result["failures"] == []
    assert result["cases"] == len(sharding.LINEAR_ANNOTATIONS) + 1
