"""Between blueprints and live graphs: :func:`build`, :func:`read` and :func:`canonical`.

``read(build(bp, a).root, a) == canonical(bp)`` states "the implementation holds the graph the blueprint
describes" as plain equality: both sides are numbered by the canonical walk, with attributes sorted by
name, so two graphs compare equal exactly when they are isomorphic (same types, names, statics with their
types, Variable values bit for bit, collections, sharding, and the same sharing and cycle pattern).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from nnx_conformance.spec.adapter import Adapter
from nnx_conformance.strategies._internal._walk import Kind, Walk, walk
from nnx_conformance.strategies._internal.blueprint import Blueprint, NodeRef, NodeSpec, VarRef, VarSpec
from nnx_conformance.strategies._internal.oracle import walk_blueprint

__all__ = ["Built", "build", "canonical", "read"]


@dataclasses.dataclass(frozen=True, eq=False)
class Built:
    """A graph made by :func:`build`: ``nodes[i]`` / ``variables[j]`` are the objects for the blueprint's
    node ``i`` / Variable ``j``, so a property can poke one object and ask the oracle where it should show."""

    root: Any
    nodes: tuple[Any, ...]
    variables: tuple[Any, ...]


def build(bp: Blueprint, adapter: Adapter) -> Built:
    """Make ``bp``'s graph with ``adapter``: every module and Variable first, then each node's attributes
    in the blueprint's assignment order (so back edges can point at modules that already exist)."""
    nodes = tuple(adapter.new_module(node.type_name) for node in bp.nodes)
    variables = tuple(adapter.new_variable(v.collection, v.array(), v.sharding) for v in bp.variables)
    for module, node in zip(nodes, bp.nodes):
        for name, ref in node.attrs:
            if isinstance(ref, NodeRef):
                value = nodes[ref.index]
            elif isinstance(ref, VarRef):
                value = variables[ref.index]
            else:
                value = ref.value
            adapter.set_attr(module, name, value)
    return Built(nodes[0], nodes, variables)


def _blueprint_of(w: Walk[Any], type_name: Any, var_spec: Any) -> Blueprint:
    return Blueprint(
        tuple(NodeSpec(type_name(m), tuple(attrs)) for m, attrs in zip(w.modules, w.attrs)),
        tuple(var_spec(v) for v in w.variables),
    )


def read(root: Any, adapter: Adapter) -> Blueprint:
    """The blueprint of the live graph under ``root``, in canonical numbering with sorted attributes."""

    def kind(value: Any) -> Kind:
        if adapter.is_module(value):
            return Kind.MODULE
        if adapter.is_variable(value):
            return Kind.VARIABLE
        return Kind.STATIC

    def var_spec(var: Any) -> VarSpec:
        sharding = adapter.variable_sharding(var)
        return VarSpec.of(
            adapter.variable_collection(var),
            np.asarray(adapter.variable_value(var)),
            None if sharding is None else tuple(sharding),
        )

    return _blueprint_of(walk(root, adapter.attrs, kind), adapter.type_name, var_spec)


def canonical(bp: Blueprint) -> Blueprint:
    """``bp`` renumbered by the canonical walk with attributes sorted: equal for isomorphic blueprints.

    Unreachable nodes and Variables are dropped (a valid blueprint has none).
    """
    w = walk_blueprint(bp)
    return _blueprint_of(
        w,
        lambda ref: bp.nodes[ref.index].type_name,
        lambda ref: bp.variables[ref.index],
    )
