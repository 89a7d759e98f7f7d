"""variables(), shardings(), signatures(), statics(), names(): the small leaf strategies."""

from __future__ import annotations

from collections import Counter

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from nnx_conformance.strategies import (
    DTYPES,
    MESH_AXES,
    SHAPES,
    Blueprint,
    RngProgram,
    Static,
    VarSpec,
    shardings,
    signatures,
    statics,
    variables,
)

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


def test_statics_hold_values_python_calls_equal():
    seen: set = set()

    @COUNT
    @given(statics())
    def run(value):
        hash(value)
        seen.add(Static(value))

    run()
    assert {Static(1), Static(1.0), Static(True), Static(0), Static(False)} <= seen


@settings(max_examples=20, database=None)
@given(st.from_type(Blueprint), st.from_type(VarSpec), st.from_type(RngProgram))
def test_types_resolve_to_the_strategies(bp, var, program):
    bp.validate()
    assert isinstance(var, VarSpec) and isinstance(program, RngProgram)
