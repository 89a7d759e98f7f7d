"""Blueprint data: equality, hashing, values, validation."""

from __future__ import annotations

import numpy as np
import pytest

from nnx_conformance.strategies import (
    Blueprint,
    MalformedBlueprint,
    NodeRef,
    NodeSpec,
    Static,
    VarRef,
    VarSpec,
)

V = VarSpec.of("params", np.float32([1.0, 2.0]))


def bp(*nodes: NodeSpec, variables: tuple[VarSpec, ...] = ()) -> Blueprint:
    return Blueprint(tuple(nodes), variables)


def test_refs_of_different_kinds_never_compare_equal():
    assert NodeRef(0) != VarRef(0)
    assert len({NodeRef(0), VarRef(0), Static(0)}) == 3


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (1, 1.0),
        (1, True),
        (0, False),
        ((1,), (1.0,)),
        ((1, (True,)), (1, (1,))),
        (frozenset({1}), frozenset({True})),
        (frozenset({0.0, "a"}), frozenset({0, "a"})),
        ((frozenset({1.0}),), (frozenset({1}),)),
        (frozenset({(1,)}), frozenset({(1.0,)})),
    ],
)
def test_statics_compare_with_their_type(x, y):
    assert x == y  # Python says equal ...
    assert Static(x) != Static(y)  # ... a module definition must not
    assert Static(x) == Static(x)
    assert hash(Static(x)) == hash(Static(x))


def test_varspec_roundtrips_value_exactly():
    value = np.array([[-0.0, 1.5, 3.0]], np.float32)
    spec = VarSpec.of("cache", value, ("data", None))
    out = spec.array()
    assert out.dtype == np.float32 and out.shape == (1, 3) and out.tobytes() == value.tobytes()
    out[0, 0] = 7  # a fresh, writable copy
    assert spec.array()[0, 0] == 0
    assert VarSpec.of("cache", np.float32([[0.0, 1.5, 3.0]]), ("data", None)) != spec  # -0.0 vs 0.0


def test_varspec_repr_evaluates_back():
    for spec in (V, VarSpec.of("batch_stats", np.int32([[1, 2, 3], [4, 5, 6]]), ("model", None))):
        assert eval(repr(spec), {"VarSpec": VarSpec, "np": np}) == spec


def test_blueprints_are_hashable_values():
    a = bp(NodeSpec("A", (("w", VarRef(0)), ("me", NodeRef(0)), ("k", Static(1)))), variables=(V,))
    b = bp(NodeSpec("A", (("w", VarRef(0)), ("me", NodeRef(0)), ("k", Static(1)))), variables=(V,))
    assert a == b and hash(a) == hash(b)
    assert a.validate() is a


@pytest.mark.parametrize(
    ("blueprint", "message"),
    [
        (Blueprint(()), "at least the root"),
        (bp(NodeSpec("A", (("a", NodeRef(1)),))), "outside"),
        (bp(NodeSpec("A", (("a", VarRef(0)),))), "outside"),
        (bp(NodeSpec("A", (("a", Static(1)), ("a", Static(2))))), "assigned twice"),
        (bp(NodeSpec("A"), NodeSpec("B")), "unreachable"),
        (bp(NodeSpec("A"), variables=(V,)), "unreachable"),
        (bp(NodeSpec("A", (("a", Static([1])),))), "unhashable"),
        (bp(NodeSpec("A", (("a", 3),))), "not a NodeRef"),
        (bp(NodeSpec("")), "type name"),
        (
            bp(NodeSpec("A", (("w", VarRef(0)),)), variables=(VarSpec("params", (2,), "float32", b"x"),)),
            "bytes",
        ),
        (
            bp(NodeSpec("A", (("w", VarRef(0)),)), variables=(VarSpec.of("params", np.float32(1), (None,)),)),
            "per axis",
        ),
        (bp(NodeSpec("A", (("w", VarRef(0)),)), variables=(VarSpec("params", (), "nope", b""),)), "dtype"),
    ],
)
def test_validate_rejects_malformed(blueprint, message):
    with pytest.raises(MalformedBlueprint, match=message):
        blueprint.validate()


def test_unreachable_node_behind_a_cycle_is_reported():
    # 1 and 2 point at each other but nothing leads to them from the root.
    blueprint = bp(NodeSpec("A"), NodeSpec("A", (("x", NodeRef(2)),)), NodeSpec("A", (("y", NodeRef(1)),)))
    with pytest.raises(MalformedBlueprint, match=r"nodes \[1, 2\]"):
        blueprint.validate()
