"""Running one spec property against one adapter, outside pytest, and saying how it went.

Used by ``tests/test_mutants.py`` (is the mutant caught?) and ``benchmarks/kill_matrix.py`` /
``benchmarks/false_alarms.py`` (how fast, over many seeds?).

A property is a Hypothesis test ``fn(impl, data)``. Calling it directly runs the whole search with the
settings it was decorated with. We never change that function object: the reference run may execute the
very same function in this process (an xdist worker runs spec items and meta-tests side by side). Instead
:func:`run_property` builds a *new* ``@given`` test around the documented ``fn.hypothesis.inner_test``,
with the property's own settings as parent and a few overrides:

* ``database=None``: a run's verdict must not depend on what an earlier run saved;
* optionally no shrink phase (the meta-tests only need "caught", and shrinking is most of the cost);
* a seed: the given one, or -- when the loaded profile is derandomized (``ci``) -- exactly the seed the
  original test would have used (Hypothesis derives it from the test's source), so the meta-test sees the
  same examples the spec run does.

Two Hypothesis internals are used, both pinned by ``tests/test_mutants.py``
(``test_harness_replays_the_examples_the_property_sees``): ``fn.hypothesis._given_kwargs`` (the strategies
``@given`` was called with) and ``function_digest`` (how a derandomized run seeds itself).

The wrapper around the inner test counts calls, so we learn after how many examples the first failure
came, and resets :data:`nnx_conformance.spec.properties._helpers.last_shown` so the shrunk counterexample's
blueprint can be measured.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from typing import Any

from hypothesis import Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.internal.compat import int_from_bytes
from hypothesis.internal.reflection import function_digest

try:  # pytest.skip() raises this; it is a verdict ("not applicable"), not a failure
    from _pytest.outcomes import Skipped as _Skipped
except ImportError:  # pragma: no cover - pytest is a dependency of the suite
    _Skipped = ()  # type: ignore[assignment,misc]

try:
    _Group: type[BaseException] = BaseExceptionGroup  # type: ignore[name-defined]
except NameError:  # Python 3.10: Hypothesis depends on the backport
    from exceptiongroup import BaseExceptionGroup as _Group

__all__ = ["Outcome", "blueprint_size", "leaf_exceptions", "run_property"]


@dataclasses.dataclass
class Outcome:
    """What happened when one property ran against one adapter."""

    property: str
    failed: bool
    error: BaseException | None = None
    examples: int = 0
    """Calls of the property body up to and including the first failing one (all calls if none failed)."""
    blueprint: Any = None
    """The last blueprint the property showed: after a failure, the (shrunk) counterexample."""
    seconds: float = 0.0
    skipped: str | None = None
    """The skip reason, when the property skipped itself (``pytest.skip``) instead of running."""

    def caught_by(self, symptoms: tuple[type[BaseException], ...] = ()) -> bool:
        """Failed, and every underlying exception is an assertion (or one of the declared symptoms)."""
        if not self.failed or self.error is None:
            return False
        allowed = (AssertionError, *symptoms)
        return all(isinstance(exc, allowed) for exc in leaf_exceptions(self.error))

    def describe(self) -> str:
        if self.skipped is not None:
            return f"{self.property}: skipped ({self.skipped})"
        if not self.failed:
            return f"{self.property}: passed ({self.examples} examples)"
        kinds = sorted({type(e).__name__ for e in leaf_exceptions(self.error)}) if self.error else []
        first = str(self.error).strip().splitlines()[0][:200] if self.error else ""
        return f"{self.property}: {'/'.join(kinds)} after {self.examples} examples: {first}"


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``: itself, or the leaves of an exception group (multiple bugs, flaky)."""
    if isinstance(exc, _Group):
        subs = exc.exceptions  # type: ignore[attr-defined]
        return [leaf for sub in subs for leaf in leaf_exceptions(sub)]
    return [exc]


