"""Checking adapters where they enter the suite, so a protocol violation is reported as one.

An adapter is third-party code the suite trusts blindly: a property unpacks ``impl.partition(m)`` into
``(state, graphdef)``, iterates ``impl.state_items(s)`` as ``(path, variable)`` pairs, compares the paths
with tuples. When an adapter returns another shape, Python often *reinterprets* it instead of failing:
a ``"a/b"`` string path iterates as the characters ``('a', '/', 'b')`` and a graph round-trip still
passes; a lone return value unpacks into nonsense and fails three calls later with ``'tuple' object has no
attribute 'merge'``; a ``dict`` as ``capabilities`` crashes the terminal summary. None of those messages
says *the adapter broke the protocol*, nor how to fix it.

This module checks both halves of the protocol at the door:

* :func:`problems` / :func:`validate` -- the static half, once, when an adapter is loaded: every method
  of :class:`~nnx_conformance.spec.adapter.Adapter` present and callable, a non-empty ``name``, a real
  :class:`~nnx_conformance.spec.adapter.Capabilities` with well-typed fields, ``layers`` consistent with
  ``capabilities.layers``;
* :func:`checked` -- the dynamic half, on every call: a transparent proxy that forwards everything to the
  adapter and checks the *shape* of what each protocol method returns (never its values: adapters are
  called inside ``jit``/``vmap``/``scan`` with tracers, and the suite's properties judge the values).

Every violation raises :class:`AdapterError`, whose message names the adapter, the method, what was wrong
and the fix. Return values are handed back unchanged (same objects, so the properties' ``is`` comparisons
still see the implementation's own objects); the one exception is an *iterator* returned where the
protocol asks for a list, which is materialised once, since callers may iterate twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, cast

import numpy as np

from nnx_conformance.spec._proxy import Forwarding
from nnx_conformance.spec.adapter import (
    Adapter,
    Capabilities,
    LayersAdapter,
    RngSplit,
    RngStreams,
    ScanMLPLayers,
)
from nnx_conformance.spec.isolation import adapter_spec

__all__ = [
    "ADAPTER_METHODS",
    "LAYERS_METHODS",
    "RNG_SPLIT_METHODS",
    "RNG_STREAMS_METHODS",
    "SCAN_MLP_METHODS",
    "AdapterError",
    "CheckedAdapter",
    "CheckedLayers",
    "checked",
    "problems",
    "take_violations",
    "unwrap",
    "validate",
]


def _protocol_methods(protocol: type) -> tuple[str, ...]:
    """The methods a protocol class declares, in declaration order (read from the class, so a method
    added to the protocol is required here without anyone editing this module)."""
    return tuple(
        name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value)
    )


ADAPTER_METHODS: tuple[str, ...] = _protocol_methods(Adapter)
"""Every method of :class:`~nnx_conformance.spec.adapter.Adapter` (``new_module`` ... ``vmap``)."""
LAYERS_METHODS: tuple[str, ...] = _protocol_methods(LayersAdapter)
"""Every method of :class:`~nnx_conformance.spec.adapter.LayersAdapter` (``linear`` ... ``call``)."""
SCAN_MLP_METHODS: tuple[str, ...] = _protocol_methods(ScanMLPLayers)
"""The optional ``layers`` methods that :attr:`~nnx_conformance.spec.adapter.Capabilities.scan_mlp` claims
(``scan_mlp``): required only of an adapter that claims it."""

RNG_STREAMS_METHODS: tuple[str, ...] = _protocol_methods(RngStreams)
"""The optional adapter methods :attr:`~nnx_conformance.spec.adapter.Capabilities.rng_streams` claims
(``make_rng_stream``, ``from_stream``)."""
RNG_SPLIT_METHODS: tuple[str, ...] = _protocol_methods(RngSplit)
"""The optional adapter method :attr:`~nnx_conformance.spec.adapter.Capabilities.rng_split` claims (``split``)."""
_OPTIONAL_RNG = (
    ("rng_streams", RNG_STREAMS_METHODS, "RngStreams", "rng.streams and rng.from-stream are"),
    ("rng_split", RNG_SPLIT_METHODS, "RngSplit", "rng.split is"),
)

_PROTOCOL = "nnx_conformance.spec.adapter.Adapter"
_UINT32 = np.dtype(np.uint32)
_NEWLINES = re.compile(r"\s*\n\s*")
_MAX_VIOLATIONS = 100
"""How many violations a proxy remembers for :func:`take_violations` (the first ones are the useful ones)."""


class AdapterError(TypeError):
    """An adapter broke the adapter protocol: a missing method, a mistyped declaration, a wrong return shape.

    The one exception type for protocol violations, so that a report can tell "the adapter is wrong" from
    "the implementation is wrong" (an ``AssertionError`` of a property). A ``TypeError`` because that is
    what the violation is: a value of the wrong type or shape. ``adapter`` is the label the message starts
    with (``adapter 'name' (pkg.module:Attr)``); ``method`` the protocol method at fault, or ``None`` for
    a static problem found by :func:`validate`.
    """

    def __init__(self, message: str, *, adapter: str = "", method: str | None = None) -> None:
        super().__init__(message)
        self.adapter = adapter
        self.method = method


# ---------------------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------------------


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (arrays and states can have enormous reprs)."""
    try:
        text = repr(value)
    except Exception as err:  # a broken __repr__ must not hide the protocol violation
        text = f"<{type(value).__name__} with a failing repr: {type(err).__name__}>"
    text = _NEWLINES.sub(" ", text)  # a message stays one line per problem
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _typed(value: Any) -> str:
    """``'a/b' (a str)``: the value and its type, which is what most violations are about."""
    kind = type(value).__name__
    return f"{_show(value)} ({'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind})"


