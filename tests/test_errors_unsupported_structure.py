"""``errors.unsupported-structure``: its strategy, its reading of "names the path", and its verdicts on a
correct tree-only implementation (pass) and on the core (not applicable: a skip with the reason).

The mutants that must fail it are in ``tests/mutants/errors.py`` (``tests/test_mutants.py`` runs them).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import find, given, settings
from hypothesis.errors import InvalidArgument
from mutants.errors import TreeOnlyAdapter
from mutants.harness import run_property

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.spec.adapters.core import CoreAdapter
from nnx_conformance.spec.clauses import properties
from nnx_conformance.spec.properties.errors import structure_names_path, structure_paths
from nnx_conformance.strategies import (
    STRUCTURES,
    Blueprint,
    NodeRef,
    NodeSpec,
    VarRef,
    VarSpec,
    allowed,
    graphs,
    oracle,
    with_structure,
)

TREES = Capabilities(cycles=False, shared_modules=False, shared_variables=False)
PROPERTIES = properties()["errors.unsupported-structure"]


# -- the strategy ----------------------------------------------------------------------------------------------


def _has(bp: Blueprint) -> dict[str, bool]:
    o = oracle(bp)
    return {
        "cycles": bool(o.cycles),
        "shared_modules": bool(o.shared_nodes),
        "shared_variables": bool(o.shared_variables),
    }


@pytest.mark.parametrize("structure", STRUCTURES)
def test_with_structure_forces_exactly_that_structure_into_trees(structure: str) -> None:
    @settings(max_examples=150, database=None, deadline=None)
    @given(with_structure(graphs(TREES, max_nodes=5), structure, capabilities=TREES))
    def check(bp: Blueprint) -> None:
        assert _has(bp) == {s: s == structure for s in STRUCTURES}, bp
        assert all(allowed(name, TREES) for node in bp.nodes for name, _ in node.attrs)

    check()


def test_with_structure_composes() -> None:
    both = with_structure(
        with_structure(graphs(TREES, max_nodes=4), "cycles", capabilities=TREES),
        "shared_variables",
        capabilities=TREES,
    )

    @settings(max_examples=50, database=None, deadline=None)
    @given(both)
    def check(bp: Blueprint) -> None:
        has = _has(bp)
        assert has["cycles"] and has["shared_variables"], bp

    check()


@pytest.mark.parametrize(
    ("structure", "minimal"),
    [
        ("cycles", Blueprint((NodeSpec("A", (("a", NodeRef(0)),)),))),
        (
            "shared_modules",
            Blueprint((NodeSpec("A", (("a", NodeRef(1)), ("b", NodeRef(1)))), NodeSpec("A"))),
        ),
        (
            "shared_variables",
            Blueprint((NodeSpec("A", (("a", VarRef(0)), ("b", VarRef(0)))),), (VarSpec.of("params", 0.0),)),
        ),
    ],
)
def test_with_structure_shrinks_to_the_smallest_graph_with_it(structure: str, minimal: Blueprint) -> None:
    shrunk = find(
        with_structure(graphs(TREES), structure, capabilities=TREES),
        lambda bp: True,
        settings=settings(database=None, max_examples=50),
    )
    # The attribute names may shrink to a twin like 'a-b' (a local minimum); the shape may not.
    assert [[ref for _, ref in node.attrs] for node in shrunk.nodes] == [
        [ref for _, ref in node.attrs] for node in minimal.nodes
    ]
    assert [v.collection for v in shrunk.variables] == [v.collection for v in minimal.variables]


def test_with_structure_rejects_an_unknown_structure() -> None:
    with pytest.raises(InvalidArgument, match="expected one of"):
        find(with_structure(graphs(TREES), "diamonds"), lambda bp: True)


# -- which paths an error may name, and how ------------------------------------------------------------------


def test_the_paths_of_a_shared_module_include_those_below_it() -> None:
    bp = Blueprint(
        (NodeSpec("A", (("x", NodeRef(1)), ("y", NodeRef(1)))), NodeSpec("B", (("w", VarRef(0)),))),
        (VarSpec.of("params", 1.0),),
    )
    assert structure_paths(bp, "shared_modules") == (("x",), ("x", "w"), ("y",), ("y", "w"))


def test_the_paths_of_a_cycle_are_its_back_edge_and_its_target() -> None:
    bp = Blueprint((NodeSpec("A", (("s", NodeRef(1)),)), NodeSpec("B", (("up", NodeRef(0)),))))
    assert structure_paths(bp, "cycles") == (("s", "up"),)


@pytest.mark.parametrize(
    ("message", "path", "named"),
    [
        ("ValueError: Duplicate Param found at paths:\n\n  - .a\n  - .b\n", ("a",), True),
        ("ValueError: found at paths:\n  - .x.w\n  - .y.w\n", ("y", "w"), True),
        ("ValueError: found at .x.w.z", ("x", "w"), False),  # a longer path
        ("ValueError: found at self.a", ("a",), False),  # an attribute access, not a key path
        ("ValueError: found at .ab", ("a",), False),
        ("ValueError: shared at ('a', 'b')", ("a", "b"), True),  # SPEC.md's spellings still count
        ("RecursionError: maximum recursion depth exceeded", ("a",), False),
    ],
)
def test_an_error_names_a_path_in_jax_key_path_spelling_too(
    message: str, path: tuple[str, ...], named: bool
) -> None:
    assert structure_names_path(message, path) is named


# -- verdicts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", PROPERTIES, ids=[fn.__name__ for fn in PROPERTIES])
def test_a_correct_tree_only_implementation_passes(fn) -> None:
    """The base of the clause's mutants refuses every forced structure correctly: the clause raises no false
    alarm on it (the cycle property runs its examples in the child interpreter)."""
    outcome = run_property(fn, TreeOnlyAdapter(), shrink=False, derandomize=True)
    assert not outcome.failed and outcome.skipped is None, outcome.describe()


@pytest.mark.parametrize("fn", PROPERTIES, ids=[fn.__name__ for fn in PROPERTIES])
def test_an_implementation_claiming_the_structure_is_skipped_with_the_reason(fn) -> None:
    outcome = run_property(fn, CoreAdapter(), shrink=False, derandomize=True)
    assert outcome.skipped is not None and "claims capability" in outcome.skipped, outcome.describe()
    assert outcome.examples == 1  # skipped on the first call, before drawing a graph


def test_one_child_serves_a_whole_property_run() -> None:
    """The cycle property starts one child interpreter per process and adapter, not one per example."""
    from nnx_conformance.spec.properties import _sandbox

    cycle = next(fn for fn in PROPERTIES if "cycle" in fn.__name__)
    impl = TreeOnlyAdapter()
    run_property(cycle, impl, shrink=False, derandomize=True, max_examples=10)
    pid = _sandbox._sandbox(impl).proc.pid
    outcome = run_property(cycle, impl, shrink=False, derandomize=True, max_examples=10)
    assert not outcome.failed, outcome.describe()
    assert _sandbox._sandbox(impl).proc.pid == pid


def test_capabilities_of_the_tree_only_base() -> None:
    caps = TreeOnlyAdapter.capabilities
    assert (
        dataclasses.replace(caps, cycles=True, shared_modules=True, shared_variables=True)
        == CoreAdapter.capabilities
    )
