"""Shared plumbing for the property modules: settings, checks that reproduce, comparisons.

A property states each check as ``check(impl, condition, message)``, the condition built with :class:`E`
from the objects it holds (a merged module, a state, a key) and observations of them (a Variable's value,
a state's paths...). The condition is evaluated through the adapter for the verdict; when it fails it is
also the ``assert`` the failure's reproduction script ends with (:mod:`nnx_conformance.spec.repro`), so
the script checks exactly what the property checked. The operations the property performs on the adapter
are recorded on their own (:mod:`nnx_conformance.spec._recording`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypedDict

from hypothesis import HealthCheck, settings

from nnx_conformance.spec import _recording
from nnx_conformance.spec._script_helpers import names_path, same_array
from nnx_conformance.spec.isolation import adapter_spec
from nnx_conformance.spec.repro import At, Entry, Expr, Lit, Observe, Py

check = _recording.check
"""``check(impl, condition, message)``: see the module docstring."""
fail = _recording.fail
"""``fail(impl, condition, message)``: for a verdict already reached (cheaply) to be false, record the
condition that shows it and raise; use where a passing check must cost nothing extra."""
let = _recording.let
code = _recording.code
refuses = _recording.refuses
build = _recording.build

__all__ = [
    "JAX_SETTINGS",
    "MAX_EXAMPLES",
    "SMALL",
    "E",
    "GraphSize",
    "budget",
    "build",
    "check",
    "code",
    "fail",
    "fmt_path",
    "impl_spec",
    "last_shown",
    "let",
    "names_path",
    "paths",
    "refuses",
    "same_array",
    "show",
]

# jit compiles take ~200 ms per new shape: deadlines would flag compilation, not bugs.
JAX_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
"""Apply to every property that runs JAX (i.e. all of them)."""


class GraphSize(TypedDict, total=False):
    """Size arguments of :func:`~nnx_conformance.strategies.graphs`, so ``graphs(caps, **SMALL)`` checks."""

    max_nodes: int
    max_vars: int
    max_statics: int


SMALL: GraphSize = {"max_nodes": 5, "max_vars": 4, "max_statics": 2}
"""Graph size for the graph and errors properties: enough for sharing, cycles and separator twins, cheap
to run 100x."""


def impl_spec(impl: Any) -> str:
    """The import spec of an adapter, for snippets (``module:Attr``; a short name given as the adapter's
    ``spec`` is resolved through the registry, since :func:`~nnx_conformance.strategies.snippet` takes
    import strings only)."""
    spec = adapter_spec(impl) or f"{type(impl).__module__}:{type(impl).__qualname__}"
    if ":" not in spec:
        from nnx_conformance.spec.registry import resolve

        spec = resolve(spec).target
    return spec


last_shown: Any = None
"""The blueprint most recently passed to :func:`show`. After Hypothesis reports a failure it has just
replayed the shrunk example, so this is the counterexample; ``benchmarks/kill_matrix.py`` reads it to
report counterexample sizes. Nothing in the suite depends on it."""


def show(impl: Any, blueprint: Any, label: str = "graph") -> None:
    """Remember ``blueprint`` as the graph of this example (:data:`last_shown`).

    The failure report's reproduction is written from what the property did (every operation is
    recorded), not from here; this only lets the benchmarks measure counterexamples.
    """
    del impl, label
    global last_shown
    last_shown = blueprint


def fmt_path(path: Iterable[str]) -> str:
    """A path for messages: the tuple (exact) — never only the ambiguous 'a/b' form."""
    return repr(tuple(path))


class E:
    """Builders of check conditions (:class:`~nnx_conformance.spec.repro.Expr`).

    Arguments are objects the property holds (named by the recording: ``merged``, ``state2``...),
    literals (an expected value computed from the blueprint: written into the script as is), or other
    expressions. ``E.lit(x)`` forces a literal.
    """

    @staticmethod
    def of(x: Any) -> Expr:
        return x if isinstance(x, Expr) else _recording.obj(x)

    @staticmethod
    def lit(x: Any) -> Expr:
        return Lit(x)

    @staticmethod
    def at(x: Any, path: Iterable[str]) -> Expr:
        return At(E.of(x), tuple(path)) if tuple(path) else E.of(x)

    @staticmethod
    def entry(state: Any, path: Iterable[str]) -> Expr:
        return Entry(E.of(state), tuple(path))

    @staticmethod
    def observe(what: str, x: Any) -> Expr:
        return Observe(what, E.of(x))

    @staticmethod
    def value(x: Any) -> Expr:
        return Observe("value", E.of(x))

    @staticmethod
    def collection(x: Any) -> Expr:
        return Observe("collection", E.of(x))

    @staticmethod
    def sharding(x: Any) -> Expr:
        return Observe("sharding", E.of(x))

    @staticmethod
    def paths(state: Any) -> Expr:
        return Observe("paths", E.of(state))

    @staticmethod
    def py(template: str, *args: Any) -> Expr:
        return Py(template, tuple(E.of(a) for a in args))

    @staticmethod
    def is_(a: Any, b: Any) -> Expr:
        return E.py("{0} is {1}", a, b)

    @staticmethod
    def is_not(a: Any, b: Any) -> Expr:
        return E.py("{0} is not {1}", a, b)

    @staticmethod
    def eq(a: Any, b: Any) -> Expr:
        return E.py("{0} == {1}", a, b)

    @staticmethod
    def ne(a: Any, b: Any) -> Expr:
        return E.py("{0} != {1}", a, b)

    @staticmethod
    def same_array(a: Any, b: Any) -> Expr:
        return E.py("same_array({0}, {1})", a, b)


def paths(impl: Any, state: Any) -> list[tuple[str, ...]]:
    """The state's paths in the implementation's own iteration order."""
    return [p for p, _ in impl.state_items(state)]


MAX_EXAMPLES: int | None = None
"""``--nnx-max-examples``: the spec's own budget, set by the plugin before any property module is imported.
``None`` means the loaded profile's ``max_examples``. The plugin never loads a profile for this, so the
user's other Hypothesis tests keep their settings."""


def budget(fraction: float = 1.0, minimum: int = 5) -> settings:
    """Settings for a property: ``fraction`` of the run's budget (``--nnx-max-examples``, else the loaded
    profile's ``max_examples``), at least ``minimum`` (but never more than the budget).

    Evaluated at import, after the profile (``--hypothesis-profile``) is loaded and the plugin has read its
    options, so ``thorough`` still scales these up instead of being overridden by a hard-coded count.
    """
    base = MAX_EXAMPLES if MAX_EXAMPLES is not None else settings().max_examples
    return settings(JAX_SETTINGS, max_examples=max(min(minimum, base), int(base * fraction)))
