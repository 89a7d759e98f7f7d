"""variables(), shardings(), signatures(), statics(), names(): the small leaf strategies."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.strategies import (
    COLLECTIONS,
    DTYPES,
    MESH_AXES,
    PUNCTUATED_COLLECTIONS,
    SHAPES,
    Blueprint,
    RngProgram,
    Static,
    VarSpec,
    collection_pool,
    collections,
    shardings,
    signatures,
    statics,
    variables,
)
from nnx_conformance.strategies._internal.variables import _MAX_TABLE, kind_tables

COUNT = settings(max_examples=300, database=None, derandomize=True, phases=[Phase.generate])


def test_shardings_enumerate_every_valid_annotation():
    seen: Counter = Counter()

    @COUNT
    @given(shardings((2, 3)))
    def run(annotation):
        seen[annotation] += 1
        if annotation is not None:
            axes = [a for a in annotation if a is not None]
            assert len(annotation) == 2 and set(axes) <= set(MESH_AXES) and len(axes) == len(set(axes))

    run()
    assert len(seen) == 1 + 7  # None, and 3 x 3 pairs minus the two that reuse an axis
    assert seen[None] >= sum(seen.values()) / 4


@settings(max_examples=100, database=None)
@given(variables(sharding=True))
def test_variables_are_valid_specs(var):
    assert var.shape in SHAPES and var.dtype in DTYPES
    assert var.array().shape == var.shape and var.array().dtype.name == var.dtype
    assert var.sharding is None or len(var.sharding) == len(var.shape)
    values = var.array().ravel().tolist()
    assert values == sorted(values) and len(set(values)) == len(values)  # a run: base, base + 1, ...


@settings(max_examples=50, database=None)
@given(variables(collections=["w"], shapes=[[4]], dtypes=["int32"]))
def test_variables_take_plain_sequences(var):
    assert (var.collection, var.shape, var.dtype, var.sharding) == ("w", (4,), "int32", None)


def test_collections_are_confusable_pairs_gated_by_the_separator_capability():
    pool = collection_pool()
    assert pool == COLLECTIONS + PUNCTUATED_COLLECTIONS and len(set(pool)) == len(pool)
    assert collection_pool(Capabilities(separator_in_names=False)) == COLLECTIONS
    assert all(name.isidentifier() for name in COLLECTIONS)
    assert not any(name.isidentifier() for name in PUNCTUATED_COLLECTIONS)
    # the confusions the pool exists for: prefixes, a suffix, a case variant, other separators
    assert "param" < "params" < "params_" and {"param", "params", "params_"} <= set(COLLECTIONS)
    assert "batch_stats".endswith("stats") and "stats" in COLLECTIONS
    assert "Params".casefold() == "params" and "Params" in COLLECTIONS
    assert {n.replace("-", "_").replace(".", "_") for n in PUNCTUATED_COLLECTIONS} == {"batch_stats"}


def test_collections_draw_every_name_and_shrink_to_params():
    seen: Counter = Counter()

    @COUNT
    @given(collections())
    def run(name):
        seen[name] += 1

    run()
    pool = collection_pool()
    assert set(seen) == set(pool), seen  # one choice: Hypothesis tries each name once, then stops
    assert find(collections(), lambda name: True) == "params"
    assert set(find(st.lists(collections(), min_size=2, unique=True), lambda names: True)) == {"params", "batch_stats"}


def test_signatures_are_one_choice_over_the_product():
    seen: set = set()

    @COUNT
    @given(signatures(["a", "b"], [(), (2,)], ["float32"]))
    def run(signature):
        seen.add(signature)

    run()
    assert seen == {
        ("a", (), "float32"),
        ("a", (2,), "float32"),
        ("b", (), "float32"),
        ("b", (2,), "float32"),
    }


def test_kind_tables_give_each_shape_an_even_share_half_unannotated():
    tables = kind_tables(sharding=True)
    assert tables.heads[0] == ("params", None, "float32") and tables.tails[0] == ((), None)
    assert len(tables.tails) <= _MAX_TABLE  # longer tables are not drawn evenly
    share = Counter(shape for shape, _ in tables.tails)
    assert set(share) == set(SHAPES) and len(set(share.values())) == 1
    for shape in SHAPES:
        mine = Counter(a for s, a in tables.tails if s == shape)
        assert mine[None] == share[shape] / 2  # half unannotated...
        annotated = Counter({a: n for a, n in mine.items() if a is not None})
        assert len(set(annotated.values())) == 1  # ...the other half even over the annotations
    assert kind_tables().tails == () and len(kind_tables().heads) == len(COLLECTIONS) * len(SHAPES) * len(DTYPES)


def test_kind_tables_stay_short_for_many_dimensions():
    tables = kind_tables(shapes=[(), (2,), (2, 2), (2, 2, 2), (2, 2, 2, 2)], sharding=True)
    assert len(tables.tails) <= _MAX_TABLE
    for shape in [(2, 2, 2), (2, 2, 2, 2)]:  # every annotation still possible
        got = {a for s, a in tables.tails if s == shape}
        assert got == {None, *(a for a in _all_annotations(len(shape)))}


def _all_annotations(ndim: int) -> set:
    return {
        a
        for a in itertools.product((None, *MESH_AXES), repeat=ndim)
        if len([x for x in a if x is not None]) == len({x for x in a if x is not None})
    }


def test_sharded_variables_are_half_unannotated():
    seen: Counter = Counter()

    @settings(max_examples=400, database=None, derandomize=True, phases=[Phase.generate])
    @given(variables(sharding=True))
    def run(var):
        seen[var.sharding is None] += 1
        seen[var.shape] += 1

    run()
    assert 0.35 < seen[True] / 400 < 0.65, seen
    assert all(seen[shape] >= 400 / 8 for shape in SHAPES), seen


def test_statics_hold_values_python_calls_equal():
    seen: set = set()

    @COUNT
    @given(statics())
    def run(value):
        hash(value)
        seen.add(Static(value))

    run()
    assert {Static(1), Static(1.0), Static(True), Static(0), Static(False)} <= seen
    # members of containers are confusable too (a definition must type them as well)
    assert {Static(frozenset({1})), Static((frozenset({1.0}), (False,)))} <= seen


@settings(max_examples=20, database=None)
@given(st.from_type(Blueprint), st.from_type(VarSpec), st.from_type(RngProgram))
def test_types_resolve_to_the_strategies(bp, var, program):
    bp.validate()
    assert isinstance(var, VarSpec) and isinstance(program, RngProgram)
