"""The pytest plugin that turns the properties into a conformance run.

Registered through the ``pytest11`` entry point, so it is active wherever nnx-conformance is installed.
It therefore does nothing costly unless a spec property is collected: options are cheap, adapters are
imported lazily, and Hypothesis profiles are only *registered* (never loaded) unless asked for.

* ``--nnx-impl core,seed,pkg.mod:Attr`` (or ``$NNX_IMPL``) parametrizes the session-scoped ``impl`` fixture.
  It is session-scoped because Hypothesis rejects function-scoped fixtures under ``@given``; all
  randomness stays inside ``@given`` so xdist workers collect identical test lists.
* A property whose clause needs a capability the implementation disclaims is skipped with the reason.
* Known deviations (``spec/expectations/NAME.txt``) become non-strict xfails of that implementation.
* The terminal summary and ``--nnx-report PATH`` (JSON, plus a Markdown matrix beside it) give the
  outcome clause by clause.

To use another adapter in your own ``conftest.py``, override the fixture::

    @pytest.fixture(scope="session")
    def impl():
        return MyAdapter()
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from nnx_conformance.spec import expectations as _expectations
from nnx_conformance.spec import registry
from nnx_conformance.spec.clauses import MARKER, properties, spec_clauses
from nnx_conformance.spec.report import Conformance, Outcome, short_message

pytest.register_assert_rewrite("nnx_conformance.spec.properties")

_IMPLS = pytest.StashKey[list]()
_RESULTS = pytest.StashKey[Conformance]()
_PROFILES_REGISTERED = False


class ExpectationWarning(UserWarning):
    """An expectations entry that matches nothing, or an expected failure that now passes."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nnx-conformance", "NNX conformance suite")
    group.addoption(
        "--nnx-impl",
        default=None,
        help="implementations to check, comma separated: core, seed, flax, a registered name, or "
        "pkg.module:Attr (default: $NNX_IMPL, else core)",
    )
    group.addoption("--nnx-report", default=None, metavar="PATH", help="write a JSON report (and PATH.md)")
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
        help="known-deviations file for implementation NAME (overrides the built-in one)",
    )
    group.addoption(
        "--nnx-no-expectations", action="store_true", help="ignore every expectations file (see raw outcomes)"
    )
    group.addoption("--max-examples", type=int, default=None, help="Hypothesis max_examples for this run")


def _register_profiles() -> None:
    """Register ``dev`` and ``thorough`` (``ci`` is Hypothesis' built-in, loaded when CI is set)."""
    global _PROFILES_REGISTERED
    if _PROFILES_REGISTERED:
        return
    from hypothesis import HealthCheck, settings

    slow = [HealthCheck.too_slow, HealthCheck.data_too_large]
    for name, kwargs in {
        "dev": {"max_examples": 20, "deadline": None},
        "thorough": {"max_examples": 1000, "deadline": None, "suppress_health_check": slow},
    }.items():
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
    try:
        config.stash[_IMPLS] = registry.parse_impls(config.getoption("--nnx-impl"))
    except registry.ImplementationError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[_RESULTS] = Conformance(clause_order=list(spec_clauses()))
    config.pluginmanager.register(_Recorder(config), "nnx-conformance-recorder")
    n = config.getoption("--max-examples")
    if n is not None:
        from hypothesis import settings

        settings.register_profile("nnx-max-examples", parent=settings.default, max_examples=n)
        settings.load_profile("nnx-max-examples")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames and metafunc.definition.get_closest_marker(MARKER):
        impls = metafunc.config.stash[_IMPLS]
        metafunc.parametrize("impl", impls, ids=[s.name for s in impls], indirect=True, scope="session")


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> Any:
    """The adapter of the implementation under test (one per ``--nnx-impl`` entry)."""
    try:
        return registry.load(request.param)
    except registry.ImplementationError as err:
        pytest.fail(str(err), pytrace=False)


def _impl_of(item: pytest.Item) -> registry.ImplSpec | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("impl") if callspec is not None else None


