"""Variables and static values: collections, shapes, dtypes, sharding annotations, statics.

Shapes and dtypes come from a small fixed set so that graphs drawn by different examples share a handful
of array signatures and ``jax.jit`` caches keep hitting; what the suite varies is structure, not size.
Values are small integers (also for float32): exact in every dtype, readable in a reproduction snippet,
distinct enough to tell two Variables apart, and they shrink to 0.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Hashable, Sequence
from math import prod

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from nnx_conformance.strategies._draws import index
from nnx_conformance.strategies.blueprint import Sharding, VarSpec

__all__ = [
    "COLLECTIONS",
    "DTYPES",
    "MESH_AXES",
    "SHAPES",
    "collections",
    "dtypes",
    "shapes",
    "shardings",
    "statics",
    "variables",
]

COLLECTIONS: tuple[str, ...] = ("params", "batch_stats", "cache")
SHAPES: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (2, 3))
DTYPES: tuple[str, ...] = ("float32", "int32")
MESH_AXES: tuple[str, ...] = ("data", "model")

_BASE = st.integers(-8, 8)


def collections() -> st.SearchStrategy[str]:
    """A collection name from :data:`COLLECTIONS`."""
    return st.sampled_from(COLLECTIONS)


def shapes() -> st.SearchStrategy[tuple[int, ...]]:
    """An array shape from :data:`SHAPES` (scalar, two vectors, one matrix)."""
    return st.sampled_from(SHAPES)


def dtypes() -> st.SearchStrategy[str]:
    """A dtype name from :data:`DTYPES`."""
    return st.sampled_from(DTYPES)


@functools.cache
def _sharding_options(ndim: int, axes: tuple[str, ...]) -> tuple[Sharding, ...]:
    """Every annotation of an ``ndim``-array: per axis ``None`` or a mesh axis no other axis uses."""
    options: list[Sharding] = [()]
    for _ in range(ndim):
        options = [(*o, a) for o in options for a in (None, *axes) if a is None or a not in o]
    return tuple(options)


def _draw_sharding(draw: st.DrawFn, ndim: int, axes: tuple[str, ...]) -> Sharding | None:
    """``None`` half the time, else one of :func:`_sharding_options` by index (all-``None`` first).

    An index into the valid annotations, not a per-axis draw that could repeat an axis: every draw is
    valid (a mesh axis may shard one array axis only), it costs two choices, and it shrinks to ``None``.
    """
    if not draw(st.booleans()):
        return None
    options = _sharding_options(ndim, axes)
    return options[index(draw, len(options))]


@st.composite
def shardings(draw: st.DrawFn, shape: tuple[int, ...], axes: Sequence[str] = MESH_AXES) -> Sharding | None:
    """``None`` or an annotation for ``shape``: one entry per axis, ``None`` or an unused mesh axis."""
    return _draw_sharding(draw, len(shape), tuple(axes))


@functools.lru_cache(maxsize=64)
def _signatures(
    collections: tuple[str, ...], shapes: tuple[tuple[int, ...], ...], dtypes: tuple[str, ...]
) -> st.SearchStrategy[tuple[str, tuple[int, ...], str]]:
    if not (collections and shapes and dtypes):
        raise InvalidArgument("collections, shapes and dtypes must not be empty")
    return st.sampled_from(tuple(itertools.product(collections, shapes, dtypes)))


@functools.lru_cache(maxsize=1024)
def _data(shape: tuple[int, ...], dtype: str, base: int) -> bytes:
    return (np.arange(prod(shape)) + base).astype(dtype).tobytes()


@st.composite
def variables(
    draw: st.DrawFn,
    *,
    collections: Sequence[str] = COLLECTIONS,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
    dtypes: Sequence[str] = DTYPES,
    sharding: bool = False,
) -> VarSpec:
    """A :class:`VarSpec`; with ``sharding=True`` its annotation may be set (else it is always ``None``).

    Three choices per Variable (four when sharded): one for the ``(collection, shape, dtype)`` triple
    (an index into their product, simplest first), one for the value, one for the sharding. The value is
    ``base, base + 1, ...`` with ``base`` in ``-8..8``: Variables differ when a test needs them to, the
    elements of one array differ (a transposed or reversed value shows), and it all shrinks to
    ``[0, 1, ...]``.
    """
    collection, shape, dtype = draw(_signatures(tuple(collections), tuple(shapes), tuple(dtypes)))
    data = _data(shape, dtype, draw(_BASE))
    return VarSpec(
        collection, shape, dtype, data, _draw_sharding(draw, len(shape), MESH_AXES) if sharding else None
    )


_STATICS = (
    None,
    False,
    True,
    0,
    1,
    2,
    -1,
    0.0,
    1.0,
    0.5,
    "",
    "a",
    "a/b",
    "é",
    (),
    (1,),
    (1, "a"),
    (True, 1.0),
)


def statics() -> st.SearchStrategy[Hashable]:
    """A hashable static attribute value from a fixed pool: ``None``, bools, small ints, floats, strs, tuples.

    ``1``, ``1.0`` and ``True`` are all there: Python calls them equal, a graph definition must not. One
    choice per value, shrinking to ``None``.
    """
    return st.sampled_from(_STATICS)