def _label(adapter: Any, target: str | None = None) -> str:
    """``adapter 'mylib' (mylib_conformance:Adapter)``: how every message starts.

    The target defaults to what would rebuild the adapter in a child process (its ``spec``, or its
    class's ``module:qualname``), which is also what a user greps their code for.
    """
    try:
        name = getattr(adapter, "name", None)
    except Exception:  # a property that raises: the name is simply unknown
        name = None
    shown = f"adapter {name!r}" if isinstance(name, str) and name else "adapter"
    if target is None:
        try:
            target = adapter_spec(adapter)
        except Exception:
            target = None
    if target is None:
        target = f"{type(adapter).__module__}:{type(adapter).__qualname__}"
    return f"{shown} ({target})"


# ---------------------------------------------------------------------------------------------------------
# The static half: problems() and validate()
# ---------------------------------------------------------------------------------------------------------

_ABSENT = object()


def _get(obj: Any, name: str) -> Any:
    """``getattr(obj, name)``, or :data:`_ABSENT`; a property that raises counts as absent too (it is
    just as unusable)."""
    try:
        return getattr(obj, name)
    except Exception:
        return _ABSENT


def _type_name(annotation: Any) -> str:
    """A dataclass field's type as written (a string under ``from __future__ import annotations``)."""
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)


def _capability_problems(caps: Capabilities) -> list[str]:
    """Ill-typed :class:`Capabilities` fields. A frozen dataclass checks nothing at construction, and a
    wrong type misleads quietly: ``cycles="no"`` is truthy (so cycles stay claimed), ``max_depth=0`` makes
    ``graph.deep`` test nothing, a ``set`` of reserved names makes the capabilities unhashable."""
    found = []
    for field in dataclasses.fields(Capabilities):
        value = getattr(caps, field.name)
        kind = _type_name(field.type)
        if kind == "bool" and type(value) is not bool:
            found.append(
                f"capabilities.{field.name} is {_typed(value)}, not a bool: write "
                f"Capabilities({field.name}=True) or Capabilities({field.name}=False)"
            )
        elif kind == "int" and (type(value) is not int or value < 1):
            found.append(
                f"capabilities.{field.name} is {_typed(value)}, not a positive int: write "
                f"Capabilities({field.name}=N) with N >= 1"
            )
        elif kind == "frozenset[str]" and (
            not isinstance(value, frozenset) or not all(isinstance(v, str) for v in value)
        ):
            found.append(
                f"capabilities.{field.name} is {_typed(value)}, not a frozenset of str: write "
                f"Capabilities({field.name}=frozenset({{'name', ...}}))"
            )
    return found


def _layers_problems(layers: Any) -> list[str]:
    found = []
    missing = [m for m in LAYERS_METHODS if _get(layers, m) is _ABSENT]
    if missing:
        found.append(
            f"layers ({type(layers).__name__}) has no {', '.join(missing)}: a LayersAdapter "
            f"(nnx_conformance.spec.adapter.LayersAdapter) needs {', '.join(LAYERS_METHODS)}"
        )
    for m in LAYERS_METHODS:
        value = _get(layers, m)
        if value is not _ABSENT and not callable(value):
            found.append(f"layers.{m} is {_typed(value)}, not a method: define def {m}(self, ...)")
    return found


