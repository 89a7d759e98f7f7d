"""Mutants of the State mapping: the ``state.*`` clauses must catch each one.

Each is the core adapter with one State operation done wrong, either in the adapter's ``filter``/``union``
(over the core's correct ``State``) or through a private ``State`` subclass with its own pytree
registration. The core's ``State`` class itself is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from mutants import mutant
from nnx_conformance.core import State, Variable
from nnx_conformance.core.state import _agree
from nnx_conformance.spec.adapter import Filter, Path
from nnx_conformance.spec.adapters.core import CoreAdapter

# ---------------------------------------------------------------------------------------------------------
# state.filter-partition
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="state.filter-partition")
class PredicateFilterDropsLastEntry(CoreAdapter):
    """Filtering with a predicate loses the last matching entry (an off-by-one in the loop that collects
    the matches); filtering by collection names is right. state.filter-partition must catch it."""

    def filter(self, state: Any, *filters: Filter) -> State:
        result = super().filter(state, *filters)
        if all(isinstance(f, str) for f in filters) or not len(result):
            return result
        return State(list(result.items())[:-1])


@mutant(catches="state.filter-partition")
class SeveralFiltersIntersect(CoreAdapter):
    """``filter(state, f1, f2)`` keeps the entries matching *every* filter instead of *any* (filters
    applied one after the other). state.filter-partition must catch it."""

    def filter(self, state: Any, *filters: Filter) -> State:
        if not filters:
            return super().filter(state)
        for f in filters:
            state = super().filter(state, f)
        return state


@mutant(catches="state.filter-partition")
class PredicateSeesSplitPath(CoreAdapter):
    """A predicate filter is called with the path re-split from its ``"a/b"`` display form (the seed's
    way), so for an attribute named ``"x/y"`` the predicate sees ``("x", "y")``: depth, prefix and name
    tests go wrong exactly where names hold the separator. state.filter-partition must catch it."""

    def filter(self, state: Any, *filters: Filter) -> State:
        def resplit(f: Filter) -> Filter:
            if isinstance(f, str):
                return f
            return lambda path, var: f(tuple("/".join(path).split("/")), var)

        return super().filter(state, *(resplit(f) for f in filters))


@mutant(catches="state.filter-partition")
class AbsentCollectionFilterKeepsEverything(CoreAdapter):
    """Filtering by a collection name that no entry of the state has returns the whole state (a
    "nothing to filter by, keep everything" fallback), so filtering a state without ``cache`` entries by
    ``"cache"`` overlaps every other collection's part. state.filter-partition must catch it."""

    def filter(self, state: Any, *filters: Filter) -> State:
        present = {var.collection for var in state.values()}
        if len(filters) == 1 and isinstance(filters[0], str) and filters[0] not in present:
            return state
        return super().filter(state, *filters)


class _CollectionMatch(CoreAdapter):
    """The core adapter, with each collection-name filter replaced by the predicate :meth:`same`."""

    def same(self, collection: str, wanted: str) -> bool:
        raise NotImplementedError

    def filter(self, state: Any, *filters: Filter) -> State:
        def by_collection(f: Filter) -> Filter:
            if not isinstance(f, str):
                return f
            return lambda path, var: self.same(var.collection, f)

        return super().filter(state, *(by_collection(f) for f in filters))


@mutant(catches="state.filter-partition")
class CollectionFilterMatchesPrefix(_CollectionMatch):
    """A collection filter keeps every Variable whose collection *starts with* the name (``startswith``,
    as a tag or namespace match would), so ``filter(state, "param")`` also keeps ``params`` and
    ``params_`` entries. state.filter-partition must catch it."""

    def same(self, collection: str, wanted: str) -> bool:
        return collection.startswith(wanted)


@mutant(catches="state.filter-partition")
class CollectionFilterIgnoresCase(_CollectionMatch):
    """A collection filter compares names case-insensitively (``casefold``), so ``filter(state,
    "params")`` also keeps ``Params`` entries. state.filter-partition must catch it."""

    def same(self, collection: str, wanted: str) -> bool:
        return collection.casefold() == wanted.casefold()


@mutant(catches="state.filter-partition")
class CollectionFilterNormalisesSeparators(_CollectionMatch):
    """A collection filter compares names with punctuation normalised to ``_`` (as a key built from
    ``collection.replace("-", "_")`` would), so ``filter(state, "batch_stats")`` also keeps
    ``batch-stats`` and ``batch.stats`` entries. state.filter-partition must catch it."""

    def same(self, collection: str, wanted: str) -> bool:
        def bare(name: str) -> str:
            return name.replace("-", "_").replace(".", "_")

        return bare(collection) == bare(wanted)


