"""Properties of the State mapping: the ``state.*`` clauses of ``SPEC.md``.

Each property partitions a drawn module graph to get a realistic state (several collections, confusable
ones among them, sharding annotations, paths of several depths), assembles the state under test from its
entries in a drawn way (:class:`Assembly`: as partitioned, or ``make_state`` of the entries in any order,
filtered, or united from runs), then exercises filter, union or the pytree protocol on it. The
expected answer is computed *from the state's own entries* (``impl.state_items``), not from the oracle:
these clauses are about what State operations do with whatever partition produced, so a partition bug is
reported once, by the ``graph.*`` clauses, instead of again here. The one exception is merging a union
back, whose clause is about the graph that comes out.

Entries are compared by path, value (bit for bit), collection and sharding. Whether an entry is the very
Variable object of another state is implementation-defined (SPEC.md, last section), so it is never
required here.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, given, note
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Capabilities, Filter, Path, Sharding
from nnx_conformance.spec.clauses import clause
from nnx_conformance.spec.properties._helpers import (
    E,
    budget,
    build,
    code,
    fail,
    fmt_path,
    let,
    names_path,
    refuses,
    same_array,
    show,
)
from nnx_conformance.spec.properties._judge import expect_graph
from nnx_conformance.strategies import (
    PathContains,
    PathDepth,
    PathPrefix,
    allowed,
    collection_pool,
    collections,
    filters,
    graphs,
    read,
    shardings,
)

__all__ = [
    "CONFLICTS",
    "ORDER_TRAP_NAMES",
    "SMALL",
    "Assembly",
    "assemblies",
    "assert_same_items",
    "confusable",
    "filter_lists",
    "items_of",
    "matches_entry",
    "own_collection_filters",
    "own_path_filters",
    "test_collection_filters_are_disjoint_and_cover_the_state",
    "test_filter_keeps_exactly_the_matching_entries",
    "test_merging_the_union_of_filtered_parts_equals_merging_the_whole",
    "test_state_flattens_to_values_in_canonical_order_and_unflattens_back",
    "test_state_passes_through_jit_vmap_and_scan_unchanged_in_structure",
    "test_union_is_associative",
    "test_union_is_commutative_on_disjoint_states",
    "test_union_is_idempotent",
    "test_union_of_conflicting_states_is_an_error",
    "test_union_yields_canonical_order_whatever_the_operand_order",
]

SMALL: dict[str, int] = {"max_nodes": 5, "max_vars": 5, "max_statics": 1}
"""Graph size: a handful of Variables over two or three depths is all a State law needs."""

TINY: dict[str, Any] = {"max_nodes": 3, "max_vars": 3, "max_statics": 0, "names": ("a", "b", "c")}
"""For the jit/vmap/scan property: few distinct structures, so compiled functions are reused."""

Item = tuple[Path, Any]


# ---------------------------------------------------------------------------------------------------------
# Helpers (shared with the meta-tests)
# ---------------------------------------------------------------------------------------------------------


def items_of(impl: Any, state: Any) -> list[Item]:
    """``(path tuple, variable)`` pairs in the implementation's iteration order."""
    return [(tuple(path), var) for path, var in impl.state_items(state)]


def matches_entry(impl: Any, f: Filter, path: Path, var: Any) -> bool:
    """Whether ``f`` keeps the entry: a collection name compares the Variable's collection, a predicate
    is called on ``(path, variable)``. Computed here, independently of ``impl.filter``."""
    if isinstance(f, str):
        return impl.variable_collection(var) == f
    return bool(f(path, var))


def _describe(impl: Any, var: Any) -> str:
    value = np.asarray(impl.variable_value(var))
    sharding = impl.variable_sharding(var)
    extra = "" if sharding is None else f", sharding={tuple(sharding)!r}"
    return f"{impl.variable_collection(var)}:{value.dtype}{list(value.shape)}={value.tolist()!r}{extra}"


