"""graphs(): validity, distribution, capability switches, names, shrinking.

Distribution checks run one ``@given`` over many examples and count into a Counter, with
``derandomize=True`` so the counts (and so the test) are the same on every run. Hypothesis' generation is
not uniform sampling (it starts from simple examples and mutates), so the thresholds are for what tests
really see, with margin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import Phase, find, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.strategies import (
    MESH_AXES,
    Blueprint,
    NodeRef,
    NodeSpec,
    Static,
    VarRef,
    VarSpec,
    graphs,
    name_pool,
    names,
    oracle,
)
from nnx_conformance.strategies._internal.graphs import _NAME_TABLE, _name_table

N = 600


def collect(
    strategy: st.SearchStrategy[Blueprint], n: int, record: Callable[[Blueprint, Counter], None]
) -> Counter:
    """Run ``record`` on ``n`` drawn examples (deterministically) and return the counts."""
    counts: Counter = Counter()

    @settings(max_examples=n, database=None, derandomize=True, phases=[Phase.generate], deadline=None)
    @given(strategy)
    def run(bp: Blueprint) -> None:
        counts["total"] += 1
        record(bp, counts)

    run()
    return counts


def bfs_depth(bp: Blueprint) -> int:
    """Most attribute accesses needed to reach any node (shortest paths), computed independently."""
    depth, frontier = {0: 0}, [0]
    while frontier:
        nxt = []
        for i in frontier:
            for _, ref in bp.nodes[i].attrs:
                if isinstance(ref, NodeRef) and ref.index not in depth:
                    depth[ref.index] = depth[i] + 1
                    nxt.append(ref.index)
        frontier = nxt
    return max(depth.values())


def all_names(bp: Blueprint) -> list[str]:
    return [name for node in bp.nodes for name, _ in node.attrs]


def _default_features(bp: Blueprint, c: Counter) -> None:
    bp.validate()
    o = oracle(bp)
    c["cycle"] += bool(o.cycles)
    c["shared module"] += bool(o.shared_nodes)
    c["shared variable"] += bool(o.shared_variables)
    c["all three"] += bool(o.cycles and o.shared_nodes and o.shared_variables)
    c["self-loop"] += any(e.dst == NodeRef(e.src) for e in o.cycles)
    c["max nodes"] += len(bp.nodes) == 8
    c["one node"] += len(bp.nodes) == 1
    c["max depth"] += o.depth == 7
    c["static"] += any(isinstance(r, Static) for node in bp.nodes for _, r in node.attrs)
    assert len(bp.nodes) <= 8 and len(bp.variables) <= 6
    for var in bp.variables:
        if var.sharding is not None:
            c["sharded"] += 1
            assert len(var.sharding) == len(var.shape)
            axes = [a for a in var.sharding if a is not None]
            assert set(axes) <= set(MESH_AXES) and len(axes) == len(set(axes))
            c["uses a mesh axis"] += bool(axes)
    paths = [*o.node_paths.values(), *(p for p, _ in o.expected_items)]
    joined = ["/".join(p) for p in paths]
    c["display collision"] += len(set(joined)) != len(joined)
    leaves = [p for p, _ in o.expected_items]
    c["order trap"] += sorted(leaves, key="/".join) != leaves


_FRESH = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_strategies_graphs import N, _default_features, collect
from nnx_conformance.strategies import graphs
print(json.dumps(collect(graphs(), N, _default_features)))
"""


