"""What a correct implementation must do with a blueprint, computed from the blueprint alone.

The oracle never touches an implementation: it is the canonical walk (:mod:`._walk`) run over the
blueprint's indices. Properties compare an implementation's partition against it: the state must hold
exactly :attr:`Oracle.expected_items`, in that order.

All indices in an :class:`Oracle` are the *blueprint's* (``bp.nodes[i]``, ``bp.variables[j]``), not the
canonical renumbering, so a property can go from an oracle entry straight to the object ``build`` made.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any, NamedTuple

from nnx_conformance.spec.adapter import Filter
from nnx_conformance.strategies._internal._walk import Kind, Walk, walk
from nnx_conformance.strategies._internal.blueprint import (
    Blueprint,
    NodeRef,
    NodeSpec,
    Path,
    Ref,
    Static,
    VarRef,
    VarSpec,
)
from nnx_conformance.strategies._internal.filters import matches

__all__ = ["Edge", "EdgeKind", "Oracle", "chain", "oracle", "walk_blueprint"]


class EdgeKind(enum.Enum):
    """How the canonical walk meets an attribute edge to a module or Variable."""

    TREE = "tree"
    """The edge that first reaches its target: it gives the target its canonical path."""
    SHARED = "shared"
    """A further edge to an already reached object that is not one of the walk's current ancestors."""
    CYCLE = "cycle"
    """A back edge: to a module on the walk path from the root to the edge's source (itself included)."""


class Edge(NamedTuple):
    """An attribute ``src.name -> dst`` of a reachable module, in blueprint numbering."""

    src: int
    name: str
    dst: NodeRef | VarRef
    kind: EdgeKind


def _kind_of_ref(ref: Ref) -> Kind:
    if isinstance(ref, NodeRef):
        return Kind.MODULE
    if isinstance(ref, VarRef):
        return Kind.VARIABLE
    return Kind.STATIC


def _same(x: Any) -> Any:
    return x


def walk_blueprint(bp: Blueprint) -> Walk[NodeRef]:
    """The canonical walk over ``bp``: ``modules``/``variables`` hold the blueprint's refs in walk order."""
    nodes = bp.nodes

    def attrs(ref: NodeRef) -> tuple[tuple[str, Ref], ...]:
        return nodes[ref.index].attrs

    return walk(NodeRef(0), attrs, _kind_of_ref, key=_same, static=_same)


class _Paths(Mapping[int, Path]):
    """Canonical paths, materialised on lookup from the walk's parent pointers.

    Storing every path of a 10,000-deep chain would take ~50 million tuple slots; each path is instead
    rebuilt in O(depth) when asked for. Iteration is in canonical order.
    """

    def __init__(
        self, order: Sequence[int], parent: Sequence[tuple[int, str] | None], module_parent: Sequence[Any]
    ) -> None:
        self._order = order
        self._position = {index: c for c, index in enumerate(order)}
        self._parent = parent
        self._module_parent = module_parent

    def __getitem__(self, index: int) -> Path:
        names: list[str] = []
        link = self._parent[self._position[index]]
        while link is not None:
            src, name = link
            names.append(name)
            link = self._module_parent[src]
        return tuple(reversed(names))

    def __iter__(self) -> Iterator[int]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, index: object) -> bool:
        return index in self._position

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{i}: {self[i]!r}" for i in self) + "}"


