"""A plain, hookable partition / merge / update over the reference core's own objects.

Most graph bugs live *inside* a walk: the order attributes are visited in, how a Variable is recognised as
already seen, how a back edge is re-attached at merge time. The reference core's walk is a tuned
single-pass loop over flat tables, where such a bug is not one overridable line; and patching the core
itself is forbidden (mutants run in the same process as the reference run). So graph mutants derive from
:class:`KitAdapter`: the core adapter with partition, merge and update re-implemented in the most obvious
way, over the core's ``Module``, ``Variable`` and ``State``, with one method per decision a real
implementation gets wrong. A mutant overrides exactly one of them.

``KitAdapter`` itself is correct: ``tests/test_mutants.py`` runs the clauses its mutants target against it
and requires every one to pass, so a kit mutant that is caught is caught for its own bug, not the kit's.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from nnx_conformance.core import (
    Module,
    State,
    StateMismatchError,
    UnhashableStaticError,
    Variable,
)
from nnx_conformance.core.errors import format_path
from nnx_conformance.spec.adapters.core import CoreAdapter

__all__ = ["KitAdapter", "KitDef", "Ref"]

Path = tuple[str, ...]
Ref = tuple[str, Any]
"""``("node", i)``, ``("var", j)`` or ``("static", value)``: what one attribute of a definition holds."""


def typed(value: Any) -> Hashable:
    """Equality key of a static that tells ``1``, ``1.0`` and ``True`` apart, also inside tuples."""
    if isinstance(value, tuple):
        return (type(value), tuple(typed(v) for v in value))
    if isinstance(value, frozenset):
        return (type(value), frozenset(typed(v) for v in value))
    return (type(value), value)


class KitDef:
    """The static half of a partitioned graph: nodes in walk order, each with its ``(name, ref)`` attributes.

    ``parents[i]`` is the node whose attribute first reached node ``i`` (its parent in the walk's tree), so
    merge can tell tree edges, shared edges and back edges apart. Equality and hash come from :meth:`key`:
    types, attribute names, references, statics with their types, and each Variable's collection.
    """

    __slots__ = ("_hash", "_key", "attrs", "collections", "parents", "paths", "types")

    def __init__(
        self,
        types: tuple[type, ...],
        attrs: tuple[tuple[tuple[str, Ref], ...], ...],
        collections: tuple[str, ...],
        paths: tuple[Path, ...],
        parents: tuple[int, ...],
    ) -> None:
        self.types = types
        self.attrs = attrs
        self.collections = collections
        self.paths = paths
        self.parents = parents
        self._key = self.key()
        self._hash = hash(self._key)

    def ref_key(self, ref: Ref) -> Hashable:
        kind, x = ref
        return (kind, typed(x)) if kind == "static" else ref

    def key(self) -> Hashable:
        nodes = tuple(tuple((name, self.ref_key(ref)) for name, ref in node) for node in self.attrs)
        return (self.types, nodes, self.collections)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KitDef):
            return NotImplemented
        return self._hash == other._hash and self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.types)} nodes, {len(self.collections)} variables)"


class KitAdapter(CoreAdapter):
    """The core adapter with partition, merge and update done by the hookable walk of this module."""

    name = "kit"
    def_class: type[KitDef] = KitDef

    # -- decisions a mutant may get wrong ---------------------------------------------------------------
    def attr_order(self, module: Any) -> list[str]:
        """The order the walk visits a module's attributes in: sorted names."""
        return sorted(vars(module))

    def variable_key(self, var: Variable[Any]) -> Hashable:
        """What makes two Variables "the same Variable": identity."""
        return id(var)

    def state_key(self, path: Path) -> Path:
        """The state key of a canonical path: the path tuple itself."""
        return path

    def snapshot(self, var: Variable[Any]) -> Variable[Any]:
        """The Variable put in a state by partition, or in a module by merge: a new cell, same value."""
        return copy.copy(var)

    def merge_cell(self, var: Variable[Any]) -> Variable[Any]:
        """The Variable merge puts in the new module for a state entry: a snapshot of it."""
        return self.snapshot(var)

    def make_state_from_walk(self, items: list[tuple[Path, Variable[Any]]]) -> State:
        """The partition's state: entries in walk order (the canonical order when the walk is right)."""
        return State._from_sorted(dict(items))

    def resolve_node(self, graphdef: KitDef, objs: list[Any], src: int, dst: int) -> Any:
        """The object merge puts in an attribute of node ``src`` that refers to node ``dst``."""
        return objs[dst]

    def mismatch(self, message: str, path: Path) -> StateMismatchError:
        """The error for a state that does not fit: names the path (display and tuple form)."""
        return StateMismatchError(f"{message} at {format_path(path)}", path)

    def check_merge_state(self, graphdef: KitDef, items: Sequence[tuple[Path, Any]]) -> None:
        """Refuse a state whose paths, leaf types or collections differ from the definition's."""
        expected = dict(zip(graphdef.paths, graphdef.collections))
        given = {p for p, _ in items}
        for path in graphdef.paths:
            if path not in given:
                raise self.mismatch("merge: the state has no entry", path)
        for path, var in items:
            if path not in expected:
                raise self.mismatch("merge: the definition has no Variable", path)
            self.check_leaf(var, expected[path], path)

    def check_leaf(self, var: Any, collection: str, path: Path) -> None:
        if not isinstance(var, Variable):
            raise self.mismatch(f"a {type(var).__name__} is not a Variable", path)
        if var.collection != collection:
            raise self.mismatch(f"collection {var.collection!r} instead of {collection!r}", path)

    def keep_static(self, value: Any) -> bool:
        """Whether partition records a static attribute in the definition: always."""
        return True

    def variable_seen_again(self, variables: list[tuple[Path, Variable[Any]]], j: int, alias: Path) -> None:
        """The walk reached Variable ``j`` again, by ``alias``: nothing to do (its first path is canonical)."""

    def assign(self, root: Any, target: Variable[Any], new: Variable[Any], path: Path) -> None:
        """Update one Variable in place from a state entry: value and sharding."""
        target.value = new.value
        target.sharding = new.sharding

    # -- the walk ---------------------------------------------------------------------------------------
    def walk(self, root: Any) -> tuple[KitDef, list[tuple[Path, Variable[Any]]]]:
        """Pre-order DFS in :meth:`attr_order`, never re-entering an object: the definition, plus the
        ``(canonical path, Variable)`` of every distinct Variable in the order first reached."""
        node_index: dict[int, int] = {id(root): 0}
        var_index: dict[Hashable, int] = {}
        types: list[type] = [type(root)]
        attrs: list[list[tuple[str, Ref]]] = [[]]
        parents: list[int] = [-1]
        links: list[tuple[int, str]] = [(-1, "")]
        variables: list[tuple[Path, Variable[Any]]] = []
        stack = [(0, root, iter(self.attr_order(root)))]
        while stack:
            i, obj, names = stack[-1]
            fields = vars(obj)
            for name in names:
                value = fields[name]
                if isinstance(value, Variable):
                    key = self.variable_key(value)
                    j = var_index.get(key)
                    if j is None:
                        j = var_index[key] = len(variables)
                        variables.append((self.state_key((*_path(links, i), name)), value))
                    else:
                        self.variable_seen_again(variables, j, self.state_key((*_path(links, i), name)))
                    attrs[i].append((name, ("var", j)))
                elif isinstance(value, Module):
                    n = node_index.get(id(value))
                    if n is None:
                        n = node_index[id(value)] = len(types)
                        types.append(type(value))
                        attrs.append([])
                        parents.append(i)
                        links.append((i, name))
                        attrs[i].append((name, ("node", n)))
                        stack.append((n, value, iter(self.attr_order(value))))
                        break
                    attrs[i].append((name, ("node", n)))
                elif self.keep_static(value):
                    try:
                        hash(value)
                    except TypeError:
                        path = (*_path(links, i), name)
                        raise UnhashableStaticError(
                            f"attribute {format_path(path)} holds an unhashable {type(value).__name__}", path
                        ) from None
                    attrs[i].append((name, ("static", value)))
            else:
                stack.pop()
        graphdef = self.def_class(
            tuple(types),
            tuple(tuple(a) for a in attrs),
            tuple(v.collection for _, v in variables),
            tuple(p for p, _ in variables),
            tuple(parents),
        )
        return graphdef, variables

    # -- the protocol -----------------------------------------------------------------------------------
    def partition(self, module: Any) -> tuple[State, KitDef]:
        graphdef, variables = self.walk(module)
        return self.make_state_from_walk([(p, self.snapshot(v)) for p, v in variables]), graphdef

    def merge(self, graphdef: Any, state: Any) -> Any:
        items = [(tuple(p), v) for p, v in self.state_items(state)]
        self.check_merge_state(graphdef, items)
        by_path = dict(items)
        new_vars = [self.merge_cell(by_path[p]) for p in graphdef.paths]
        objs = [object.__new__(t) for t in graphdef.types]
        for src, (obj, node_attrs) in enumerate(zip(objs, graphdef.attrs)):
            fields = obj.__dict__
            for name, (kind, x) in node_attrs:
                if kind == "node":
                    fields[name] = self.resolve_node(graphdef, objs, src, x)
                elif kind == "var":
                    fields[name] = new_vars[x]
                else:
                    fields[name] = x
        return objs[0]

    def update(self, module: Any, state: Any) -> None:
        _, variables = self.walk(module)
        index = dict(variables)
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


def _path(links: list[tuple[int, str]], node: int) -> Path:
    """The tree path of ``node``, from the walk's parent links (built only when a Variable needs it)."""
    names = []
    while node > 0:
        node, name = links[node]
        names.append(name)
    return tuple(reversed(names))


def ancestors(graphdef: KitDef, node: int) -> Iterable[int]:
    """``node`` and its ancestors in the walk's tree, nearest first."""
    while node >= 0:
        yield node
        node = graphdef.parents[node]