def _load_expectations(config: pytest.Config) -> dict[str, list[_expectations.Expectation]]:
    if config.getoption("--nnx-no-expectations"):
        return {}
    overrides: dict[str, Path] = {}
    for raw in config.getoption("--nnx-expectations"):
        name, sep, path = raw.partition("=")
        if not sep:
            raise pytest.UsageError(f"--nnx-expectations takes NAME=PATH, got {raw!r}")
        overrides[name] = Path(path)
    loaded: dict[str, list[_expectations.Expectation]] = {}
    for spec in config.stash[_IMPLS]:
        path = overrides.get(spec.name)
        if path is None:
            adapter = None
            if spec.name not in registry.BUILTINS:  # a third-party adapter may carry its own file
                try:
                    adapter = registry.load(spec)
                except registry.ImplementationError:
                    adapter = None
            path = registry.expectations_path(spec, adapter)
        if path is None:
            continue
        try:
            loaded[spec.name] = _expectations.parse(path)
        except (OSError, _expectations.ExpectationsError) as err:
            raise pytest.UsageError(f"expectations for {spec.name!r}: {err}") from None
    return loaded


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    spec_items = [item for item in items if item.get_closest_marker(MARKER) and _impl_of(item)]
    if not spec_items:
        return
    wanted = config.getoption("--nnx-clause")
    if wanted:
        unknown = [w for w in wanted if not any(c == w or c.startswith(w) for c in spec_clauses())]
        if unknown:
            raise pytest.UsageError(f"--nnx-clause names no clause of SPEC.md: {', '.join(unknown)}")
        keep, drop = [], []
        for item in items:
            marker = item.get_closest_marker(MARKER)
            cid = marker.args[0] if marker else None
            (keep if cid is None or any(cid == w or cid.startswith(w) for w in wanted) else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    # Judge entries against every registered property, not just the collected ones, so running a single
    # spec file does not warn about entries for the others.
    known_tests = {fn.__name__ for fns in properties().values() for fn in fns}
    known_tests.update(item.originalname for item in spec_items)
    for name, entries in _load_expectations(config).items():
        for entry in entries:
            if entry.key not in spec_clauses() and entry.key not in known_tests:
                warnings.warn(
                    ExpectationWarning(f"{entry.source}: {entry.key!r} names no clause or property ({name})"),
                    stacklevel=1,
                )
        for item in spec_items:
            spec = _impl_of(item)
            if spec is None or spec.name != name:
                continue
            cid = item.get_closest_marker(MARKER).args[0]
            hit = _expectations.match(entries, cid, item.originalname)
            if hit is not None:
                item.add_marker(
                    pytest.mark.xfail(reason=f"known deviation ({hit.source}): {hit.reason}", strict=False)
                )
    for item in spec_items:
        item.user_properties.append(("nnx_impl", _impl_of(item).name))
        item.user_properties.append(("nnx_clause", item.get_closest_marker(MARKER).args[0]))


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARKER)
    spec = _impl_of(item)
    if marker is None or spec is None:
        return
    try:
        adapter = registry.load(spec)
    except registry.ImplementationError:
        return  # the fixture reports the import error as a failure
    missing = adapter.capabilities.missing(marker.kwargs.get("needs", ()))
    if missing:
        pytest.skip(f"{spec.name} does not claim capability {', '.join(missing)} (clause {marker.args[0]})")


def _outcome(report: pytest.TestReport) -> str | None:
    xfailed = hasattr(report, "wasxfail")
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


def _header(results: Conformance, config: pytest.Config) -> None:
    import jax

    results.header = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
    }
    for spec in config.stash[_IMPLS]:
        if spec.name not in results.implementations:
            continue
        info: dict[str, Any] = {"target": spec.target}
        try:
            adapter = registry.load(spec)
        except registry.ImplementationError as err:
            info["error"] = str(err)
        else:
            caps = adapter.capabilities
            info["capabilities"] = {
                k: (sorted(v) if isinstance(v, frozenset) else v)
                for k, v in vars(caps).items()
                if k != "reserved_names"
            }
            version = getattr(adapter, "version", None)
            if version:
                info["version"] = version
            if caps.max_depth < 10_000:
                info["note"] = f"declared max_depth {caps.max_depth}"
        results.implementations[spec.name].update(info)


class _Recorder:
    """Folds test reports (from xdist workers too) into the run's :class:`Conformance`."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "nnx_clause" not in props:
            return
        status = _outcome(report)
        if status is None:
            return
        message = ""
        if status == "fail":
            message = short_message(report.longreprtext)
        elif status in ("skip", "xfail"):
            longrepr = report.longrepr
            message = getattr(report, "wasxfail", "") or (longrepr[2] if isinstance(longrepr, tuple) else "")
        outcome = Outcome(report.nodeid, status, report.duration, message)
        self.config.stash[_RESULTS].add(props["nnx_impl"], props["nnx_clause"], outcome)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        results = config.stash[_RESULTS]
        if not results.implementations:
            return
        _header(results, config)
        terminalreporter.section("NNX conformance")
        h = results.header
        terminalreporter.write_line(
            f"jax {h['jax']} on {h['backend']} ({h['devices']} device(s), {h['device_kind']})"
        )
        for line in results.terminal_lines():
            terminalreporter.write_line(line)
        path = config.getoption("--nnx-report")
        if path:
            written = results.write(Path(path))
            terminalreporter.write_line("report: " + ", ".join(str(p) for p in written))
