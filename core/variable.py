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
    """

    __slots__ = ("collection", "sharding", "value")

    collection: str
    value: A
    sharding: Sharding | None

    def __init__(self, collection: str, value: A, *, sharding: Sharding | None = None) -> None:
        if not isinstance(collection, str):
            raise TypeError(f"Variable collection must be a str, got {type(collection).__name__}")
        if sharding is not None:
            sharding = tuple(sharding)
            for axis in sharding:
                if axis is not None and not isinstance(axis, str):
                    raise TypeError(
                        f"Variable sharding must hold mesh-axis names (str) or None, got {axis!r}"
                    )
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
