"""The plugin's side of reproductions: record each spec property, and attach (and write) the script.

Registered by :mod:`nnx_conformance.spec.plugin` (``--nnx-repro-dir``). Runs in the process that runs the
test, so under xdist each worker writes its own files (names are unique per implementation and test).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from nnx_conformance.spec import _recording
from nnx_conformance.spec import repro as _repro
from nnx_conformance.spec.clauses import MARKER

__all__ = ["OPTION", "ReproHooks", "addoption", "reproduction_for"]

OPTION = "--nnx-repro-dir"
_IMPL_NAME = "nnx_impl"


def addoption(group: Any) -> None:
    group.addoption(
        OPTION,
        default=None,
        metavar="DIR",
        help="also write each failing spec test's reproduction script to DIR/<impl>/<clause>__<test>.py "
        "(python FILE exits non-zero while the bug is there)",
    )


def _directory(config: pytest.Config) -> Path | None:
    raw = config.getoption(OPTION, default=None)
    if not raw:
        return None
    path = Path(raw).absolute()
    if path.exists() and not path.is_dir():
        raise pytest.UsageError(f"{OPTION} {raw}: is a file; give a directory (created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise pytest.UsageError(f"{OPTION} {raw}: cannot create it ({err.strerror or err})") from None
    if not os.access(path, os.W_OK):
        raise pytest.UsageError(f"{OPTION} {raw}: not writable; choose a writable directory")
    return path


def _is_spec_item(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None and "impl" in getattr(item, "fixturenames", ())


def _clause(item: pytest.Item) -> str:
    marker = item.get_closest_marker(MARKER)
    return str(marker.args[0]) if marker is not None and marker.args else "unknown-clause"


def _test(item: pytest.Item) -> str:
    return str(getattr(item, "originalname", item.name))


def reproduction_for(fn: Any, impl: Any, error: BaseException, clause: str | None, test: str | None) -> Any:
    """The :class:`~.repro.Reproduction` of property ``fn``'s failure ``error`` on ``impl``, from what the
    last recorded example did."""
    rec = _recording.take()
    scenario = None
    kwargs: dict[str, Any] = {}
    incomplete = ""
    if rec is not None and rec.test is fn:
        scenario = rec.scenario(error, clause, test)
        kwargs = rec.kwargs
        incomplete = rec.incomplete
        if scenario is None and not incomplete:
            incomplete = "the property's checks are not recorded"
    call = None
    if _recording.all_literal(kwargs.values()):
        call = (f"{fn.__module__}:{fn.__name__}", kwargs, hasattr(fn, "hypothesis"))
    own = rec.own_script if rec is not None and rec.test is fn else None
    return _repro.reproduce(
        scenario, impl, property_call=call, incomplete=incomplete, clause=clause, own_script=own
    )


class ReproHooks:
    """Instruments spec properties before they run and attaches the reproduction to each failure (and each
    xfail, a known deviation)."""

    def __init__(self, config: pytest.Config) -> None:
        self.directory = _directory(config)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        if not _is_spec_item(item) or os.environ.get("NNX_REPRO") == "0":
            return
        fn = getattr(item, "obj", None)
        _recording.instrument(fn)
        _recording.start(getattr(item, "funcargs", {}).get("impl"), fn, {})

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if call.when != "call" or not _is_spec_item(item):
            return report
        try:
            failed = report.failed or hasattr(report, "wasxfail")  # a known deviation fails too: write it
            if failed and call.excinfo is not None and isinstance(call.excinfo.value, Exception):
                # (a BaseException -- a time-out, an interrupt -- stopped the run: a script would hang too)
                self._attach(item, report, call.excinfo.value)
        except Exception as err:  # a reproduction must never turn a test report into an internal error
            report.sections.append(("reproduction", f"(no reproduction: {type(err).__name__}: {err})"))
        finally:
            _recording.stop()  # drop what the last example held
        return report

    def _attach(self, item: pytest.Item, report: pytest.TestReport, error: BaseException) -> None:
        """Write the reproduction (``--nnx-repro-dir``) and add it to the failure's text (an xfail's is
        not printed, but its file is written: a known deviation is still a bug to report)."""
        impl = getattr(item, "funcargs", {}).get("impl")
        clause, test = _clause(item), _test(item)
        reproduction = reproduction_for(getattr(item, "obj", None), impl, error, clause, test)
        written = None
        if self.directory is not None:
            label = dict(item.user_properties).get(_IMPL_NAME) or getattr(impl, "name", "impl")
            written = _repro.write(self.directory, str(label), clause, test, reproduction.script)
        title, body = _repro.format_section(reproduction, written)
        addsection = getattr(report.longrepr, "addsection", None)
        if callable(addsection):  # part of the failure's text (and of the report's message)
            addsection(title, body)
        else:
            report.sections.append((title, body))