def _scan_mlp_problems(caps: Capabilities, layers: Any) -> list[str]:
    """A claimed ``scan_mlp`` needs layers, and a ``layers`` with the method (off by default)."""
    if layers is None:
        if caps.layers is False:
            return [
                "capabilities.scan_mlp is true but capabilities.layers is false: a ScanMLP is made of layers; "
                "set scan_mlp=False, or claim layers and provide them"
            ]
        return []  # "layers is None but capabilities.layers is true" says it already
    found = []
    for m in SCAN_MLP_METHODS:
        value = _get(layers, m)
        if value is _ABSENT:
            found.append(
                f"capabilities.scan_mlp is true but layers ({type(layers).__name__}) has no {m}: define "
                f"def {m}(self, hidden, n_layers, ctx) (nnx_conformance.spec.adapter.ScanMLPLayers), or "
                "leave scan_mlp=False (the default) so that layers.scan-mlp is skipped"
            )
        elif not callable(value):
            found.append(f"layers.{m} is {_typed(value)}, not a method: define def {m}(self, ...)")
    return found


def _optional_rng_problems(caps: Capabilities, adapter: Any) -> list[str]:
    """A claimed ``rng_streams`` / ``rng_split`` needs ``rng`` and the adapter's optional methods (off by
    default, like ``scan_mlp``): without them each property of the clause would crash on a missing method
    instead of saying what the adapter lacks."""
    found = []
    for capability, methods, protocol, clauses in _OPTIONAL_RNG:
        if getattr(caps, capability) is not True:
            continue
        if caps.rng is False:
            found.append(
                f"capabilities.{capability} is true but capabilities.rng is false: set {capability}=False, "
                "or claim rng"
            )
        for m in methods:
            value = _get(adapter, m)
            if value is _ABSENT:
                found.append(
                    f"capabilities.{capability} is true but the adapter has no {m}: define def {m}(self, ...) "
                    f"(nnx_conformance.spec.adapter.{protocol}), or leave {capability}=False (the default) so "
                    f"that {clauses} skipped"
                )
            elif not callable(value):
                found.append(f"{m} is {_typed(value)}, not a method: define def {m}(self, ...)")
    return found


