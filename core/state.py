"""State: the flat, immutable view of a module graph's Variables.

A module graph is a mutable object graph; JAX transforms want pytrees. ``State`` is the bridge: a read-only
``Mapping[Path, Variable]`` whose keys are *tuples* of attribute names. Tuples, not ``"a/b"`` strings,
because an attribute may legally be named ``"a/b"`` and must not collide with the path ``a.b``; the
slash form is used for display only.

Iteration order is always the canonical order, sorted path tuples, whatever order entries were given
in. Two states with the same entries therefore flatten to the same leaves in the same order, which is what
makes them interchangeable across ``jax.jit``/``jax.lax.scan`` boundaries. (``partition`` produces entries
already sorted, since its pre-order DFS with sorted attribute names visits paths in lexicographic order, so
the hot path never sorts.)

A State is a pytree whose children are its Variables (so the leaves are the Variables' values) and whose
key paths carry the path tuples (``DictKey(('layers', 'bn', 'mean'))``).
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

import jax
import numpy as np

from .errors import NNXError, StateConflictError, format_path
from .variable import Path, Variable

__all__ = ["Filter", "State"]

Filter = str | type | Callable[[Path, Any], bool]
"""A collection name, a Variable subclass, or a predicate ``f(path, variable) -> bool``."""

_new = object.__new__
_MISSING: Any = object()


def _matcher(flt: Filter) -> Callable[[Path, Any], bool]:
    """Compile one filter into a predicate ``(path, value) -> bool``.

    Variable subclasses are matched with ``isinstance`` explicitly: a class is callable, and treating it as
    a predicate would *construct* a Variable (truthy) and silently match everything.
    """
    if isinstance(flt, str):
        return lambda path, var: getattr(var, "collection", _MISSING) == flt
    if isinstance(flt, type):
        if issubclass(flt, Variable):
            return lambda path, var: isinstance(var, flt)
        raise TypeError(f"a type used as a State filter must be a Variable subclass, got {flt.__name__}")
    if callable(flt):
        return flt
    raise TypeError(
        "a State filter is a collection name (str), a Variable subclass, or a predicate "
        f"f(path, variable) -> bool; got {flt!r}"
    )


class State(Mapping[Path, Variable[Any]]):
    """Immutable ``Mapping[Path, Variable]`` in canonical (sorted) order.

    ``State(mapping_or_items)`` accepts a mapping or an iterable of ``(path, variable)`` pairs; paths must be
    tuples of ``str``. Values are normally Variables, but any object is held as given (JAX rebuilds states
    with arbitrary leaves, and ``ModuleDef.merge`` is where a non-Variable is rejected, with its path).
    """

    __slots__ = ("_data",)

    _data: dict[Path, Any]

    def __init__(self, items: Mapping[Path, Any] | Iterable[tuple[Path, Any]] = ()) -> None:
        if isinstance(items, State):
            self._data = items._data
            return
        if isinstance(items, Mapping):
            pairs = list(items.items())
        else:
            pairs = [tuple(pair) for pair in items]
            for pair in pairs:
                if len(pair) != 2:
                    raise TypeError(f"State items must be (path, variable) pairs, got {pair!r}")
        for path, _ in pairs:
            if type(path) is not tuple or not all(isinstance(name, str) for name in path):
                raise TypeError(
                    f"State keys are tuples of attribute names such as ('a', 'b'), got {path!r}"
                    + (" (use a tuple: 'a/b' is only the display form)" if isinstance(path, str) else "")
                )
        pairs.sort(key=_first)
        data = dict(pairs)
        if len(data) != len(pairs):
            seen: set[Path] = set()
            for path, _ in pairs:
                if path in seen:
                    raise NNXError(
                        f"duplicate path {format_path(path)} in State items: a state holds one entry per "
                        "path (to combine states that overlap, use State.union)",
                        path,
                    )
                seen.add(path)
        self._data = data

    @classmethod
    def _from_sorted(cls, data: dict[Path, Any]) -> State:
        """Wrap a dict whose keys are already valid and in canonical order (no copy, no checks)."""
        state = _new(cls)
        state._data = data
        return state

    # -- Mapping ---------------------------------------------------------------------------------------
    def __getitem__(self, path: Path) -> Variable[Any]:
        return self._data[path]

    def __iter__(self) -> Iterator[Path]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, path: object) -> bool:
        return path in self._data

    def keys(self) -> KeysView[Path]:
        return self._data.keys()

    def values(self) -> ValuesView[Variable[Any]]:
        return self._data.values()

    def items(self) -> ItemsView[Path, Variable[Any]]:
        return self._data.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, State):
            return self._data == other._data
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # a mapping of mutable cells is not hashable

    # -- filtering and combining -----------------------------------------------------------------------
    def filter(self, *filters: Filter) -> State:
        """The sub-state of entries matching *any* of ``filters`` (none given: the empty state).

        A filter is a collection name, a Variable subclass, or a predicate ``f(path, variable) -> bool``.
        """
        if filters and all(isinstance(f, str) for f in filters):
            names = frozenset(filters)  # the common case, kept to one set lookup per entry
            return State._from_sorted(
                {p: v for p, v in self._data.items() if getattr(v, "collection", _MISSING) in names}
            )
        matchers = [_matcher(f) for f in filters]
        return State._from_sorted({p: v for p, v in self._data.items() if any(m(p, v) for m in matchers)})

    def partition(self, *filters: Filter) -> tuple[State, ...]:
        """Split into ``len(filters) + 1`` disjoint states: one per filter, then the rest.

        An entry goes to the *first* filter it matches, so the parts never overlap and their union is
        ``self``.
        """
        matchers = [_matcher(f) for f in filters]
        parts: list[dict[Path, Any]] = [{} for _ in range(len(filters) + 1)]
        rest = parts[-1]
        for path, var in self._data.items():
            for part, match in zip(parts, matchers):
                if match(path, var):
                    part[path] = var
                    break
            else:
                rest[path] = var
        return tuple(State._from_sorted(part) for part in parts)

    def union(self, *others: State) -> State:
        """One state holding every entry of ``self`` and ``others`` (``State.union(a, b, c)`` works too).

        A path present in several states must hold the same Variable object, or Variables that agree on
        collection, sharding and value (the first is kept); anything else is ambiguous and raises
        :class:`StateConflictError` naming the path. Values agree when they are one object, or arrays of
        equal shape, dtype and bytes (a numpy and a JAX array can agree), or plain values of one type
        that compare equal. A traced value (inside ``jax.jit``, ``vmap``, ``scan``) agrees only with
        itself: its contents are unknown while tracing, so two different tracers are a conflict. Parts of
        one partition share their value objects, so recombining them works inside a trace as well.
        """
        data = dict(self._data)
        grew = False
        for other in others:
            if not isinstance(other, State):
                raise TypeError(f"State.union takes States, got {type(other).__name__}")
            for path, var in other._data.items():
                old = data.get(path, _MISSING)
                if old is _MISSING:
                    data[path] = var
                    grew = True
                elif old is not var and not _agree(old, var):
                    raise StateConflictError(
                        f"State.union: conflicting entries at {format_path(path)}: {old!r} vs {var!r} "
                        f"({_conflict_reason(old, var)}; the same path must hold the same Variable, or "
                        "Variables with equal collection, sharding and value: drop the entry from all but "
                        "one operand, e.g. with filter, to choose one)",
                        path,
                    )
        if grew:
            data = dict(sorted(data.items(), key=_first))
        return State._from_sorted(data)

    def __or__(self, other: object) -> State:
        if not isinstance(other, State):
            return NotImplemented
        return self.union(other)

    # -- display ---------------------------------------------------------------------------------------
    def flat_str(self) -> str:
        """One ``a/b: Variable(...)`` line per entry, in canonical order (``/`` is display only)."""
        return "\n".join(f"{'/'.join(p)}: {v!r}" for p, v in self._data.items())

    def __repr__(self) -> str:
        if not self._data:
            return "State({})"
        lines = ",\n  ".join(f"{'/'.join(p)!r}: {v!r}".replace("\n", "\n    ") for p, v in self._data.items())
        return f"State({{\n  {lines}\n}})"


def _first(pair: tuple[Path, Any]) -> Path:
    return pair[0]


def _conflict_reason(a: Any, b: Any) -> str:
    """What differs between two entries that do not agree (for the error message)."""
    if not (isinstance(a, Variable) and isinstance(b, Variable)):
        return "an entry that is not a Variable"
    if a.collection != b.collection:
        return f"collection {a.collection!r} vs {b.collection!r}"
    if a.sharding != b.sharding:
        return f"sharding {a.sharding!r} vs {b.sharding!r}"
    x, y = a.value, b.value
    if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
        return "different traced values, which cannot be compared while tracing"
    if _is_array(x) and _is_array(y):
        if tuple(x.shape) != tuple(y.shape):
            return f"value shape {tuple(x.shape)} vs {tuple(y.shape)}"
        if x.dtype != y.dtype:
            return f"value dtype {x.dtype} vs {y.dtype}"
    elif _is_array(x) or _is_array(y) or type(x) is not type(y):
        return f"{_what(x)} vs {_what(y)}"
    return "different values"


def _what(value: Any) -> str:
    if isinstance(value, jax.Array):
        return "a JAX array"
    if _is_array(value):
        return "a numpy array"
    return f"a {type(value).__name__}"


def _agree(a: Any, b: Any) -> bool:
    """Whether two distinct entries at one path are the same thing (see :meth:`State.union`)."""
    return (
        isinstance(a, Variable)
        and isinstance(b, Variable)
        and a.collection == b.collection
        and a.sharding == b.sharding
        and _same_value(a.value, b.value)
    )


_ARRAY_TYPES = (np.ndarray, np.generic, jax.Array)


def _is_array(value: Any) -> bool:
    return isinstance(value, _ARRAY_TYPES)


def _same_value(a: Any, b: Any) -> bool:
    """Equal by value: one object; arrays of one shape, dtype and bytes; or equal plain values of one type.

    * Arrays (numpy arrays and scalars, JAX arrays) agree when shape, dtype and raw bytes are equal,
      whatever the container: a JAX array and a numpy array holding the same float32 bytes agree;
      ``float32`` and ``int32`` ones never do, nor an array and a Python number. Bytes, not ``==``: a NaN
      agrees with the same NaN, and ``-0.0`` differs from ``0.0``. Typed PRNG keys compare their key data.
    * Traced values (``jax.core.Tracer``, inside ``jit``/``vmap``/``scan``/``grad``) agree only with
      themselves: their contents are unknown at trace time, so two different tracers cannot be shown
      equal, and calling them equal could silently drop one. (Recombining parts of one partition inside a
      trace still works: the parts share the very same value objects.)
    * Anything else (Python numbers, strings, ``None``, ``jax.ShapeDtypeStruct``...) agrees when the types
      are identical and ``==`` says ``True`` (a float NaN agrees with a NaN).
    """
    if a is b:
        return True
    if isinstance(a, jax.core.Tracer) or isinstance(b, jax.core.Tracer):
        return False
    if _is_array(a) or _is_array(b):
        return _is_array(a) and _is_array(b) and _same_array(a, b)
    if type(a) is not type(b):
        return False
    if type(a) is float and a != a and b != b:  # NaN
        return True
    try:
        equal = a == b
    except Exception:  # an == that raises cannot show the two equal
        return False
    return equal is True or (isinstance(equal, np.bool_) and bool(equal))


def _same_array(a: Any, b: Any) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    try:
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        return bool(np.asarray(a).tobytes() == np.asarray(b).tobytes())
    except Exception:  # contents out of reach (e.g. not fully addressable): cannot be shown equal
        return False


def _flatten(state: State) -> tuple[tuple[Any, ...], tuple[Path, ...]]:
    data = state._data
    return tuple(data.values()), tuple(data)


def _flatten_with_keys(state: State) -> tuple[list[tuple[Any, Any]], tuple[Path, ...]]:
    data = state._data
    dict_key = jax.tree_util.DictKey
    return [(dict_key(p), v) for p, v in data.items()], tuple(data)


def _unflatten(paths: tuple[Path, ...], children: Iterable[Any]) -> State:
    return State._from_sorted(dict(zip(paths, children)))


jax.tree_util.register_pytree_with_keys(State, _flatten_with_keys, _unflatten, flatten_func=_flatten)
