"""New graphs and states derived from a blueprint: other values, other names, another order, a near miss.

Each helper changes one thing a property is about -- Variable values (:func:`revalued`), assignment and
creation order (:func:`reordered`), one structural detail (:func:`mutate`), a static value
(:func:`near_misses`) -- and keeps everything else, so that a failure points at that one thing. Shared by
the property modules; draws go through Hypothesis (``data``) so that they shrink with the graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.spec.properties._helpers import fmt_path
from nnx_conformance.spec.properties._judge import attempt
from nnx_conformance.strategies import (
    COLLECTIONS,
    TYPE_NAMES,
    Blueprint,
    EdgeKind,
    NodeRef,
    NodeSpec,
    Oracle,
    Ref,
    Static,
    VarRef,
    allowed,
    canonical,
    name_pool,
    oracle,
    statics,
)


def bumped(array: Any, offset: int) -> Any:
    """``array`` with every element changed: negated if boolean, else plus ``offset`` (in its own dtype)."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return np.logical_not(array)
    return (array + np.asarray(offset).astype(array.dtype)).astype(array.dtype)


def revalued(bp: Blueprint, indices: Iterable[int], offset: int = 1) -> Blueprint:
    """``bp`` with Variables ``indices`` holding different values (each element plus ``offset + j``).

    Values drawn by the strategies are small integers, so the bumped values are exact in every dtype and
    differ from the old ones element by element: a Variable that kept its old value is always visible.
    """
    chosen = set(indices)
    variables = [
        dataclasses.replace(var, data=bumped(var.array(), offset + j).tobytes()) if j in chosen else var
        for j, var in enumerate(bp.variables)
    ]
    return dataclasses.replace(bp, variables=tuple(variables))


def with_renamed(bp: Blueprint, i: int, k: int, name: str) -> Blueprint:
    """``bp`` with attribute ``k`` of node ``i`` (in assignment order) renamed to ``name``."""
    nodes = list(bp.nodes)
    attrs = list(nodes[i].attrs)
    attrs[k] = (name, attrs[k][1])
    nodes[i] = NodeSpec(nodes[i].type_name, tuple(attrs))
    return Blueprint(tuple(nodes), bp.variables)


def with_attr(bp: Blueprint, i: int, name: str, ref: Ref) -> Blueprint:
    """``bp`` with one more attribute ``name = ref`` on node ``i``, assigned after its others."""
    nodes = list(bp.nodes)
    nodes[i] = NodeSpec(nodes[i].type_name, (*nodes[i].attrs, (name, ref)))
    return Blueprint(tuple(nodes), bp.variables)


def state_at_canonical_paths(impl: Any, bp: Blueprint, o: Oracle, indices: Iterable[int]) -> Any:
    """A state of fresh Variables holding ``bp``'s values for ``indices``, keyed by canonical paths.

    Built with ``impl.make_state``/``impl.new_variable`` only, so it does not depend on the
    implementation's partition being right.
    """
    items = []
    for j in sorted(indices, key=lambda j: o.var_paths[j]):
        var = bp.variables[j]
        items.append((o.var_paths[j], impl.new_variable(var.collection, var.array(), var.sharding)))
    return attempt("make_state(items)", impl.make_state, items)


def fresh_name(capabilities: Capabilities, taken: Iterable[str], prefix: str = "extra") -> str:
    """An attribute name the implementation accepts and that is not among ``taken``."""
    used = set(taken)
    for k in range(1000):
        name = f"{prefix}{k}"
        if name not in used and allowed(name, capabilities):
            return name
    raise AssertionError("no fresh attribute name available")  # pragma: no cover


TRICKY_STATICS: tuple[Any, ...] = (
    None,
    False,
    True,
    0,
    1,
    1.0,
    0.0,
    "",
    "a/b",
    (),
    (None,),
    (1, "a"),
    frozenset({0, "a"}),
    ((1,), None),
)
"""Falsy values (an ``if value:`` drops them), and values Python calls equal across types (``1 == 1.0 ==
True``: a dict keyed by value, or ``==`` alone, merges them), also as members of a tuple or frozenset."""


CONFUSABLE_NAMES: tuple[str, ...] = (
    "a",
    "A",
    "é",  # NFC
    "e\u0301",  # the same letter, NFD: a different str
    "ß",
    "ss",
    "ａ",  # FULLWIDTH LATIN SMALL LETTER A: NFKC-normalises to "a"
    "a1",
    "a10",
    "a2",
    "中",
    "a/b",
    "a-b",
    "a.b",
    "a b",
    "0",
)
"""Sibling names that are distinct strings but collide under a normalisation, case fold or join."""


