"""The ``impl`` fixture decides everything, whoever provides it; the plugin leaves other tests alone.

A library author overrides ``impl`` in a ``conftest.py`` and collects the spec beside it
(``from nnx_conformance.spec.suite import *``). Their adapter -- not the default ``core`` -- must then
name the tests in the report, decide the capability skips and pick the known deviations. And the plugin is
active in every pytest run where the package is installed, so ``--nnx-max-examples`` must change the
spec's budget and nothing else.
"""

from __future__ import annotations

import json

import pytest

MYLIB = '''
from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.spec.adapters.core import CoreAdapter


class MyLib(CoreAdapter):
    """The core without layers, under another name: what a layers-less library's adapter looks like."""

    name = "mylib"
    capabilities = Capabilities(layers=False)
    layers = None


class MyLibClaimingLayers(MyLib):
    capabilities = Capabilities()
'''

CONFTEST = """
import os

import pytest
from mylib_adapter import MyLib, MyLibClaimingLayers


@pytest.fixture(scope="session")
def impl():
    return MyLibClaimingLayers() if os.environ.get("MYLIB_BAD") else MyLib()
"""

SPEC_HERE = "from nnx_conformance.spec.suite import *  # noqa: F403\n"

UNRELATED = """
import json
import pathlib

from hypothesis import given, settings, strategies as st

CALLS = {"own": 0, "default": 0}


@settings(max_examples=7, database=None)
@given(st.integers())
def test_own_settings(x):
    CALLS["own"] += 1


@settings(database=None)
@given(st.integers())
def test_default_settings(x):
    CALLS["default"] += 1


def test_zz_record():
    pathlib.Path("calls.json").write_text(json.dumps({**CALLS, "profile": settings.default.max_examples}))
"""

SELECT = ("--nnx-clause", "graph.roundtrip", "--nnx-clause", "layers.", "--nnx-max-examples", "3")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(mylib_adapter=MYLIB, conftest=CONFTEST, test_nnx_spec=SPEC_HERE, test_unrelated=UNRELATED)
    pytester.syspathinsert()
    return pytester


def test_override_names_skips_and_reports_as_the_users_adapter(project: pytest.Pytester) -> None:
    report = project.path / "nnx.json"
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rs", *SELECT, f"--nnx-report={report}", "test_nnx_spec.py"
    )
    output = result.stdout.str()
    assert "[core]" not in output
    result.stdout.fnmatch_lines(["*mylib does not claim capability layers (clause layers.*"])
    data = json.loads(report.read_text())
    assert list(data["implementations"]) == ["mylib"], data["implementations"].keys()
    clauses = data["implementations"]["mylib"]["clauses"]
    assert clauses["graph.roundtrip"]["status"] == "pass"
    layer_clauses = {c: v["status"] for c, v in clauses.items() if c.startswith("layers.")}
    assert layer_clauses and set(layer_clauses.values()) == {"skip"}, layer_clauses
    assert data["implementations"]["mylib"]["adapter"]["capabilities"]["layers"] is False
    assert result.ret == pytest.ExitCode.OK


def test_override_gets_its_expectations_by_adapter_name(project: pytest.Pytester) -> None:
    (project.path / "mylib.txt").write_text("graph.roundtrip: pretend it deviates\n")
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", *SELECT, "--nnx-expectations", "mylib=mylib.txt", "test_nnx_spec.py"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("xpassed", 0) >= 4 and "failed" not in outcomes, outcomes


def test_override_expectations_for_no_implementation_of_the_run_fail_the_run(project: pytest.Pytester) -> None:
    (project.path / "other.txt").write_text("graph.roundtrip: x\n")
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", *SELECT, "--nnx-expectations", "otherlib=other.txt", "test_nnx_spec.py"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*--nnx-expectations names no implementation of this run: otherlib=other.txt*"])


def test_invalid_override_adapter_errors_with_the_fix(project: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("MYLIB_BAD", "1")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *SELECT, "test_nnx_spec.py")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*adapter 'mylib' (the `impl` fixture (test_nnx_spec.py)): 1 problem with the adapter protocol*",
         "- layers is None but capabilities.layers is true: either disclaim layers*"]
    )


def test_plugin_leaves_other_hypothesis_tests_alone(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *SELECT)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    calls = json.loads((project.path / "calls.json").read_text())
    assert calls["own"] == 7, calls
    assert calls["default"] == calls["profile"], calls