def assert_same_items(impl: Any, got: Any, want: Sequence[Item], what: str) -> None:
    """The state ``got`` holds exactly ``want``: the same paths in the same order, and per path the same
    value (bitwise), collection and sharding. On failure the message starts with the first path that
    differs and what was expected there."""
    got_items = items_of(impl, got)
    got_paths, want_paths = [p for p, _ in got_items], [p for p, _ in want]
    if got_paths != want_paths:
        missing = [p for p in want_paths if p not in set(got_paths)]
        extra = [p for p in got_paths if p not in set(want_paths)]
        detail = []
        if missing:
            detail.append(f"  missing: {', '.join(map(fmt_path, missing))}")
        if extra:
            detail.append(f"  unexpected: {', '.join(map(fmt_path, extra))}")
        if not missing and not extra:
            detail.append("  (same paths, different order)")
        first = next(
            (f"at position {k}: {fmt_path(g)}, expected {fmt_path(w)}" for k, (g, w) in enumerate(zip(got_paths, want_paths)) if g != w),
            f"{len(got_paths)} entries, expected {len(want_paths)}",
        )
        fail(
            impl,
            E.eq(E.paths(got), E.lit(want_paths)),
            f"{what}: paths differ, first {first}\n  got      {got_paths}\n  expected {want_paths}\n"
            + "\n".join(detail),
        )
    for (path, g), (_, w) in zip(got_items, want):
        here = E.entry(got, path)
        if not same_array(impl.variable_value(g), impl.variable_value(w)):
            cond = E.same_array(E.value(here), E.value(w))
        elif impl.variable_collection(g) != impl.variable_collection(w):
            cond = E.eq(E.collection(here), E.collection(w))
        elif _sharding(impl, g) != _sharding(impl, w):
            cond = E.eq(E.sharding(here), E.sharding(w))
        else:
            continue
        fail(impl, cond, f"{what}: entry at {fmt_path(path)} is {_describe(impl, g)}, expected {_describe(impl, w)}")


def _sharding(impl: Any, var: Any) -> tuple[str | None, ...] | None:
    sharding = impl.variable_sharding(var)
    return None if sharding is None else tuple(sharding)


def _canonical(items: Sequence[Item]) -> list[Item]:
    return sorted(items, key=lambda item: item[0])


@dataclasses.dataclass(frozen=True)
class Assembly:
    """How the state under test is put together from the entries of a partition.

    ``how`` is ``"partition"`` (the state partition returned), or the entries taken in ``order`` (indices
    into the partition's entries) and given to ``make_state`` all at once (``"make_state"``), at once and
    then filtered by every collection they hold (``"filter"``), or split at ``cuts`` into runs that are
    made into states one by one and united last run first (``"union"``). Every assembly holds the same
    entries, so every state law must come out the same; an implementation whose order (of iteration, of
    leaves, after a ``tree_map`` or ``jit``) follows the order its entries were given in shows here.
    """

    how: Literal["partition", "make_state", "filter", "union"] = "partition"
    order: tuple[int, ...] = ()
    cuts: tuple[int, ...] = ()

    def assemble(self, impl: Any, state: Any, items: Sequence[Item]) -> Any:
        """The state this assembly makes from ``state`` (a partition) and its ``items``."""
        if self.how == "partition":
            return state
        entries = [items[k] for k in self.order]
        if self.how == "make_state":
            return impl.make_state(entries)
        if self.how == "filter":
            present = sorted({impl.variable_collection(v) for _, v in entries})
            return impl.filter(impl.make_state(entries), *present) if present else impl.make_state(entries)
        bounds = (0, *self.cuts, len(entries))
        runs = [impl.make_state(entries[a:b]) for a, b in itertools.pairwise(bounds)]
        return impl.union(*reversed(runs))


def assemblies(n: int) -> st.SearchStrategy[Assembly]:
    """An :class:`Assembly` of ``n`` entries: the partition itself (the shrink target) or the entries in a
    drawn order, made into a state whole, filtered, or as a union of up to three runs."""
    order = st.permutations(range(n)).map(tuple)
    cuts = st.sets(st.integers(1, n - 1), max_size=2).map(sorted).map(tuple) if n > 1 else st.just(())
    return st.one_of(
        st.just(Assembly()),
        st.builds(Assembly, st.just("make_state"), order),
        st.builds(Assembly, st.just("filter"), order),
        st.builds(Assembly, st.just("union"), order, cuts),
    )


def _partitioned(impl: Any, data: st.DataObject, **size: Any) -> tuple[Any, Any, list[Item], Any]:
    """Draw a graph, build it, partition it, and assemble the state under test from the partition's entries
    in a drawn way (:class:`Assembly`): ``(blueprint, state, items, graphdef)``, where ``items`` are the
    partition's entries (what every assembly holds, and what the properties judge against).

    Collections come from :func:`~nnx_conformance.strategies.collection_pool`: besides ``params`` and
    ``batch_stats``, names that are prefixes, suffixes, case or separator variants of them.
    """
    size = {"collections": collection_pool(impl.capabilities), **(size or SMALL)}
    bp = data.draw(graphs(impl.capabilities, **size), label="graph")
    show(impl, bp)
    state, graphdef = impl.partition(build(bp, impl).root)  # build: recorded as one graph
    items = items_of(impl, state)
    how = data.draw(assemblies(len(items)), label="state assembled as")
    return bp, how.assemble(impl, state, items), items, graphdef


