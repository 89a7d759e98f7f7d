"""Telling the suite's own breakage from the implementation's.

A property that cannot run because the installed jax or Hypothesis lacks an API the suite calls (say
``jax.jit(f).trace`` on an older jax) fails for every implementation, the reference included. Reported as
the implementation's failure, that is a wrong verdict; it is the suite's error, and the report says so
(status ``suite-error``).

The rule: the test raised :class:`SuiteEnvironmentError`, or an ``AttributeError`` / ``ImportError`` raised
by the suite's own code (the property modules, the strategies, or the test module itself) or by a library it
called directly (jax, numpy, Hypothesis), with no frame of the implementation in between. The suite treats
states, definitions and contexts as opaque and reaches them only through the adapter, so such an error means
a missing library API, not an implementation bug. Any adapter frame after the suite's last frame (built-in
adapters and the ``checked`` proxy included) makes it the implementation's failure.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

_SUITE_MODULES = ("nnx_conformance.spec.properties", "nnx_conformance.strategies")


class SuiteEnvironmentError(Exception):
    """The suite cannot run this check in this environment (name the missing API and the version needed)."""


def _leaves(exc: BaseException) -> list[BaseException]:
    subs = getattr(exc, "exceptions", None)  # an exception group (Hypothesis reports several bugs so)
    if isinstance(subs, tuple) and subs and all(isinstance(s, BaseException) for s in subs):
        return [leaf for sub in subs for leaf in _leaves(sub)]
    return [exc]


_LIBRARIES = ("jax", "jaxlib", "numpy", "hypothesis", "importlib", "functools", "contextlib")


def _modules(tb: TracebackType | None) -> list[str]:
    names = []
    while tb is not None:
        names.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return names


def _is_library(module: str) -> bool:
    return module.split(".", 1)[0] in _LIBRARIES


def _one(exc: BaseException, test_module: str) -> str | None:
    if isinstance(exc, SuiteEnvironmentError):
        return f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, (AttributeError, ImportError)):
        return None
    modules = _modules(exc.__traceback__)
    suite = [i for i, m in enumerate(modules) if m == test_module or m.startswith(_SUITE_MODULES)]
    if not suite or not all(_is_library(m) for m in modules[suite[-1] + 1 :]):
        return None
    return f"{type(exc).__name__} in the suite's own code ({modules[suite[-1]]}): {exc}"


def suite_error(exc: BaseException, item: Any) -> str | None:
    """Why ``exc`` is the suite's error rather than the implementation's failure, or ``None``."""
    module = getattr(getattr(item, "module", None), "__name__", "")
    reasons = [_one(leaf, module) for leaf in _leaves(exc)]
    if not reasons or any(r is None for r in reasons):
        return None
    return (
        "the suite could not run this check in this environment (not a verdict on the implementation): "
        + "; ".join(r for r in reasons if r)
        + ". Install the versions in nnx-conformance's dependency floors, or report it to nnx-conformance."
    )