class Oracle:
    """Canonical paths, order, sharing and cycles of one blueprint. Build with :func:`oracle`."""

    def __init__(self, bp: Blueprint) -> None:
        self.blueprint = bp
        w = walk_blueprint(bp)
        self._walk = w
        self.node_order: tuple[int, ...] = tuple(ref.index for ref in w.modules)
        """Reachable nodes in canonical order (the root first)."""
        self.var_order: tuple[int, ...] = tuple(ref.index for ref in w.variables)
        """Reachable Variables in canonical order."""
        self.node_paths: Mapping[int, Path] = _Paths(self.node_order, w.module_parent, w.module_parent)
        """Node index -> canonical path, for reachable nodes (the root's is ``()``)."""
        self.var_paths: Mapping[int, Path] = _Paths(self.var_order, w.variable_parent, w.module_parent)
        """Variable index -> canonical path, for reachable Variables."""

    @cached_property
    def edges(self) -> tuple[Edge, ...]:
        """Every module/Variable attribute of every reachable node, canonical order, classified."""
        w, order = self._walk, self.node_order
        back = {(src, name) for src, name, _ in w.back_edges}
        edges = []
        for c, attrs in enumerate(w.attrs):
            for name, ref in attrs:
                if isinstance(ref, Static):
                    continue
                parents = w.module_parent if isinstance(ref, NodeRef) else w.variable_parent
                if parents[ref.index] == (c, name):
                    kind = EdgeKind.TREE
                elif (c, name) in back:
                    kind = EdgeKind.CYCLE
                else:
                    kind = EdgeKind.SHARED
                dst = (
                    NodeRef(order[ref.index])
                    if isinstance(ref, NodeRef)
                    else VarRef(self.var_order[ref.index])
                )
                edges.append(Edge(order[c], name, dst, kind))
        return tuple(edges)

    @cached_property
    def cycles(self) -> tuple[Edge, ...]:
        """The back edges. The graph has a cycle exactly when this is non-empty."""
        return tuple(e for e in self.edges if e.kind is EdgeKind.CYCLE)

    @cached_property
    def aliases(self) -> dict[NodeRef | VarRef, tuple[Path, ...]]:
        """For each reachable module and Variable, one path per attribute edge into it, sorted.

        Each path is the canonical path of the edge's source plus the edge's name (the root also gets
        ``()``), so ``aliases[x][0]`` is ``x``'s canonical path and ``len(aliases[x]) > 1`` means ``x`` is
        referenced more than once. This is the per-edge view, not the set of *all* simple paths: that set
        can be exponential in the graph's size, and every aliasing bug (an object listed twice, or under a
        non-canonical path) already shows on one extra edge.
        """
        found: dict[NodeRef | VarRef, list[Path]] = {NodeRef(0): [()]}
        for edge in self.edges:
            found.setdefault(edge.dst, []).append((*self.node_paths[edge.src], edge.name))
        return {ref: tuple(sorted(paths)) for ref, paths in found.items()}

    @cached_property
    def shared_nodes(self) -> frozenset[int]:
        """Modules reached by more than one non-cycle edge (the root's own entry counts as one)."""
        count = {0: 1}
        for e in self.edges:
            if isinstance(e.dst, NodeRef) and e.kind is not EdgeKind.CYCLE:
                count[e.dst.index] = count.get(e.dst.index, 0) + 1
        return frozenset(i for i, n in count.items() if n > 1)

    @cached_property
    def shared_variables(self) -> frozenset[int]:
        """Variables held by more than one attribute."""
        count: dict[int, int] = {}
        for e in self.edges:
            if isinstance(e.dst, VarRef):
                count[e.dst.index] = count.get(e.dst.index, 0) + 1
        return frozenset(j for j, n in count.items() if n > 1)

    @cached_property
    def depth(self) -> int:
        """Length of the longest canonical module path (0 for a lone root)."""
        depth = [0] * len(self.node_order)
        for c, parent in enumerate(self._walk.module_parent):
            if parent is not None:
                depth[c] = depth[parent[0]] + 1
        return max(depth)

    @cached_property
    def expected_items(self) -> tuple[tuple[Path, int], ...]:
        """``(canonical path, variable index)`` for each reachable Variable, in canonical order.

        Produced in walk order, which the spec guarantees equals sorted path order.
        """
        return tuple((self.var_paths[j], j) for j in self.var_order)

    @cached_property
    def needs(self) -> frozenset[str]:
        """The :class:`Capabilities` fields this graph exercises (a graph is legal where all are claimed)."""
        needs = set()
        if self.cycles:
            needs.add("cycles")
        if self.shared_nodes:
            needs.add("shared_modules")
        if self.shared_variables:
            needs.add("shared_variables")
        if any(self.blueprint.variables[j].sharding is not None for j in self.var_order):
            needs.add("sharding")
        if any(not name.isidentifier() for attrs in self._walk.attrs for name, _ in attrs):
            needs.add("separator_in_names")
        return frozenset(needs)

    def select(self, *filters: Filter) -> tuple[tuple[Path, int], ...]:
        """The expected items that match any of ``filters`` (see :func:`~.filters.matches`)."""
        bp = self.blueprint
        return tuple(
            (path, j)
            for path, j in self.expected_items
            if any(matches(f, path, bp.variables[j]) for f in filters)
        )

    def __repr__(self) -> str:
        return (
            f"Oracle(nodes={len(self.node_order)}, variables={len(self.var_order)}, "
            f"cycles={len(self.cycles)}, shared_nodes={sorted(self.shared_nodes)}, "
            f"shared_variables={sorted(self.shared_variables)})"
        )


def oracle(bp: Blueprint) -> Oracle:
    """The :class:`Oracle` of ``bp`` (linear time; paths are materialised lazily)."""
    return Oracle(bp)


def chain(depth: int, *, leaf_only: bool = False, collection: str = "params") -> Blueprint:
    """Modules nested ``depth`` deep (``root.sub.sub...``), each holding a float32 scalar Variable ``w``.

    Built directly, without Hypothesis, for ``graph.deep``: ``depth + 1`` modules, the deepest at path
    ``("sub",) * depth``; Variable ``i`` belongs to the module at depth ``i`` and holds ``float(i)``, so a
    mixed-up level shows in the values. A state with a Variable at every level holds ``O(depth**2)`` path
    components (50 million at depth 10,000); ``leaf_only=True`` keeps one Variable, on the deepest module.
    """
    import numpy as np

    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    variables: tuple[VarSpec, ...]
    if leaf_only:
        variables = (VarSpec.of(collection, np.float32(depth)),)
        owner = {depth: 0}
    else:
        variables = tuple(VarSpec.of(collection, np.float32(i)) for i in range(depth + 1))
        owner = {i: i for i in range(depth + 1)}
    nodes = []
    for i in range(depth + 1):
        attrs: list[tuple[str, Ref]] = []
        if i < depth:
            attrs.append(("sub", NodeRef(i + 1)))
        if i in owner:
            attrs.append(("w", VarRef(owner[i])))
        nodes.append(NodeSpec("Chain", tuple(attrs)))
    return Blueprint(tuple(nodes), variables)