def _parts(data: st.DataObject, items: Sequence[Item], n: int, *, disjoint: bool) -> list[list[Item]]:
    """Split ``items`` among ``n`` parts: each entry goes to one part (``disjoint``) or to a drawn set of
    parts (possibly none, possibly several). Each part lists its entries in a drawn order (shrinking to
    the state's)."""
    parts: list[list[Item]] = [[] for _ in range(n)]
    for path, var in items:
        if disjoint:
            chosen = {data.draw(st.integers(0, n - 1), label=f"part of {fmt_path(path)}")}
        else:
            chosen = data.draw(st.sets(st.integers(0, n - 1), max_size=n), label=f"parts of {fmt_path(path)}")
        for k in chosen:
            parts[k].append((path, var))
    return [data.draw(st.permutations(part), label=f"entry order of part {k}") for k, part in enumerate(parts)]


# ---------------------------------------------------------------------------------------------------------
# state.filter-partition
# ---------------------------------------------------------------------------------------------------------


@clause("state.filter-partition")
@budget()
@given(data=st.data())
def test_collection_filters_are_disjoint_and_cover_the_state(impl, data):
    """Filtering by each collection gives states that hold only that collection, share no path, and whose
    union is the whole state (same paths in the same order, same values and metadata)."""
    _, state, items, _ = _partitioned(impl, data)
    names = sorted({impl.variable_collection(v) for _, v in items} | set(collection_pool(impl.capabilities)))
    states = {c: impl.filter(state, c) for c in names}
    parts = {c: items_of(impl, part) for c, part in states.items()}
    owner: dict[Path, str] = {}
    for c, part in parts.items():
        for path, var in part:
            got = impl.variable_collection(var)
            if got != c:
                mine = [p for p, v in items if impl.variable_collection(v) == c]
                fail(
                    impl,
                    E.eq(E.paths(states[c]), E.lit(mine)),
                    f"filter({c!r}) kept {fmt_path(path)}, whose collection is {got!r} (the entries of "
                    f"collection {c!r}: {mine})",
                )
            if path in owner:
                fail(
                    impl,
                    E.py("not ({0} in {1} and {0} in {2})", E.lit(path), E.paths(states[owner[path]]), E.paths(states[c])),
                    f"{fmt_path(path)} is in both filter({owner[path]!r}) and filter({c!r}): the parts overlap",
                )
            owner[path] = c
    lost = [(p, impl.variable_collection(v)) for p, v in items if p not in owner]
    if lost:
        every = " + ".join(f"{{{k + 1}}}" for k in range(len(names)))
        fail(
            impl,
            E.py("{0} in " + every, E.lit(lost[0][0]), *(E.paths(states[c]) for c in names)),
            "entries in no collection filter: "
            + ", ".join(f"{fmt_path(p)} (collection {c!r})" for p, c in lost)
            + f" (the filters: {names})",
        )
    union = impl.union(*(impl.filter(state, c) for c in names))
    assert_same_items(impl, union, _canonical(items), "union of the per-collection filters")


def filter_lists(capabilities: Capabilities) -> st.SearchStrategy[list[Filter]]:
    """Several collections at once, or a mix of collections and path predicates (any of them matches),
    the collections from :func:`~nnx_conformance.strategies.collection_pool`."""
    pool = collection_pool(capabilities)
    return st.one_of(
        st.lists(collections(capabilities), min_size=2, max_size=3, unique=True),
        st.lists(filters(pool), min_size=1, max_size=3),
    )


def confusable(a: str, b: str) -> bool:
    """Whether two distinct collection names are easy to merge by mistake: one is a prefix or a suffix
    of the other, or they are equal up to case or up to the separator (``_``, ``-``, ``.``, ``/``)."""

    def bare(name: str) -> str:
        return "".join("_" if ch in "-./" else ch for ch in name.casefold())

    return a != b and (a.startswith(b) or b.startswith(a) or a.endswith(b) or b.endswith(a) or bare(a) == bare(b))


