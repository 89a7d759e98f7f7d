"""pytest plugin used by ``suite_speed.py``: per-test duration, clause and Hypothesis example counts.

Loaded with ``-p _suite_stats`` (``benchmarks/`` on ``PYTHONPATH``); writes JSON to ``$NNX_SUITE_STATS`` at
the end of the session. Works under pytest-xdist: everything is read from the test reports, which the
workers send to the controller (``user_properties`` carries the clause id set by the suite's plugin, and
Hypothesis' own plugin attaches its statistics text to the teardown report).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

_STATS_KEY = "_hypothesis_stats"  # hypothesis' _hypothesis_pytestplugin.STATS_KEY
_CASES = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid")
_PHASE = re.compile(r"during (\w+) phase \(([\d.]+) seconds\)")

_tests: dict[str, dict[str, Any]] = {}


def _entry(report: pytest.TestReport) -> dict[str, Any]:
    entry = _tests.get(report.nodeid)
    if entry is None:
        props = dict(report.user_properties)
        entry = _tests[report.nodeid] = {
            "clause": props.get("nnx_clause"),
            "impl": props.get("nnx_impl"),
            "outcome": None,
            "setup_s": 0.0,
            "call_s": 0.0,
            "teardown_s": 0.0,
            "examples": None,
            "phases": {},
        }
    return entry


def parse_stats(text: str) -> tuple[int, dict[str, float]]:
    """Test cases run (valid + failing + invalid, all phases) and seconds per phase, from Hypothesis' text."""
    cases = sum(int(a) + int(b) + int(c) for a, b, c in _CASES.findall(text))
    return cases, {phase: float(s) for phase, s in _PHASE.findall(text)}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _entry(report)
    entry[f"{report.when}_s"] = report.duration
    if report.when == "call":
        entry["outcome"] = report.outcome
    elif report.outcome == "skipped" and report.when == "setup":
        entry["outcome"] = "skipped"
    elif report.outcome == "failed" and report.when != "call":
        entry["outcome"] = "error"
    stats = report.__dict__.get(_STATS_KEY)
    if stats:
        entry["examples"], entry["phases"] = parse_stats(stats)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes the file
        return
    path = os.environ.get("NNX_SUITE_STATS")
    if path:
        with open(path, "w") as f:
            json.dump({"tests": _tests}, f, indent=1)
