"""filters(): readable predicates, and the oracle's selection against the reference core's filter."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from nnx_conformance.strategies import (
    COLLECTIONS,
    Everything,
    Nothing,
    PathContains,
    PathDepth,
    PathPrefix,
    VarSpec,
    build,
    filters,
    graphs,
    matches,
    oracle,
)

V = VarSpec.of("params", np.float32(0))


def test_predicates_read_well_and_compare_by_value():
    assert repr(PathPrefix(("a", "b"))) == "PathPrefix(prefix=('a', 'b'))"
    assert PathContains("a") == PathContains("a") and hash(PathDepth(1)) == hash(PathDepth(1))


def test_predicates_work_on_components_not_strings():
    assert PathPrefix(("a",))(("a", "z"), V) and not PathPrefix(("a",))(("a-b",), V)
    assert PathContains("a/b")(("a/b",), V) and not PathContains("a/b")(("a", "b"), V)
    assert PathDepth(1)(("x",), V) and not PathDepth(1)(("x", "y"), V)
    assert Everything()((), V) and not Nothing()((), V)
    assert matches("params", ("w",), V) and not matches("cache", ("w",), V)


def test_filters_draw_every_form():
    kinds: Counter = Counter()

    @settings(max_examples=200, database=None, derandomize=True, phases=[Phase.generate])
    @given(filters())
    def run(f: object) -> None:
        kinds[type(f).__name__] += 1
        if isinstance(f, str):
            assert f in COLLECTIONS

    run()
    assert set(kinds) == {"str", "PathPrefix", "PathContains", "PathDepth", "Everything", "Nothing"}, kinds


def test_select_agrees_with_the_core_filter():
    from nnx_conformance.spec.adapters.core import CoreAdapter

    impl = CoreAdapter()
    hits: Counter = Counter()

    @settings(max_examples=150, deadline=None, database=None)
    @given(graphs(impl.capabilities), st.lists(filters(), min_size=1, max_size=3))
    def check(bp, fs):
        state, _ = impl.partition(build(bp, impl).root)
        got = [path for path, _ in impl.state_items(impl.filter(state, *fs))]
        want = [path for path, _ in oracle(bp).select(*fs)]
        assert got == want
        hits["some but not all"] += 0 < len(want) < len(oracle(bp).expected_items)

    check()
    assert hits["some but not all"] > 0
