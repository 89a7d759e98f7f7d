"""The oracle and canonical(): checked against independent definitions, and on deep chains.

The oracle's walk is iterative; the references here are the spec's definitions written the plainest way
(recursion, brute-force path enumeration), which is fine for the small graphs Hypothesis draws.
"""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.strategies import (
    Blueprint,
    EdgeKind,
    NodeRef,
    NodeSpec,
    Static,
    VarRef,
    VarSpec,
    canonical,
    chain,
    graphs,
    oracle,
)

FAST = settings(max_examples=150, deadline=None, database=None)


def reference_items(bp: Blueprint) -> list[tuple[tuple[str, ...], int]]:
    """The spec's definition, recursively: pre-order DFS, sorted names, never re-entering."""
    seen_nodes: set[int] = set()
    seen_vars: set[int] = set()
    out: list[tuple[tuple[str, ...], int]] = []

    def visit(i: int, path: tuple[str, ...]) -> None:
        seen_nodes.add(i)
        for name, ref in sorted(bp.nodes[i].attrs, key=lambda item: item[0]):
            if isinstance(ref, NodeRef) and ref.index not in seen_nodes:
                visit(ref.index, (*path, name))
            elif isinstance(ref, VarRef) and ref.index not in seen_vars:
                seen_vars.add(ref.index)
                out.append(((*path, name), ref.index))

    visit(0, ())
    return out


def least_simple_paths(bp: Blueprint) -> dict[VarRef | NodeRef, tuple[str, ...]]:
    """For each object, the lexicographically least path over *all* simple paths (exhaustive search)."""
    best: dict[VarRef | NodeRef, tuple[str, ...]] = {NodeRef(0): ()}

    def offer(ref: VarRef | NodeRef, path: tuple[str, ...]) -> None:
        if ref not in best or path < best[ref]:
            best[ref] = path

    def extend(i: int, path: tuple[str, ...], on_path: frozenset[int]) -> None:
        for name, ref in bp.nodes[i].attrs:
            if isinstance(ref, VarRef):
                offer(ref, (*path, name))
            elif isinstance(ref, NodeRef) and ref.index not in on_path:
                offer(ref, (*path, name))
                extend(ref.index, (*path, name), on_path | {ref.index})

    extend(0, (), frozenset({0}))
    return best


def has_cycle(bp: Blueprint) -> bool:
    """Kahn's algorithm on the module graph (all nodes are reachable)."""
    indegree = [0] * len(bp.nodes)
    for node in bp.nodes:
        for _, ref in node.attrs:
            if isinstance(ref, NodeRef):
                indegree[ref.index] += 1
    ready = [i for i, d in enumerate(indegree) if d == 0]
    removed = 0
    while ready:
        i = ready.pop()
        removed += 1
        for _, ref in bp.nodes[i].attrs:
            if isinstance(ref, NodeRef):
                indegree[ref.index] -= 1
                if indegree[ref.index] == 0:
                    ready.append(ref.index)
    return removed < len(bp.nodes)


@FAST
@given(graphs())
def test_expected_items_match_the_recursive_definition(bp):
    o = oracle(bp)
    assert list(o.expected_items) == reference_items(bp)
    paths = [p for p, _ in o.expected_items]
    assert paths == sorted(paths)  # canonical order is sorted order
    assert set(o.var_paths) == set(range(len(bp.variables)))
    assert set(o.node_paths) == set(range(len(bp.nodes)))


@FAST
@given(graphs(max_nodes=6, max_vars=4))
def test_canonical_paths_are_the_least_simple_paths(bp):
    """An independent characterisation: the walk reaches each object first by its least simple path."""
    o, least = oracle(bp), least_simple_paths(bp)
    assert {NodeRef(i): p for i, p in o.node_paths.items()} == {
        k: v for k, v in least.items() if isinstance(k, NodeRef)
    }
    assert {VarRef(j): p for j, p in o.var_paths.items()} == {
        k: v for k, v in least.items() if isinstance(k, VarRef)
    }


@FAST
@given(graphs())
def test_cycles_and_sharing_agree_with_plain_counts(bp):
    o = oracle(bp)
    assert bool(o.cycles) == has_cycle(bp)
    assert all(e.kind is EdgeKind.CYCLE for e in o.cycles)
    edges_in: dict[int, int] = {}
    for node in bp.nodes:
        for _, ref in node.attrs:
            if isinstance(ref, VarRef):
                edges_in[ref.index] = edges_in.get(ref.index, 0) + 1
    assert o.shared_variables == {j for j, k in edges_in.items() if k > 1}
    for ref, paths in o.aliases.items():
        path = o.node_paths[ref.index] if isinstance(ref, NodeRef) else o.var_paths[ref.index]
        assert paths[0] == path and list(paths) == sorted(set(paths))