@mutant(catches="state.filter-partition")
class MakeStateKeepsGivenOrder(CoreAdapter):
    """``make_state`` keeps its entries in the order they were given instead of canonical order (a dict
    built from the items, never sorted), and filtering keeps the order of the state it filters: a state
    assembled from entries in another order filters to a non-canonical state. A partition's own state,
    already sorted, hides it. state.filter-partition must catch it."""

    def make_state(self, items: Sequence[tuple[Path, Any]]) -> State:
        return State._from_sorted(dict(items))


# ---------------------------------------------------------------------------------------------------------
# state.union-laws
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="state.union-laws")
class UnionLaterWins(CoreAdapter):
    """Union is ``{**a, **b}``: at a path held by both states the later state silently wins, even when the
    two hold different Variables with different values (the seed's union). state.union-laws must catch
    it."""

    def union(self, *states: Any) -> State:
        merged: dict[Path, Any] = {}
        for state in states:
            merged.update(state.items())
        return State(merged)


@mutant(catches="state.union-laws")
class UnionInOperandOrder(CoreAdapter):
    """Union concatenates its operands' entries (first occurrence wins, conflicts still checked) and keeps
    that order instead of re-sorting, so the result's order depends on the order of the operands.
    state.union-laws must catch it."""

    def union(self, *states: Any) -> State:
        checked = super().union(*states)  # conflicts are still refused
        merged: dict[Path, Any] = {}
        for state in states:
            for path, var in state.items():
                merged.setdefault(path, var)
        assert set(merged) == set(checked)
        return State._from_sorted(merged)


@mutant(catches="state.union-laws")
class UnionOfThreeIgnoresTheThird(CoreAdapter):
    """``union(a, b, c)`` is written as ``def union(a, b, *rest)`` and forgets ``rest``: unions of two
    states are right, a third operand is dropped. state.union-laws must catch it."""

    def union(self, *states: Any) -> State:
        return super().union(*states[:2])


class _UnionIgnoring(CoreAdapter):
    """Union over the core's, except that a later entry differing from the first one at its path *only* in
    the attribute ``ignored`` is taken to be the first one (the core then sees no conflict)."""

    ignored = ""

    def union(self, *states: Any) -> State:
        first: dict[Path, Variable[Any]] = {}
        for state in states:
            for path, var in state.items():
                first.setdefault(path, var)
        return super().union(*(State([(p, self._alike(first[p], v)) for p, v in s.items()]) for s in states))

    def _alike(self, kept: Variable[Any], var: Variable[Any]) -> Variable[Any]:
        blurred = Variable(
            kept.collection if self.ignored == "collection" else var.collection,
            var.value,
            sharding=kept.sharding if self.ignored == "sharding" else var.sharding,
        )
        return kept if kept is var or _agree(kept, blurred) else var


@mutant(catches="state.union-laws", by="test_union_of_conflicting_states_is_an_error")
class UnionIgnoresCollectionConflicts(_UnionIgnoring):
    """Union compares conflicting entries by value and sharding but not by collection: a ``params``
    Variable and a ``batch_stats`` (or ``param``) Variable with equal values at one path unite silently,
    the first operand's kept. state.union-laws must catch it."""

    ignored = "collection"


@mutant(catches="state.union-laws", by="test_union_of_conflicting_states_is_an_error")
class UnionIgnoresShardingConflicts(_UnionIgnoring):
    """Union compares conflicting entries by value and collection but not by sharding: equal values
    annotated ``("data", None)`` and ``(None, "model")`` at one path unite silently, the first operand's
    annotation kept. state.union-laws must catch it."""

    ignored = "sharding"


# ---------------------------------------------------------------------------------------------------------
# state.pytree
# ---------------------------------------------------------------------------------------------------------


class _StringOrderState(State):
    """Iterates in canonical order, but flattens in the order of the joined ``"a/b"`` strings."""

    __slots__ = ()


def _string_flatten(state: _StringOrderState) -> tuple[list[Any], tuple[Path, ...]]:
    paths = sorted(state._data, key="/".join)
    return [state._data[p] for p in paths], tuple(paths)


def _string_unflatten(paths: tuple[Path, ...], children: Sequence[Any]) -> _StringOrderState:
    return _StringOrderState._from_sorted(dict(sorted(zip(paths, children))))


