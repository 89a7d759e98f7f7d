"""Variables and static values: collections, shapes, dtypes, sharding annotations, statics.

Shapes and dtypes come from a small fixed set so that graphs drawn by different examples share a handful
of array signatures and ``jax.jit`` caches keep hitting; what the suite varies is structure, not size.
Values are runs of small integers (also for float32): exact in every dtype, readable in a reproduction
snippet, and distinct enough to tell two Variables apart.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Hashable, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.strategies._internal.blueprint import Sharding, VarSpec
from nnx_conformance.strategies._internal.names import DEFAULT_CAPABILITIES

__all__ = [
    "COLLECTIONS",
    "DTYPES",
    "MESH_AXES",
    "PUNCTUATED_COLLECTIONS",
    "SHAPES",
    "collection_pool",
    "collections",
    "dtypes",
    "shapes",
    "shardings",
    "signatures",
    "statics",
    "variables",
]

COLLECTIONS: tuple[str, ...] = ("params", "batch_stats", "cache", "param", "params_", "Params", "stats")
"""Collection names every implementation must accept, simplest (and most common) first, so a Variable
shrinks to ``"params"``. After the three common names come their confusions: ``"param"`` and
``"params_"`` (one is a prefix of the next: a filter matching by prefix or ``startswith`` takes all
three), ``"Params"`` (a case variant: a case-insensitive match merges it with ``"params"``) and
``"stats"`` (a suffix of ``"batch_stats"``: an ``endswith`` or substring match takes both)."""
PUNCTUATED_COLLECTIONS: tuple[str, ...] = ("batch-stats", "batch.stats")
"""Collection names spelled like ``"batch_stats"`` with another separator (a match that normalises
punctuation, or a key that joins collection and path with ``"."``, merges them); drawn only where
``Capabilities.separator_in_names`` holds."""
SHAPES: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (2, 3))
DTYPES: tuple[str, ...] = ("float32", "int32")
MESH_AXES: tuple[str, ...] = ("data", "model")

_BASE = st.integers(-8, 8)


@functools.lru_cache(maxsize=64)
def collection_pool(capabilities: Capabilities = DEFAULT_CAPABILITIES) -> tuple[str, ...]:
    """The collection names to draw for ``capabilities``, simplest first: :data:`COLLECTIONS`, plus
    :data:`PUNCTUATED_COLLECTIONS` where ``separator_in_names`` holds."""
    return COLLECTIONS + (PUNCTUATED_COLLECTIONS if capabilities.separator_in_names else ())


def collections(capabilities: Capabilities = DEFAULT_CAPABILITIES) -> st.SearchStrategy[str]:
    """A collection name from :func:`collection_pool` (one choice, shrinking to ``"params"``)."""
    return st.sampled_from(collection_pool(capabilities))


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
    options = _annotations(ndim, axes)
    return st.sampled_from((None,) * len(options) + options)


@functools.cache
def _annotations(ndim: int, axes: tuple[str, ...]) -> tuple[Sharding, ...]:
    """Every annotation of an ``ndim``-array: per axis ``None`` or a mesh axis no other axis uses."""
    options: list[Sharding] = [()]
    for _ in range(ndim):
        options = [(*o, a) for o in options for a in (None, *axes) if a is None or a not in o]
    return tuple(options)


@st.composite
def shardings(draw: st.DrawFn, shape: tuple[int, ...], axes: Sequence[str] = MESH_AXES) -> Sharding | None:
    """``None`` or an annotation for ``shape``: one entry per axis, ``None`` or an unused mesh axis."""
    return draw(_sharding_options(len(shape), tuple(axes)))


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
    return (np.arange(math.prod(shape)) + base).astype(dtype).tobytes()


Head = tuple[str, "tuple[int, ...] | None", str]
"""``(collection, shape, dtype)``, the shape left ``None`` where a second choice draws it (with sharding)."""

# Hypothesis draws indices into longer lists with a strong bias towards the start (half the draws of a
# 1,344-entry list land in its first quarter), which would silently skew the weights built below.
_MAX_TABLE = 256


@dataclasses.dataclass(frozen=True)
class KindTables:
    """Variable kinds as one ``sampled_from`` draw, or two with sharding, simplest entries first.

    Without sharding, ``heads`` holds every signature (see :func:`signatures`) and ``tails`` is unused. With
    sharding, one table of every (signature, annotation) would be far longer than Hypothesis draws
    uniformly from, so ``heads`` holds ``(collection, None, dtype)`` and ``tails`` the ``(shape, annotation)``
    pairs, weighted: each shape takes the same share, half of it unannotated and half split evenly over
    the shape's valid annotations (as :func:`shardings` draws them). Unannotated entries come first, so
    a Variable shrinks to ``("params", (), "float32", None)`` by default.
    """

    heads: tuple[Head, ...]
    tails: tuple[tuple[tuple[int, ...], Sharding | None], ...]

    @functools.cached_property
    def tail(self) -> st.SearchStrategy[tuple[tuple[int, ...], Sharding | None]]:
        return st.sampled_from(self.tails)

    def finish(self, draw: st.DrawFn, head: Head, base: int) -> VarSpec:
        """The Variable starting with ``head``, its tail drawn if it has one, holding ``base, base + 1, ...``."""
        collection, shape, dtype = head
        annotation = None
        if shape is None:
            shape, annotation = draw(self.tail)
        return VarSpec(collection, shape, dtype, _data(shape, dtype, base), annotation)


def kind_tables(
    collections: Sequence[str] = COLLECTIONS,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
    dtypes: Sequence[str] = DTYPES,
    sharding: bool = False,
) -> KindTables:
    """The :class:`KindTables` for Variables of these collections, shapes and dtypes."""
    return _kind_tables(tuple(collections), tuple(map(tuple, shapes)), tuple(dtypes), sharding)


@functools.lru_cache(maxsize=64)
def _kind_tables(
    collections: tuple[str, ...],
    shapes: tuple[tuple[int, ...], ...],
    dtypes: tuple[str, ...],
    sharding: bool,
) -> KindTables:
    if not (collections and shapes and dtypes):
        raise InvalidArgument("collections, shapes and dtypes must not be empty")
    if not sharding:
        return KindTables(tuple(itertools.product(collections, shapes, dtypes)), ())
    heads = tuple((c, None, d) for c, d in itertools.product(collections, dtypes))
    options = {s: _annotations(len(s), MESH_AXES) for s in shapes}
    half = math.lcm(*(len(o) for o in options.values()))  # exact shares...
    if 2 * half * len(shapes) > _MAX_TABLE:  # ...unless the table gets too long: then near-even ones
        half = max(len(o) for o in options.values())
    plain = tuple((s, None) for s in shapes for _ in range(half))
    annotated = tuple((s, a) for s, o in options.items() for a in o for _ in range(max(1, half // len(o))))
    return KindTables(heads, plain + annotated)


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
    tables = kind_tables(collections, shapes, dtypes, sharding)
    return tables.finish(draw, draw(_head_strategy(tables.heads)), draw(_BASE))


@functools.lru_cache(maxsize=64)
def _head_strategy(heads: tuple[Head, ...]) -> st.SearchStrategy[Head]:
    return st.sampled_from(heads)


STATIC_VALUES: tuple[Hashable, ...] = (  # simplest first: shrinking goes to None
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
    ((0,), "a"),
    frozenset(),
    frozenset({1}),
    frozenset({0.0, "a"}),
    frozenset({True, (1,)}),
    (frozenset({1.0}), (False,)),
)


def statics() -> st.SearchStrategy[Hashable]:
    """A hashable static attribute value from a fixed pool: ``None``, bools, small ints, floats, strs, and
    tuples and frozensets of them, nested.

    ``1``, ``1.0`` and ``True`` are all there, also as members of a tuple or frozenset: Python calls
    ``frozenset({1})`` and ``frozenset({True})`` equal, a graph definition must not. One choice per value,
    shrinking to ``None``.
    """
    return st.sampled_from(STATIC_VALUES)