def own_collection_filters(items: Sequence[Item], impl: Any) -> st.SearchStrategy[list[Filter]]:
    """One to three collection names, each held by an entry of the state or confusable with one
    (:func:`confusable`: ``"param"`` beside ``"params"``, ``"Params"``, ``"batch-stats"`` beside
    ``"batch_stats"``), from the capabilities' pool; none for an empty state.

    Collections drawn from the whole pool seldom sit next to the ones a small state holds; these do, so a
    filter that matches collections by prefix, case-insensitively or up to punctuation keeps an entry it
    must not."""
    present = sorted({impl.variable_collection(v) for _, v in items})
    near = [c for c in collection_pool(impl.capabilities) if c not in present and any(confusable(c, p) for p in present)]
    if not present:
        return st.just([])
    return st.lists(st.sampled_from(present + near), min_size=1, max_size=3, unique=True)


def own_path_filters(items: Sequence[Item]) -> st.SearchStrategy[list[Filter]]:
    """One or two predicates on the state's own paths: a name one of them holds, one of their prefixes, or
    a depth at the boundary of one of them (no predicates for an empty state).

    Predicates drawn from the global name pool rarely touch the names a drawn state actually has (a
    separator name ``"x/y"``, say), so a filter that hands predicates a mangled path would almost never be
    noticed; these sit exactly on the state's own entries.
    """
    paths = [path for path, _ in items]
    if not paths:
        return st.just([])
    names = sorted({name for path in paths for name in path})
    prefixes = sorted({path[:k] for path in paths for k in range(1, len(path) + 1)})
    depths = sorted({d for path in paths for d in (len(path) - 1, len(path))})
    own = st.one_of(
        st.builds(PathContains, st.sampled_from(names)),
        st.builds(PathPrefix, st.sampled_from(prefixes)),
        st.builds(PathDepth, st.sampled_from(depths)),
    )
    return st.lists(own, min_size=1, max_size=2)


@clause("state.filter-partition")
@budget()
@given(data=st.data())
def test_filter_keeps_exactly_the_matching_entries(impl, data):
    """``filter(state, *fs)`` holds exactly the entries matching some ``f`` in ``fs``, in canonical order,
    with their values and metadata; the expectation is computed over the partition's entries. Checked for
    filters drawn from the global pools, for predicates on the state's own paths, and for collection names
    the state holds beside names confusable with them (a filter for ``"param"`` keeps no ``"params"``)."""
    _, state, items, _ = _partitioned(impl, data)
    pooled = data.draw(filter_lists(impl.capabilities), label="filters")
    own = data.draw(own_path_filters(items), label="filters on the state's own paths")
    near = data.draw(own_collection_filters(items, impl), label="the state's collections and their confusions")
    for fs in (pooled, own, near):
        if not fs:
            continue
        want = _canonical([(p, v) for p, v in items if any(matches_entry(impl, f, p, v) for f in fs)])
        assert_same_items(impl, impl.filter(state, *fs), want, f"filter(state, {', '.join(map(repr, fs))})")


# ---------------------------------------------------------------------------------------------------------
# state.union-laws
# ---------------------------------------------------------------------------------------------------------


def _state(impl: Any, items: Sequence[Item]) -> Any:
    return impl.make_state(list(items))


@clause("state.union-laws")
@budget()
@given(data=st.data())
def test_union_is_associative(impl, data):
    """``(a | b) | c == a | (b | c) == union(a, b, c)`` for parts of one state (overlaps allowed: an entry
    in several parts is the same Variable), and all equal the parts' entries in canonical order."""
    _, _, items, _ = _partitioned(impl, data)
    parts = _parts(data, items, 3, disjoint=False)
    a, b, c = (_state(impl, p) for p in parts)
    want = _canonical({p: v for part in parts for p, v in part}.items())
    u = impl.union
    assert_same_items(impl, u(u(a, b), c), want, "union(union(a, b), c)")
    assert_same_items(impl, u(a, u(b, c)), want, "union(a, union(b, c))")
    assert_same_items(impl, u(a, b, c), want, "union(a, b, c)")


