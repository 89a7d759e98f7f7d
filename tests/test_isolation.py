"""run_isolated(): a child interpreter computes on the parent's JAX backend, never on a forced CPU.

A check moved into a child (deep chains, hash seeds) must judge the implementation on the platform the rest
of the run uses: on a GPU machine the child runs on the GPU. The platform comes from ``env``, else from
the parent's ``JAX_PLATFORMS``, else from the backend the parent's JAX actually uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import pytest

from nnx_conformance.spec import isolation
from nnx_conformance.spec.adapters.core import CoreAdapter

# tests/ is on sys.path (tests/conftest.py), and the child inherits it: this module imports there by name.
_HERE = Path(__file__).stem


def child_backend(adapter: Any) -> dict[str, Any]:
    """Runs in the child: the backend its JAX chose, and its devices' platform."""
    return {"backend": jax.default_backend(), "platform": jax.devices()[0].platform}


def test_child_reports_the_parents_backend(monkeypatch):
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)  # the parent's backend must travel by itself
    res = isolation.run_isolated(CoreAdapter(), f"{_HERE}:child_backend", timeout=120)
    assert not res.crashed and res.error is None, res.describe()
    assert res.value == {"backend": jax.default_backend(), "platform": jax.devices()[0].platform}


class _Captured:
    def __init__(self) -> None:
        self.env: dict[str, str] = {}

    def run(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.env = kwargs["env"]
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps({"value": "ok"}) + "\n", stderr="")


@pytest.fixture
def captured(monkeypatch) -> _Captured:
    cap = _Captured()
    monkeypatch.setattr(isolation.subprocess, "run", cap.run)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    return cap


def test_an_accelerator_backend_is_passed_on_not_replaced_by_cpu(captured, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert isolation.run_isolated(CoreAdapter(), f"{_HERE}:child_backend").value == "ok"
    assert captured.env["JAX_PLATFORMS"] == "gpu"
    assert captured.env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # the parent already holds the GPU


def test_an_explicit_platform_wins(captured, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    isolation.run_isolated(CoreAdapter(), f"{_HERE}:child_backend", env={"JAX_PLATFORMS": "cpu"})
    assert captured.env["JAX_PLATFORMS"] == "cpu"  # e.g. sharding's forced 8 host CPU devices
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    isolation.run_isolated(CoreAdapter(), f"{_HERE}:child_backend")
    assert captured.env["JAX_PLATFORMS"] == "cuda,cpu"  # the parent's own setting, fallbacks included


def test_without_jax_in_the_parent_the_child_chooses_as_the_parent_would(captured, monkeypatch):
    monkeypatch.delitem(sys.modules, "jax")
    isolation.run_isolated(CoreAdapter(), f"{_HERE}:child_backend")
    assert "JAX_PLATFORMS" not in captured.env
