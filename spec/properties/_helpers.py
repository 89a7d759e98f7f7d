"""Shared plumbing for the property modules: settings, reproduction snippets, comparisons.

Every property that draws a graph calls :func:`show` on it, so that when Hypothesis reports the shrunk
failing example, the report also holds a short script that rebuilds that graph for the implementation
under test (Hypothesis prints ``note()`` text only for the final, minimal example).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypedDict

import numpy as np
from hypothesis import HealthCheck, note, settings

from nnx_conformance.spec.isolation import adapter_spec

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
    """Attach a runnable reproduction of ``blueprint`` for ``impl`` to the failure report."""
    from nnx_conformance.strategies import snippet

    global last_shown
    last_shown = blueprint
    note(f"# --- reproduction ({label}) ---\n{snippet(blueprint, impl_spec(impl))}")


def fmt_path(path: Iterable[str]) -> str:
    """A path for messages: the tuple (exact) — never only the ambiguous 'a/b' form."""
    return repr(tuple(path))


def same_array(a: Any, b: Any) -> bool:
    """Bitwise equality of two arrays, dtype and shape included (NaN equals NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


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