@clause("state.union-laws")
@budget()
@given(data=st.data())
def test_union_is_commutative_on_disjoint_states(impl, data):
    """For disjoint parts, the union does not depend on the order of its operands."""
    _, _, items, _ = _partitioned(impl, data)
    parts = _parts(data, items, 3, disjoint=True)
    order = data.draw(st.permutations(range(3)), label="operand order")
    states = [_state(impl, p) for p in parts]
    forward = items_of(impl, impl.union(*states))
    permuted = impl.union(*(states[k] for k in order))
    assert_same_items(impl, permuted, forward, f"union of the parts in order {list(order)} vs [0, 1, 2]")
    pair = impl.union(states[order[1]], states[order[0]])
    assert_same_items(impl, pair, items_of(impl, impl.union(states[order[0]], states[order[1]])), "b | a vs a | b")


@clause("state.union-laws")
@budget()
@given(data=st.data())
def test_union_is_idempotent(impl, data):
    """``s | s == s``, and a part united with itself and the whole gives the whole."""
    _, state, items, _ = _partitioned(impl, data)
    want = _canonical(items)
    assert_same_items(impl, impl.union(state, state), want, "union(s, s)")
    (part,) = _parts(data, items, 1, disjoint=False)
    p = _state(impl, part)
    assert_same_items(impl, impl.union(p, p), _canonical(part), "union(part, part)")
    assert_same_items(impl, impl.union(p, state, p), want, "union(part, s, part)")


@clause("state.union-laws")
@budget()
@given(data=st.data())
def test_union_yields_canonical_order_whatever_the_operand_order(impl, data):
    """Parts built from entries given in any order, united in any operand order, iterate in canonical
    (sorted path) order."""
    _, _, items, _ = _partitioned(impl, data)
    parts = _parts(data, items, 3, disjoint=False)
    shuffled = [
        data.draw(st.permutations(part), label=f"entry order of part {k}") for k, part in enumerate(parts)
    ]
    order = data.draw(st.permutations(range(3)), label="operand order")
    got = impl.union(*(_state(impl, shuffled[k]) for k in order))
    want = _canonical({p: v for part in parts for p, v in part}.items())
    assert_same_items(impl, got, want, f"union of shuffled parts in operand order {list(order)}")


@clause("state.union-laws")
@budget()
@given(data=st.data())
def test_merging_the_union_of_filtered_parts_equals_merging_the_whole(impl, data):
    """``merge(def, union(filter(s, f1), filter(s, f2), ...))`` is the same graph as ``merge(def, s)``:
    splitting a state and putting it back together loses and reorders nothing. Two splits: by collection
    (operands in a drawn order), and by path depth with the deepest paths first -- the order in which an
    implementation that applies entries in operand order meets ``"a/b"`` before ``a``.

    Where merging the whole state already fails (a ``graph.*`` defect), merging the union must fail the
    same way (same exception type): this clause is about the union, not about merge.
    """
    _, state, items, graphdef = _partitioned(impl, data)
    names = sorted({impl.variable_collection(v) for _, v in items} | set(collection_pool(impl.capabilities)))
    order = data.draw(st.permutations(names), label="operand order")
    depths = sorted({len(p) for p, _ in items}, reverse=True)
    splits: list[tuple[str, list[Filter]]] = [
        (f"the collection filters {list(order)}", list(order)),
        (f"the path-depth filters {depths} (deepest first)", [_Depth(d) for d in depths]),
    ]
    whole_error: Exception | None = None
    want = None
    try:
        want = read(impl.merge(graphdef, state), impl)
    except Exception as err:
        whole_error = err
    for label, fs in splits:
        what = f"merging the union of {label}"
        union = impl.union(*(impl.filter(state, f) for f in fs))
        try:
            merged = impl.merge(graphdef, union)
        except Exception as err:
            if whole_error is not None and isinstance(err, type(whole_error)):
                continue
            whole = "works" if whole_error is None else f"raises {type(whole_error).__name__}: {whole_error}"
            raise AssertionError(
                f"merging the whole state {whole}, but {what} raises {type(err).__name__}: {err} (union "
                f"entries in order: {[p for p, _ in items_of(impl, union)]})"
            ) from err
        if whole_error is not None:
            raise AssertionError(
                f"merging the whole state raises {type(whole_error).__name__}: {whole_error}; {what} succeeds"
            ) from whole_error
        assert want is not None
        expect_graph(impl, merged, want, f"{what} differs from merging the whole state")


@dataclasses.dataclass(frozen=True)
class _Depth:
    """Entries whose path has exactly ``depth`` names (a readable predicate filter)."""

    depth: int

    def __call__(self, path: Path, variable: Any) -> bool:
        return len(path) == self.depth

    def repro_source(self, path: str) -> str:
        """The predicate as Python source over ``path`` (for a reproduction's lambda)."""
        return f"len({path}) == {self.depth}"


