"""Blueprints: module graphs as immutable, hashable plain data.

Why a blueprint and not objects? ``st.recursive``/``st.deferred`` grow *trees*: no draw ever hands back an
object that is already in the tree, so sharing and cycles -- the hardest part of an NNX implementation --
never appear. A blueprint is a numbered list of nodes whose edges are *indices*, so any shape (shared
submodules, shared Variables, back edges, self-loops) is one integer away, it shrinks like any other data,
and it is independent of the implementation under test: :func:`~nnx_conformance.strategies.build` turns it
into that implementation's objects through its adapter.

Node 0 is the root. Each node lists its attributes in *assignment order* (the order ``build`` sets them), so
an implementation that leaks assignment order into its output is caught by reordering attributes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from math import prod
from typing import Any, TypeAlias

import numpy as np

from nnx_conformance.spec.adapter import Path, Sharding

__all__ = [
    "Blueprint",
    "MalformedBlueprint",
    "NodeRef",
    "NodeSpec",
    "Path",
    "Ref",
    "Sharding",
    "Static",
    "VarRef",
    "VarSpec",
]


class MalformedBlueprint(ValueError):
    """A blueprint that does not describe a graph (dangling index, duplicate name, unreachable node...)."""


@dataclasses.dataclass(frozen=True, slots=True)
class NodeRef:
    """An attribute edge to module ``index`` of the blueprint (any node: shared, back edge, self-loop)."""

    index: int

    def __repr__(self) -> str:
        return f"NodeRef({self.index})"


@dataclasses.dataclass(frozen=True, slots=True)
class VarRef:
    """An attribute edge to Variable ``index`` of the blueprint (several edges = a shared Variable)."""

    index: int

    def __repr__(self) -> str:
        return f"VarRef({self.index})"


def _typed(value: Any) -> Hashable:
    """An equality key that tells ``1``, ``1.0`` and ``True`` apart, also inside tuples and frozensets.

    Python's ``==`` says they are equal, but as module statics they are different definitions (``ModuleDef``
    equality compares statics with their type), so a blueprint must not call them equal either:
    ``frozenset({1}) == frozenset({True})``, yet their typed keys differ.
    """
    if type(value) is tuple:
        return (tuple, tuple(_typed(v) for v in value))
    if type(value) is frozenset:
        return (frozenset, frozenset(_typed(v) for v in value))
    return (type(value), value)


@dataclasses.dataclass(frozen=True, eq=False, slots=True)
class Static:
    """A static (non-Variable, non-module) attribute value; equal only to a value of the same type."""

    value: Hashable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Static) and _typed(self.value) == _typed(other.value)

    def __hash__(self) -> int:
        return hash(_typed(self.value))

    def __repr__(self) -> str:
        return f"Static({self.value!r})"


Ref: TypeAlias = NodeRef | VarRef | Static
"""What an attribute holds: a module, a Variable or a static value."""


@dataclasses.dataclass(frozen=True, slots=True)
class NodeSpec:
    """One module: its type (same name = same type) and its attributes in assignment order."""

    type_name: str
    attrs: tuple[tuple[str, Ref], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class VarSpec:
    """One Variable: collection, value (as dtype, shape and raw bytes, so equality is exact) and sharding.

    The value is stored as bytes rather than an array so that a blueprint is hashable and compares
    bit-for-bit (``-0.0`` vs ``0.0``, NaN payloads): equality here is what "the same value" means.
    """

    collection: str
    shape: tuple[int, ...]
    dtype: str
    data: bytes
    sharding: Sharding | None = None

    @classmethod
    def of(cls, collection: str, value: Any, sharding: Sharding | None = None) -> VarSpec:
        """The spec of ``value`` (anything ``np.asarray`` accepts; a jax array is copied to host)."""
        array = np.asarray(value)
        return cls(collection, tuple(array.shape), array.dtype.name, array.tobytes(), sharding)

    def array(self) -> np.ndarray:
        """A fresh, writable numpy array holding the value."""
        return np.frombuffer(self.data, dtype=self.dtype).reshape(self.shape).copy()

    def __repr__(self) -> str:
        sharding = "" if self.sharding is None else f", sharding={self.sharding!r}"
        return f"VarSpec.of({self.collection!r}, np.{self.dtype}({self.array().tolist()!r}){sharding})"


@dataclasses.dataclass(frozen=True, slots=True)
class Blueprint:
    """A module graph as data: ``nodes[0]`` is the root; every node and Variable is reachable from it.

    ``repr`` is a one-line structural summary, ``Blueprint(<3 modules, 2 Variables; shared: 1 Variable;
    1 cycle edge>)``: a falsifying example printed by Hypothesis says what was drawn without looking like
    code for any one implementation. :func:`~nnx_conformance.strategies.snippet` writes the script that
    rebuilds the graph through an adapter.
    """

    nodes: tuple[NodeSpec, ...]
    variables: tuple[VarSpec, ...] = ()

    def validate(self) -> Blueprint:
        """Raise :class:`MalformedBlueprint` unless this describes a graph; return ``self`` otherwise."""
        _validate(self)
        return self

    def __repr__(self) -> str:
        from nnx_conformance.strategies._internal.snippet import summary

        return f"Blueprint(<{summary(self)}>)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis (and IPython) pretty-print through this: the same one-line summary."""
        printer.text(repr(self))