def problems(adapter: object) -> list[str]:
    """Everything statically wrong with ``adapter``, one message per problem (empty: nothing found).

    Checked: every method of :class:`~nnx_conformance.spec.adapter.Adapter` exists and is callable;
    ``name`` is a non-empty ``str``; ``capabilities`` is a
    :class:`~nnx_conformance.spec.adapter.Capabilities` instance whose fields have their declared types;
    ``layers is None`` exactly when ``capabilities.layers`` is false, and a non-``None`` ``layers`` has
    every LayersAdapter method (and ``scan_mlp`` where ``capabilities.scan_mlp`` claims it); the optional
    ``make_rng_stream``/``from_stream``/``split`` where ``rng_streams``/``rng_split`` claim them; ``spec`` and
    ``expectations``, when set, are a ``'pkg.module:Attr'`` string and a path. A :func:`checked` proxy is judged by the adapter it wraps (the proxy itself defines every
    method, so it would hide missing ones).
    """
    adapter = unwrap(adapter)
    if isinstance(adapter, type):
        return [
            f"{adapter.__module__}:{adapter.__qualname__} is a class, not an adapter: instantiate it "
            f"({adapter.__qualname__}()) or point the import spec at a factory or instance"
        ]
    found: list[str] = []

    missing = [m for m in ADAPTER_METHODS if _get(adapter, m) is _ABSENT]
    if missing:
        found.append(
            f"missing method{'s' if len(missing) > 1 else ''} {', '.join(missing)}: every method of {_PROTOCOL} "
            "is required (one for a feature disclaimed in capabilities may just raise NotImplementedError)"
        )
    for m in ADAPTER_METHODS:
        value = _get(adapter, m)
        if value is not _ABSENT and not callable(value):
            found.append(f"{m} is {_typed(value)}, not a method: define def {m}(self, ...) as in {_PROTOCOL}")

    name = _get(adapter, "name")
    if name is _ABSENT:
        found.append("has no name: set name = 'mylib', the short name used in test ids and reports")
    elif not isinstance(name, str) or not name:
        found.append(f"name is {_typed(name)}: it must be a non-empty str such as name = 'mylib'")

    caps = _get(adapter, "capabilities")
    if caps is _ABSENT:
        found.append(
            "has no capabilities: set capabilities = Capabilities(...) "
            "(from nnx_conformance.spec.adapter import Capabilities)"
        )
    elif caps is Capabilities:
        found.append(
            "capabilities is the Capabilities class itself: instantiate it, capabilities = Capabilities()"
        )
    elif not isinstance(caps, Capabilities):
        fix = (
            f"capabilities = Capabilities(**{_show(dict(caps), 60)})"
            if isinstance(caps, Mapping)
            else "capabilities = Capabilities(...)"
        )
        found.append(
            f"capabilities is {_typed(caps)}, not a nnx_conformance.spec.adapter.Capabilities: write {fix}"
        )
    else:
        found.extend(_capability_problems(caps))

    layers = _get(adapter, "layers")
    if layers is _ABSENT:
        found.append(
            "has no layers: set layers = None when capabilities.layers is false, else a LayersAdapter "
            f"with {', '.join(LAYERS_METHODS)}"
        )
    else:
        if isinstance(caps, Capabilities):
            if caps.layers is True and layers is None:
                found.append(
                    "layers is None but capabilities.layers is true: either disclaim layers with "
                    "capabilities=Capabilities(..., layers=False), or provide a LayersAdapter "
                    f"({', '.join(LAYERS_METHODS)}) as layers"
                )
            elif caps.layers is False and layers is not None:
                found.append(
                    f"layers is {_typed(layers)} but capabilities.layers is false: set layers = None, or "
                    "claim them with capabilities=Capabilities(..., layers=True) so the layers.* clauses run"
                )
        if layers is not None:
            found.extend(_layers_problems(layers))
        if isinstance(caps, Capabilities) and caps.scan_mlp is True:
            found.extend(_scan_mlp_problems(caps, layers))
    if isinstance(caps, Capabilities):
        found.extend(_optional_rng_problems(caps, adapter))

    spec = _get(adapter, "spec")
    if spec is not _ABSENT and spec is not None:
        module, sep, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
        if not (sep and module and attr):
            found.append(
                f"spec is {_typed(spec)}: it must be the import spec that rebuilds the adapter in a child "
                "process, 'pkg.module:Attr' (or leave it unset)"
            )
    expectations = _get(adapter, "expectations")
    if (
        expectations is not _ABSENT
        and expectations is not None
        and not isinstance(expectations, str | os.PathLike)
    ):
        found.append(
            f"expectations is {_typed(expectations)}: it must be the path of a known-deviations file "
            "(a str or pathlib.Path), or None"
        )
    return found


def validate(adapter: object, target: str | None = None) -> None:
    """Raise :class:`AdapterError` listing every one of :func:`problems` (one bullet per line), if any.

    ``target`` is how the run named the adapter (``pkg.module:Attr``); it defaults to the adapter's
    ``spec`` or class. Call it once, where the adapter is loaded: the problems are static.
    """
    found = problems(adapter)
    if not found:
        return
    label = _label(unwrap(adapter), target)
    n = len(found)
    bullets = "\n".join(f"- {p}" for p in found)
    raise AdapterError(
        f"{label}: {n} problem{'s' if n > 1 else ''} with the adapter protocol ({_PROTOCOL}):\n{bullets}",
        adapter=label,
    )


# ---------------------------------------------------------------------------------------------------------
# The dynamic half: checked()
# ---------------------------------------------------------------------------------------------------------

_NOT_GIVEN: Any = object()
_TUPLE = frozenset({tuple})
_STR = frozenset({str})
_PAIR = frozenset({2})
_first = operator.itemgetter(0)
_JOIN = "".join


def _pairs_of(items: list[Any] | tuple[Any, ...]) -> bool:
    """Every item is a 2-tuple: over whole columns with C-level ``map``, which costs a fraction of a Python
    loop over the items (``state_items`` and ``attrs`` run on every graph the suite reads)."""
    return set(map(type, items)) <= _TUPLE and set(map(len, items)) <= _PAIR


def _all_str(values: Iterable[Any]) -> bool:
    """Every value is exactly a ``str`` (a subclass takes the slow path, which accepts it)."""
    return set(map(type, values)) <= _STR