def _bumped(value: Any) -> np.ndarray:
    array = np.asarray(value)
    return (array + np.ones((), array.dtype)).astype(array.dtype)


CONFLICTS: tuple[str, ...] = ("value", "collection", "sharding")
"""What two Variables at one path may differ in; each alone is a conflict (``sharding`` only where the
adapter claims the ``sharding`` capability)."""


def _replicated(sharding: Sharding | None, ndim: int) -> tuple[str | None, ...]:
    """An annotation with ``None`` spelled out per axis: ``None`` and ``(None, None)`` place alike."""
    return (None,) * ndim if sharding is None else tuple(sharding)


def _rival(impl: Any, data: st.DataObject, var: Any, differs: str) -> Any:
    """A new Variable that differs from ``var`` in ``differs`` alone (the value is a copy otherwise)."""
    value = np.array(impl.variable_value(var))
    collection, sharding = impl.variable_collection(var), _sharding(impl, var)
    if differs == "value":
        value = _bumped(value)
    elif differs == "collection":
        pool = [c for c in collection_pool(impl.capabilities) if c != collection]
        collection = data.draw(st.sampled_from(pool), label="the other collection")
    else:
        placed = _replicated(sharding, value.ndim)
        sharding = data.draw(
            shardings(value.shape).filter(lambda a: _replicated(a, value.ndim) != placed),
            label="the other sharding",
        )
    return impl.new_variable(collection, value, sharding)


@clause("state.union-laws")
@budget()
@given(data=st.data())
def test_union_of_conflicting_states_is_an_error(impl, data):
    """Two states holding *different* Variables at one path that differ in value, in collection alone, or
    (with the ``sharding`` capability) in sharding alone cannot be united silently: whichever operand
    "wins" loses the other's value or metadata without a trace. Both operand orders must raise an error
    that names the path. A sharding conflict is built on an array of one or more axes, where the two
    annotations place the value differently (``None`` and all-``None`` are the same placement)."""
    _, state, items, _ = _partitioned(impl, data)
    assume(items)
    kinds = [k for k in CONFLICTS if k != "sharding" or impl.capabilities.sharding]
    differs = data.draw(st.sampled_from(kinds), label="the entries differ in")
    candidates = [
        k for k, (_, v) in enumerate(items) if differs != "sharding" or np.ndim(impl.variable_value(v)) > 0
    ]
    if not candidates:  # only scalars: no two annotations place them differently
        differs, candidates = "value", list(range(len(items)))
    path, var = items[data.draw(st.sampled_from(candidates), label="conflicting entry")]
    rival = _rival(impl, data, var, differs)
    other = impl.make_state([(path, rival)])
    note(f"conflict in {differs} at {fmt_path(path)}: {_describe(impl, var)} vs {_describe(impl, rival)}")
    for label, operands in (("union(s, t)", (state, other)), ("union(t, s)", (other, state))):

        def accepted(result: Any, label: str = label) -> str:
            kept = dict(items_of(impl, result)).get(path)
            kept_text = "nothing" if kept is None else _describe(impl, kept)
            return (
                f"{label} silently resolved a conflict in {differs} at {fmt_path(path)}: s holds "
                f"{_describe(impl, var)}, t holds {_describe(impl, rival)}, the union kept {kept_text}"
            )

        refuses(
            impl,
            "union",
            operands,
            [path],
            names_path=names_path,
            accepted=accepted,
            unnamed=f"{label} raised an error for the conflict in {differs} at {fmt_path(path)}, but the "
            "message does not name the path: ",
        )


# ---------------------------------------------------------------------------------------------------------
# state.pytree
# ---------------------------------------------------------------------------------------------------------


def _structure(impl: Any, state: Any) -> list[tuple[Path, str, Any, tuple[int, ...], str]]:
    out = []
    for path, var in items_of(impl, state):
        value = np.asarray(impl.variable_value(var))
        out.append((path, impl.variable_collection(var), _sharding(impl, var), value.shape, str(value.dtype)))
    return out


