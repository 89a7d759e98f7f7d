"""Mutants of partition and merge: the ``graph.*`` clauses must catch each one.

Almost all derive from :class:`~._kit.KitAdapter` (a plain, correct partition/merge/update over the core's
objects) and override the one decision they get wrong.
"""

from __future__ import annotations

import dataclasses
import sys
import unicodedata
from collections.abc import Hashable
from typing import Any

import numpy as np

from mutants import mutant
from mutants._kit import KitAdapter, KitDef, Path, ancestors, typed
from nnx_conformance.core import Module, Variable

# ---------------------------------------------------------------------------------------------------------
# graph.roundtrip
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="graph.roundtrip")
class SharedModuleRebuiltTwice(KitAdapter):
    """Merge builds a shared module anew for every edge that reaches it after the first one: the merged graph
    holds two (independent) copies where the original held one module, though Variables stay shared.
    A merge that memoises Variables but not modules. graph.roundtrip must catch it (sharing is lost)."""

    def merge(self, graphdef: Any, state: Any) -> Any:
        root = super().merge(graphdef, state)
        spare = super().merge(graphdef, state)  # a second build: every module again, fresh objects
        objs = _objects(graphdef, root)
        spare_objs = _objects(graphdef, spare)
        variables = _variables(graphdef, root)
        tree = _tree_edges(graphdef)
        for src, node_attrs in enumerate(graphdef.attrs):
            for name, (kind, dst) in node_attrs:
                if kind != "node" or tree[dst] == (src, name) or dst in ancestors(graphdef, src):
                    continue  # tree edges and back edges are kept; a shared (cross) edge gets the copy
                setattr(objs[src], name, spare_objs[dst])
        for j, (copy_src, name) in _var_edges(graphdef):
            setattr(spare_objs[copy_src], name, variables[j])  # the copies share the Variables
        return root


@mutant(catches="graph.roundtrip")
class CyclesOneLevelTooShallow(KitAdapter):
    """Merge re-attaches a back edge one level below its target: ``root.a.b.up = root`` comes back as
    ``root.a.b.up = root.a`` (the cycle is one module shorter); self-loops are unaffected.
    graph.roundtrip must catch it."""

    def resolve_node(self, graphdef: KitDef, objs: list[Any], src: int, dst: int) -> Any:
        path = list(ancestors(graphdef, src))  # src, its parent, ..., root
        if dst in path and dst != src:
            return objs[path[path.index(dst) - 1]]
        return objs[dst]


@mutant(catches="graph.roundtrip")
class NoneStaticsDropped(KitAdapter):
    """Partition leaves static attributes whose value is ``None`` out of the definition (an ``if value is
    not None`` meant for optional submodules), so the merged module lacks them. graph.roundtrip must catch
    it."""

    def keep_static(self, value: Any) -> bool:
        return value is not None


# ---------------------------------------------------------------------------------------------------------
# graph.canonical-paths
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="graph.canonical-paths")
class VariablesDedupedByValue(KitAdapter):
    """Partition recognises an already-seen Variable by its contents (collection, dtype, shape, bytes,
    sharding) instead of its identity: two distinct Variables holding equal values become one state entry.
    graph.canonical-paths must catch it."""

    def variable_key(self, var: Variable[Any]) -> Hashable:
        value = np.asarray(var.value)
        return (var.collection, value.dtype.str, value.shape, value.tobytes(), var.sharding)


@mutant(catches="graph.canonical-paths")
class SharedVariableUnderLastPath(KitAdapter):
    """A shared Variable is keyed by the *last* path the walk reaches it by, not the first (a dict of
    path-by-Variable overwritten on every visit). graph.canonical-paths must catch it."""

    def variable_seen_again(self, variables: list[tuple[Path, Variable[Any]]], j: int, alias: Path) -> None:
        variables[j] = (alias, variables[j][1])


# ---------------------------------------------------------------------------------------------------------
# graph.order-independence
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="graph.order-independence")
class InsertionOrderForWideModules(KitAdapter):
    """A module with more than 4 attributes is walked in assignment (``__dict__``) order instead of sorted
    order (a "fast path" for wide modules that skips the sort), so state order, canonical paths and the
    definition depend on the order attributes were set. graph.order-independence must catch it."""

    WIDE = 4

    def attr_order(self, module: Any) -> list[str]:
        names = list(vars(module))
        return names if len(names) > self.WIDE else sorted(names)


@mutant(catches="graph.order-independence", by="test_state_order_ignores_hash_seed")
class AttributesInHashOrder(KitAdapter):
    """Attributes are walked in the order of ``hash(name)``: stable within a process, whatever the
    assignment order, but string hashes change with ``PYTHONHASHSEED``, so another interpreter lists the
    same state in another order. graph.order-independence must catch it (across processes)."""

    def attr_order(self, module: Any) -> list[str]:
        return sorted(vars(module), key=hash)


