"""The ``--nnx-*`` options, checked once, up front, before any test runs.

:func:`parse_options` runs in ``pytest_configure``. Under xdist that is the controlling process before it
starts a worker, so a bad option is one ``pytest.UsageError`` (exit code 4) with the target, the error and
the fix -- never an INTERNALERROR per worker, and never a finding after the whole run. Workers parse the
same options again and get the same result.

Implementations *named* by the user (``--nnx-impl``, ``$NNX_IMPL``) are imported and validated here; the
default ``core`` is loaded lazily by the fixture, so a project that merely has the package installed pays
nothing for the plugin.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from nnx_conformance.spec import checked as _checked
from nnx_conformance.spec import expectations as _expectations
from nnx_conformance.spec import registry
from nnx_conformance.spec.clauses import spec_clauses

__all__ = ["RunOptions", "parse_options"]


@dataclasses.dataclass
class RunOptions:
    """The validated options of one run."""

    impls: list[registry.ImplSpec]
    explicit: bool
    """Implementations were named (``--nnx-impl`` or ``$NNX_IMPL``), not the default ``core``."""
    clauses: list[str] = dataclasses.field(default_factory=list)
    expectations: dict[str, list[_expectations.Expectation]] = dataclasses.field(default_factory=dict)
    """Run label (as written in ``--nnx-impl``) -> its known deviations."""
    named_files: dict[str, Path] = dataclasses.field(default_factory=dict)
    """``--nnx-expectations NAME=PATH`` as given."""
    pending: dict[str, list[_expectations.Expectation]] = dataclasses.field(default_factory=dict)
    """Files whose NAME no implementation of the default run claims: an overridden ``impl`` fixture may."""
    no_expectations: bool = False
    report: Path | None = None
    max_examples: int | None = None
    timeout: float = 0.0
    """``--nnx-timeout``: seconds per spec property (setup, call and teardown); 0 disables the bound."""
    warnings: list[str] = dataclasses.field(default_factory=list)
    _own_files: dict[str, list[_expectations.Expectation]] = dataclasses.field(default_factory=dict)

    def expectations_for_override(self, name: str, adapter: Any) -> list[_expectations.Expectation]:
        """Known deviations of an adapter an overridden ``impl`` fixture returned (named ``name``)."""
        if self.no_expectations:
            return []
        if name in self.pending:
            return self.pending[name]
        if name in self.expectations:
            return self.expectations[name]
        own = getattr(adapter, "expectations", None)
        if not own:
            return []
        if name not in self._own_files:
            try:
                self._own_files[name] = _expectations.parse(Path(own))
            except _expectations.ExpectationsError as err:
                pytest.fail(f"expectations of adapter {name!r} (its `expectations` attribute): {err}", False)
        return self._own_files[name]

    def unclaimed_expectations(self, ran: set[str]) -> list[str]:
        """``NAME=PATH`` of each pending file whose NAME matched no implementation that ran."""
        return [f"{name}={self.named_files[name]}" for name in self.pending if name not in ran]


def _usage(message: str) -> pytest.UsageError:
    return pytest.UsageError(message)


def _impls(config: pytest.Config) -> tuple[list[registry.ImplSpec], bool]:
    option = config.getoption("--nnx-impl")
    explicit = bool(option) or bool(os.environ.get(registry.ENV_VAR))
    try:
        return registry.parse_impls(option), explicit
    except registry.ImplementationError as err:
        source = "--nnx-impl" if option else f"${registry.ENV_VAR}"
        raise _usage(f"{source}: {err}") from None


def _clauses(config: pytest.Config) -> list[str]:
    wanted: list[str] = config.getoption("--nnx-clause")
    known = spec_clauses()
    families = sorted({cid.split(".", 1)[0] + "." for cid in known})
    for w in wanted:
        if not any(cid == w or cid.startswith(w) for cid in known):
            raise _usage(
                f"--nnx-clause {w!r} names no clause of SPEC.md; give a clause id such as "
                f"'graph.roundtrip' or a family prefix: {', '.join(families)}"
            )
    return wanted


def _max_examples(config: pytest.Config) -> int | None:
    n: int | None = config.getoption("--nnx-max-examples")
    if n is not None and n < 1:
        raise _usage(f"--nnx-max-examples must be a positive number of examples, got {n}")
    if n is not None:
        # Set before any property module is imported: their budgets are computed at import.
        from nnx_conformance.spec.properties import _helpers

        _helpers.MAX_EXAMPLES = n
    return n


def _timeout(config: pytest.Config) -> float:
    value: float = config.getoption("--nnx-timeout")
    if value < 0:
        raise _usage(f"--nnx-timeout must be a number of seconds >= 0 (0 disables the bound), got {value:g}")
    if value > 0 and not config.pluginmanager.hasplugin("timeout"):
        raise _usage(
            "--nnx-timeout needs the pytest-timeout plugin, which is not installed or was disabled "
            "(-p no:timeout); install it (`pip install pytest-timeout`) or pass --nnx-timeout 0"
        )
    return value


def _report(config: pytest.Config) -> Path | None:
    raw = config.getoption("--nnx-report")
    if not raw:
        return None
    path = Path(raw)
    if path.suffix.lower() == ".md":
        raise _usage(
            f"--nnx-report {raw}: give the JSON path (e.g. {path.with_suffix('.json')}); the Markdown "
            "matrix is written beside it with the suffix .md, and would overwrite this file"
        )
    if path.is_dir():
        raise _usage(f"--nnx-report {raw}: is a directory; give a file path such as {path / 'nnx.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with path.open("a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
        md = path.with_suffix(".md")
        if md.is_dir() or (md.exists() and not os.access(md, os.W_OK)):
            raise OSError(f"{md} (the Markdown beside it) is not writable")
    except OSError as err:
        raise _usage(
            f"--nnx-report {raw}: cannot write there ({err.strerror or err}); choose a writable path"
        ) from None
    return path


def _load_adapters(impls: list[registry.ImplSpec]) -> dict[str, Any]:
    adapters: dict[str, Any] = {}
    for spec in impls:
        try:
            adapter = registry.load(spec)
            _checked.validate(adapter, spec.target)
        except (registry.ImplementationError, _checked.AdapterError) as err:
            raise _usage(f"--nnx-impl {spec.name}: {err}") from None
        adapters[spec.name] = adapter
    return adapters


def _named_files(config: pytest.Config) -> dict[str, Path]:
    named: dict[str, Path] = {}
    for raw in config.getoption("--nnx-expectations"):
        name, sep, path = raw.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise _usage(
                f"--nnx-expectations takes NAME=PATH (e.g. mylib=nnx-expectations.txt), got {raw!r}"
            )
        if name in named:
            raise _usage(f"--nnx-expectations names {name!r} twice ({named[name]} and {path}); give one file")
        named[name] = Path(path)
    return named


def _parse(label: str, path: Path) -> list[_expectations.Expectation]:
    try:
        return _expectations.parse(path)
    except _expectations.ExpectationsError as err:
        raise _usage(f"expectations for {label}: {err}") from None


def _unknown_keys(files: dict[str, list[_expectations.Expectation]]) -> list[str]:
    if not files:
        return []
    from nnx_conformance.spec.clauses import registered

    known = set(spec_clauses()) | set(registered())
    return [
        f"{entry.source}: {entry.key!r} names no clause or property of the spec ({label})"
        for label, entries in files.items()
        for entry in entries
        if entry.key not in known
    ]


def parse_options(config: pytest.Config) -> RunOptions:
    """Validate every ``--nnx-*`` option (and the adapters named); raise ``pytest.UsageError`` on the first
    problem."""
    impls, explicit = _impls(config)
    options = RunOptions(impls=impls, explicit=explicit)
    options.clauses = _clauses(config)
    options.max_examples = _max_examples(config)
    options.timeout = _timeout(config)
    options.report = _report(config)
    options.no_expectations = bool(config.getoption("--nnx-no-expectations"))
    options.named_files = _named_files(config)
    adapters = _load_adapters(impls) if explicit else {}
    if options.no_expectations:
        return options

    claimed: set[str] = set()
    for spec in impls:
        adapter = adapters.get(spec.name)
        aliases = [spec.name] + ([str(adapter.name)] if adapter is not None else [])
        chosen = next((a for a in aliases if a in options.named_files), None)
        if chosen is not None:
            claimed.add(chosen)
            options.expectations[spec.name] = _parse(f"{chosen!r}", options.named_files[chosen])
            continue
        path = registry.expectations_path(spec, adapter)
        if path is not None:
            options.expectations[spec.name] = _parse(f"{spec.name!r} (file {path})", path)
    for name, path in options.named_files.items():
        if name in claimed:
            continue
        if explicit:
            names = ", ".join(
                f"{s.name}" + (f" (adapter name {adapters[s.name].name!r})" if s.name in adapters else "")
                for s in impls
            )
            raise _usage(
                f"--nnx-expectations {name}={path}: {name!r} names no implementation of this run "
                f"({names}); use the name as written in --nnx-impl or the adapter's `name`"
            )
        options.pending[name] = _parse(f"{name!r}", path)
    options.warnings = _unknown_keys({**options.expectations, **options.pending})
    return options