def with_equal_values(bp: Blueprint, data: st.DataObject) -> Blueprint:
    """``bp`` where some Variables copy an earlier Variable's collection, value and sharding: distinct
    objects that compare equal, which an implementation deduplicating by value would merge."""
    variables = list(bp.variables)
    for j in range(1, len(variables)):
        if data.draw(st.booleans(), label=f"Variable {j} equal to an earlier one"):
            variables[j] = variables[data.draw(st.integers(0, j - 1), label="which")]
    return Blueprint(bp.nodes, tuple(variables))


def reordered(bp: Blueprint, data: st.DataObject) -> Blueprint:
    """An isomorphic blueprint: non-root nodes and Variables renumbered, every node's attributes permuted.

    ``build`` creates objects in index order and assigns attributes in list order, so the copy differs
    from the original in assignment order and in the relative order of object ids.
    """
    n, m = len(bp.nodes), len(bp.variables)
    node_perm = [0, *data.draw(st.permutations(range(1, n)), label="node renumbering")]
    var_perm = list(data.draw(st.permutations(range(m)), label="variable renumbering"))
    new_node = {old: new for new, old in enumerate(node_perm)}
    new_var = {old: new for new, old in enumerate(var_perm)}

    def remap(ref: Any) -> Any:
        if isinstance(ref, NodeRef):
            return NodeRef(new_node[ref.index])
        if isinstance(ref, VarRef):
            return VarRef(new_var[ref.index])
        return ref

    nodes = []
    for old in node_perm:
        node = bp.nodes[old]
        attrs = data.draw(st.permutations(node.attrs), label=f"assignment order of node {old}")
        nodes.append(NodeSpec(node.type_name, tuple((name, remap(ref)) for name, ref in attrs)))
    out = Blueprint(tuple(nodes), tuple(bp.variables[old] for old in var_perm))
    assert canonical(out) == canonical(bp), "test bug: the reordered blueprint is not isomorphic"
    return out


def near_misses(value: Any) -> list[Any]:
    """Static values a definition must tell apart from ``value``: same type and another value, or the
    same value under another type (``1`` / ``1.0`` / ``True``, ``0`` / ``False`` / ``None`` / ``""``)."""
    if value is None:
        return [0, False, "", ()]
    if isinstance(value, bool):
        return [not value, int(value), float(value)]
    if isinstance(value, int):
        return [value + 1, float(value), *([bool(value)] if value in (0, 1) else [])]
    if isinstance(value, float):
        return [value + 0.5, *([int(value)] if value.is_integer() else [])]
    if isinstance(value, str):
        return [value + "x", (value,)]
    if isinstance(value, tuple):
        return [(*value, None), value[:-1] if value else (None,), *typed_twins(value)]
    if isinstance(value, frozenset):
        return [value | {None}, frozenset() if value else frozenset({False}), *typed_twins(value)]
    return [None]


def typed_twins(value: Any) -> list[Any]:
    """Values that Python calls equal to ``value`` (``==`` and the same hash) but that differ in its type or
    in the type of one member, at any depth: ``1`` -> ``1.0``, ``True``; ``frozenset({1, "a"})`` ->
    ``frozenset({1.0, "a"})``, ``frozenset({True, "a"})``; ``((0,), "a")`` -> ``((0.0,), "a")``, ...

    A definition that types the top-level static but compares a container's members with ``==`` is told
    apart only by these. Deterministic order (frozenset members sorted by ``repr``), so a derandomized draw
    from the list is reproducible across ``PYTHONHASHSEED`` values.
    """
    if isinstance(value, tuple):
        return [
            (*value[:k], twin, *value[k + 1 :])
            for k, member in enumerate(value)
            for twin in typed_twins(member)
        ]
    if isinstance(value, frozenset):
        out: list[Any] = []
        for member in sorted(value, key=repr):
            rest = value - {member}
            out += [rest | {twin} for twin in typed_twins(member) if twin not in rest]
        return out
    if isinstance(value, bool | int | float):
        kinds: list[Any] = [bool(value), int(value), float(value)] if float(value).is_integer() else []
        return [x for x in kinds if x == value and type(x) is not type(value)]
    return []


def mutation_kinds(bp: Blueprint, o: Oracle) -> list[str]:
    """The structural changes :func:`mutate` can make to ``bp`` (a static's value: :func:`near_misses`)."""
    kinds = ["add an attribute", "change a type"]
    if any(bp.nodes[i].attrs for i in o.node_order):
        kinds += ["rename an attribute", "drop an attribute"]
    if o.var_order:
        kinds.append("change a collection")
    if o.shared_variables or o.shared_nodes or o.cycles:
        kinds.append("break a sharing")
    return kinds