# ---------------------------------------------------------------------------------------------------------
# graph.def-equality
# ---------------------------------------------------------------------------------------------------------


class _HashIgnoresStaticValues(KitDef):
    __slots__ = ()

    def __hash__(self) -> int:
        return hash(
            (
                self.types,
                tuple(
                    tuple(
                        (name, ("static", type(x)) if kind == "static" else (kind, x))
                        for name, (kind, x) in node
                    )
                    for node in self.attrs
                ),
                self.collections,
            )
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KitDef) and hash(self) == hash(other)


@mutant(catches="graph.def-equality")
class DefHashIgnoresStaticValues(KitAdapter):
    """The definition's hash leaves out static values (only their types), and equality is "same hash" (a
    shortcut for a precomputed hash). A hash that merely collides more would be harmless; here two graphs
    that differ only in a static (``rate=0.1`` vs ``0.5``) have *equal* definitions and share a jit trace.
    graph.def-equality must catch it."""

    def_class = _HashIgnoresStaticValues


class _IgnoresNames(KitDef):
    __slots__ = ()

    def key(self) -> Hashable:
        nodes = tuple(tuple(sorted(self.ref_key(ref) for _, ref in node)) for node in self.attrs)
        return (self.types, nodes, self.collections)

    def ref_key(self, ref: Any) -> Hashable:
        kind, x = ref
        return (kind, repr(typed(x))) if kind == "static" else ref


@mutant(catches="graph.def-equality")
class DefEqualityIgnoresNames(KitAdapter):
    """Definition equality (and hash) compares each module's attribute *values* but not their names, so a
    renamed attribute leaves the definition equal. graph.def-equality must catch it."""

    def_class = _IgnoresNames


class _StaticsByEquality(KitDef):
    __slots__ = ()

    def ref_key(self, ref: Any) -> Hashable:
        return ref  # statics compared with == alone: 1 == 1.0 == True, 0 == False


@mutant(catches="graph.def-equality")
class DefStaticsComparedByEquality(KitAdapter):
    """Definition equality compares static values with ``==`` alone, so a module with ``n=1`` and one with
    ``n=True`` (or ``1.0``; ``0`` and ``False``) have equal definitions although they behave differently.
    graph.def-equality must catch it."""

    def_class = _StaticsByEquality


def _members_untyped(value: Any, container: type) -> Hashable:
    """:func:`~._kit.typed`, except that a ``container`` value's members are compared with ``==`` alone."""
    if isinstance(value, container):
        return (type(value), value)
    if isinstance(value, tuple):
        return (type(value), tuple(_members_untyped(v, container) for v in value))
    if isinstance(value, frozenset):
        return (type(value), frozenset(_members_untyped(v, container) for v in value))
    return (type(value), value)


class _FrozensetMembersUntyped(KitDef):
    __slots__ = ()

    def ref_key(self, ref: Any) -> Hashable:
        kind, x = ref
        return (kind, _members_untyped(x, frozenset)) if kind == "static" else ref


@mutant(catches="graph.def-equality")
class DefFrozensetMembersUntyped(KitAdapter):
    """Definition equality types each static and each tuple member, but compares a frozenset's members with
    ``==`` (the frozenset itself is the key), so ``flags=frozenset({1})`` and ``flags=frozenset({True})``
    give equal definitions. graph.def-equality must catch it."""

    def_class = _FrozensetMembersUntyped


class _TupleMembersUntyped(KitDef):
    __slots__ = ()

    def ref_key(self, ref: Any) -> Hashable:
        kind, x = ref
        return (kind, _members_untyped(x, tuple)) if kind == "static" else ref


@mutant(catches="graph.def-equality")
class DefTupleMembersUntyped(KitAdapter):
    """Definition equality types each static, but compares a tuple's members with ``==`` (the key is
    ``(tuple, value)``), so ``shape=(1, 2)`` and ``shape=(1.0, 2)`` -- or ``((0,), "a")`` and
    ``((False,), "a")`` -- give equal definitions. graph.def-equality must catch it."""

    def_class = _TupleMembersUntyped


class _Unhashable(KitDef):
    __slots__ = ()

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        object.__setattr__(self, "_hash", None)

    def __hash__(self) -> int:  # a dataclass with eq=True and no frozen=True: __hash__ is None
        raise TypeError(f"unhashable type: '{type(self).__name__}'")


