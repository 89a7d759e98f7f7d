"""Variable: the one mutable cell of a module graph.

A module graph is plain Python objects; the only things that change during training are the arrays held
by Variables. Keeping them in a small mutable box, rather than as bare attributes, gives two things the
functional API needs: a *collection* tag (``"params"``, ``"batch_stats"``) to filter state by, and an object
*identity*, so that one Variable reachable by two attribute paths is recognised as shared and stays shared
through partition/merge/update.

Variables are pytrees (child: ``value``; aux: ``(collection, sharding)``) so a State of them can be mapped
over with ``jax.tree_util``, and so ``jax.tree_util.tree_map(jnp.shape, state)`` prints shapes in place of
arrays. Unflattening never validates the value: JAX rebuilds pytrees with arbitrary leaves (``object()``
sentinels, ``None``, tracers, shapes), and a Variable must hold whatever it is given.
"""

from __future__ import annotations

import copy
from typing import Any, Generic, TypeVar

import jax

from .errors import ShardingError

__all__ = ["Path", "Sharding", "Variable"]

A = TypeVar("A")

Path = tuple[str, ...]
"""A canonical state key: the attribute names from the root to a Variable, e.g. ``("layers", "bn", "mean")``."""

Sharding = tuple[str | None, ...]
"""One mesh-axis name (or ``None``) per array axis, e.g. ``(None, "model")``."""

_new = object.__new__


class Variable(Generic[A]):
    """A mutable cell holding one value (usually an array) plus its collection and sharding annotation.

    Equality and hashing are by identity, on purpose: two Variables with equal contents are still two
    independent cells, and the graph functions track sharing with ``id()``.

    ``sharding`` is ``None`` or a tuple (a list is copied to one) of one mesh-axis name or ``None`` per
    array axis; a bare string, another container, another entry type, or (for an array value, one with
    ``.ndim``/``.shape``) a length other than the value's ndim raises :class:`ShardingError`.
    """

    __slots__ = ("collection", "sharding", "value")

    collection: str
    value: A
    sharding: Sharding | None

    def __init__(self, collection: str, value: A, *, sharding: Sharding | None = None) -> None:
        if not isinstance(collection, str):
            raise TypeError(f"Variable collection must be a str, got {type(collection).__name__}")
        if sharding is not None:
            sharding = _checked_sharding(sharding, value)
        self.collection = collection
        self.value = value
        self.sharding = sharding

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(collection={self.collection!r}, value={self.value!r}, "
            f"sharding={self.sharding!r})"
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass (``class Param(Variable)``) is a pytree too, with the same layout, so user-defined
        # Variable kinds work wherever a Variable does.
        super().__init_subclass__(**kwargs)
        _register(cls)


def _known_ndim(value: Any) -> int | None:
    """The number of axes of an array-like value (``.ndim``, else ``len(.shape)``), ``None`` if unknown.

    Python numbers and other non-arrays have no known ndim: they are often placeholders, and the core
    holds any value as given.
    """
    ndim = getattr(value, "ndim", None)
    if isinstance(ndim, int) and not isinstance(ndim, bool):
        return ndim
    shape = getattr(value, "shape", None)
    return len(shape) if isinstance(shape, tuple) else None


def _checked_sharding(sharding: Any, value: Any) -> Sharding:
    """``sharding`` as a tuple, or :class:`ShardingError` saying what was given and what to write instead.

    The rules: a tuple or list (never a bare ``str``, which ``tuple()`` would split into one axis per
    character), each entry a ``str`` or ``None``, and, when ``value`` is an array, exactly one entry per
    axis (as the strategies, ``Linear`` and flax, which keeps the annotation in step with the array's axes
    under its transforms, all have it). Only construction checks this: a state rebuilt by JAX (unflatten)
    holds whatever annotation it had, e.g. a per-layer annotation over values stacked by ``jax.vmap``.
    """
    ndim = _known_ndim(value)
    if isinstance(sharding, str):
        example = (sharding,) if ndim is None else (sharding, *([None] * (ndim - 1)))[:ndim]
        raise ShardingError(
            f"Variable sharding must be None or a tuple with one mesh-axis name (str) or None per array "
            f"axis, got the string {sharding!r} (it would read as {tuple(sharding)!r}, one axis per "
            f"character); write sharding={example!r}"
            + (" (the value is 0-d: it has no axis to shard)" if ndim == 0 else "")
        )
    if not isinstance(sharding, (tuple, list)):
        raise ShardingError(
            "Variable sharding must be None or a tuple with one mesh-axis name (str) or None per array "
            f"axis, got a {type(sharding).__name__}: {sharding!r}; write e.g. sharding=(None, 'model')"
        )
    sharding = tuple(sharding)
    for position, axis in enumerate(sharding):
        if axis is not None and not isinstance(axis, str):
            raise ShardingError(
                f"Variable sharding must hold mesh-axis names (str) or None, got {axis!r} "
                f"({type(axis).__name__}) at position {position} of {sharding!r}; name a mesh axis, e.g. "
                "'data', or write None for a replicated axis"
            )
    if ndim is not None and len(sharding) != ndim:
        raise ShardingError(
            f"Variable sharding {sharding!r} has {len(sharding)} entries, but the value has {ndim} axes "
            f"(shape {tuple(getattr(value, 'shape', ()))!r}); give one mesh-axis name or None per axis, "
            f"e.g. sharding={(*sharding[:ndim], *([None] * (ndim - len(sharding))))!r}"
        )
    return sharding


def _clone(var: Variable[Any]) -> Variable[Any]:
    """A new Variable of the same class holding the same value object (used by partition and merge).

    Bypasses ``__init__`` (the fields were validated when ``var`` was made); this is the hot path of merge,
    so it is three slot stores and nothing else. Subclasses, which may carry extra state, go through
    ``copy.copy``.
    """
    if type(var) is not Variable:
        return copy.copy(var)
    new = _new(Variable)
    new.collection = var.collection
    new.value = var.value
    new.sharding = var.sharding
    return new


def _register(cls: type[Variable[Any]]) -> None:
    value_key = (jax.tree_util.GetAttrKey("value"),)

    def flatten(var: Variable[Any]) -> tuple[tuple[Any], tuple[str, Sharding | None]]:
        return (var.value,), (var.collection, var.sharding)

    def flatten_with_keys(
        var: Variable[Any],
    ) -> tuple[tuple[tuple[Any, Any]], tuple[str, Sharding | None]]:
        return ((value_key[0], var.value),), (var.collection, var.sharding)

    def unflatten(aux: tuple[str, Sharding | None], children: Any) -> Variable[Any]:
        var = _new(cls)
        var.collection, var.sharding = aux
        (var.value,) = children
        return var

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten_func=flatten)


_register(Variable)