def another_name(
    attrs: Sequence[tuple[str, Any]], k: int, capabilities: Capabilities, data: st.DataObject
) -> str:
    """A new name for attribute ``k``; in half the draws one that keeps its place among its siblings.

    That is the telling rename: the values then come in the same order as before, and only the name
    tells the two definitions apart.
    """
    taken = {n for n, _ in attrs}
    free = [n for n in name_pool(capabilities) if n not in taken]
    siblings = [n for i, (n, _) in enumerate(attrs) if i != k]

    def place(name: str) -> int:  # canonical order is plain ``str`` order
        return sum(other < name for other in siblings)

    in_place = [n for n in free if place(n) == place(attrs[k][0])]
    if bool(in_place) and data.draw(st.booleans(), label="rename in place"):
        free = in_place
    return data.draw(st.sampled_from(free), label="new name") if free else fresh_name(capabilities, taken)


def mutate(
    bp: Blueprint, o: Oracle, capabilities: Capabilities, data: st.DataObject
) -> tuple[str, Blueprint]:
    """A structurally different blueprint: one change from :func:`mutation_kinds`, described in words."""
    kind = data.draw(st.sampled_from(mutation_kinds(bp, o)), label="mutation")
    nodes, variables = list(bp.nodes), list(bp.variables)
    order = list(o.node_order)

    def edit(i: int, attrs: list[tuple[str, Any]]) -> None:
        nodes[i] = NodeSpec(nodes[i].type_name, tuple(attrs))

    if kind == "add an attribute":
        i = data.draw(st.sampled_from(order))
        name = fresh_name(capabilities, (n for n, _ in nodes[i].attrs), "new")
        target = data.draw(st.sampled_from(["static", "module", *(["Variable"] if o.var_order else [])]))
        if target == "static":
            ref: Any = Static(data.draw(statics()))
        elif target == "module":
            ref = NodeRef(data.draw(st.sampled_from(order)))
        else:
            ref = VarRef(data.draw(st.sampled_from(list(o.var_order))))
        edit(i, [*nodes[i].attrs, (name, ref)])
        what = f"added attribute {name!r} = {ref!r} to the module at {fmt_path(o.node_paths[i])}"
    elif kind in ("rename an attribute", "drop an attribute"):
        sites = [(i, k) for i in order for k in range(len(nodes[i].attrs))]
        i, k = data.draw(st.sampled_from(sites))
        attrs = list(nodes[i].attrs)
        name, ref = attrs[k]
        if kind == "rename an attribute":
            new_name = another_name(attrs, k, capabilities, data)
            attrs[k] = (new_name, ref)
            what = f"renamed {fmt_path((*o.node_paths[i], name))} to {new_name!r}"
        else:
            del attrs[k]
            what = f"dropped attribute {fmt_path((*o.node_paths[i], name))}"
        edit(i, attrs)
    elif kind == "change a type":
        i = data.draw(st.sampled_from(order))
        new_type = data.draw(st.sampled_from([t for t in (*TYPE_NAMES, "D") if t != nodes[i].type_name]))
        nodes[i] = NodeSpec(new_type, nodes[i].attrs)
        what = f"changed the type of the module at {fmt_path(o.node_paths[i])} to {new_type!r}"
    elif kind == "change a collection":
        j = data.draw(st.sampled_from(list(o.var_order)))
        new_collection = data.draw(
            st.sampled_from([c for c in (*COLLECTIONS, "other") if c != variables[j].collection])
        )
        variables[j] = dataclasses.replace(variables[j], collection=new_collection)
        what = f"changed the collection of the Variable at {fmt_path(o.var_paths[j])} to {new_collection!r}"
    else:  # break a sharing: point one non-tree edge at a copy of its target
        edge = data.draw(st.sampled_from([e for e in o.edges if e.kind is not EdgeKind.TREE]))
        if isinstance(edge.dst, VarRef):
            variables.append(variables[edge.dst.index])
            new_ref: Any = VarRef(len(variables) - 1)
            target_path = o.var_paths[edge.dst.index]
        else:
            nodes.append(nodes[edge.dst.index])
            new_ref = NodeRef(len(nodes) - 1)
            target_path = o.node_paths[edge.dst.index]
        edit(edge.src, [(n, new_ref if n == edge.name else r) for n, r in nodes[edge.src].attrs])
        what = (
            f"gave {fmt_path((*o.node_paths[edge.src], edge.name))} its own copy of the object at "
            f"{fmt_path(target_path)} instead of sharing it"
        )
    out = Blueprint(tuple(nodes), tuple(variables))
    try:
        out.validate()
    except ValueError:  # dropping the only edge to a node or Variable leaves it unreachable
        assume(False)
    assume(not capabilities.missing(oracle(out).needs))  # e.g. a new edge made a cycle that is disclaimed
    return what, out