def _validate(bp: Blueprint) -> None:
    if not isinstance(bp.nodes, tuple) or not isinstance(bp.variables, tuple):
        raise MalformedBlueprint("nodes and variables must be tuples")
    if not bp.nodes:
        raise MalformedBlueprint("a blueprint needs at least the root node")
    for j, var in enumerate(bp.variables):
        _validate_var(j, var)
    for i, node in enumerate(bp.nodes):
        _validate_node(i, node, len(bp.nodes), len(bp.variables))
    _validate_reachable(bp)


def _validate_var(j: int, var: VarSpec) -> None:
    where = f"variable {j}"
    if not isinstance(var, VarSpec) or not isinstance(var.collection, str):
        raise MalformedBlueprint(f"{where}: not a VarSpec with a str collection: {var!r}")
    if not (isinstance(var.shape, tuple) and all(type(d) is int and d >= 0 for d in var.shape)):
        raise MalformedBlueprint(f"{where}: shape must be a tuple of ints >= 0, got {var.shape!r}")
    try:
        itemsize = np.dtype(var.dtype).itemsize
    except TypeError as err:
        raise MalformedBlueprint(f"{where}: unknown dtype {var.dtype!r}") from err
    if not isinstance(var.data, bytes) or len(var.data) != prod(var.shape) * itemsize:
        raise MalformedBlueprint(f"{where}: data must be {prod(var.shape) * itemsize} bytes")
    if var.sharding is not None and not (
        isinstance(var.sharding, tuple)
        and len(var.sharding) == len(var.shape)
        and all(axis is None or isinstance(axis, str) for axis in var.sharding)
    ):
        raise MalformedBlueprint(f"{where}: sharding {var.sharding!r} is not one entry per axis")


def _validate_node(i: int, node: NodeSpec, n_nodes: int, n_vars: int) -> None:
    where = f"node {i}"
    if not isinstance(node, NodeSpec) or not isinstance(node.type_name, str) or not node.type_name:
        raise MalformedBlueprint(f"{where}: not a NodeSpec with a type name: {node!r}")
    if not isinstance(node.attrs, tuple):
        raise MalformedBlueprint(f"{where}: attrs must be a tuple of (name, ref) pairs")
    seen: set[str] = set()
    for item in node.attrs:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise MalformedBlueprint(f"{where}: attribute {item!r} is not a (name, ref) pair")
        name, ref = item
        if name in seen:
            raise MalformedBlueprint(f"{where}: attribute {name!r} assigned twice")
        seen.add(name)
        if isinstance(ref, NodeRef):
            bound = n_nodes
        elif isinstance(ref, VarRef):
            bound = n_vars
        elif isinstance(ref, Static):
            try:
                hash(ref.value)
            except TypeError as err:
                raise MalformedBlueprint(f"{where}.{name}: static value is unhashable") from err
            continue
        else:
            raise MalformedBlueprint(f"{where}.{name}: {ref!r} is not a NodeRef, VarRef or Static")
        if not (type(ref.index) is int and 0 <= ref.index < bound):
            raise MalformedBlueprint(f"{where}.{name}: {ref!r} points outside the blueprint")


def _validate_reachable(bp: Blueprint) -> None:
    seen_nodes, seen_vars, stack = {0}, set(), [0]
    while stack:
        for _, ref in bp.nodes[stack.pop()].attrs:
            if isinstance(ref, NodeRef) and ref.index not in seen_nodes:
                seen_nodes.add(ref.index)
                stack.append(ref.index)
            elif isinstance(ref, VarRef):
                seen_vars.add(ref.index)
    lost_nodes = sorted(set(range(len(bp.nodes))) - seen_nodes)
    lost_vars = sorted(set(range(len(bp.variables))) - seen_vars)
    if lost_nodes or lost_vars:
        raise MalformedBlueprint(f"unreachable from the root: nodes {lost_nodes}, variables {lost_vars}")
