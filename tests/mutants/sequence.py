"""Mutants that only sequences catch: the ``sequence.*`` clauses must catch each one.

Each is correct on any fresh graph or context, so every one-shot clause passes it (``benchmarks/kill_matrix.py``
shows the column); the bug needs a history -- an operation, a change, the operation again. The graph
mutants derive from :class:`~._kit.KitAdapter` and keep their caches in a ``WeakKeyDictionary`` keyed by
the module object (never by ``id``: a recycled id would make them fail one-shot properties at random).
"""

from __future__ import annotations

import weakref
from typing import Any

import jax

from mutants import mutant
from mutants._kit import KitAdapter, KitDef, Path
from mutants.rng import _Context, _ContextAdapter
from nnx_conformance.core import State, Variable

# ---------------------------------------------------------------------------------------------------------
# sequence.graph
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="sequence.graph")
class DefinitionCachedPerModule(KitAdapter):
    """Partition caches each module's walk (its definition and its ``(path, Variable)`` list) per module
    object, and drops the cache when an attribute is replaced or deleted, but not when a new attribute is
    added: after ``set_attr(m, 'new', ...)``, ``partition(m)`` still gives the old definition and a state
    without the new attribute's Variables (values are read afresh, so only the structure is stale). A
    cached flatten with a version counter bumped on reassignment only. sequence.graph must catch it; every
    one-shot property partitions a graph that was complete before its first partition."""

    def __init__(self) -> None:
        self._walks: weakref.WeakKeyDictionary[Any, tuple[KitDef, list[tuple[Path, Variable[Any]]]]] = (
            weakref.WeakKeyDictionary()
        )

    def set_attr(self, module: Any, name: str, value: Any) -> None:
        if name in vars(module):
            self._walks.clear()
        super().set_attr(module, name, value)

    def del_attr(self, module: Any, name: str) -> None:
        self._walks.clear()
        super().del_attr(module, name)

    def partition(self, module: Any) -> tuple[State, KitDef]:
        hit = self._walks.get(module)
        if hit is None:
            hit = self._walks[module] = self.walk(module)
        graphdef, variables = hit
        return self.make_state_from_walk([(p, self.snapshot(v)) for p, v in variables]), graphdef


@mutant(catches="sequence.graph")
class UpdateThroughFirstIndex(KitAdapter):
    """Update locates Variables through a ``path -> Variable`` index built on its first call for a module
    and reused on every later call: after a Variable attribute is replaced (or a new one added), an update
    writes into the detached old Variable, or refuses the new path, and the graph keeps its old values.
    sequence.graph must catch it; one-shot properties update a module once."""

    def __init__(self) -> None:
        self._index: weakref.WeakKeyDictionary[Any, dict[Path, Variable[Any]]] = weakref.WeakKeyDictionary()

    def update(self, module: Any, state: Any) -> None:
        index = self._index.get(module)
        if index is None:
            _, variables = self.walk(module)
            index = self._index[module] = dict(variables)
        items = [(tuple(p), v) for p, v in self.state_items(state)]
        targets = []
        for path, new in items:
            target = index.get(path)
            if target is None:
                raise self.mismatch("update: the module has no Variable", path)
            self.check_leaf(new, target.collection, path)
            targets.append(target)
        for target, (path, new) in zip(targets, items):
            self.assign(module, target, new, path)


# ---------------------------------------------------------------------------------------------------------
# sequence.rng
# ---------------------------------------------------------------------------------------------------------


class _FrozenWhenRebuiltContext(_Context):
    """A context whose counter stops once it has been rebuilt from concrete leaves (what ``jit`` hands back).

    Inside a trace the key is a tracer and the context counts as usual, so keys drawn *under* ``jit`` equal
    the eager ones; only the context that comes out is broken.
    """

    __slots__ = ("frozen",)

    def _take(self) -> int:
        if getattr(self, "frozen", False):
            return self.count  # the bug: the counter no longer advances
        return super()._take()


def _flatten(ctx: _FrozenWhenRebuiltContext) -> tuple[tuple[jax.Array], tuple[int, tuple[int, ...]]]:
    return (ctx.key,), (ctx.count, ctx.count_path)


def _unflatten(aux: tuple[int, tuple[int, ...]], children: Any) -> _FrozenWhenRebuiltContext:
    ctx = _FrozenWhenRebuiltContext.__new__(_FrozenWhenRebuiltContext)
    (ctx.key,) = children
    ctx.count, ctx.count_path = aux
    ctx.frozen = not isinstance(ctx.key, jax.core.Tracer) and getattr(ctx.key, "ndim", 0) == 0
    return ctx


jax.tree_util.register_pytree_node(_FrozenWhenRebuiltContext, _flatten, _unflatten)


@mutant(catches="sequence.rng")
class ContextFrozenAfterJit(_ContextAdapter):
    """A context handed back by ``jit`` (rebuilt by its pytree unflatten from concrete leaves) keeps its
    count but never advances it again: every later draw from it repeats one key, and its forks repeat one
    child. Draws inside the jitted function are right (there the key is a tracer), so ``rng.transforms``
    sees eager and jitted keys agree. sequence.rng must catch it."""

    context_class = _FrozenWhenRebuiltContext
