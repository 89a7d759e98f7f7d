"""The pytest plugin that turns the properties into a conformance run.

Registered through the ``pytest11`` entry point, so it is active in every pytest run of any project where
nnx-conformance is installed. It therefore touches nothing but its own tests: its options are namespaced
(``--nnx-*``), it never loads a Hypothesis profile or changes another test's settings, and it imports no
adapter unless an implementation is named or a spec property runs.

Where the adapter comes from. The session-scoped ``impl`` fixture is the one source: the plugin's own
fixture, parametrized by ``--nnx-impl`` / ``$NNX_IMPL`` / an entry-point name (default ``core``), or a
``conftest.py`` override of ``impl``. Test labels, capability skips, known deviations and the report's
implementation name all follow whichever provided the adapter (an override's tests carry no
``[name]`` label; the report names them by the adapter's ``name``).

Everything a user can get wrong is checked in :func:`pytest_configure`, in the controlling process before
xdist starts a worker (see :mod:`nnx_conformance.spec.options`), and surfaces as one ``UsageError``
(exit code 4) naming the target, the error and the fix.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from nnx_conformance.spec import _environment, _repro_hooks, registry
from nnx_conformance.spec import checked as _checked
from nnx_conformance.spec import expectations as _expectations
from nnx_conformance.spec import timeout as _timeout
from nnx_conformance.spec.clauses import MARKER, spec_clauses
from nnx_conformance.spec.options import RunOptions, parse_options
from nnx_conformance.spec.report import Conformance, Outcome, short_message

pytest.register_assert_rewrite("nnx_conformance.spec.properties")

_OPTIONS = pytest.StashKey[RunOptions]()
_RESULTS = pytest.StashKey[Conformance]()
_OVERRIDE = pytest.StashKey[bool]()
_DISARM = pytest.StashKey[Any]()
_PROFILES_REGISTERED = False

_IMPL_NAME = "nnx_impl"
_SUITE_ERROR = "nnx_suite_error"
_IMPL_INFO = "nnx_impl_info"
_CLAUSE = "nnx_clause"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nnx-conformance", "NNX conformance suite")
    group.addoption(
        "--nnx-impl",
        default=None,
        help="implementations to check, comma separated: core, seed, flax, a registered name, or "
        "pkg.module:Attr (default: $NNX_IMPL, else core; ignored where a conftest.py overrides `impl`)",
    )
    group.addoption(
        "--nnx-report", default=None, metavar="PATH", help="write a JSON report at PATH (and PATH.md beside it)"
    )
    group.addoption(
        "--nnx-clause",
        action="append",
        default=[],
        metavar="ID",
        help="only run these clauses (an id, or a family prefix such as 'rng.'); repeatable",
    )
    group.addoption(
        "--nnx-expectations",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="known-deviations file for implementation NAME (as written in --nnx-impl, or the adapter's "
        "name); replaces the built-in or the adapter's own file; repeatable",
    )
    group.addoption(
        "--nnx-no-expectations", action="store_true", help="ignore every expectations file (see raw outcomes)"
    )
    group.addoption(
        "--nnx-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds a spec property may run (setup, call and teardown) before it fails as timed out, "
        "with the stack where the implementation was stuck (default 120; 0: no bound)",
    )
    group.addoption(
        "--nnx-max-examples",
        type=int,
        default=None,
        metavar="N",
        help="Hypothesis max_examples of the spec properties (cheaper ones scale from it); other tests keep "
        "their own settings",
    )
    _repro_hooks.addoption(group)  # --nnx-repro-dir


def _register_profiles() -> None:
    """Register ``dev`` and ``thorough`` (``ci`` is Hypothesis' built-in, loaded when CI is set).

    Registered only, never loaded: which profile runs is the user's choice (``--hypothesis-profile``).
    """
    global _PROFILES_REGISTERED
    if _PROFILES_REGISTERED:
        return
    from hypothesis import HealthCheck, settings

    slow = [HealthCheck.too_slow, HealthCheck.data_too_large]
    profiles: dict[str, dict[str, Any]] = {
        "dev": {"max_examples": 20, "deadline": None},
        "thorough": {"max_examples": 1000, "deadline": None, "suppress_health_check": slow},
    }
    for name, kwargs in profiles.items():
        try:
            settings.get_profile(name)
        except Exception:  # not registered by the user: ours
            settings.register_profile(name, **kwargs)
    _PROFILES_REGISTERED = True


@pytest.hookimpl(trylast=True)  # after Hypothesis' own plugin has loaded --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(clause_id, needs=()): the spec clause a property checks (see spec/SPEC.md)"
    )
    _register_profiles()
    options = parse_options(config)  # raises pytest.UsageError on any bad option
    config.stash[_OPTIONS] = options
    config.stash[_RESULTS] = Conformance(
        clause_order=list(spec_clauses()), impl_order=[s.name for s in options.impls]
    )
    config.stash[_OVERRIDE] = False
    for message in options.warnings:
        config.issue_config_time_warning(_expectations.ExpectationWarning(message), stacklevel=2)
    if options.max_examples is not None:
        from nnx_conformance.spec.properties import _helpers

        _helpers.MAX_EXAMPLES = options.max_examples
    config.pluginmanager.register(_Recorder(config), "nnx-conformance-recorder")
    config.pluginmanager.register(_repro_hooks.ReproHooks(config), "nnx-conformance-repro")


# -- the impl fixture and where it comes from ---------------------------------------------------------------


def _is_spec_item(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None and "impl" in getattr(item, "fixturenames", ())


def _overridden(metafunc: pytest.Metafunc) -> bool:
    """Whether the ``impl`` in effect for this test is someone else's fixture, not ours."""
    defs = metafunc._arg2fixturedefs.get("impl")  # the public API has no "which fixture wins" query
    if not defs:
        return False
    func = getattr(defs[-1], "func", None)
    return getattr(func, "__module__", None) != __name__


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" not in metafunc.fixturenames or not metafunc.definition.get_closest_marker(MARKER):
        return
    if _overridden(metafunc):
        metafunc.config.stash[_OVERRIDE] = True
        return
    impls = metafunc.config.stash[_OPTIONS].impls
    metafunc.parametrize("impl", impls, ids=[s.name for s in impls], indirect=True, scope="session")


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> Any:
    """The adapter of the implementation under test (one per ``--nnx-impl`` entry)."""
    spec = getattr(request, "param", None)
    if not isinstance(spec, registry.ImplSpec):
        spec = request.config.stash[_OPTIONS].impls[0]
    try:
        adapter = registry.load(spec)
        _checked.validate(adapter, spec.target)
    except (registry.ImplementationError, _checked.AdapterError) as err:
        pytest.fail(str(err), pytrace=False)
    return adapter


def _label_of(item: pytest.Item) -> registry.ImplSpec | None:
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("impl") if callspec is not None else None
    return spec if isinstance(spec, registry.ImplSpec) else None


def _test_name(item: pytest.Item) -> str:
    """The property's own name, without the ``[impl]`` label."""
    return str(getattr(item, "originalname", item.name))


def _clause_of(item: pytest.Item) -> str:
    marker = item.get_closest_marker(MARKER)
    assert marker is not None
    return str(marker.args[0])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    options = config.stash[_OPTIONS]
    if options.clauses:
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            marker = item.get_closest_marker(MARKER)
            cid = marker.args[0] if marker else None
            wanted = cid is None or any(cid == w or cid.startswith(w) for w in options.clauses)
            (keep if wanted else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    for item in items:
        if not _is_spec_item(item):
            continue
        if options.timeout > 0 and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(options.timeout))
        item.user_properties.append((_CLAUSE, _clause_of(item)))
        spec = _label_of(item)
        if spec is None:
            continue  # an overridden fixture: named and judged once the adapter exists (setup)
        item.user_properties.append((_IMPL_NAME, spec.name))
        hit = _expectations.match(options.expectations.get(spec.name, []), _clause_of(item), _test_name(item))
        if hit is not None:
            item.add_marker(pytest.mark.xfail(reason=f"known deviation ({hit.source}): {hit.reason}", strict=False))


_VALIDATED: dict[int, str | None] = {}
_PROXIES: dict[int, Any] = {}


def _override_adapter(item: pytest.Item, adapter: Any) -> str:
    """Validate an adapter a ``conftest.py`` fixture returned (once) and give it its run name."""
    key = id(adapter)
    if key not in _VALIDATED:
        try:
            _checked.validate(adapter, f"the `impl` fixture ({item.nodeid.split('::')[0]})")
        except _checked.AdapterError as err:
            _VALIDATED[key] = str(err)
        else:
            _VALIDATED[key] = None
    message = _VALIDATED[key]
    if message is not None:
        pytest.fail(message, pytrace=False)
    return str(adapter.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    result = yield  # the fixtures, ``impl`` included, are set up now
    if not _is_spec_item(item) or not hasattr(item, "funcargs"):
        return result
    options = item.config.stash[_OPTIONS]
    adapter = item.funcargs["impl"]
    spec = _label_of(item)
    if spec is None:
        name = _override_adapter(item, adapter)
        item.user_properties.append((_IMPL_NAME, name))
        entries = options.expectations_for_override(name, adapter)
        hit = _expectations.match(entries, _clause_of(item), _test_name(item))
        if hit is not None:
            item.add_marker(pytest.mark.xfail(reason=f"known deviation ({hit.source}): {hit.reason}", strict=False))
    item.user_properties.append((_IMPL_INFO, registry.adapter_info(adapter)))
    proxy = _PROXIES.get(id(adapter))
    if proxy is None:  # one per adapter: jit caches and trace counts key on it
        proxy = _PROXIES[id(adapter)] = _checked.checked(adapter, spec.target if spec is not None else None)
    item.funcargs["impl"] = proxy
    marker = item.get_closest_marker(MARKER)
    assert marker is not None
    missing = adapter.capabilities.missing(marker.kwargs.get("needs", ()))
    if missing:
        label = spec.name if spec is not None else adapter.name
        pytest.skip(f"{label} does not claim capability {', '.join(missing)} (clause {marker.args[0]})")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail a property whose adapter returned a malformed value, even if the property swallowed the error
    (several properties treat any exception as "the implementation refused", as they should)."""
    proxy = getattr(item, "funcargs", {}).get("impl") if _is_spec_item(item) else None
    try:
        result = yield
    except BaseException as exc:
        timer = item.stash.get(_DISARM, None)
        if isinstance(exc, _timeout.SpecTimeout) and timer is not None:
            timer.stop_repeating()
        if proxy is not None:
            reason = _environment.suite_error(exc, item)
            if reason is not None:
                item.user_properties.append((_SUITE_ERROR, reason))
        raise
    finally:
        violations = _checked.take_violations(proxy)  # [] for anything but a proxy; always forgotten
    if violations:
        raise violations[0]
    return result


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Bound a spec property with :mod:`nnx_conformance.spec.timeout` (Hypothesis-proof); others: None,
    so pytest-timeout's own method applies."""
    if not _is_spec_item(item) or not _timeout.available() or not settings.timeout:
        return None
    config = item.config
    on_hard_stop = None
    if not hasattr(config, "workerinput"):  # serially, this process writes the report before it ends

        def on_hard_stop() -> None:
            recorder = config.pluginmanager.get_plugin("nnx-conformance-recorder")
            if isinstance(recorder, _Recorder):
                recorder.hard_stopped(item.nodeid, float(settings.timeout))

    item.stash[_DISARM] = _timeout.arm(float(settings.timeout), item.nodeid, on_hard_stop)
    return True


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    disarm = item.stash.get(_DISARM, None)
    if disarm is None:
        return None
    del item.stash[_DISARM]
    disarm.disarm()
    return True


# -- collecting outcomes ------------------------------------------------------------------------------------


def _outcome(report: pytest.TestReport) -> str | None:
    xfailed = hasattr(report, "wasxfail")
    props = dict(report.user_properties)
    if report.failed and _SUITE_ERROR in props:
        return "suite-error"
    if report.when == "call":
        if report.passed:
            return "xpass" if xfailed else "pass"
        if report.failed:
            return "fail"
        return "xfail" if xfailed else "skip"
    if report.failed:  # setup/teardown error
        return "fail"
    if report.skipped and report.when == "setup":
        return "xfail" if xfailed else "skip"
    return None


def _header(results: Conformance, options: RunOptions) -> None:
    import jax

    results.header = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "timeout_s": options.timeout or "off",
    }


def _split_nodeid(nodeid: str) -> tuple[str, str]:
    """``(property name, implementation label)`` of a spec test id (label ``""`` for an overridden fixture)."""
    name = nodeid.rsplit("::", 1)[-1]
    base, _, label = name.partition("[")
    return base, label[:-1] if label.endswith("]") else label


class _Recorder:
    """Folds test reports (from xdist workers too) into the run's :class:`Conformance`, and keeps the
    report on disk true at every moment (only the controlling process writes it)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: Conformance = config.stash[_RESULTS]
        self.options: RunOptions = config.stash[_OPTIONS]
        self.writes = self.options.report is not None and not hasattr(config, "workerinput")
        self.crashed: set[str] = set()
        self.override_name: str | None = None

    def _write(self) -> None:
        if self.writes and self.options.report is not None:
            self.results.write(self.options.report)

    def _expect(self, nodeid: str, label: str | None, clause_id: str) -> None:
        impl = label if label else (self.override_name or "")
        self.results.expect(nodeid, impl, clause_id)

    # -- what the run is going to run ------------------------------------------------------------------
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return
        for item in session.items:
            if _is_spec_item(item):
                spec = _label_of(item)
                self._expect(item.nodeid, spec.name if spec else None, _clause_of(item))
        if self.results.expected:
            _header(self.results, self.options)
            self._write()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.results.expected:
            return  # every worker collects the same tests
        from nnx_conformance.spec.clauses import clause_of, registered

        props = registered()
        for nodeid in ids:
            base, label = _split_nodeid(nodeid)
            tag = clause_of(props[base]) if base in props else None
            if tag is not None:
                self._expect(nodeid, label or None, tag.id)
        if self.results.expected:
            _header(self.results, self.options)
            self._write()

    # -- while it runs ---------------------------------------------------------------------------------
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if nodeid in self.results.expected:
            self.results.running.add(nodeid)
            self._write()

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        if nodeid in self.results.running:
            self.results.running.discard(nodeid)
            self._write()

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        self.crashed.add(crashitem)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        crashed = report.nodeid in self.crashed or "crashed while running" in str(report.longrepr or "")
        if _CLAUSE not in props and not (crashed and report.nodeid in self.results.expected):
            return
        status = "crash" if crashed and report.failed else _outcome(report)
        if status is None:
            return
        expected = self.results.expected.get(report.nodeid)
        impl = str(props.get(_IMPL_NAME) or (expected[0] if expected else "") or "impl fixture")
        clause_id = str(props.get(_CLAUSE) or (expected[1] if expected else "?"))
        if _label_of_nodeid(report.nodeid) == "" and impl and self.override_name is None:
            self._adopt_override_name(impl)
        message = ""
        if status in ("fail", "crash", "suite-error"):
            message = str(props.get(_SUITE_ERROR) or "") or short_message(report.longreprtext)
        elif status in ("skip", "xfail"):
            longrepr = report.longrepr
            message = getattr(report, "wasxfail", "") or (longrepr[2] if isinstance(longrepr, tuple) else "")
        self.results.add(impl, clause_id, Outcome(report.nodeid, status, message))
        info = props.get(_IMPL_INFO)
        if isinstance(info, dict):
            self.results.implementations[impl].setdefault("adapter", info)

    def _adopt_override_name(self, name: str) -> None:
        """Tests of an overridden fixture were expected under ``""``: they belong to this adapter."""
        self.override_name = name
        for nodeid, (impl, clause_id) in list(self.results.expected.items()):
            if impl == "":
                self.results.expected[nodeid] = (name, clause_id)
        self.results.implementations.pop("", None)

    def hard_stopped(self, nodeid: str, limit: float) -> None:
        """The timeout watchdog is about to end this (serial) process during ``nodeid``."""
        impl, clause_id = self.results.expected.get(nodeid, ("?", "?"))
        message = (
            f"timed out after {limit:g} s (--nnx-timeout) and did not return to Python within "
            f"{_timeout.GRACE_S:g} s more; the process was ended (stacks on stderr)"
        )
        self.results.add(impl, clause_id, Outcome(nodeid, "crash", message))
        self._write()

    # -- at the end --------------------------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        results, options = self.results, self.options
        unused = options.unclaimed_expectations(set(results.implementations))
        if unused and results.implementations:
            terminalreporter.write_line(
                "ERROR: --nnx-expectations names no implementation of this run: "
                + "; ".join(unused)
                + f" (implementations: {', '.join(sorted(results.implementations))})",
                red=True,
            )
        if not results.implementations or hasattr(config, "workerinput"):
            return
        results.implementations.pop("", None)
        results.complete = exitstatus != pytest.ExitCode.INTERRUPTED
        results.running.clear()
        if not results.header:
            _header(results, options)
        terminalreporter.section("NNX conformance")
        h = results.header
        terminalreporter.write_line(
            f"jax {h['jax']} on {h['backend']} ({h['devices']} device(s), {h['device_kind']}); "
            f"time bound per property: {h['timeout_s']}{' s' if options.timeout else ''}"
        )
        for line in results.terminal_lines():
            terminalreporter.write_line(line)
        if self.writes and options.report is not None:
            written = results.write(options.report)
            terminalreporter.write_line("report: " + ", ".join(str(p) for p in written))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.results.implementations and self.options.unclaimed_expectations(set(self.results.implementations)):
            session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _label_of_nodeid(nodeid: str) -> str:
    return _split_nodeid(nodeid)[1]