@FAST
@given(graphs(Capabilities(cycles=False)))
def test_without_cycles_a_shared_module_is_one_with_several_parents(bp):
    o = oracle(bp)
    parents = {0: 1}
    for node in bp.nodes:
        for _, ref in node.attrs:
            if isinstance(ref, NodeRef):
                parents[ref.index] = parents.get(ref.index, 0) + 1
    assert o.shared_nodes == {i for i, k in parents.items() if k > 1}
    assert not o.cycles


@st.composite
def relabelled(draw: st.DrawFn) -> tuple[Blueprint, Blueprint]:
    """A graph and an isomorphic copy: nodes and Variables renumbered, every node's attributes reordered."""
    bp = draw(graphs())
    nodes = [0, *draw(st.permutations(range(1, len(bp.nodes))))]  # new position -> old index
    variables = draw(st.permutations(range(len(bp.variables))))
    new_node = {old: new for new, old in enumerate(nodes)}
    new_var = {old: new for new, old in enumerate(variables)}

    def move(ref):
        if isinstance(ref, NodeRef):
            return NodeRef(new_node[ref.index])
        if isinstance(ref, VarRef):
            return VarRef(new_var[ref.index])
        return ref

    specs = []
    for old in nodes:
        attrs = draw(st.permutations(bp.nodes[old].attrs))
        specs.append(NodeSpec(bp.nodes[old].type_name, tuple((name, move(ref)) for name, ref in attrs)))
    return bp, Blueprint(tuple(specs), tuple(bp.variables[old] for old in variables))


@FAST
@given(relabelled())
def test_canonical_is_invariant_under_relabelling(pair):
    bp, copy = pair
    copy.validate()
    assert canonical(copy) == canonical(bp)
    assert canonical(canonical(bp)) == canonical(bp)
    assert [p for p, _ in oracle(copy).expected_items] == [p for p, _ in oracle(bp).expected_items]


def test_canonical_tells_sharing_from_equal_copies():
    v = VarSpec.of("params", 1.0)
    shared = Blueprint((NodeSpec("A", (("a", VarRef(0)), ("b", VarRef(0)))),), (v,))
    copies = Blueprint((NodeSpec("A", (("a", VarRef(0)), ("b", VarRef(1)))),), (v, v))
    assert canonical(shared) != canonical(copies)
    assert canonical(Blueprint((NodeSpec("A", (("k", Static(1)),)),))) != canonical(
        Blueprint((NodeSpec("A", (("k", Static(True)),)),))
    )


def test_a_worked_example():
    """root.b -> m1, root.a -> m2, m2.x -> m1 (shared), m1.up -> root (cycle), m1.w -> v0, m2.v -> v0."""
    v = VarSpec.of("params", 0.0)
    bp = Blueprint(
        (
            NodeSpec("A", (("b", NodeRef(1)), ("a", NodeRef(2)))),
            NodeSpec("B", (("w", VarRef(0)), ("up", NodeRef(0)))),
            NodeSpec("C", (("x", NodeRef(1)), ("v", VarRef(0)))),
        ),
        (v,),
    ).validate()
    o = oracle(bp)
    assert dict(o.node_paths) == {0: (), 2: ("a",), 1: ("a", "x")}
    assert o.node_order == (0, 2, 1)
    assert o.expected_items == ((("a", "v"), 0),)
    assert o.aliases[VarRef(0)] == (("a", "v"), ("a", "x", "w"))
    assert o.aliases[NodeRef(1)] == (("a", "x"), ("b",))
    assert o.aliases[NodeRef(0)] == ((), ("a", "x", "up"))
    assert [(e.src, e.name, e.dst) for e in o.cycles] == [(1, "up", NodeRef(0))]
    assert o.shared_nodes == {1} and o.shared_variables == {0} and o.depth == 2
    assert o.needs == {"cycles", "shared_modules", "shared_variables"}


def test_chain_10000_deep_without_recursion():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)  # anything recursive per level would die at once
    try:
        bp = chain(10_000, leaf_only=True)
        o = oracle(bp)
        assert o.depth == 10_000
        assert o.expected_items == ((("sub",) * 10_000 + ("w",), 0),)
        assert canonical(bp) == bp
        bp.validate()
    finally:
        sys.setrecursionlimit(limit)


def test_chain_holds_one_distinct_variable_per_level():
    o = oracle(chain(50))
    assert len(o.expected_items) == 51
    assert [len(p) for p, _ in o.expected_items] == list(
        range(51, 0, -1)
    )  # deepest first: ('sub',...) < ('w',)
    assert all(chain(50).variables[j].array() == float(j) for _, j in o.expected_items)