@mutant(catches="graph.def-equality")
class DefNotHashable(KitAdapter):
    """The definition defines ``__eq__`` but no ``__hash__`` (the seed's ``@dataclass`` ModuleDef), so it
    cannot be a ``jax.jit`` static argument although ``hashable_def`` is claimed. graph.def-equality must
    catch it."""

    def_class = _Unhashable


# ---------------------------------------------------------------------------------------------------------
# graph.update
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="graph.update")
class UpdateIgnoresDeepPaths(KitAdapter):
    """Update silently skips state entries whose path is longer than 3 names (a lookup table built for
    "module.submodule.variable" depth). graph.update must catch it."""

    def assign(self, root: Any, target: Variable[Any], new: Variable[Any], path: Path) -> None:
        if len(path) <= 3:
            super().assign(root, target, new, path)


@mutant(catches="graph.update")
class UpdateReplacesVariables(KitAdapter):
    """Update puts a *new* Variable at each canonical path instead of writing into the existing one, so
    every other path to a shared Variable keeps the old value (the seed's ``_set_value_at_path``).
    graph.update must catch it."""

    def assign(self, root: Any, target: Variable[Any], new: Variable[Any], path: Path) -> None:
        owner = root
        for name in path[:-1]:
            owner = vars(owner)[name]
        setattr(owner, path[-1], Variable(target.collection, new.value, sharding=new.sharding))


# ---------------------------------------------------------------------------------------------------------
# graph.isolation
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="graph.isolation")
class MergeReusesStateVariables(KitAdapter):
    """Merge puts the state's own Variable objects into the new module instead of new cells, so two merges
    of one state share every Variable and updating one changes the other. graph.isolation must catch it."""

    def merge_cell(self, var: Variable[Any]) -> Variable[Any]:
        return var


@mutant(catches="graph.isolation")
class PartitionHandsOutLiveVariables(KitAdapter):
    """Partition puts the module's own Variable objects in the state (no snapshot), so changing a state
    entry in place changes the partitioned module. graph.isolation must catch it."""

    def partition(self, module: Any) -> Any:
        graphdef, variables = self.walk(module)
        return self.make_state_from_walk(list(variables)), graphdef


@mutant(catches="graph.isolation")
class MergeReturnsTheSourceModule(KitAdapter):
    """Partition remembers the module it came from, and merging its unchanged state returns that very
    module instead of building a new one (a "nothing changed, skip the rebuild" shortcut), so the merged
    module *is* the partitioned one. graph.isolation must catch it."""

    def partition(self, module: Any) -> Any:
        state, graphdef = super().partition(module)
        if len(_SOURCES) > 256:  # a cache of recent partitions, as such a shortcut would keep
            _SOURCES.clear()
        _SOURCES[id(graphdef)] = (graphdef, state, module)
        return state, graphdef

    def merge(self, graphdef: Any, state: Any) -> Any:
        known = _SOURCES.get(id(graphdef))
        if known is not None and known[0] is graphdef and known[1] is state:
            return known[2]
        return super().merge(graphdef, state)


_SOURCES: dict[int, tuple[Any, Any, Any]] = {}


# ---------------------------------------------------------------------------------------------------------
# graph.path-names
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="graph.path-names")
class PathsJoinedWithSlash(KitAdapter):
    """State keys are built by joining names with ``"/"`` and splitting them again, so the attribute
    ``"a/b"`` and the nested path ``a.b`` get the same key and one Variable is lost. graph.path-names must
    catch it."""

    def state_key(self, path: Path) -> Path:
        return tuple("/".join(path).split("/"))


@mutant(catches="graph.path-names")
class NamesNormalisedNFKC(KitAdapter):
    """State keys hold attribute names after Unicode NFKC normalisation ("identifier normalisation", as
    Python does for source identifiers), so sibling attributes ``"é"`` (NFC) and ``"é"`` (NFD), or
    ``"ａ"`` and ``"a"``, collide. graph.path-names must catch it."""

    def state_key(self, path: Path) -> Path:
        return tuple(unicodedata.normalize("NFKC", name) for name in path)