def _assert_structure(impl: Any, got: Any, want: Any, what: str, *, batch: tuple[int, ...] = ()) -> None:
    """Same paths (in order), collections, sharding and dtypes; shapes equal up to a leading ``batch``."""
    g, w = _structure(impl, got), _structure(impl, want)
    if [e[0] for e in g] != [e[0] for e in w]:
        fail(
            impl,
            E.eq(E.paths(got), E.paths(want)),
            f"{what}: paths changed\n  got      {[e[0] for e in g]}\n  expected {[e[0] for e in w]}",
        )
    for (path, gc, gs, gshape, gd), (_, wc, ws, wshape, wd) in zip(g, w):
        here, there = E.entry(got, path), E.entry(want, path)
        message = f"{what}: at {fmt_path(path)} collection/sharding/dtype became {(gc, gs, gd)}, expected {(wc, ws, wd)}"
        if gc != wc:
            fail(impl, E.eq(E.collection(here), E.collection(there)), message)
        if gs != ws:
            fail(impl, E.eq(E.sharding(here), E.sharding(there)), message)
        if gd != wd:
            fail(impl, E.eq(E.py("{0}.dtype", E.value(here)), E.py("{0}.dtype", E.value(there))), message)
        if gshape != (*batch, *wshape):
            fail(
                impl,
                E.eq(E.py("{0}.shape", E.value(here)), E.py("({1}, *{0}.shape)", E.value(there), E.lit(batch))),
                f"{what}: at {fmt_path(path)} shape became {gshape}, expected {(*batch, *wshape)}",
            )


def _assert_values(impl: Any, got: Any, want: dict[Path, np.ndarray], what: str) -> None:
    for path, var in items_of(impl, got):
        value = np.asarray(impl.variable_value(var))
        if not same_array(value, want[path]):
            fail(
                impl,
                E.same_array(E.value(E.entry(got, path)), E.lit(want[path])),
                f"{what}: value at {fmt_path(path)} is {value.tolist()!r}, expected {want[path].tolist()!r}",
            )


@clause("state.pytree")
@budget()
@given(data=st.data())
def test_state_flattens_to_values_in_canonical_order_and_unflattens_back(impl, data):
    """``tree_flatten(state)`` gives the Variables' values in canonical order, and unflattening the leaves
    gives back the same paths, collections, sharding and values."""
    _, state, items, _ = _partitioned(impl, data)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    want = _canonical(items)
    if len(leaves) != len(want):
        fail(
            impl,
            E.py("len({0}) == {1}", E.observe("leaves", state), E.lit(len(want))),
            f"{len(leaves)} leaves for a state of {len(want)} entries ({[p for p, _ in want]})",
        )
    for i, (leaf, (path, var)) in enumerate(zip(leaves, want)):
        value = impl.variable_value(var)
        if not same_array(leaf, value):
            fail(
                impl,
                E.same_array(E.py("{0}[{1}]", E.observe("leaves", state), E.lit(i)), E.value(var)),
                f"leaf #{i} is {np.asarray(leaf).tolist()!r}; in canonical order it should be the value at "
                f"{fmt_path(path)}, {np.asarray(value).tolist()!r} (leaf order: "
                f"{[np.asarray(x).tolist() for x in leaves]})",
            )
    back = let(
        "back",
        lambda s: jax.tree_util.tree_unflatten(treedef, leaves),
        state,
        source="jax.tree_util.tree_unflatten(jax.tree_util.tree_structure({0}), jax.tree_util.tree_leaves({0}))",
    )
    assert_same_items(impl, back, want, "tree_unflatten(tree_flatten(state))")
    mapped = let("mapped", _identity_map, state, source="jax.tree_util.tree_map(lambda x: x, {0})")
    assert_same_items(impl, mapped, want, "tree_map(identity, state)")
    _check_leaf_order_on_trap_paths(impl, data)


ORDER_TRAP_NAMES: tuple[str, ...] = ("a", "b", "a-b", "a.b", "a/b", "a b")
"""Names whose paths sort differently as tuples and as ``"/"``-joined strings: ``("a", "b") < ("a-b",)``
but ``"a-b" < "a/b"`` (``" "``, ``"-"`` and ``"."`` sort before ``"/"``)."""


