"""No implementation can hang the run, crash it silently, or turn a failure into a pass.

Hostile adapters (built on the core, each breaking one way) run through the real plugin with pytester,
serially and under ``-n 2``: a hang ends at ``--nnx-timeout`` with the stack where it was stuck, an abort
or a segfault is reported as ``crash`` against the test and clause that was running, tests that never ran
are ``not run`` (never ``pass``), and the report on disk is true at every moment -- also when the process
itself dies.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

HOSTILE = '''
import ctypes
import os
import signal
import time

from nnx_conformance.spec.adapters.core import CoreAdapter


class HangsInPartition(CoreAdapter):
    name = "hangs"

    def partition(self, module):
        while True:
            time.sleep(0.05)


class HangsInC(CoreAdapter):
    """Never returns to the interpreter's signal handling, like a hang inside C code: SIGALRM is blocked."""

    name = "hangs-in-c"

    def partition(self, module):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(600)


class SwallowsTimeouts(CoreAdapter):
    """Swallows the first two alarms (``except BaseException``), then hangs for good."""

    name = "swallows"
    swallowed = 0

    def partition(self, module):
        while True:
            try:
                time.sleep(0.05)
            except BaseException:
                if SwallowsTimeouts.swallowed >= 2:
                    raise
                SwallowsTimeouts.swallowed += 1


class AbortsInMerge(CoreAdapter):
    name = "aborts"

    def merge(self, graphdef, state):
        os.abort()


class SegfaultsInMerge(CoreAdapter):
    name = "segfaults"

    def merge(self, graphdef, state):
        ctypes.string_at(0)
'''

ROUNDTRIP = ("--nnx-clause", "graph.roundtrip", "--nnx-max-examples", "3", "-p", "no:cacheprovider")
ONE_TEST = ("-k", "test_merge_restores_an_isomorphic_graph")


@pytest.fixture
def hostile(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(hostile=HOSTILE)
    pytester.syspathinsert()
    monkeypatch.setenv("NNX_CONFORMANCE_TIMEOUT_GRACE_S", "3")
    return pytester


def _report(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "nnx.json").read_text())


def _clause(report: dict, impl: str, clause_id: str = "graph.roundtrip") -> dict:
    return report["implementations"][impl]["clauses"][clause_id]


def _run(pytester: pytest.Pytester, *args: str, timeout: float = 240) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--pyargs", "nnx_conformance.spec", f"--nnx-report={pytester.path / 'nnx.json'}", *args, timeout=timeout
    )


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_hang_fails_at_the_time_limit_with_the_stack_and_the_run_goes_on(hostile, workers) -> None:
    started = time.monotonic()
    result = _run(hostile, "--nnx-impl", "hostile:HangsInPartition", "--nnx-timeout", "2", *ROUNDTRIP, *workers)
    took = time.monotonic() - started
    report = _report(hostile)
    clause = _clause(report, "hostile:HangsInPartition")
    assert report["complete"] is True
    assert clause["status"] == "fail"
    assert len(clause["tests"]) == 4 and all(t["status"] == "fail" for t in clause["tests"])
    message = clause["tests"][0]["message"]
    assert "timed out after 2 s" in message and "in partition" in message, message
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert took < 4 * 2 + 45, took  # four properties at 2 s each, plus start-up


def test_a_swallowed_timeout_fires_again(hostile) -> None:
    _run(hostile, "--nnx-impl", "hostile:SwallowsTimeouts", "--nnx-timeout", "1", *ROUNDTRIP, *ONE_TEST)
    (test,) = _clause(_report(hostile), "hostile:SwallowsTimeouts")["tests"]
    assert test["status"] == "fail" and "the first SpecTimeout was swallowed" in test["message"], test


@pytest.mark.skipif(sys.platform == "win32", reason="SIGALRM")
def test_a_hang_in_c_ends_the_process_and_the_report_names_the_test(hostile) -> None:
    result = _run(hostile, "--nnx-impl", "hostile:HangsInC", "--nnx-timeout", "1", *ROUNDTRIP, *ONE_TEST)
    assert result.ret == 70
    report = _report(hostile)
    (test,) = _clause(report, "hostile:HangsInC")["tests"]
    assert test["status"] == "crash" and "did not return to Python" in test["message"], test
    assert _clause(report, "hostile:HangsInC")["status"] == "crash"


@pytest.mark.parametrize("adapter", ["AbortsInMerge", "SegfaultsInMerge"])
def test_a_serial_crash_leaves_a_report_that_says_crash_and_incomplete(hostile, adapter) -> None:
    result = _run(hostile, "--nnx-impl", f"hostile:{adapter}", *ROUNDTRIP)
    assert result.ret not in (0, 1), result.ret  # the interpreter died
    report = _report(hostile)
    assert report["complete"] is False
    assert len(report["running"]) == 1
    clause = _clause(report, f"hostile:{adapter}")
    assert clause["status"] == "crash"
    statuses = sorted(t["status"] for t in clause["tests"])
    assert statuses == ["crash", "not run", "not run", "not run"], statuses
    assert (hostile.path / "nnx.md").read_text().startswith("# NNX conformance\n\n**Incomplete run**")


@pytest.mark.parametrize("adapter", ["AbortsInMerge", "SegfaultsInMerge"])
def test_an_xdist_crash_is_recorded_against_its_clause(hostile, adapter) -> None:
    _run(hostile, "--nnx-impl", f"hostile:{adapter}", *ROUNDTRIP, "-n", "2")
    report = _report(hostile)
    assert report["complete"] is True
    clause = _clause(report, f"hostile:{adapter}")
    assert clause["status"] == "crash"
    assert {t["status"] for t in clause["tests"]} <= {"crash", "not run"}
    assert any(t["status"] == "crash" and "crashed" in t["message"] for t in clause["tests"])
    assert "gw" not in json.dumps(report), "worker ids make the report differ between runs"


def test_tests_that_never_ran_are_not_run_and_never_pass(hostile) -> None:
    _run(
        hostile,
        "--nnx-impl", "core,hostile:AbortsInMerge",
        "--nnx-clause", "graph.roundtrip", "--nnx-clause", "state.union-laws",
        "--nnx-max-examples", "3", "-p", "no:cacheprovider", "-n", "2", "--max-worker-restart", "0",
    )
    report = _report(hostile)
    statuses = [t["status"] for impl in report["implementations"].values()
                for clause in impl["clauses"].values() for t in clause["tests"]]
    assert "not run" in statuses and "crash" in statuses
    for impl in report["implementations"].values():
        for clause in impl["clauses"].values():
            if any(t["status"] in ("not run", "crash") for t in clause["tests"]):
                assert clause["status"] in ("not run", "crash"), clause


def test_identical_runs_give_identical_json(hostile) -> None:
    args = ("--nnx-impl", "core", "--nnx-clause", "rng.reproducible", "--nnx-max-examples", "3", "-n", "2")
    _run(hostile, *args, "-p", "no:cacheprovider")
    first = (hostile.path / "nnx.json").read_text()
    _run(hostile, *args, "-p", "no:cacheprovider")
    assert (hostile.path / "nnx.json").read_text() == first
