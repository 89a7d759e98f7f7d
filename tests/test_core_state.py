"""State: canonical order, filtering, partitioning, union and its conflict rule, pytree behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_conformance.core import NNXError, State, StateConflictError, Variable


def v(collection="params", value=None, sharding=None):
    return Variable(collection, jnp.zeros(1) if value is None else value, sharding=sharding)


@pytest.fixture
def entries():
    return {
        ("b",): v("params"),
        ("a", "y"): v("batch_stats"),
        ("a", "x"): v("params"),
        ("a-b",): v("cache"),
        ("a/b",): v("params"),
    }


# -- construction and order -----------------------------------------------------------------------------


def test_iteration_is_sorted_path_order_whatever_the_insertion_order(entries):
    expected = sorted(entries)
    for items in (entries, list(entries.items()), list(reversed(entries.items()))):
        state = State(items)
        assert list(state) == expected
        assert list(state.keys()) == expected
        assert [p for p, _ in state.items()] == expected
        assert list(state.values()) == [entries[p] for p in expected]


def test_order_is_tuple_order_not_display_string_order():
    # As strings "a-b" < "a/x"; as paths ("a", "x") < ("a-b",): the tuple order is the canonical one.
    state = State({("a-b",): v(), ("a", "x"): v()})
    assert list(state) == [("a", "x"), ("a-b",)]


def test_slash_in_a_name_is_a_different_key_than_a_nested_path():
    inner, flat = v(), v()
    state = State({("a", "b"): inner, ("a/b",): flat})
    assert len(state) == 2
    assert state["a", "b"] is inner and state["a/b",] is flat


@pytest.mark.parametrize("bad", ["a/b", ["a", "b"], ("a", 1)])
def test_keys_must_be_tuples_of_names(bad):
    with pytest.raises(TypeError, match="tuples of attribute names"):
        State([(bad, v())])


def test_string_key_error_explains_the_display_form():
    with pytest.raises(TypeError, match="display form"):
        State({"a/b": v()})


def test_duplicate_paths_in_items_are_rejected():
    with pytest.raises(ValueError, match=r"duplicate path 'a/b' \(\('a', 'b'\)\)") as info:
        State([(("a", "b"), v()), (("a", "b"), v())])
    assert isinstance(info.value, NNXError) and info.value.path == ("a", "b")
    shared = v()  # even the very same Variable twice: one entry per path
    with pytest.raises(NNXError, match=r"use State\.union") as info:
        State([(("c",), v()), (("a",), shared), (("b",), v()), (("a",), shared)])
    assert info.value.path == ("a",)


def test_malformed_items_are_rejected():
    with pytest.raises(TypeError, match="pairs"):
        State([(("a",), v(), "extra")])


def test_is_an_immutable_mapping(entries):
    state = State(entries)
    with pytest.raises(TypeError):
        state["a", "x"] = v()  # type: ignore[index]
    with pytest.raises(TypeError):
        del state["b",]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        state.items().mapping["new"] = v()  # the views expose only a read-only mappingproxy
    with pytest.raises(TypeError):
        hash(state)
    assert ("a", "x") in state and ("zz",) not in state
    assert state.get(("zz",)) is None


def test_copying_a_state_shares_nothing_mutable(entries):
    original = dict(entries)
    state = State(original)
    original[("c",)] = v()
    assert ("c",) not in state and State(state) == state


def test_equality_is_by_entries_and_variable_identity(entries):
    assert State(entries) == State(list(entries.items()))
    assert State(entries) == dict(entries)
    changed = dict(entries)
    changed["b",] = v()  # equal contents, different Variable object
    assert State(entries) != State(changed)


# -- filter and partition -------------------------------------------------------------------------------


def test_filter_by_one_collection(entries):
    assert list(State(entries).filter("params")) == [("a", "x"), ("a/b",), ("b",)]


def test_filter_by_several_collections_matches_any(entries):
    assert list(State(entries).filter("cache", "batch_stats")) == [("a", "y"), ("a-b",)]


def test_filter_by_predicate_gets_path_and_variable(entries):
    seen = []

    def top_level(path, var):
        seen.append((path, var))
        return len(path) == 1

    assert list(State(entries).filter(top_level)) == [("a-b",), ("a/b",), ("b",)]
    assert {p for p, _ in seen} == set(entries)
    assert all(var is entries[p] for p, var in seen)


def test_filter_mixing_collections_and_predicates(entries):
    state = State(entries).filter("cache", lambda path, var: path[0] == "b")
    assert list(state) == [("a-b",), ("b",)]


def test_filter_by_variable_subclass():
    class Cache(Variable):
        pass

    state = State({("a",): Cache("cache", 1), ("b",): v()})
    assert list(state.filter(Cache)) == [("a",)]
    assert list(state.filter(Variable)) == [("a",), ("b",)]


def test_filter_with_no_filter_matches_nothing(entries):
    assert len(State(entries).filter()) == 0


def test_filter_by_an_absent_collection_is_empty_not_an_error(entries):
    # The rule stated in SPEC.md (state.filter-partition): a collection no entry has selects nothing, on
    # its own or next to others (never "nothing to filter by, keep everything").
    state = State(entries)
    assert state.filter("intermediates") == State()
    assert list(state.filter("intermediates", "cache")) == [("a-b",)]
    assert State().filter("params") == State()
    part, rest = state.partition("intermediates")
    assert len(part) == 0 and rest == state


@pytest.mark.parametrize("bad", [3, None, int])
def test_invalid_filters_are_rejected(bad, entries):
    with pytest.raises(TypeError):
        State(entries).filter(bad)


def test_partition_is_disjoint_first_match_wins_rest_last(entries):
    state = State(entries)
    params, top, rest = state.partition("params", lambda p, var: len(p) == 1)
    assert list(params) == [("a", "x"), ("a/b",), ("b",)]
    assert list(top) == [("a-b",)]  # ("b",) is top-level too, but went to the first filter
    assert list(rest) == [("a", "y")]
    assert params.union(top, rest) == state


def test_partition_with_several_filters_of_every_kind(entries):
    class Cache(Variable):
        pass

    cached = Cache("cache", jnp.zeros(1))
    state = State({**entries, ("c",): cached})
    parts = state.partition(
        "params",  # ("a", "x"), ("a/b",), ("b",)
        lambda path, var: path[0] == "a",  # ("a", "y") only: ("a", "x") went to the first filter
        "absent",  # matches nothing: an empty part, in its place
        Cache,  # ("c",)
        "params",  # a repeated filter gets nothing: every match already went to the first
    )
    assert len(parts) == 6
    params, a_rest, absent, caches, again, rest = parts
    assert list(params) == [("a", "x"), ("a/b",), ("b",)]
    assert list(a_rest) == [("a", "y")]
    assert len(absent) == 0 and len(again) == 0
    assert list(caches) == [("c",)] and caches["c",] is cached
    assert list(rest) == [("a-b",)]
    assert all(isinstance(part, State) for part in parts)
    assert State.union(*parts) == state and State.union(*reversed(parts)) == state


def test_partition_without_filters_is_everything_as_rest(entries):
    (rest,) = State(entries).partition()
    assert rest == State(entries)


# -- union ----------------------------------------------------------------------------------------------


def test_union_of_disjoint_states_is_sorted(entries):
    state = State(entries)
    left, right = state.partition(lambda p, var: p[0] in ("b", "a-b"))
    for combined in (left | right, right | left, State.union(right, left), right.union(left)):
        assert combined == state
        assert list(combined) == sorted(entries)


def test_union_of_many_and_of_one():
    a, b, c = State({("a",): v()}), State({("b",): v()}), State({("c",): v()})
    assert list(State.union(c, a, b)) == [("a",), ("b",), ("c",)]
    assert State.union(a) == a


def test_union_accepts_the_same_variable_twice():
    shared = v()
    merged = State({("a",): shared}) | State({("a",): shared, ("b",): v()})
    assert merged["a",] is shared and len(merged) == 2


def test_union_accepts_agreeing_variables_and_keeps_the_first():
    value = jnp.ones(2)
    first = Variable("params", value, sharding=("x",))
    second = Variable("params", value, sharding=("x",))
    assert (State({("a",): first}) | State({("a",): second}))["a",] is first


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (jnp.ones(2), jnp.ones(2)),  # two arrays, equal contents
        (jnp.ones(2), np.ones(2, np.float32)),  # a JAX and a numpy array: same dtype, shape, bytes
        (jnp.full(2, jnp.nan), jnp.full(2, jnp.nan)),  # bytes, not ==: a NaN agrees with the same NaN
        (np.float32(1.5), np.asarray(1.5, np.float32)),  # a numpy scalar and a 0-d array
        (jax.random.key(3), jax.random.key(3)),  # typed keys, by key data
        (1.5, 1.5),
        (float("nan"), float("nan")),
        ("config", "config"),
        (None, None),
        (jax.ShapeDtypeStruct((2,), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.float32)),
    ],
    ids=["jax", "jax-numpy", "nan", "scalar-0d", "key", "float", "float-nan", "str", "none", "shape-dtype"],
)
def test_union_compares_values_not_objects(left, right):
    # SPEC.md state.union-laws: only Variables that *differ* in value, collection or sharding conflict.
    first = Variable("params", left, sharding=None)
    second = Variable("params", right, sharding=None)
    merged = State({("a",): first}) | State({("a",): second, ("b",): v()})
    assert merged["a",] is first and list(merged) == [("a",), ("b",)]
    assert (State({("a",): second}) | State({("a",): first}))["a",] is second


@pytest.mark.parametrize(
    ("other", "reason"),
    [
        (lambda value: Variable("params", jnp.zeros(2)), "different values"),
        (lambda value: Variable("params", jnp.ones(2, jnp.int32)), "dtype float32 vs int32"),
        (lambda value: Variable("params", jnp.ones(3)), r"shape \(2,\) vs \(3,\)"),
        (lambda value: Variable("params", 1.0), "a JAX array vs a float"),
        (lambda value: Variable("batch_stats", value), "collection 'params' vs 'batch_stats'"),
        (lambda value: Variable("params", value, sharding=("x",)), r"sharding None vs \('x',\)"),
        (lambda value: value, "not a Variable"),
    ],
    ids=[
        "other-value",
        "other-dtype",
        "other-shape",
        "array-vs-float",
        "other-collection",
        "other-sharding",
        "not-a-variable",
    ],
)
def test_union_conflicts_name_the_path_and_the_difference(other, reason):
    value = jnp.ones(2)
    left = State({("layers", "w"): Variable("params", value), ("z",): v()})
    right = State({("layers", "w"): other(value)})
    for operands in ((left, right), (right, left)):
        with pytest.raises(StateConflictError, match=r"'layers/w' \(\('layers', 'w'\)\)") as info:
            State.union(*operands)
        assert info.value.path == ("layers", "w")
        assert isinstance(info.value, ValueError)
    with pytest.raises(StateConflictError, match=reason):
        left.union(right)


def test_union_signed_zeros_differ():
    zero = State({("a",): Variable("params", jnp.zeros(2))})
    negative = State({("a",): Variable("params", -jnp.zeros(2))})
    assert bool(jnp.all(zero["a",].value == negative["a",].value))  # == calls them equal; the bytes differ
    with pytest.raises(StateConflictError, match="different values"):
        zero | negative


def test_union_inside_jit_agrees_on_shared_tracers_and_refuses_different_ones():
    state = State({("a",): v(value=jnp.ones(2)), ("b",): v("cache", value=jnp.zeros(2))})

    def recombine(s):
        params, rest = s.partition("params")  # parts of one state share their (traced) value objects
        return rest | params | s

    out = jax.jit(recombine)(state)
    assert list(out) == [("a",), ("b",)]
    np.testing.assert_array_equal(out["a",].value, jnp.ones(2))

    def equal_but_distinct(s):
        copy = jax.tree_util.tree_map(lambda x: x + 0, s)  # new tracers, (at run time) equal values
        return s | copy

    with pytest.raises(StateConflictError, match="traced values") as info:
        jax.jit(equal_but_distinct)(state)
    assert info.value.path == ("a",)
    # Eagerly the same program is fine: the values are concrete and compare equal.
    assert list(equal_but_distinct(state)) == [("a",), ("b",)]


def test_union_inside_vmap_follows_the_same_rule():
    stacked = State({("a",): v(value=jnp.ones((3, 2)))})
    assert list(jax.vmap(lambda s: s | s.filter("params"))(stacked)) == [("a",)]
    with pytest.raises(StateConflictError, match="traced values"):
        jax.vmap(lambda s: s | jax.tree_util.tree_map(jnp.negative, s))(stacked)


def test_or_with_a_non_state_is_a_type_error():
    with pytest.raises(TypeError):
        State({("a",): v()}) | {("b",): v()}  # type: ignore[operator]
    with pytest.raises(TypeError, match="takes States"):
        State({("a",): v()}).union({("b",): v()})  # type: ignore[arg-type]


# -- pytree ---------------------------------------------------------------------------------------------


def test_leaves_are_values_in_canonical_order(entries):
    for i, var in enumerate(entries.values()):
        var.value = jnp.full(1, float(i))
    leaves = jax.tree_util.tree_leaves(State(list(reversed(entries.items()))))
    assert [leaf for leaf in leaves] == [entries[p].value for p in sorted(entries)]


def test_key_paths_carry_path_tuples():
    state = State({("a", "b"): v(value=1.0), ("a/b",): v(value=2.0)})
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    assert [path for path, _ in flat] == [
        (jax.tree_util.DictKey(("a", "b")), jax.tree_util.GetAttrKey("value")),
        (jax.tree_util.DictKey(("a/b",)), jax.tree_util.GetAttrKey("value")),
    ]


def test_equal_path_sets_have_equal_treedefs_whatever_the_insertion_order(entries):
    forward = jax.tree_util.tree_structure(State(entries))
    backward = jax.tree_util.tree_structure(State(list(reversed(entries.items()))))
    assert forward == backward


def test_tree_map_keeps_paths_and_metadata():
    state = State({("w",): Variable("params", jnp.zeros((4, 10)), sharding=(None, "m"))})
    shapes = jax.tree_util.tree_map(jnp.shape, state)
    assert isinstance(shapes, State)
    assert shapes["w",].value == (4, 10) and shapes["w",].sharding == (None, "m")


def test_unflatten_accepts_arbitrary_leaves(entries):
    treedef = jax.tree_util.tree_structure(State(entries))
    sentinels = [object() for _ in entries]
    rebuilt = treedef.unflatten(sentinels)
    assert [var.value for var in rebuilt.values()] == sentinels
    assert list(rebuilt) == sorted(entries)


def test_crosses_jit_as_an_argument_and_a_result(entries):
    state = State(entries)
    doubled = jax.jit(lambda s: jax.tree_util.tree_map(lambda x: x + 2, s))(state)
    assert isinstance(doubled, State) and list(doubled) == list(state)
    for path, var in doubled.items():
        np.testing.assert_array_equal(var.value, state[path].value + 2)
        assert var.collection == state[path].collection


# -- display --------------------------------------------------------------------------------------------


def test_repr_and_flat_str_use_slash_for_display_only():
    state = State({("a", "b"): Variable("params", 1), ("c",): Variable("cache", 2)})
    assert repr(state) == (
        "State({\n"
        "  'a/b': Variable(collection='params', value=1, sharding=None),\n"
        "  'c': Variable(collection='cache', value=2, sharding=None)\n"
        "})"
    )
    assert state.flat_str().splitlines() == [
        "a/b: Variable(collection='params', value=1, sharding=None)",
        "c: Variable(collection='cache', value=2, sharding=None)",
    ]
    assert repr(State()) == "State({})"