def _check_leaf_order_on_trap_paths(impl: Any, data: st.DataObject) -> None:
    """Leaves of a state keyed by :data:`ORDER_TRAP_NAMES` paths, each Variable holding its own index, come
    out in sorted-tuple order.

    A partitioned graph holds such a pair of paths in about one state in ten, and there two entries may
    hold equal values, so a leaf order that follows the joined strings would often go unseen; here every
    drawn state is a trap and every value is distinct.
    """
    pool = [n for n in ORDER_TRAP_NAMES if allowed(n, impl.capabilities)]
    paths = data.draw(
        st.lists(
            st.lists(st.sampled_from(pool), min_size=1, max_size=2).map(tuple),
            min_size=2,
            max_size=6,
            unique=True,
        ),
        label="paths of an order-trap state",
    )
    # A path that is a prefix of another names a module, not a Variable: no graph has both (and nested
    # state containers cannot hold both), so keep the drawn paths that are leaves.
    paths = [p for p in paths if not any(len(q) > len(p) and q[: len(p)] == p for q in paths)]
    trap = impl.make_state([(p, impl.new_variable("params", np.float32(k))) for k, p in enumerate(paths)])
    leaves = [float(np.asarray(x)) for x in jax.tree_util.tree_leaves(trap)]
    want = [float(k) for k, _ in sorted(enumerate(paths), key=lambda kp: kp[1])]
    if leaves != want:
        fail(
            impl,
            E.eq(E.py("[float(x) for x in {0}]", E.observe("leaves", trap)), E.lit(want)),
            f"a state keyed by {paths} (entry k holds k) flattens to {leaves}; in canonical (sorted tuple) "
            f"order the leaves are {want}, i.e. paths {sorted(paths)}",
        )


def _through_transforms(state: Any, stacked: Any) -> tuple[Any, Any, Any]:
    """The three transforms of the clause in one function, jitted once (one compile per structure)."""

    def double(s: Any) -> Any:
        return jax.tree_util.tree_map(lambda x: x * 2, s)

    def step(carry: Any, _: Any) -> tuple[Any, None]:
        return jax.tree_util.tree_map(lambda x: x + 1, carry), None

    scanned, _ = jax.lax.scan(step, state, None, length=2)
    return state, jax.vmap(double, axis_size=2)(stacked), scanned


_through = jax.jit(_through_transforms)

_THROUGH_SOURCE = """def double(s):
    return jax.tree_util.tree_map(lambda x: x * 2, s)


def step(carry, _):
    return jax.tree_util.tree_map(lambda x: x + 1, carry), None


def through_transforms(state, stacked):  # one jitted function: jit (identity), vmap and scan
    scanned, _ = jax.lax.scan(step, state, None, length=2)
    return state, jax.vmap(double, axis_size=2)(stacked), scanned


through_jit, through_vmap, through_scan = jax.jit(through_transforms)({0}, {1})"""
""":data:`_through` as a reproduction writes it."""


def _identity_map(state: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: x, state)


def _stack_with_plus_one(state: Any) -> Any:
    other = jax.tree_util.tree_map(lambda x: x + 1, state)
    return jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), state, other)


@clause("state.pytree")
@budget(0.1)
@given(data=st.data())
def test_state_passes_through_jit_vmap_and_scan_unchanged_in_structure(impl, data):
    """Through ``jax.jit`` (identity), ``jax.vmap`` (two equal-structure states stacked, each value doubled)
    and ``jax.lax.scan`` (the state as carry, plus one per step), the paths, collections, sharding and
    dtypes are unchanged, shapes gain only the batch axis under vmap, and the values are the computed ones.
    """
    _, state, items, _ = _partitioned(impl, data, **TINY)
    stacked = let(
        "stacked",
        _stack_with_plus_one,
        state,
        source="jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), {0}, jax.tree_util.tree_map(lambda x: x + 1, {0}))",
    )
    _assert_structure(impl, stacked, state, "the two states stacked with tree_map", batch=(2,))
    through_jit, through_vmap, through_scan = code(
        _THROUGH_SOURCE, _through, state, stacked, outputs=("through_jit", "through_vmap", "through_scan")
    )
    values = {p: np.asarray(impl.variable_value(v)) for p, v in items}
    _assert_structure(impl, through_jit, state, "jax.jit(identity)(state)")
    _assert_values(impl, through_jit, values, "jax.jit(identity)(state)")
    _assert_structure(impl, through_vmap, state, "jax.vmap(double)(stacked)", batch=(2,))
    doubled = {p: (np.stack([v, v + np.ones((), v.dtype)]) * 2).astype(v.dtype) for p, v in values.items()}
    _assert_values(impl, through_vmap, doubled, "jax.vmap(double)(stacked)")
    _assert_structure(impl, through_scan, state, "jax.lax.scan carrying the state")
    plus_two = {p: (v + np.asarray(2, v.dtype)).astype(v.dtype) for p, v in values.items()}
    _assert_values(impl, through_scan, plus_two, "jax.lax.scan carrying the state (2 steps of +1)")
