"""Recording what a property does, so that a failure can be replayed as a script (:mod:`.repro`).

One :class:`Recorder` per example (per call of the property body). :func:`instrument` wraps a Hypothesis
property's ``inner_test`` (the documented hook, ``fn.hypothesis.inner_test``; the wrapper keeps the
function's digest, so derandomized seeds are unchanged): each call starts a recorder and hands the body a
:class:`Recording` of its adapter. The recording forwards every call and writes down, at top level (not
inside a ``jit``/``vmap``/``scan`` trace), each operation that makes or changes something -- as a
:class:`~.repro.Call` whose arguments are earlier results by name or literals -- and remembers where the
objects that readers hand back came from (an attribute of a named module, an entry of a named state), so a
later step or check can name them too.

Properties state their checks with :func:`check` (a condition :class:`~.repro.Expr` and a message): the
condition is evaluated here, through the adapter, for the verdict, and recorded as the step the script
ends with when it fails. :func:`let` and :func:`code` record library-neutral computations (``jax.jit`` of a
state...), :func:`refuses` an operation that must raise an error naming a path, :func:`build` a graph.

Nothing here changes what a property computes or decides; with no recorder active (a property called
outside :func:`instrument`), :func:`check` still judges, and nothing is written down.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from nnx_conformance.spec._proxy import Forwarding
from nnx_conformance.spec.isolation import adapter_spec
from nnx_conformance.spec.repro import (
    At,
    Call,
    Check,
    Code,
    Entry,
    Expr,
    Graph,
    Let,
    Lit,
    Observe,
    Py,
    Ref,
    Refusal,
    Scenario,
    Seq,
    Step,
    Unknown,
)

__all__ = [
    "Recorder",
    "Recording",
    "Transcript",
    "adopt",
    "build",
    "check",
    "code",
    "current",
    "describe_error",
    "instrument",
    "let",
    "obj",
    "recording",
    "refuses",
    "run_recorded",
    "take",
]

MAX_STEPS = 4_000
"""A recorder stops recording past this many steps (a 60,000-draw loop is not a script)."""
MAX_LITERAL = 4_096
"""Arrays with more elements are not written into a script as literals."""

_PRIMITIVE = (type(None), bool, int, float, complex, str, bytes)


def _clean() -> bool:
    """Whether no JAX transformation is tracing right now (operations inside a trace are not recorded)."""
    return _trace_state_clean()


try:  # JAX's own test for "no trace is active"; cheap (0.2 us)
    from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:  # pragma: no cover - another JAX: record everything, skip tracer arguments

    def _trace_state_clean() -> bool:
        return True


def describe_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------------------------------------------------
# The recorder
# ---------------------------------------------------------------------------------------------------------


class Recorder:
    """What one example did: steps, names, and the failing step once it fails."""

    def __init__(self, adapter: Any = None, test: Any = None, kwargs: dict[str, Any] | None = None) -> None:
        self.adapter = adapter
        """What the property was given (a :class:`Recording`, or any adapter): judges evaluate through it."""
        self.test = test
        self.kwargs = dict(kwargs or {})
        self.steps: list[Step] = []
        self.objects: dict[str, Any] = {}
        self._by_id: dict[int, Expr] = {}
        self._keep: list[Any] = []
        self._counts: dict[str, int] = {}
        self.graphs = 0
        self.same_as: dict[str, str] = {}
        """Name -> the earlier name of the same object (an operation that handed an object back)."""
        self.paused = 0
        self.overflow = False
        self.failure: Step | None = None
        self.failure_error: BaseException | None = None
        self.error: BaseException | None = None
        """What the example raised (set by :func:`instrument`'s wrapper)."""
        self.incomplete = ""
        self.own_script: Callable[[str], str] | None = None
        """A reproduction the property wrote itself, in adapter terms, given an adapter's import spec: a
        state machine keeps one as it goes (:mod:`.properties._machine`), since not every step it takes is
        a recordable operation. Used where the recorded steps cannot be rendered."""

    # -- names -------------------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        if not hint.isidentifier():
            hint = re.sub(r"\W", "_", hint) or "x"
            if hint[0].isdigit():
                hint = "_" + hint
        n = self._counts.get(hint, 0) + 1
        self._counts[hint] = n
        name = hint if n == 1 else f"{hint}{n}"
        while name in self.objects or name in _RESERVED:
            n += 1
            self._counts[hint] = n
            name = f"{hint}{n}"
        return name

    def bind(self, value: Any, name: str) -> str:
        """Name ``value``; from now on it is written as ``name`` (an object an operation hands back again,
        e.g. a merge returning its input, takes the newer name: :attr:`same_as` remembers the older)."""
        self.objects[name] = value
        if not isinstance(value, _PRIMITIVE):
            old = self._by_id.get(id(value))
            if isinstance(old, Ref):
                self.same_as[name] = old.name
            self._by_id[id(value)] = Ref(name)
            self._keep.append(value)
        return name

    def derive(self, value: Any, expr: Expr) -> None:
        """Remember that ``value`` (handed back by a reader) is ``expr``: the latest way the property
        obtained an object is how the script obtains it (a Variable read from a state is written as that
        state's entry, even where it is also a module's attribute), unless it has a name of its own."""
        if isinstance(value, _PRIMITIVE) or isinstance(self._by_id.get(id(value)), Ref):
            return
        self._by_id[id(value)] = expr
        self._keep.append(value)

    def known(self, value: Any) -> Expr | None:
        if isinstance(value, _PRIMITIVE):
            return None
        return self._by_id.get(id(value))

    def expr(self, value: Any) -> Expr:
        """``value`` as a script expression: a named (or derived) object, a literal, or :class:`Unknown`."""
        if type(value) in _PRIMITIVE:
            return Lit(value)
        if isinstance(value, Expr):
            return value
        found = self.known(value)
        if found is not None:
            return found
        if isinstance(value, list | tuple):
            items = tuple(self.expr(v) for v in value)
            if all(isinstance(item, Lit) for item in items):
                values = [item.value for item in items if isinstance(item, Lit)]
                return Lit(tuple(values) if isinstance(value, tuple) else values)
            return Seq(items, "list" if isinstance(value, list) else "tuple")
        lit = literal(value)
        if lit is not None:
            return lit
        return Unknown(type(value).__name__)

    # -- steps -------------------------------------------------------------------------------------------
    def add(self, step: Step) -> None:
        if len(self.steps) >= MAX_STEPS:
            self.overflow = True
            self.incomplete = f"more than {MAX_STEPS} operations"
            return
        self.steps.append(step)

    def fail(self, step: Step, error: BaseException) -> None:
        """``step`` is where the example failed, with ``error`` (the exception the property raises)."""
        if self.steps and self.steps[-1] is step:
            self.steps.pop()
        self.failure = step
        self.failure_error = error

    @property
    def active(self) -> bool:
        return not self.paused and not self.overflow

    # -- the scenario ------------------------------------------------------------------------------------
    def scenario(self, error: BaseException | None, clause: str | None, test: str | None) -> Scenario | None:
        """The scenario of the failure ``error`` (the exception the test ended with), if it is the one this
        recorder saw: a failed :func:`check`, or an exception from a recorded step."""
        if self.failure is None or error is None or not _same_failure(error, self.failure_error):
            return None
        message = str(self.failure_error) if self.failure_error is not None else str(error)
        failure = self.failure
        if isinstance(failure, Check):
            failure = Check(failure.cond, message)
        name = str(getattr(self.adapter, "name", "implementation"))
        return Scenario(name, adapter_spec_or_none(self.adapter), clause, test, tuple(self.steps), failure, message)


def adapter_spec_or_none(adapter: Any) -> str | None:
    from nnx_conformance.spec import _render

    return _render.adapter_spec_of(_render.raw_adapter(adapter)) if adapter is not None else None


def _leaves(error: BaseException) -> list[BaseException]:
    subs = getattr(error, "exceptions", None)
    if isinstance(subs, Sequence) and subs and all(isinstance(e, BaseException) for e in subs):
        return [leaf for sub in subs for leaf in _leaves(sub)]
    return [error]


def _same_failure(error: BaseException, recorded: BaseException | None) -> bool:
    """Whether the test's exception is (or holds, or was raised from) the one recorded."""
    if recorded is None:
        return False
    for leaf in _leaves(error):
        seen = leaf
        for _ in range(8):
            if seen is recorded:
                return True
            nxt = seen.__cause__ or seen.__context__
            if nxt is None:
                break
            seen = nxt
    return False


_RESERVED = frozenset(
    {
        "a",
        "np",
        "jax",
        "jnp",
        "nnx",
        "at",
        "entry",
        "same_array",
        "names_path",
        "collection",
        "sharding_of",
        "attr_names",
        "err",
        "message",
        "prop",
        "State",
        "Module",
        "Variable",
        "Context",
    }
)

_CURRENT: Recorder | None = None


def current() -> Recorder | None:
    """The recorder of the example running now, if any."""
    return _CURRENT


def start(adapter: Any = None, test: Any = None, kwargs: dict[str, Any] | None = None) -> Recorder:
    """Begin a new recorder (the previous one is dropped)."""
    global _CURRENT
    _CURRENT = Recorder(adapter, test, kwargs)
    return _CURRENT


def take() -> Recorder | None:
    """The last recorder (the final, failing example after a Hypothesis failure); it stays current."""
    return _CURRENT


def stop() -> None:
    global _CURRENT
    _CURRENT = None


# ---------------------------------------------------------------------------------------------------------
# Literals
# ---------------------------------------------------------------------------------------------------------


_PREDICATE_TYPES: tuple[type, ...] | None = None


def _predicate_types() -> tuple[type, ...]:
    global _PREDICATE_TYPES
    if _PREDICATE_TYPES is None:
        from nnx_conformance.strategies import Everything, Nothing, PathContains, PathDepth, PathPrefix

        _PREDICATE_TYPES = (PathPrefix, PathContains, PathDepth, Everything, Nothing)
    return _PREDICATE_TYPES


def literal(value: Any) -> Lit | None:
    """``value`` as a :class:`~.repro.Lit`, or ``None`` if a script cannot spell it."""
    if type(value) in _PRIMITIVE or isinstance(value, _PRIMITIVE):
        return Lit(value)
    if isinstance(value, tuple | list):
        parts = [literal(v) for v in value]
        if any(p is None for p in parts):
            return None
        items = [p.value for p in parts if p is not None]
        return Lit(tuple(items) if isinstance(value, tuple) else items)
    if isinstance(value, frozenset):
        return Lit(value) if all(literal(v) is not None for v in value) else None
    if isinstance(value, np.generic):
        return Lit(value) if value.dtype.kind in "biufc" else None
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf" or value.size > MAX_LITERAL:
            return None
        return Lit(value.copy())
    if isinstance(value, _predicate_types()) or callable(getattr(type(value), "repro_source", None)):
        return Lit(value)  # a path predicate filter: the script spells it as a lambda
    if _is_concrete_jax_array(value):
        return literal(np.asarray(value))
    return None


def _is_concrete_jax_array(value: Any) -> bool:
    jax = sys.modules.get("jax")
    if jax is None or not isinstance(value, jax.Array):
        return False
    if isinstance(value, jax.core.Tracer):
        return False
    try:
        return not jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------------------
# The recording proxy
# ---------------------------------------------------------------------------------------------------------

_OUTPUTS: dict[str, tuple[str, ...]] = {
    "new_module": ("m",),
    "new_variable": ("v",),
    "set_attr": (),
    "partition": ("state", "graphdef"),
    "merge": ("merged",),
    "update": (),
    "make_state": ("state",),
    "filter": ("part",),
    "union": ("union",),
    "new_context": ("ctx",),
    "make_rng": ("key",),
    "fork": ("child",),
    "make_rng_stream": ("key",),
    "from_stream": ("rebuilt",),
    "split": ("children",),
    "jit": ("jitted",),
    "vmap": ("mapped",),
    "layers.linear": ("linear",),
    "layers.batch_norm": ("bn",),
    "layers.dropout": ("dropout",),
    "layers.block": ("block",),
    "layers.call": ("y",),
}
"""Operations that are written down, and the names their results get."""


def _record(op: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    rec = _CURRENT
    if rec is None or rec.paused or rec.overflow or not _clean():
        return fn(*args, **kwargs)
    step_args = tuple(rec.expr(a) for a in args)
    step_kwargs = tuple((k, rec.expr(v)) for k, v in kwargs.items())
    try:
        result = fn(*args, **kwargs)
    except Exception as err:
        step = Call(op, step_args, step_kwargs, (), describe_error(err))
        rec.add(step)
        _raised[id(err)] = (step, err)
        raise
    hints = _OUTPUTS[op]
    outputs: tuple[str, ...] = ()
    if len(hints) == 1:
        outputs = (rec.bind(result, rec.fresh(hints[0])),)
    elif len(hints) > 1 and isinstance(result, tuple) and len(result) == len(hints):
        outputs = tuple(rec.bind(r, rec.fresh(h)) for r, h in zip(result, hints))
    elif len(hints) > 1:
        outputs = (rec.bind(result, rec.fresh("result")),)
    same = tuple((o, rec.same_as[o]) for o in outputs if o in rec.same_as)
    rec.add(Call(op, step_args, step_kwargs, outputs, same_as=same))
    return result


_raised: dict[int, tuple[Step, BaseException]] = {}
"""Exceptions raised by recorded steps (by id, with the step): :func:`failed_step` finds the step an
exception came from. Cleared with each new recorder's first raise."""


def failed_step(error: BaseException) -> Step | None:
    """The recorded step that raised ``error`` (or what ``error`` was raised from)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        hit = _raised.get(id(seen))
        if hit is not None and hit[1] is seen:
            return hit[0]
        seen = seen.__cause__ or seen.__context__
    return None


class Recording(Forwarding):
    """A transparent wrapper over an adapter that writes down what is done through it.

    Hashes and compares like the adapter it wraps (properties pass the adapter to ``jax.jit`` as a static
    argument and key caches on it); make one per adapter with :func:`recording`.
    """

    __slots__ = ("_layers", "_wrapped")

    def __init__(self, adapter: Any) -> None:
        object.__setattr__(self, "_wrapped", adapter)
        object.__setattr__(self, "_layers", None)

    def __repr__(self) -> str:
        return repr(self._wrapped)

    def __reduce__(self) -> tuple[Any, ...]:
        return (recording, (self._wrapped,))

    @property
    def wrapped(self) -> Any:
        return self._wrapped

    @property
    def spec(self) -> str | None:
        return adapter_spec(self._wrapped)

    @property
    def layers(self) -> Any:
        inner = self._wrapped.layers
        if inner is None:
            return None
        cached = self._layers
        if cached is None or cached._wrapped is not inner:
            cached = _RecordingLayers(inner)
            object.__setattr__(self, "_layers", cached)
        return cached

    # -- producers ---------------------------------------------------------------------------------------
    def new_module(self, *args: Any, **kwargs: Any) -> Any:
        return _record("new_module", self._wrapped.new_module, args, kwargs)

    def set_attr(self, *args: Any, **kwargs: Any) -> Any:
        return _record("set_attr", self._wrapped.set_attr, args, kwargs)

    def new_variable(self, *args: Any, **kwargs: Any) -> Any:
        return _record("new_variable", self._wrapped.new_variable, args, kwargs)

    def partition(self, *args: Any, **kwargs: Any) -> Any:
        return _record("partition", self._wrapped.partition, args, kwargs)

    def merge(self, *args: Any, **kwargs: Any) -> Any:
        return _record("merge", self._wrapped.merge, args, kwargs)

    def update(self, *args: Any, **kwargs: Any) -> Any:
        return _record("update", self._wrapped.update, args, kwargs)

    def make_state(self, *args: Any, **kwargs: Any) -> Any:
        return _record("make_state", self._wrapped.make_state, args, kwargs)

    def filter(self, *args: Any, **kwargs: Any) -> Any:
        return _record("filter", self._wrapped.filter, args, kwargs)

    def union(self, *args: Any, **kwargs: Any) -> Any:
        return _record("union", self._wrapped.union, args, kwargs)

    def new_context(self, *args: Any, **kwargs: Any) -> Any:
        return _record("new_context", self._wrapped.new_context, args, kwargs)

    def make_rng(self, *args: Any, **kwargs: Any) -> Any:
        return _record("make_rng", self._wrapped.make_rng, args, kwargs)

    def fork(self, *args: Any, **kwargs: Any) -> Any:
        return _record("fork", self._wrapped.fork, args, kwargs)

    # the optional RNG methods (rng_streams, rng_split): an adapter that lacks them raises AttributeError
    def make_rng_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _record("make_rng_stream", self._wrapped.make_rng_stream, args, kwargs)

    def from_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _record("from_stream", self._wrapped.from_stream, args, kwargs)

    def split(self, *args: Any, **kwargs: Any) -> Any:
        return _record("split", self._wrapped.split, args, kwargs)

    def jit(self, *args: Any, **kwargs: Any) -> Any:
        return _record("jit", self._wrapped.jit, args, kwargs)

    def vmap(self, *args: Any, **kwargs: Any) -> Any:
        return _record("vmap", self._wrapped.vmap, args, kwargs)

    # -- readers: remember where what they hand back came from -------------------------------------------
    def attrs(self, module: Any) -> Any:
        result = self._wrapped.attrs(module)
        rec = _CURRENT
        if rec is None or not rec.active:
            return result
        base = rec.known(module)
        if base is None:
            return result
        result = list(result)
        for name, value in result:
            rec.derive(value, _extend(base, name))
        return result

    def state_items(self, state: Any) -> Any:
        result = self._wrapped.state_items(state)
        rec = _CURRENT
        if rec is None or not rec.active:
            return result
        base = rec.known(state)
        if base is None:
            return result
        for path, var in result:
            rec.derive(var, Entry(base, tuple(path)))
        return result

    def variable_value(self, var: Any) -> Any:
        result = self._wrapped.variable_value(var)
        rec = _CURRENT
        if rec is not None and rec.active:
            base = rec.known(var)
            if base is not None:
                rec.derive(result, Observe("value", base))
        return result

    def key_data(self, key: Any) -> Any:
        result = self._wrapped.key_data(key)
        rec = _CURRENT
        if rec is None or not rec.active or not _clean() or not _is_concrete_jax_array(result):
            return result
        base = rec.known(key)
        if base is None:
            return result
        result = np.asarray(result)  # so that np.asarray(...) by the caller keeps its identity
        rec.derive(result, Observe("key_data", base))
        return result


def _extend(base: Expr, name: str) -> Expr:
    if isinstance(base, At):
        return At(base.base, (*base.path, name))
    return At(base, (name,))


class _RecordingLayers:
    __slots__ = ("_wrapped",)

    def __init__(self, layers: Any) -> None:
        self._wrapped = layers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def linear(self, *args: Any, **kwargs: Any) -> Any:
        return _record("layers.linear", self._wrapped.linear, args, kwargs)

    def batch_norm(self, *args: Any, **kwargs: Any) -> Any:
        return _record("layers.batch_norm", self._wrapped.batch_norm, args, kwargs)

    def dropout(self, *args: Any, **kwargs: Any) -> Any:
        return _record("layers.dropout", self._wrapped.dropout, args, kwargs)

    def block(self, *args: Any, **kwargs: Any) -> Any:
        return _record("layers.block", self._wrapped.block, args, kwargs)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return _record("layers.call", self._wrapped.call, args, kwargs)


_RECORDINGS: dict[int, tuple[Any, Recording]] = {}


def recording(adapter: Any) -> Any:
    """The one :class:`Recording` of ``adapter`` (made once, so caches keyed on the adapter keep hitting)."""
    if isinstance(adapter, Recording):
        return adapter
    hit = _RECORDINGS.get(id(adapter))
    if hit is None or hit[0] is not adapter:
        hit = _RECORDINGS[id(adapter)] = (adapter, Recording(adapter))
    return hit[1]


# ---------------------------------------------------------------------------------------------------------
# Instrumenting a property
# ---------------------------------------------------------------------------------------------------------

_MARK = "_nnx_repro_recorded"


def instrument(fn: Any) -> Any:
    """Wrap ``fn.hypothesis.inner_test`` (once) so that each example runs under a new :class:`Recorder`
    with a :class:`Recording` of its adapter. A plain function (no ``hypothesis`` handle) is returned as is."""
    handle = getattr(fn, "hypothesis", None)
    if handle is None:
        return fn
    inner = handle.inner_test
    if getattr(inner, _MARK, False):
        return fn

    signature = inspect.signature(inner)

    @functools.wraps(inner)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # pytest: show the property's frame, not this one
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return inner(*args, **kwargs)
        values = dict(bound.arguments)
        if values.get("impl") is not None:
            values["impl"] = recording(values["impl"])
        rec = start(values.get("impl"), fn, {k: v for k, v in values.items() if k != "impl"})
        _raised.clear()
        try:
            return inner(**values)
        except BaseException as err:
            rec.error = err
            _settle(rec, err)
            raise

    setattr(recorded, _MARK, True)
    handle.inner_test = recorded
    return fn


def _settle(rec: Recorder, err: BaseException) -> None:
    """The body ended with ``err``: unless a check already recorded where it failed, the step that raised
    ``err`` (or what it was raised from) is the failure."""
    if rec.failure is None:
        step = failed_step(err)
        if step is not None:
            rec.fail(step, err)


# ---------------------------------------------------------------------------------------------------------
# Checks that run in another interpreter
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Transcript:
    """What a check body recorded in another interpreter (picklable): its steps, the step it failed at
    (``None`` if it passed, or failed where nothing was recorded) and why the recording is incomplete."""

    steps: tuple[Step, ...]
    failure: Step | None
    incomplete: str = ""


def run_recorded(
    adapter: Any, body: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[BaseException | None, Transcript]:
    """Run ``body(recording(adapter), *args, **kwargs)`` under a new recorder, as :func:`instrument`'s
    wrapper runs a property's body: what it raised (``None`` if nothing) and its :class:`Transcript`.

    For checks an implementation might not survive, run in a child interpreter; the parent hands the
    transcript to :func:`adopt`, so the failure's reproduction is the same script as if they had run there.
    """
    rec = start(recording(adapter), body, {})
    _raised.clear()
    error: BaseException | None = None
    try:
        body(rec.adapter, *args, **kwargs)
    except Exception as err:
        error = err
        _settle(rec, err)
    finally:
        stop()
    failed = error is not None and rec.failure is not None and _same_failure(error, rec.failure_error)
    return error, Transcript(tuple(rec.steps), rec.failure if failed else None, rec.incomplete)


def adopt(transcript: Transcript, message: str) -> AssertionError:
    """The failure of a check body that ran elsewhere, as this example's: the current recorder takes the
    transcript's steps and failing step; returns the ``AssertionError(message)`` for the property to raise.

    The transcript's names are the other recorder's, so they are only safe in a recorder that has recorded
    nothing yet; otherwise the reproduction says it is incomplete rather than mixing two sets of names.
    """
    error = AssertionError(message)
    rec = _CURRENT
    if rec is None or not rec.active:
        return error
    if rec.steps:
        rec.incomplete = rec.incomplete or "steps were recorded in two interpreters"
        rec.failure = None
        return error
    rec.steps.extend(transcript.steps)
    rec.incomplete = rec.incomplete or transcript.incomplete
    if transcript.failure is not None:
        rec.fail(transcript.failure, error)
    else:
        rec.incomplete = rec.incomplete or "the failure in the child interpreter was not at a recorded step"
    return error


# ---------------------------------------------------------------------------------------------------------
# What properties call
# ---------------------------------------------------------------------------------------------------------


def obj(value: Any) -> Expr:
    """``value`` (an object the property holds) as an expression of the current recording."""
    rec = _CURRENT
    if rec is None:
        return _Live(type(value).__name__, value)
    found = rec.expr(value)
    if isinstance(found, Unknown):
        return _Live(found.description, value)
    return found


@dataclasses.dataclass(frozen=True, eq=False)
class _Live(Unknown):
    """An object with no script name: evaluable (the property holds it) but not reproducible."""

    live: Any = None


def _unwrap_for_eval(impl: Any) -> Any:
    return impl.wrapped if isinstance(impl, Recording) else impl


_CODE_CACHE: dict[str, Any] = {}
_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def _python(template: str, values: Sequence[Any]) -> Any:
    from nnx_conformance.spec import _render

    code = _CODE_CACHE.get(template)
    if code is None:
        source = _PLACEHOLDER.sub(lambda m: f"_{m.group(1)}", template)
        code = _CODE_CACHE[template] = compile(source, "<check>", "eval")
    namespace = {**_render.py_namespace(), **{f"_{i}": v for i, v in enumerate(values)}}
    return eval(code, namespace)


def evaluate(impl: Any, expr: Expr) -> Any:
    """The value of ``expr``, observed through ``impl`` (the adapter the property holds)."""
    adapter = _unwrap_for_eval(impl)
    if isinstance(expr, _Live):
        return expr.live
    if isinstance(expr, Ref):
        rec = _CURRENT
        if rec is None or expr.name not in rec.objects:
            raise KeyError(f"no object named {expr.name!r} in this recording")
        return rec.objects[expr.name]
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, At):
        value = evaluate(impl, expr.base)
        for name in expr.path:
            value = dict(adapter.attrs(value))[name]
        return value
    if isinstance(expr, Entry):
        state = evaluate(impl, expr.state)
        return {tuple(p): v for p, v in adapter.state_items(state)}[expr.path]
    if isinstance(expr, Observe):
        return _observe(adapter, expr.what, evaluate(impl, expr.of))
    if isinstance(expr, Py):
        return _python(expr.template, [evaluate(impl, a) for a in expr.args])
    if isinstance(expr, Seq):
        items = [evaluate(impl, a) for a in expr.items]
        return items if expr.kind == "list" else tuple(items)
    raise TypeError(f"cannot evaluate {expr!r}")


def _observe(adapter: Any, what: str, value: Any) -> Any:
    import jax

    if what == "value":
        return np.asarray(adapter.variable_value(value))
    if what == "collection":
        return adapter.variable_collection(value)
    if what == "sharding":
        sharding = adapter.variable_sharding(value)
        return None if sharding is None else tuple(sharding)
    if what == "type_name":
        return adapter.type_name(value)
    if what == "attr_names":
        return sorted(name for name, _ in adapter.attrs(value))
    if what == "paths":
        return [tuple(p) for p, _ in adapter.state_items(value)]
    if what == "hash":
        return hash(value)
    if what == "key_data":
        return np.asarray(adapter.key_data(value))
    if what == "leaves":
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(value)]
    if what == "tree_keys":
        flat, _ = jax.tree_util.tree_flatten_with_path(value)
        return [jax.tree_util.keystr(k) for k, _ in flat]
    if what == "is_module":
        return bool(adapter.is_module(value))
    if what == "is_variable":
        return bool(adapter.is_variable(value))
    raise ValueError(what)


def check(impl: Any, cond: Expr, message: str | Callable[[], str]) -> None:
    """Assert that ``cond`` holds (evaluated through ``impl``); on failure raise ``AssertionError(message)``
    and record ``assert cond, message`` as where the script ends.

    ``message`` may be a function (called only on failure). If evaluating ``cond`` raises, that is a
    failure too: the script's evaluation of it raises the same way.
    """
    __tracebackhide__ = True  # pytest: show the property's frame, not this one
    try:
        ok = bool(evaluate(impl, cond))
        problem = ""
    except Exception as err:
        ok = False
        problem = f"\n  (evaluating the check raised {describe_error(err)})"
    if ok:
        return
    text = (message() if callable(message) else message) + problem
    error = AssertionError(text)
    rec = _CURRENT
    if rec is not None and not _refers_to_steps(cond):
        # Written out, a condition over literals alone fails whatever the library does (keys converted
        # outside the recording, say): a script ending in it would prove nothing.
        rec.incomplete = rec.incomplete or "the failing check depends on no recorded operation"
        rec.failure = None
    elif rec is not None:
        rec.fail(Check(cond, text), error)
    raise error


def _refers_to_steps(expr: Expr) -> bool:
    """Whether ``expr`` depends on something a recorded step made (not only on literals)."""
    if isinstance(expr, Ref):
        return True
    if isinstance(expr, At):
        return _refers_to_steps(expr.base)
    if isinstance(expr, Entry):
        return _refers_to_steps(expr.state)
    if isinstance(expr, Observe):
        return _refers_to_steps(expr.of)
    if isinstance(expr, Py):
        return any(_refers_to_steps(arg) for arg in expr.args)
    if isinstance(expr, Seq):
        return any(_refers_to_steps(item) for item in expr.items)
    return False


def fail(impl: Any, cond: Expr | None, message: str) -> None:
    """Fail with ``message``; ``cond`` is a condition known to be false that shows why (checked again
    here), or ``None`` when there is none to show (the script will say it is incomplete)."""
    __tracebackhide__ = True  # pytest: show the property's frame, not this one
    if cond is not None:
        check(impl, cond, message)
    error = AssertionError(message)
    rec = _CURRENT
    if rec is not None:
        rec.incomplete = rec.incomplete or "the failing condition could not be expressed as a check"
        rec.failure = None
    raise error


def let(hint: str, fn: Callable[..., Any], *args: Any, source: str) -> Any:
    """``fn(*args)``, recorded as ``<name> = <source>`` (``source``: the same computation, library-neutral,
    with ``{0}``... for the arguments). A raise is recorded as where the script fails."""
    rec = _CURRENT
    if rec is None or not rec.active:
        return fn(*args)
    step_args = tuple(rec.expr(a) for a in args)
    name = rec.fresh(hint)
    try:
        value = fn(*args)
    except Exception as err:
        step = Let(name, source, step_args, describe_error(err))
        rec.add(step)
        _raised[id(err)] = (step, err)
        raise
    rec.bind(value, name)
    rec.add(Let(name, source, step_args))
    return value


def code(
    source: str,
    fn: Callable[..., Any],
    *args: Any,
    outputs: Sequence[str] = (),
    adapter_terms: bool = False,
) -> Any:
    """``fn(*args)``, recorded as the statements ``source`` (``{0}``... for the arguments) that bind
    ``outputs`` (``fn`` returns their values, a tuple when there are several)."""
    rec = _CURRENT
    if rec is None or not rec.active:
        return fn(*args)
    step_args = tuple(rec.expr(a) for a in args)
    try:
        value = fn(*args)
    except Exception as err:
        step = Code(source, step_args, tuple(outputs), adapter_terms, describe_error(err))
        rec.add(step)
        _raised[id(err)] = (step, err)
        raise
    values = (value,) if len(outputs) == 1 else tuple(value or ())
    for name, v in zip(outputs, values):
        rec.bind(v, name)
        rec.objects[name] = v
    rec.add(Code(source, step_args, tuple(outputs), adapter_terms))
    return value


def refuses(
    impl: Any,
    op: str,
    args: Sequence[Any],
    paths: Sequence[tuple[str, ...]],
    *,
    names_path: Callable[[str, tuple[str, ...]], bool],
    accepted: str | Callable[[Any], str],
    unnamed: str,
) -> str:
    """Call ``impl.<op>(*args)``: it must raise an error whose message names one of ``paths``
    (``names_path(message, path)``). Returns the error's text; otherwise records the failure and raises
    ``AssertionError`` (``accepted`` if it returned, ``unnamed`` + the error's text if it named no path)."""
    __tracebackhide__ = True
    rec = _CURRENT
    before = len(rec.steps) if rec is not None else 0
    wanted = tuple(tuple(p) for p in paths)
    if_accepted = (
        accepted if isinstance(accepted, str) else f"{op} returned instead of raising an error naming the path"
    )
    try:
        result = getattr(impl, op)(*args)
    except Exception as err:  # the spec asks for *an* error; any kind is fine
        text = describe_error(err)
        step = _pop_call(rec, before)
        if any(names_path(text, p) for p in wanted):
            if rec is not None and step is not None:
                rec.add(Refusal(step, wanted, if_accepted, unnamed))
            return text
        error = AssertionError(unnamed + text)
        if rec is not None and step is not None:
            rec.fail(Refusal(step, wanted, if_accepted, unnamed), error)
        raise error from None
    step = _pop_call(rec, before)
    message = accepted(result) if callable(accepted) else accepted
    error = AssertionError(message)
    if rec is not None and step is not None:
        rec.fail(Refusal(step, wanted, message, unnamed), error)
    raise error


def _pop_call(rec: Recorder | None, before: int) -> Call | None:
    if rec is None or len(rec.steps) != before + 1 or not isinstance(rec.steps[-1], Call):
        return None
    step = rec.steps.pop()
    assert isinstance(step, Call)
    return step


def build(bp: Any, impl: Any) -> Any:
    """``strategies.build(bp, impl)``, recorded as one :class:`~.repro.Graph` step; the ``Built``."""
    from nnx_conformance.strategies import VarRef
    from nnx_conformance.strategies import build as build_graph

    rec = _CURRENT
    if rec is None or not rec.active or not _clean():
        return build_graph(bp, impl)
    rec.graphs += 1
    k = rec.graphs
    root = rec.fresh("root")
    prefix = "m" if k == 1 else ("n", "o", "p", "q")[min(k - 2, 3)]
    users: dict[int, int] = {}
    for node in bp.nodes:
        for _, ref in node.attrs:
            if isinstance(ref, VarRef):
                users[ref.index] = users.get(ref.index, 0) + 1
    var_prefix = "v" if k == 1 else ("w", "u", "t", "s")[min(k - 2, 3)]
    rec.paused += 1
    try:
        built = build_graph(bp, impl)
    except Exception as err:
        rec.paused -= 1
        names = (root, *(rec.fresh(f"{prefix}{i}") for i in range(1, len(bp.nodes))))
        step: Step = Graph(bp, names, tuple(None for _ in bp.variables), describe_error(err))
        rec.add(step)
        _raised[id(err)] = (step, err)
        raise
    rec.paused -= 1
    nodes = [rec.bind(built.nodes[0], root)]
    nodes += [rec.bind(m, rec.fresh(f"{prefix}{i}")) for i, m in enumerate(built.nodes[1:], 1)]
    variables: list[str | None] = []
    for j, var in enumerate(built.variables):
        if users.get(j, 0) > 1:
            variables.append(rec.bind(var, rec.fresh(f"{var_prefix}{j}")))
        else:
            variables.append(None)
            owner = _owner(bp, j)
            if owner is not None:
                i, name = owner
                rec.derive(var, At(Ref(nodes[i]), (name,)))
    rec.add(Graph(bp, tuple(nodes), tuple(variables)))
    return built


def _owner(bp: Any, j: int) -> tuple[int, str] | None:
    from nnx_conformance.strategies import VarRef

    for i, node in enumerate(bp.nodes):
        for name, ref in node.attrs:
            if isinstance(ref, VarRef) and ref.index == j:
                return i, name
    return None


_SPEC_DIR = os.path.dirname(os.path.abspath(__file__))
_OWN_FILES = tuple(os.path.join(_SPEC_DIR, f"{name}.py") for name in ("checked", "_recording"))
_PROPERTIES_DIR = os.path.join(_SPEC_DIR, "properties") + os.sep


def short_trace(err: BaseException, frames: int = 3) -> str:
    """Where ``err`` was raised: the last ``frames`` frames outside the suite's own wrappers (the checked
    and recording proxies), one line each (``file:line in function``)."""
    tb = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if not f.filename.endswith(_OWN_FILES) and not f.filename.startswith(_PROPERTIES_DIR)
    ]
    return "; ".join(f"{f.filename}:{f.lineno} in {f.name}" for f in tb[-frames:])


def all_literal(values: Iterable[Any]) -> bool:
    return all(literal(v) is not None for v in values)