def blueprint_size(bp: Any) -> tuple[int, int] | None:
    """``(nodes, edges)`` of a blueprint: modules, and attribute edges of every kind; ``None`` if none."""
    nodes = getattr(bp, "nodes", None)
    if nodes is None:
        return None
    return len(nodes), sum(len(node.attrs) for node in nodes)


def _original_seed(fn: Callable[..., Any], derandomize: bool = False) -> int | None:
    """The seed a derandomized profile gives ``fn`` (``None`` if the property runs randomized, unless
    ``derandomize``)."""
    own = getattr(fn, "_hypothesis_internal_use_seed", None)
    if own is not None:
        return own
    if derandomize or fn._hypothesis_internal_use_settings.derandomize:
        return int_from_bytes(function_digest(fn.hypothesis.inner_test))
    return None


def run_property(
    fn: Callable[..., Any],
    impl: Any,
    *,
    seed: int | None = None,
    shrink: bool = True,
    max_examples: int | None = None,
    derandomize: bool = False,
) -> Outcome:
    """Run property ``fn`` against adapter ``impl`` in a fresh ``@given`` wrapper; never raises for a failure.

    ``seed=None`` keeps the property's own seeding (derandomized under ``ci``, random otherwise), or with
    ``derandomize`` always the seed the ``ci`` profile would give it.
    ``max_examples`` overrides the property's budget (``None``: keep it).
    """
    from nnx_conformance.spec.properties import _helpers

    handle = getattr(fn, "hypothesis", None)
    if handle is None:  # a plain check (a fixed case run in a child interpreter): one "example"
        return _run_once(fn, impl)
    inner = handle.inner_test
    calls = [0]
    first_failure: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        try:
            return inner(*args, **kwargs)
        except BaseException:
            if not first_failure:
                first_failure.append(calls[0])
            raise

    counted.__signature__ = inspect.signature(inner)  # type: ignore[attr-defined]
    counted.__name__ = inner.__name__
    counted.__qualname__ = inner.__qualname__
    counted.__module__ = inner.__module__

    base = fn._hypothesis_internal_use_settings
    phases = tuple(p for p in base.phases if shrink or p not in (Phase.shrink, Phase.explain))
    overrides: dict[str, Any] = {"database": None, "phases": phases, "print_blob": False}
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    if not shrink:
        overrides["report_multiple_bugs"] = False
    test = given(**handle._given_kwargs)(settings(base, **overrides)(counted))
    use_seed = seed if seed is not None else _original_seed(fn, derandomize)
    if use_seed is not None:
        test = hypothesis_seed(use_seed)(test)

    _helpers.last_shown = None
    started = time.perf_counter()
    error = _call(test, impl)
    seconds = time.perf_counter() - started
    if isinstance(error, _Skipped):
        return Outcome(fn.__name__, failed=False, skipped=str(error), examples=calls[0], seconds=seconds)
    failed = error is not None
    return Outcome(
        property=fn.__name__,
        failed=failed,
        error=error,
        examples=first_failure[0] if failed and first_failure else calls[0],
        blueprint=_helpers.last_shown if failed else None,
        seconds=seconds,
    )


def _call(test: Callable[..., Any], impl: Any) -> BaseException | None:
    try:
        test(impl=impl)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a failure (or a pytest skip/fail inside the body) is data here
        return exc
    return None


def _run_once(fn: Callable[..., Any], impl: Any) -> Outcome:
    from nnx_conformance.spec.properties import _helpers

    _helpers.last_shown = None
    started = time.perf_counter()
    error = _call(fn, impl)
    seconds = time.perf_counter() - started
    if isinstance(error, _Skipped):
        return Outcome(fn.__name__, failed=False, skipped=str(error), examples=0, seconds=seconds)
    return Outcome(
        fn.__name__,
        failed=error is not None,
        error=error,
        examples=1,
        blueprint=_helpers.last_shown,
        seconds=seconds,
    )