# ---------------------------------------------------------------------------------------------------------
# graph.deep
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="graph.deep")
class RecursivePartition(KitAdapter):
    """Partition recurses once per nesting level (Python recursion), so a chain a few thousand modules
    deep dies with ``RecursionError`` although ``max_depth=10_000`` is claimed. graph.deep must catch it."""

    def walk(self, root: Any) -> tuple[KitDef, list[tuple[Path, Variable[Any]]]]:
        node_index: dict[int, int] = {id(root): 0}
        var_index: dict[int, int] = {}
        types: list[type] = [type(root)]
        attrs: list[list[tuple[str, Any]]] = [[]]
        parents: list[int] = [-1]
        variables: list[tuple[Path, Variable[Any]]] = []

        def visit(obj: Any, i: int, path: Path) -> None:
            for name in self.attr_order(obj):
                value = vars(obj)[name]
                if isinstance(value, Variable):
                    j = var_index.setdefault(id(value), len(variables))
                    if j == len(variables):
                        variables.append(((*path, name), value))
                    attrs[i].append((name, ("var", j)))
                elif isinstance(value, Module):
                    n = node_index.get(id(value))
                    if n is None:
                        n = node_index[id(value)] = len(types)
                        types.append(type(value))
                        attrs.append([])
                        parents.append(i)
                        attrs[i].append((name, ("node", n)))
                        visit(value, n, (*path, name))
                    else:
                        attrs[i].append((name, ("node", n)))
                else:
                    attrs[i].append((name, ("static", value)))

        visit(root, 0, ())
        graphdef = self.def_class(
            tuple(types),
            tuple(tuple(a) for a in attrs),
            tuple(v.collection for _, v in variables),
            tuple(p for p, _ in variables),
            tuple(parents),
        )
        return graphdef, variables


@mutant(catches="graph.deep")
class DeepChainsCrashTheInterpreter(KitAdapter):
    """Declares ``max_depth=3000`` and handles that, but walks recursively through a C-level call (``map``)
    with the recursion limit lifted "to support deep models": past a few thousand levels the C stack
    overflows and the interpreter dies with a segmentation fault instead of raising a clear error.
    graph.deep must catch it (its beyond-the-declared-depth check)."""

    capabilities = dataclasses.replace(KitAdapter.capabilities, max_depth=3000)

    def walk(self, root: Any) -> tuple[KitDef, list[tuple[Path, Variable[Any]]]]:
        node_index: dict[int, int] = {id(root): 0}
        var_index: dict[int, int] = {}
        types: list[type] = [type(root)]
        attrs: list[list[tuple[str, Any]]] = [[]]
        parents: list[int] = [-1]
        variables: list[tuple[Path, Variable[Any]]] = []

        def visit(obj: Any, i: int, path: Path) -> None:
            for name in self.attr_order(obj):
                value = vars(obj)[name]
                if isinstance(value, Variable):
                    j = var_index.setdefault(id(value), len(variables))
                    if j == len(variables):
                        variables.append(((*path, name), value))
                    attrs[i].append((name, ("var", j)))
                elif isinstance(value, Module):
                    n = node_index.get(id(value))
                    if n is None:
                        n = node_index[id(value)] = len(types)
                        types.append(type(value))
                        attrs.append([])
                        parents.append(i)
                        attrs[i].append((name, ("node", n)))
                        list(map(visit, [value], [n], [(*path, name)]))  # one C frame per level
                    else:
                        attrs[i].append((name, ("node", n)))
                else:
                    attrs[i].append((name, ("static", value)))

        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(1_000_000)
        try:
            visit(root, 0, ())
        finally:
            sys.setrecursionlimit(limit)
        graphdef = self.def_class(
            tuple(types),
            tuple(tuple(a) for a in attrs),
            tuple(v.collection for _, v in variables),
            tuple(p for p, _ in variables),
            tuple(parents),
        )
        return graphdef, variables


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def _tree_edges(graphdef: KitDef) -> list[tuple[int, str] | None]:
    """Per module, the edge ``(src, name)`` that first reached it in the walk (``None`` for the root)."""
    tree: list[tuple[int, str] | None] = [None] * len(graphdef.types)
    for dst in range(1, len(graphdef.types)):
        src = graphdef.parents[dst]
        name = next(n for n, (kind, x) in graphdef.attrs[src] if kind == "node" and x == dst)
        tree[dst] = (src, name)
    return tree


def _objects(graphdef: KitDef, root: Any) -> list[Any]:
    """The merged graph's module objects, by definition index (following tree edges from the root)."""
    objs = [root] + [None] * (len(graphdef.types) - 1)
    for dst, edge in enumerate(_tree_edges(graphdef)):
        if edge is not None:
            objs[dst] = vars(objs[edge[0]])[edge[1]]
    return objs


def _var_edges(graphdef: KitDef) -> list[tuple[int, tuple[int, str]]]:
    return [
        (x, (src, name))
        for src, node_attrs in enumerate(graphdef.attrs)
        for name, (kind, x) in node_attrs
        if kind == "var"
    ]


def _variables(graphdef: KitDef, root: Any) -> list[Any]:
    objs = _objects(graphdef, root)
    found: list[Any] = [None] * len(graphdef.paths)
    for j, (src, name) in _var_edges(graphdef):
        found[j] = vars(objs[src])[name]
    return found
