"""State filters: collection names and path predicates with readable reprs.

A filter is what :meth:`Adapter.filter` takes: a collection name, or a predicate ``f(path, variable)``.
The predicates drawn here are small frozen dataclasses rather than lambdas, for two reasons: a falsifying
example then prints as ``PathPrefix(prefix=('a',))`` instead of ``<function <lambda>>``, and they look only
at the *path*, so the oracle can evaluate them on a blueprint exactly as the implementation evaluates them
on its own Variable objects.

Several filters mean "entries matching any of them"; draw them with ``st.lists(filters(), min_size=1)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Filter, Path
from nnx_conformance.strategies._internal.blueprint import VarSpec
from nnx_conformance.strategies._internal.names import name_pool
from nnx_conformance.strategies._internal.variables import COLLECTIONS

__all__ = ["Everything", "Nothing", "PathContains", "PathDepth", "PathPrefix", "filters", "matches"]


@dataclasses.dataclass(frozen=True)
class PathPrefix:
    """Entries at or below ``prefix`` (component-wise: ``("a",)`` does not match ``("a-b",)``)."""

    prefix: Path

    def __call__(self, path: Path, variable: Any) -> bool:
        return path[: len(self.prefix)] == self.prefix


@dataclasses.dataclass(frozen=True)
class PathContains:
    """Entries whose path has a component equal to ``name``."""

    name: str

    def __call__(self, path: Path, variable: Any) -> bool:
        return self.name in path


@dataclasses.dataclass(frozen=True)
class PathDepth:
    """Entries whose path has at most ``at_most`` components."""

    at_most: int

    def __call__(self, path: Path, variable: Any) -> bool:
        return len(path) <= self.at_most


@dataclasses.dataclass(frozen=True)
class Everything:
    """Every entry (the filter that must give back the whole state)."""

    def __call__(self, path: Path, variable: Any) -> bool:
        return True


@dataclasses.dataclass(frozen=True)
class Nothing:
    """No entry (the filter that must give an empty state)."""

    def __call__(self, path: Path, variable: Any) -> bool:
        return False


def filters(
    collections: Sequence[str] = COLLECTIONS, names: Sequence[str] | None = None
) -> st.SearchStrategy[Filter]:
    """A collection name from ``collections``, or a path predicate over names from ``names``.

    ``names`` defaults to :func:`~.names.name_pool`, the pool :func:`~.graphs.graphs` draws from, so a
    predicate often selects part of a drawn graph rather than nothing.
    """
    pool = name_pool() if names is None else tuple(names)
    name = st.sampled_from(pool)
    return st.one_of(
        st.sampled_from(tuple(collections)),
        st.builds(PathPrefix, st.lists(name, min_size=1, max_size=2).map(tuple)),
        st.builds(PathContains, name),
        st.builds(PathDepth, st.integers(0, 3)),
        st.sampled_from((Everything(), Nothing())),
    )


def matches(f: Filter, path: Path, var: VarSpec) -> bool:
    """Whether ``f`` keeps the entry ``(path, var)``: the oracle's side of :meth:`Adapter.filter`."""
    if isinstance(f, str):
        return var.collection == f
    return bool(f(path, var))
