"""Variables and static values: collections, shapes, dtypes, sharding annotations, statics.

Shapes and dtypes come from a small fixed set so that graphs drawn by different examples share a handful
of array signatures and ``jax.jit`` caches keep hitting; what the suite varies is structure, not size.
Values are runs of small integers (also for float32): exact in every dtype, readable in a reproduction
snippet, and distinct enough to tell two Variables apart.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Hashable, Sequence
from math import prod

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

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
    "signatures",
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
def _sharding_options(ndim: int, axes: tuple[str, ...]) -> st.SearchStrategy[Sharding | None]:
    """``None`` with probability 1/2, else any annotation of an ``ndim``-array, in one choice.

    The annotations are enumerated (per axis ``None`` or a mesh axis no other axis uses), so every draw
    is valid without filtering; ``None`` is repeated to fill the first half of the list, which makes it
    both half the draws and the shrink target (a weighted ``sampled_from``).
    """
    options: list[Sharding] = [()]
    for _ in range(ndim):
        options = [(*o, a) for o in options for a in (None, *axes) if a is None or a not in o]
    return st.sampled_from((None,) * len(options) + tuple(options))


def _draw_sharding(draw: st.DrawFn, ndim: int, axes: tuple[str, ...]) -> Sharding | None:
    return draw(_sharding_options(ndim, axes))


@st.composite
def shardings(draw: st.DrawFn, shape: tuple[int, ...], axes: Sequence[str] = MESH_AXES) -> Sharding | None:
    """``None`` or an annotation for ``shape``: one entry per axis, ``None`` or an unused mesh axis."""
    return _draw_sharding(draw, len(shape), tuple(axes))


def signatures(
    collections: Sequence[str] = COLLECTIONS,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
    dtypes: Sequence[str] = DTYPES,
) -> st.SearchStrategy[tuple[str, tuple[int, ...], str]]:
    """A ``(collection, shape, dtype)`` triple: one index into their product, simplest first."""
    return _signatures(tuple(collections), tuple(map(tuple, shapes)), tuple(dtypes))


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


def draw_variable(
    draw: st.DrawFn,
    signature: st.SearchStrategy[tuple[str, tuple[int, ...], str]],
    sharding: bool,
    base: int,
) -> VarSpec:
    """A Variable of a drawn signature (and sharding, if enabled) holding ``base, base + 1, ...``."""
    collection, shape, dtype = draw(signature)
    annotation = _draw_sharding(draw, len(shape), MESH_AXES) if sharding else None
    return VarSpec(collection, shape, dtype, _data(shape, dtype, base), annotation)


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

    The value is ``base, base + 1, ...`` with ``base`` drawn in ``-8..8``: the elements of one array
    differ (a transposed or reversed value shows) and it shrinks to ``[0, 1, ...]``. (Inside
    :func:`~.graphs.graphs` the base is not drawn: Variable ``j`` starts at ``10 * j``.)
    """
    signature = signatures(collections, shapes, dtypes)
    return draw_variable(draw, signature, sharding, draw(_BASE))


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