jax.tree_util.register_pytree_node(_StringOrderState, _string_flatten, _string_unflatten)


class _OneCollectionState(State):
    """A pytree whose aux data keeps a single collection name for all entries ("they are all params")."""

    __slots__ = ()


def _one_collection_flatten(state: _OneCollectionState) -> tuple[list[Any], tuple[Any, ...]]:
    values = list(state._data.values())
    collection = values[0].collection if values else "params"
    shardings = tuple(v.sharding for v in values)
    return [v.value for v in values], (tuple(state._data), collection, shardings)


def _one_collection_unflatten(aux: tuple[Any, ...], leaves: Sequence[Any]) -> _OneCollectionState:
    paths, collection, shardings = aux
    data = {p: Variable(collection, x, sharding=s) for p, x, s in zip(paths, leaves, shardings)}
    return _OneCollectionState._from_sorted(data)


jax.tree_util.register_pytree_node(_OneCollectionState, _one_collection_flatten, _one_collection_unflatten)


class _GivenOrderState(State):
    """Iterates and flattens in canonical order, but keeps the order its entries were given in (``_given``)
    in its pytree aux data, and a rebuilt state (``tree_unflatten``, ``tree_map``, the output of ``jit``)
    lists its entries in that order."""

    __slots__ = ("_given",)

    _given: tuple[Path, ...]


def _given_flatten(state: _GivenOrderState) -> tuple[list[Any], tuple[tuple[Path, ...], tuple[Path, ...]]]:
    return list(state._data.values()), (tuple(state._data), state._given)


def _given_unflatten(aux: tuple[tuple[Path, ...], tuple[Path, ...]], children: Sequence[Any]) -> State:
    paths, given = aux
    by_path = dict(zip(paths, children))
    return State._from_sorted({p: by_path[p] for p in given})


jax.tree_util.register_pytree_node(_GivenOrderState, _given_flatten, _given_unflatten)


@mutant(catches="state.pytree")
class UnflattenRestoresGivenOrder(CoreAdapter):
    """A state made by ``make_state`` iterates and flattens in canonical order, but its treedef remembers
    the order the entries were given in and unflattening rebuilds them in that order: after
    ``tree_map``, ``tree_unflatten`` or a pass through ``jit``/``vmap``/``scan`` a state assembled in
    another order comes back out of canonical order. Partitioned states, given in canonical order, hide
    it. state.pytree must catch it."""

    def make_state(self, items: Sequence[tuple[Path, Any]]) -> State:
        state = _GivenOrderState._from_sorted(dict(super().make_state(items).items()))
        assert isinstance(state, _GivenOrderState)
        state._given = tuple(path for path, _ in items)
        return state


class _StateClassAdapter(CoreAdapter):
    """The core adapter, with every state it hands out re-wrapped as ``state_class``."""

    state_class: type[State] = State

    def _wrap(self, state: State) -> State:
        return self.state_class._from_sorted(dict(state.items()))

    def partition(self, module: Any) -> tuple[State, Any]:
        state, graphdef = super().partition(module)
        return self._wrap(state), graphdef

    def make_state(self, items: Sequence[tuple[Path, Any]]) -> State:
        return self._wrap(super().make_state(items))

    def filter(self, state: Any, *filters: Filter) -> State:
        return self._wrap(super().filter(State._from_sorted(dict(state.items())), *filters))

    def union(self, *states: Any) -> State:
        return self._wrap(super().union(*(State._from_sorted(dict(s.items())) for s in states)))


@mutant(catches="state.pytree")
class LeavesInJoinedStringOrder(_StateClassAdapter):
    """The state's pytree orders its leaves by the joined ``"a/b"`` string instead of the path tuple: the
    same order, except where a name holds a character sorting before ``"/"`` (``("a-b",)`` comes before
    ``("a", "b")`` as a string, after it as a tuple). Iteration order is right. state.pytree must catch
    it."""

    state_class = _StringOrderState


@mutant(catches="state.pytree")
class UnflattenKeepsOneCollection(_StateClassAdapter):
    """The state's pytree stores one collection name in its aux data (the first entry's) and unflattens
    every Variable with it, so ``tree_map``, ``jit``, ``vmap`` and ``scan`` turn ``batch_stats`` into
    ``params`` when a state mixes collections. state.pytree must catch it."""

    state_class = _OneCollectionState