@pytest.fixture(scope="module")
def default_counts() -> Counter:
    """Features of N default graphs, counted once for the tests below (every graph is also validated).

    Counted in a fresh interpreter: Hypothesis biases integer draws towards constants it finds in the
    modules loaded so far, so the same derandomized run drew measurably different graphs after other test
    modules had been imported (shared Variables in 129 of 600 graphs instead of over 150).
    """
    import json

    out = subprocess.run(
        [sys.executable, "-c", _FRESH, os.path.dirname(__file__)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return Counter(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("feature", ["cycle", "shared module", "shared variable"])
def test_a_quarter_of_default_graphs_have_each_hard_feature(default_counts, feature):
    assert default_counts[feature] >= default_counts["total"] / 4, default_counts


def test_default_graphs_combine_the_hard_features(default_counts):
    assert default_counts["all three"] >= default_counts["total"] / 20, default_counts


@pytest.mark.parametrize(
    "feature", ["self-loop", "max nodes", "one node", "max depth", "static", "sharded", "uses a mesh axis"]
)
def test_default_graphs_reach_the_corners(default_counts, feature):
    assert default_counts[feature] > 0, default_counts


def test_separator_collisions_and_order_traps_are_common(default_counts):
    """What the separator twin plants: ("a/b",) next to ("a", "b"); ("a-b",) next to ("a", ...)."""
    assert default_counts["display collision"] >= default_counts["total"] / 10, default_counts
    assert default_counts["order trap"] >= default_counts["total"] / 25, default_counts


def test_depth_bound_is_respected_and_reached():
    c = collect(graphs(max_depth=2, min_nodes=3), 200, lambda bp, c: c.update([bfs_depth(bp)]))
    assert set(c) - {"total"} <= {1, 2} and c[2] > 0, c


def test_node_bounds_are_respected_and_reached():
    def record(bp: Blueprint, c: Counter) -> None:
        c[len(bp.nodes)] += 1
        c["vars", len(bp.variables)] += 1

    c = collect(graphs(min_nodes=2, max_nodes=4, max_vars=2), 200, record)
    assert {k for k in c if isinstance(k, int)} == {2, 3, 4}, c
    assert {k for k in c if isinstance(k, tuple)} == {("vars", 0), ("vars", 1), ("vars", 2)}, c


@pytest.mark.parametrize(
    ("capabilities", "flags", "absent"),
    [
        (Capabilities(cycles=False), {}, "cycles"),
        (Capabilities(shared_modules=False), {}, "shared_modules"),
        (Capabilities(shared_variables=False), {}, "shared_variables"),
        (Capabilities(sharding=False), {}, "sharding"),
        (Capabilities(separator_in_names=False), {}, "separator_in_names"),
        (Capabilities(), {"cycles": False}, "cycles"),
        (Capabilities(), {"shared_modules": False}, "shared_modules"),
        (Capabilities(), {"shared_variables": False}, "shared_variables"),
        (Capabilities(), {"sharding": False}, "sharding"),
    ],
)
def test_disclaimed_features_are_never_generated(capabilities, flags, absent):
    def record(bp: Blueprint, c: Counter) -> None:
        bp.validate()
        assert absent not in oracle(bp).needs
        c.update(oracle(bp).needs)

    c = collect(graphs(capabilities, **flags), 100, record)
    others = {"cycles", "shared_modules", "shared_variables", "sharding"} - {absent}
    assert all(c[f] > 0 for f in others), c  # switching one feature off leaves the others on


def test_all_switched_off_gives_trees():
    caps = Capabilities(cycles=False, shared_modules=False, shared_variables=False, sharding=False)

    def record(bp: Blueprint, c: Counter) -> None:
        o = oracle(bp)
        assert not o.needs - {"separator_in_names"}
        assert all(len(paths) == 1 for paths in o.aliases.values())

    collect(graphs(caps), 100, record)


def draw_one(strategy: st.SearchStrategy[Blueprint]) -> None:
    @settings(max_examples=1, database=None)
    @given(strategy)
    def run(bp: Blueprint) -> None:
        pass

    run()


def test_asking_for_a_disclaimed_feature_is_an_error():
    with pytest.raises(InvalidArgument, match="disclaim cycles"):
        draw_one(graphs(Capabilities(cycles=False), cycles=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_nodes": 0},
        {"min_nodes": 3, "max_nodes": 2},
        {"max_depth": 0, "min_nodes": 2},
        {"max_vars": -1},
        {"names": ["a", "a"]},
        {"names": ["__dict__"]},
        {"collections": []},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(InvalidArgument):
        draw_one(graphs(**kwargs))


def test_reserved_and_dunder_names_never_appear():
    caps = Capabilities(reserved_names=frozenset({"a", "b", "a/b"}))
    pool = name_pool(caps)
    assert not {"a", "b", "a/b"} & set(pool) and not any(n.startswith("__") for n in pool)

    def record(bp: Blueprint, c: Counter) -> None:
        for name in all_names(bp):
            assert name not in caps.reserved_names and not name.startswith("__"), name

    collect(graphs(caps), 150, record)


def test_separator_names_only_where_claimed():
    no_sep = Capabilities(separator_in_names=False)
    assert all(n.isidentifier() for n in name_pool(no_sep))
    assert {"a/b", "a-b"} <= set(name_pool())

    @given(names(no_sep))
    def check(name: str) -> None:
        assert name.isidentifier()

    check()


def test_names_cover_the_orderings_that_break_naive_code():
    pool = name_pool()
    assert sorted(["a", "B"]) == ["B", "a"] and {"a", "B"} <= set(pool)  # case
    assert sorted(["a2", "a10"]) == ["a10", "a2"] and {"a2", "a10"} <= set(pool)  # digits
    assert {"_a", "a_b", "é", "ß", "中"} <= set(pool)  # underscores, non-ASCII
    assert "a-b" < "a/z" and ("a", "z") < ("a-b",)  # joined strings and tuples disagree


def test_names_are_unique_per_node_even_past_the_pool():
    def record(bp: Blueprint, c: Counter) -> None:
        for node in bp.nodes:
            names_here = [name for name, _ in node.attrs]
            assert len(set(names_here)) == len(names_here)
        c["fallback"] += any(n.startswith("n") and n[1:].isdigit() for n in all_names(bp))

    c = collect(graphs(names=["a", "b"], max_vars=4), 150, record)
    assert c["fallback"] > 0


def test_name_tables_hold_every_ordered_pair_and_start_simplest():
    pool = name_pool()
    pairs = _name_table(pool, 2)
    assert len(pairs) == len(set(pairs)) == len(pool) * (len(pool) - 1)  # every ordered pair, once
    assert pairs[0] == pool[:2]
    triples = _name_table(pool, 3)
    assert len(set(triples)) == len(triples) == _NAME_TABLE and triples[0] == pool[:3]
    assert all(len(set(t)) == 3 for t in triples)
    assert len({t[0] for t in triples}) == len(pool)  # a sample, not a prefix of the enumeration


def test_graphs_are_the_same_in_every_process():
    """Name tables are sampled with a fixed seed, never from ``hash()``: reproductions must replay."""
    script = (
        "from hypothesis import given, settings, Phase\n"
        "from nnx_conformance.strategies import graphs\n"
        "@settings(max_examples=40, database=None, derandomize=True, phases=[Phase.generate])\n"
        "@given(graphs(max_nodes=4))\n"
        "def run(bp): print(repr(bp.nodes))\n"
        "run()\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1 and outputs.pop().count("NodeSpec") > 40


def test_strategy_reprs_are_the_calls():
    assert repr(graphs()) == "graphs()"
    assert repr(graphs(max_nodes=3, cycles=False)) == "graphs(max_nodes=3, cycles=False)"
    assert "cycles=False" in repr(graphs(Capabilities(cycles=False)))


# -- shrinking ------------------------------------------------------------------------------------------

SHRINK = settings(database=None, max_examples=1000, derandomize=True)
"""Deterministic searches; in 30 random-seed runs each of these three shrank to the same minimal graph."""


def test_a_cycle_shrinks_to_one_self_loop():
    bp = find(graphs(), lambda bp: bool(oracle(bp).cycles), settings=SHRINK)
    assert bp == Blueprint((NodeSpec("A", (("a", NodeRef(0)),)),))


def test_a_shared_variable_shrinks_to_one_node_holding_it_twice():
    bp = find(graphs(), lambda bp: bool(oracle(bp).shared_variables), settings=SHRINK)
    v = VarSpec.of("params", np.float32(0))
    assert bp == Blueprint((NodeSpec("A", (("a", VarRef(0)), ("b", VarRef(0)))),), (v,))


def test_a_shared_module_shrinks_to_two_edges_into_one_child():
    bp = find(graphs(), lambda bp: bool(oracle(bp).shared_nodes), settings=SHRINK)
    assert bp == Blueprint((NodeSpec("A", (("a", NodeRef(1)), ("b", NodeRef(1)))), NodeSpec("A")))


@pytest.mark.parametrize("seed_", range(10))
def test_an_element_of_a_full_list_can_be_deleted(seed_):
    """With two extra edges at most, the list is usually full; deleting one of its edges must still
    leave a valid choice sequence (the full list's ignored "one more?" choice becomes its "stop"), or a
    shared module shrinks to ``root.a = m1; root.b = root; root.z = m1`` with a stray cycle edge."""
    shrunk: list[Blueprint] = []

    @seed(seed_)
    @settings(database=None, max_examples=1000, deadline=None)
    @given(graphs(max_extras=2))
    def search(bp: Blueprint) -> None:
        if oracle(bp).shared_nodes:
            shrunk.append(bp)
            raise AssertionError

    with pytest.raises(AssertionError):
        search()
    assert shrunk[-1] == Blueprint((NodeSpec("A", (("a", NodeRef(1)), ("b", NodeRef(1)))), NodeSpec("A")))