def _paths_ok(items: list[Any] | tuple[Any, ...]) -> bool:
    """Every item is a ``(tuple of str, anything)`` pair; the fast check behind ``state_items``.

    ``"".join`` type-checks a path's components in C (one call per path instead of a Python loop over
    every component: about half the cost); a component that is not a str makes it raise ``TypeError``, and
    the slow path then finds the culprit. Measured on a 98-entry state: about 15 us, against 2 us for the
    core's own ``state_items`` and 130 us for its ``partition``.
    """
    if not set(map(type, items)) <= _TUPLE:
        return False
    try:
        paths = [path for path, _ in items]  # ValueError: a tuple that is not a pair
        if not set(map(type, paths)) <= _TUPLE:
            return False
        list(map(_JOIN, paths))
    except (TypeError, ValueError):
        return False
    return True


def _path_example(path: Any) -> str:
    """A tuple path resembling what the adapter returned, for the fix in a message."""
    if isinstance(path, str):
        return repr(tuple(path.split("/"))) if "/" in path else repr((path,))
    if isinstance(path, list | tuple):
        return repr(tuple(str(p) for p in path))
    return "('a', 'b')"


class CheckedAdapter(Forwarding):
    """A transparent proxy over an adapter that checks the shape of what its protocol methods return.

    Every attribute is the wrapped adapter's (``name``, ``capabilities``, ``version``, ``expectations``,
    extras such as a ``scan_mlp``...), and setting or deleting an attribute on the proxy does it on the
    adapter. The protocol methods call the adapter's method *of the moment* (a monkeypatch still applies),
    check the result cheaply (types and lengths, never array values: the arguments may be tracers) and
    return it unchanged, or raise :class:`AdapterError`. ``layers`` is wrapped likewise
    (:class:`CheckedLayers`). ``spec`` is the wrapped adapter's own, or the import spec of its class, so a
    check that rebuilds the adapter in a child process rebuilds the real adapter, not this proxy.

    Equality and hashing are the wrapped adapter's: the properties pass the adapter as a ``jax.jit``
    static argument and key caches on it, so a proxy must hash and compare like what it stands for.
    Make one proxy per adapter and keep it (:func:`checked` returns a proxy unchanged).
    """

    __slots__ = ("_layers", "_layers_of", "_target", "_violations", "_wrapped")
    _METHODS = ADAPTER_METHODS
    _REPR = "checked"

    _wrapped: Any
    _target: str | None
    _layers: CheckedLayers | None
    _layers_of: Any
    _violations: list[AdapterError]

    def __init__(self, adapter: Any = _NOT_GIVEN, target: str | None = None) -> None:
        if adapter is _NOT_GIVEN:
            # What a child process meets when isolation fell back to this class's import spec.
            raise TypeError(
                "CheckedAdapter needs the adapter to wrap. If this comes from run_isolated(), the wrapped "
                "adapter has no import spec: give it a 'spec' attribute ('pkg.module:Attr') or define its "
                "class at module level"
            )
        object.__setattr__(self, "_wrapped", adapter)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_layers", None)
        object.__setattr__(self, "_layers_of", None)
        object.__setattr__(self, "_violations", [])

    # -- transparency (the rest is Forwarding's) -----------------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        return (checked, (self._wrapped, self._target))

    @property
    def name(self) -> str:
        return self._wrapped.name

    @property
    def capabilities(self) -> Capabilities:
        return self._wrapped.capabilities

    @property
    def spec(self) -> str | None:
        """The wrapped adapter's ``spec``, else its class's ``module:qualname`` (``None`` if not importable)."""
        return adapter_spec(self._wrapped)

    @property
    def layers(self) -> CheckedLayers | None:
        inner = self._wrapped.layers
        if inner is None:
            return None
        if inner is not self._layers_of:  # first access, or the adapter replaced its layers
            object.__setattr__(self, "_layers", CheckedLayers(inner, self))
            object.__setattr__(self, "_layers_of", inner)
        return self._layers

    # -- failing -----------------------------------------------------------------------------------------
    def _fail(self, method: str, problem: str, fix: str) -> NoReturn:
        """Raise (and remember, see :func:`take_violations`) an :class:`AdapterError` for ``method``."""
        label = _label(self._wrapped, self._target)
        err = AdapterError(f"{label}: {method}() {problem}; {fix}", adapter=label, method=method)
        if len(self._violations) < _MAX_VIOLATIONS:
            self._violations.append(err)
        raise err

    def _sequence(self, method: str, result: Any, what: str) -> list[Any] | tuple[Any, ...]:
        """``result`` as a list or tuple of items, materialising an iterator; refuse what is not a list
        of pairs in disguise (``None``, a mapping whose iteration gives only its keys, a string)."""
        if isinstance(result, list | tuple):
            return result
        if result is None:
            self._fail(method, "returned None", f"return a list of {what} pairs")
        if isinstance(result, Mapping):
            self._fail(
                method,
                f"returned a mapping {_typed(result)}, whose iteration gives only its keys",
                f"return a list of {what} pairs, e.g. list(mapping.items())",
            )
        if isinstance(result, str | bytes) or not isinstance(result, Iterable):
            self._fail(method, f"returned {_typed(result)}", f"return a list of {what} pairs")
        return list(result)

    def _pairs_slow(self, method: str, items: list[Any] | tuple[Any, ...], what: str) -> None:
        """Find and report the first entry of ``items`` that is not a pair (the fast check failed)."""
        for index, item in enumerate(items):
            if not isinstance(item, tuple | list) or len(item) != 2:
                self._fail(
                    method,
                    f"returned {_typed(item)} as entry {index}, not a {what} pair",
                    f"return a list of 2-tuples {what}",
                )

    # -- building and reading graphs ---------------------------------------------------------------------
    # Fixed-arity methods take the protocol's parameters and forward them positionally (a third of the
    # cost of *args/**kwargs forwarding); those with optional or variadic parameters forward the call as
    # made, so an adapter's own defaults apply.
    def new_module(self, type_name: str) -> Any:
        result = self._wrapped.new_module(type_name)
        return result if result is not None else self._none("new_module", "the new module")

    def set_attr(self, module: Any, name: str, value: Any) -> None:
        self._wrapped.set_attr(module, name, value)

    def attrs(self, module: Any) -> Iterable[tuple[str, Any]]:
        result = self._wrapped.attrs(module)
        items = result if type(result) is list else self._sequence("attrs", result, "(name, value)")
        if _pairs_of(items) and _all_str(map(_first, items)):
            return items
        self._pairs_slow("attrs", items, "(name, value)")
        for index, (name, _) in enumerate(items):
            if not isinstance(name, str):
                self._fail(
                    "attrs",
                    f"returned the name {_typed(name)} for entry {index}",
                    "an attribute name is a str: yield (name, value) pairs in attrs",
                )
        return items  # list pairs or str subclasses: the slow check accepts them

    def is_module(self, obj: Any) -> bool:
        result = self._wrapped.is_module(obj)
        return result if result is True or result is False else self._bool("is_module", result)

    def type_name(self, module: Any) -> str:
        result = self._wrapped.type_name(module)
        return result if type(result) is str else self._str("type_name", result, "the module's type name")

    def new_variable(self, *args: Any, **kwargs: Any) -> Any:
        result = self._wrapped.new_variable(*args, **kwargs)
        return result if result is not None else self._none("new_variable", "the new Variable")

    def is_variable(self, obj: Any) -> bool:
        result = self._wrapped.is_variable(obj)
        return result if result is True or result is False else self._bool("is_variable", result)

    def variable_collection(self, var: Any) -> str:
        result = self._wrapped.variable_collection(var)
        if type(result) is str:
            return result
        return self._str("variable_collection", result, "the collection name, such as 'params'")

    def variable_value(self, var: Any) -> Any:
        return self._wrapped.variable_value(var)

    def variable_sharding(self, var: Any) -> tuple[str | None, ...] | None:
        result = self._wrapped.variable_sharding(var)
        if result is None:
            return None
        if type(result) is tuple:
            for axis in result:
                if axis is not None and not isinstance(axis, str):
                    self._fail(
                        "variable_sharding",
                        f"returned {_typed(result)}, which holds {_typed(axis)}",
                        "an annotation holds one mesh-axis name (str) or None per array axis, "
                        "such as (None, 'model')",
                    )
            return result
        fix = (
            f"return tuple({_show(result)}): the spec compares annotations with tuples, and a "
            f"{type(result).__name__} never equals one"
            if isinstance(result, list)
            else "return None or a tuple of mesh-axis names (str) or None, such as (None, 'model')"
        )
        self._fail("variable_sharding", f"returned {_typed(result)}", fix)

    # -- the functional API ------------------------------------------------------------------------------
    def partition(self, module: Any) -> tuple[Any, Any]:
        result = self._wrapped.partition(module)
        if type(result) is tuple and len(result) == 2 and result[0] is not None and result[1] is not None:
            return result
        if not isinstance(result, tuple | list) or len(result) != 2:
            count = f" of length {len(result)}" if isinstance(result, tuple | list) else ""
            self._fail(
                "partition",
                f"returned {_typed(result)}{count}, not a (state, graphdef) pair",
                "return both, as the 2-tuple (state, graphdef)",
            )
        if result[0] is None or result[1] is None:
            which = "state" if result[0] is None else "graphdef"
            self._fail("partition", f"returned None as the {which}", "return (state, graphdef), neither None")
        return cast(tuple[Any, Any], result)  # a list [state, graphdef]: unpacks the same

    def merge(self, graphdef: Any, state: Any) -> Any:
        result = self._wrapped.merge(graphdef, state)
        return result if result is not None else self._none("merge", "the merged root module")

    def update(self, module: Any, state: Any) -> None:
        self._wrapped.update(module, state)

    def state_items(self, state: Any) -> list[tuple[tuple[str, ...], Any]]:
        result = self._wrapped.state_items(state)
        items = result if type(result) is list else self._sequence("state_items", result, "(path, variable)")
        if _paths_ok(items):
            return items  # type: ignore[return-value]
        self._pairs_slow("state_items", items, "(path, variable)")
        for index, (path, _) in enumerate(items):
            if not isinstance(path, tuple):
                why = (
                    " (a list never equals the tuple the spec compares it with, and is no dict key)"
                    if isinstance(path, list)
                    else ""
                )
                self._fail(
                    "state_items",
                    f"returned path {_typed(path)} for entry {index}",
                    f"a path is a tuple of str such as {_path_example(path)}{why}: convert your keys in "
                    "state_items",
                )
            for part in path:
                if not isinstance(part, str):
                    self._fail(
                        "state_items",
                        f"returned path {_show(path)} for entry {index}, which holds {_typed(part)}",
                        "path components are attribute names (str): convert your keys in state_items, "
                        f"e.g. {_path_example(path)}",
                    )
        return items  # type: ignore[return-value]  # str subclasses: the slow check accepts them

    def make_state(self, items: Any) -> Any:
        result = self._wrapped.make_state(items)
        return result if result is not None else self._none("make_state", "the new state")

    def filter(self, *args: Any, **kwargs: Any) -> Any:
        result = self._wrapped.filter(*args, **kwargs)
        return result if result is not None else self._none("filter", "the filtered sub-state")

    def union(self, *args: Any, **kwargs: Any) -> Any:
        result = self._wrapped.union(*args, **kwargs)
        return result if result is not None else self._none("union", "the union state")

    # -- randomness --------------------------------------------------------------------------------------
    def new_context(self, seed: Any) -> Any:
        result = self._wrapped.new_context(seed)
        return result if result is not None else self._none("new_context", "the new RNG context")

    def make_rng(self, ctx: Any) -> Any:
        result = self._wrapped.make_rng(ctx)
        return result if result is not None else self._none("make_rng", "the drawn key")

    def fork(self, ctx: Any) -> Any:
        result = self._wrapped.fork(ctx)
        return result if result is not None else self._none("fork", "the child context")

    def key_data(self, key: Any) -> Any:
        result = self._wrapped.key_data(key)
        dtype = getattr(result, "dtype", None)  # a tracer has one too; its values are never looked at
        if dtype is not None and dtype == _UINT32:
            return result
        if dtype is None:
            self._fail(
                "key_data",
                f"returned {_typed(result)}, which has no dtype",
                "return the key's raw data as a uint32 array: jax.random.key_data(key)",
            )
        fix = (
            "unwrap typed keys with jax.random.key_data(key)"
            if "key" in str(dtype)
            else "return the raw uint32 words (jax.random.key_data(key), or x.astype(jnp.uint32) for legacy keys)"
        )
        self._fail("key_data", f"returned an array of dtype {dtype}, not uint32", fix)

    def jit(self, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return self._callable("jit", self._wrapped.jit(*args, **kwargs))

    def vmap(self, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return self._callable("vmap", self._wrapped.vmap(*args, **kwargs))

    # -- the slow paths of the checks ------------------------------------------------------------------
    def _none(self, method: str, what: str) -> NoReturn:
        self._fail(method, "returned None", f"it must return {what} (a missing 'return'?)")

    def _bool(self, method: str, result: Any) -> bool:
        if isinstance(result, np.bool_):
            return cast(bool, result)  # returned as is: a numpy bool is a bool in every use the spec makes
        self._fail(method, f"returned {_typed(result)}, not a bool", f"return bool(...) from {method}")

    def _str(self, method: str, result: Any, what: str) -> str:
        if isinstance(result, str):  # a str subclass
            return result
        self._fail(method, f"returned {_typed(result)}, not a str", f"return {what} as a str")

    def _callable(self, method: str, result: Any) -> Callable[..., Any]:
        if callable(result):
            return cast(Callable[..., Any], result)
        self._fail(
            method, f"returned {_typed(result)}, which is not callable", "return the transformed function"
        )


class CheckedLayers(Forwarding):
    """The :class:`CheckedAdapter`'s view of ``adapter.layers``: forwards everything (``scan_mlp`` and other
    extras included); the four constructors must return a layer (not ``None``). ``call`` is unchecked: its
    output is an array the ``layers.*`` properties judge themselves."""

    __slots__ = ("_owner", "_wrapped")
    _METHODS = LAYERS_METHODS
    _REPR = "checked"

    _wrapped: Any
    _owner: CheckedAdapter

    def __init__(self, layers: Any, owner: CheckedAdapter) -> None:
        object.__setattr__(self, "_wrapped", layers)
        object.__setattr__(self, "_owner", owner)

    def _layer(self, method: str, result: Any) -> Any:
        if result is None:
            self._owner._fail(f"layers.{method}", "returned None", "it must return the new layer module")
        return result

    def linear(self, *args: Any, **kwargs: Any) -> Any:
        return self._layer("linear", self._wrapped.linear(*args, **kwargs))

    def batch_norm(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self._wrapped.batch_norm(*args, **kwargs)
        except TypeError as err:
            if "momentum" in kwargs and not _accepts(self._wrapped.batch_norm, "momentum"):
                self._owner._fail(
                    "layers.batch_norm",
                    f"takes no momentum argument ({err})",
                    "the protocol passes momentum= to check BatchNorm's running statistics: define "
                    "def batch_norm(self, din, ctx, momentum=0.95) and hand it to your BatchNorm",
                )
            raise
        return self._layer("batch_norm", result)

    def dropout(self, *args: Any, **kwargs: Any) -> Any:
        return self._layer("dropout", self._wrapped.dropout(*args, **kwargs))

    def block(self, *args: Any, **kwargs: Any) -> Any:
        return self._layer("block", self._wrapped.block(*args, **kwargs))

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped.call(*args, **kwargs)


def _accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (``True`` when its signature cannot be read)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == name and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in parameters
    )


def checked(adapter: Any, target: str | None = None) -> CheckedAdapter:
    """``adapter`` behind a :class:`CheckedAdapter` (a proxy is returned as is: never double-wrapped).

    ``target`` is how the run named the adapter, for messages; by default its ``spec`` or class. This does
    not run :func:`validate`: call that first, once, where the adapter is loaded.
    """
    if isinstance(adapter, CheckedAdapter):
        return adapter
    if isinstance(adapter, type):
        raise AdapterError(
            f"checked() takes an adapter instance, got the class {adapter.__module__}:{adapter.__qualname__}: "
            f"instantiate it ({adapter.__qualname__}())",
            adapter=f"{adapter.__module__}:{adapter.__qualname__}",
        )
    return CheckedAdapter(adapter, target)


def unwrap(adapter: Any) -> Any:
    """The adapter behind a :func:`checked` proxy (or behind a checked ``layers``); anything else as is."""
    if isinstance(adapter, CheckedAdapter | CheckedLayers):
        return object.__getattribute__(adapter, "_wrapped")
    return adapter


def take_violations(adapter: Any) -> list[AdapterError]:
    """The violations a proxy raised since the last call (then forgotten); ``[]`` for a plain adapter.

    A property may catch the :class:`AdapterError` itself: several run an operation under
    ``except Exception`` because *raising* is the behaviour they test (``errors.*``) or turn any exception
    into an assertion (``graph.attempt``). The proxy remembers what it raised (the first
    ``_MAX_VIOLATIONS``) so a runner can still report, after the test, that the adapter broke the protocol.
    """
    if not isinstance(adapter, CheckedAdapter):
        return []
    found = list(object.__getattribute__(adapter, "_violations"))
    object.__getattribute__(adapter, "_violations").clear()
    return found
