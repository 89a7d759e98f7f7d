"""Module graphs: canonical paths, partition/merge/update round trips, ModuleDef equality and hashing,
sharing and cycles by identity, validation without side effects, and deep graphs."""

from __future__ import annotations

import copy
import gc
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnx_conformance.core import (
    Module,
    ModuleDef,
    NNXError,
    State,
    StateMismatchError,
    UnhashableStaticError,
    Variable,
)


class Node(Module):
    """A bare module; tests set attributes on it directly."""


class Other(Module):
    pass


def node(cls=Node, **attrs):
    module = cls()
    for name, value in attrs.items():
        setattr(module, name, value)
    return module


def p(value=0.0, collection="params", sharding=None):
    # numpy values: the graph functions never look inside them, and they are cheap to create
    return Variable(collection, np.asarray(value, np.float32), sharding=sharding)


def model():
    """root{a: Node{w, s=3}, b: Node{w, v=shared}, shared is also root.v, n='x'}."""
    shared = p(9.0)
    return node(
        a=node(w=p(1.0), s=3),
        b=node(w=p(2.0), v=shared),
        v=shared,
        n="x",
    )


def snapshot_values(state):
    return {path: var.value for path, var in state.items()}


# -- partition ------------------------------------------------------------------------------------------


def test_partition_paths_collections_and_order():
    state, moduledef = model().partition()
    assert list(state) == [("a", "w"), ("b", "v"), ("b", "w")]
    assert [var.collection for var in state.values()] == ["params"] * 3
    assert isinstance(moduledef, ModuleDef)


def test_partition_snapshots_variables_but_shares_values():
    root = model()
    state, _ = root.partition()
    assert state["a", "w"] is not root.a.w
    assert state["a", "w"].value is root.a.w.value
    root.a.w.value = jnp.zeros(())  # the snapshot is not a view of the live Variable
    assert float(state["a", "w"].value) == 1.0


def test_canonical_path_is_the_first_sorted_preorder_visit():
    # root.a = X, root.b = Y, X.c = Y: DFS reaches Y first through a/c, before trying root.b.
    y = node(w=p())
    x = node(c=y)
    root = node(b=y, a=x)
    state, _ = root.partition()
    assert list(state) == [("a", "c", "w")]
    # a Variable after a submodule in sorted order is claimed by the submodule's subtree first
    shared = p()
    root = node(z=shared, m=node(v=shared))
    assert list(root.partition()[0]) == [("m", "v")]


def test_attribute_order_does_not_matter():
    def build(order):
        root = Node()
        values = {"w": p(1.0), "child": node(k=p(2.0)), "n": 4}
        for name in order:
            setattr(root, name, values[name])
        return root

    state1, def1 = build(["w", "child", "n"]).partition()
    state2, def2 = build(["n", "child", "w"]).partition()
    assert def1 == def2 and list(state1) == list(state2) == [("child", "k"), ("w",)]


def test_slash_named_attribute_does_not_collide_with_nested_path():
    root = node(**{"a/b": p(1.0)})
    root.a = node(b=p(2.0))
    state, moduledef = root.partition()
    assert list(state) == [("a", "b"), ("a/b",)]
    merged = moduledef.merge(state)
    assert float(getattr(merged, "a/b").value) == 1.0 and float(merged.a.b.value) == 2.0


def test_empty_module_partitions_to_empty_state():
    state, moduledef = Node().partition()
    assert len(state) == 0
    assert type(moduledef.merge(state)) is Node


# -- merge: round trips, sharing and cycles by identity -------------------------------------------------


def test_merge_round_trip_rebuilds_an_independent_equal_graph():
    root = model()
    state, moduledef = root.partition()
    merged = moduledef.merge(state)
    assert type(merged) is Node and merged is not root
    assert merged.n == "x" and merged.a.s == 3
    assert merged.a.w is not state["a", "w"] and merged.a.w.value is state["a", "w"].value
    state2, def2 = merged.partition()
    assert def2 == moduledef and hash(def2) == hash(moduledef)
    assert snapshot_values(state2) == snapshot_values(state)
    assert sorted(vars(merged)) == sorted(vars(root))


def test_shared_variable_appears_once_and_stays_shared_after_merge():
    root = model()
    state, moduledef = root.partition()
    assert sum(var.value is root.v.value for var in state.values()) == 1
    merged = moduledef.merge(state)
    assert merged.v is merged.b.v
    merged.v.value = jnp.asarray(5.0)
    assert float(merged.b.v.value) == 5.0


def test_shared_module_appears_once_and_stays_shared():
    child = node(w=p())
    root = node(left=child, right=child)
    state, moduledef = root.partition()
    assert list(state) == [("left", "w")]
    merged = moduledef.merge(state)
    assert merged.left is merged.right


def test_self_loop_round_trips_by_identity():
    root = node(w=p())
    root.me = root
    state, moduledef = root.partition()
    merged = moduledef.merge(state)
    assert merged.me is merged and list(state) == [("w",)]


def test_back_edges_round_trip_by_identity():
    root = node(w=p())
    child = node(up=root, v=p(1.0))
    grandchild = node(top=root, parent=child)
    child.down = grandchild
    root.child = child
    state, moduledef = root.partition()
    merged = moduledef.merge(state)
    assert merged.child.up is merged
    assert merged.child.down.top is merged and merged.child.down.parent is merged.child
    assert merged.partition()[1] == moduledef


def test_merge_accepts_a_plain_mapping_in_any_order():
    state, moduledef = model().partition()
    merged = moduledef.merge(dict(reversed(list(state.items()))))
    assert float(merged.b.w.value) == 2.0


def test_merge_accepts_a_state_with_transformed_leaves():
    state, moduledef = model().partition()
    doubled = jax.tree_util.tree_map(lambda x: x * 2, state)
    assert float(moduledef.merge(doubled).a.w.value) == 2.0


def test_merge_does_not_call_init():
    class NeedsArgs(Module):
        def __init__(self, size):
            self.size = size
            self.w = p(jnp.zeros(size))

    state, moduledef = NeedsArgs(3).partition()
    assert moduledef.merge(state).size == 3


def test_apply_returns_output_and_new_partition():
    class Counter(Module):
        def __init__(self):
            self.count = Variable("counts", jnp.asarray(0))

        def __call__(self, step):
            self.count.value = self.count.value + step
            return self.count.value * 10

    state, moduledef = Counter().partition()
    out, (new_state, new_def) = moduledef.apply(state)(3)
    assert int(out) == 30 and int(new_state["count",].value) == 3
    assert new_def == moduledef and int(state["count",].value) == 0  # the input state is untouched


# -- merge validation -----------------------------------------------------------------------------------


def mismatches():
    state, moduledef = model().partition()
    items = dict(state)
    missing = {k: v for k, v in items.items() if k != ("b", "w")}
    extra = {**items, ("b", "extra"): p()}
    renamed = {(("b", "w2") if k == ("b", "w") else k): v for k, v in items.items()}
    not_a_variable = {**items, ("b", "w"): items["b", "w"].value}
    wrong_collection = {**items, ("b", "w"): Variable("batch_stats", items["b", "w"].value)}
    return moduledef, [
        ("missing", missing, ("b", "w"), "missing"),
        ("extra", extra, ("b", "extra"), "unexpected"),
        ("renamed", renamed, ("b", "w"), "missing 'b/w'.*unexpected 'b/w2'"),
        ("not-a-variable", not_a_variable, ("b", "w"), "not a Variable"),
        ("wrong-collection", wrong_collection, ("b", "w"), "collection 'batch_stats'"),
    ]


@pytest.mark.parametrize("case", range(5), ids=[m[0] for m in mismatches()[1]])
def test_merge_rejects_mismatching_states_naming_the_path(case):
    moduledef, cases = mismatches()
    _, items, path, message = cases[case]
    before = {k: (v, getattr(v, "value", None)) for k, v in items.items()}
    display = "/".join(path)
    with pytest.raises(StateMismatchError, match=message) as info:
        moduledef.merge(State(items))
    assert info.value.path == path
    assert f"'{display}' ({path!r})" in str(info.value)
    # nothing mutated: same Variables, same values
    assert {k: (v, getattr(v, "value", None)) for k, v in items.items()} == before


def test_merge_names_the_first_path_of_a_state_in_the_wrong_order():
    """A State keeps canonical order itself; one built around that (the private constructor) must still
    get a clear error, not a crash inside the error path."""
    state, moduledef = model().partition()
    assert len(state) > 1
    shuffled = dict(reversed(list(state.items())))
    first = next(iter(shuffled))
    with pytest.raises(StateMismatchError, match="out of canonical order") as info:
        moduledef.merge(State._from_sorted(shuffled))
    assert info.value.path == first


def test_merge_validates_a_plain_dict_like_a_state():
    state, moduledef = model().partition()
    items = dict(state)
    del items["b", "w"]
    with pytest.raises(StateMismatchError, match="missing 'b/w'") as info:
        moduledef.merge(items)
    assert info.value.path == ("b", "w")
    with pytest.raises(TypeError, match="display form"):
        moduledef.merge({"/".join(path): var for path, var in state.items()})
    with pytest.raises(StateMismatchError, match="not a Variable"):
        moduledef.merge({path: getattr(var, "value", var) for path, var in state.items()})


def test_merge_rejects_non_mappings():
    _, moduledef = model().partition()
    with pytest.raises(TypeError):
        moduledef.merge([1, 2])  # type: ignore[arg-type]


# -- update_state ---------------------------------------------------------------------------------------


def test_update_state_writes_in_place_and_keeps_sharing():
    root = model()
    live = [root.a.w, root.b.w, root.v]
    state, _ = root.partition()
    new = jax.tree_util.tree_map(lambda x: x + 100, state)
    root.update_state(new)
    assert [root.a.w, root.b.w, root.v] == live  # the same Variable objects
    assert root.v is root.b.v and float(root.v.value) == 109.0
    assert float(root.a.w.value) == 101.0 and float(root.b.w.value) == 102.0


def test_shared_variable_stays_shared_after_update_from_another_graph():
    root = model()
    state, moduledef = root.partition()
    other = moduledef.merge(state)
    other.b.v.value = jnp.asarray(-1.0)
    root.update_state(other.partition()[0])
    assert root.v is root.b.v and float(root.v.value) == -1.0


def test_update_state_with_a_subset_and_new_sharding():
    root = model()
    root.update_state(State({("a", "w"): p(7.0, sharding=())}))
    assert float(root.a.w.value) == 7.0 and root.a.w.sharding == ()
    assert float(root.b.w.value) == 2.0


def update_failures(root):
    good = p(50.0)
    return [
        ("unknown", State({("a", "w"): good, ("a", "nope"): p()}), ("a", "nope"), "not the canonical path"),
        ("alias", State({("a", "w"): good, ("v",): p()}), ("v",), "not the canonical path"),
        (
            "not-a-variable",
            State({("a", "w"): good, ("b", "w"): jnp.zeros(())}),
            ("b", "w"),
            "not a Variable",
        ),
        (
            "wrong-collection",
            State({("a", "w"): good, ("b", "w"): p(collection="cache")}),
            ("b", "w"),
            "collection 'cache'",
        ),
    ]


@pytest.mark.parametrize("case", range(4), ids=["unknown", "alias", "not-a-variable", "wrong-collection"])
def test_update_state_validates_everything_before_mutating(case):
    root = model()
    _, state, path, message = update_failures(root)[case]
    before = [(var, var.value, var.sharding) for var in (root.a.w, root.b.w, root.v)]
    with pytest.raises(StateMismatchError, match=message) as info:
        root.update_state(state)
    assert info.value.path == path and f"({path!r})" in str(info.value)
    # ("a", "w") was valid and comes first, yet nothing was written
    assert [(var, var.value, var.sharding) for var in (root.a.w, root.b.w, root.v)] == before


def test_update_state_rejects_string_keys_and_non_mappings():
    root = model()
    with pytest.raises(TypeError, match="tuples"):
        root.update_state({"a/w": p()})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        root.update_state([p()])  # type: ignore[arg-type]
    assert float(root.a.w.value) == 1.0


# -- update_state: values keep their shape and dtype -----------------------------------------------------


def arrays():
    """root{a: Node{w: f32[2, 3]}, b: Node{n: i32[3]}, k: i32[], s: f32[] (also z.tied), x: None}."""
    scale = Variable("params", jnp.asarray(1.5, jnp.float32))
    return node(
        a=node(w=Variable("params", jnp.ones((2, 3)))),
        b=node(n=Variable("counts", jnp.arange(3, dtype=jnp.int32))),
        k=Variable("counts", jnp.asarray(0, jnp.int32)),
        s=scale,
        x=Variable("cache", None),
        z=node(tied=scale),
    )


def live_values(root):
    return [(var, var.value, var.sharding) for var in (root.a.w, root.b.n, root.k, root.s, root.x)]


def value_mismatches():
    """(id, path, bad value, message pattern): each refused by update_state."""
    return [
        (
            "shape",
            ("a", "w"),
            jnp.ones((3, 2)),
            r"shape \(3, 2\) and dtype float32.*holds a value of shape \(2, 3\)",
        ),
        ("stacked", ("a", "w"), jnp.ones((4, 2, 3)), r"shape \(4, 2, 3\)"),
        ("dtype", ("b", "n"), jnp.arange(3.0), r"dtype float32, but .* dtype int32"),
        ("0d-vs-1d", ("s",), jnp.ones(1), r"shape \(1,\).*shape \(\)"),
        ("python-float-into-int", ("k",), 1.0, r"a Python float, but .* shape \(\) and dtype int32"),
        ("python-float-into-array", ("a", "w"), 1.0, r"a Python float"),
        ("python-bool-into-float", ("s",), True, r"a Python bool"),
        ("weak-float-into-int", ("b", "n"), jnp.arange(3) * 0.5, r"weakly typed dtype float32, but .* int32"),
    ]


@pytest.mark.parametrize("case", range(8), ids=[m[0] for m in value_mismatches()])
@pytest.mark.parametrize("whole", [True, False], ids=["full-state", "subset"])
def test_update_state_refuses_values_of_another_shape_or_dtype(case, whole):
    root = arrays()
    _, path, bad, message = value_mismatches()[case]
    state, _ = root.partition()
    items = dict(state) if whole else {("a", "w"): state["a", "w"], ("s",): state["s",]}
    items = {
        k: Variable(v.collection, v.value + 1, sharding=v.sharding) for k, v in items.items() if k != ("x",)
    }
    items[path] = Variable(state[path].collection, bad)
    if whole:
        items["x",] = Variable("cache", "anything")
    before = live_values(root)
    with pytest.raises(StateMismatchError, match=message) as info:
        root.update_state(State(items))  # whole: the fast path (paths line up); subset: the per-entry one
    assert info.value.path == path
    assert f"'{'/'.join(path)}' ({path!r})" in str(info.value) and "astype" in str(info.value)
    # all-or-nothing: the valid entries (every other one, written +1) were not applied either
    assert live_values(root) == before


def test_update_state_refuses_a_bad_value_given_as_a_plain_dict():
    root = arrays()
    with pytest.raises(StateMismatchError, match="shape") as info:
        root.update_state(
            {("s",): Variable("params", jnp.zeros(2)), ("a", "w"): Variable("params", jnp.zeros((2, 3)))}
        )
    assert info.value.path == ("s",) and float(root.a.w.value[0, 0]) == 1.0


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("s",), 2.0),  # a Python float (weakly typed) written over float32
        (("s",), 2),  # a Python int over float32
        (("k",), 7),  # a Python int over int32
        (("b", "n"), np.arange(3, dtype=np.int64)),  # int64 is int32 to JAX without jax_enable_x64
        (("a", "w"), np.zeros((2, 3), np.float64)),
        (("s",), jax.jit(lambda: 1.0)()),  # a weakly typed float32 JAX array
        (("b", "n"), jax.jit(lambda: 1)() + jnp.zeros(3, jnp.int32)),
        (("s",), jnp.asarray(1)),  # a weakly typed int32 JAX array over float32
        (("x",), jnp.zeros(5)),  # the Variable held None: nothing to compare with
    ],
    ids=[
        "py-float",
        "py-int",
        "py-int-into-int",
        "int64",
        "float64",
        "weak-float",
        "int-array",
        "weak-int",
        "from-none",
    ],
)
def test_update_state_accepts_values_of_the_same_shape_and_kind(path, value):
    root = arrays()
    root.update_state(State({path: Variable(dict(root.partition()[0])[path].collection, value)}))
    var = root
    for name in path:
        var = getattr(var, name)
    assert var.value is value


def test_update_state_over_python_number_placeholders():
    # A Python number is 0-d and weakly typed: an array of the same kind or a wider one may replace it.
    counter = node(count=Variable("counts", 0), rate=Variable("params", 0.5))
    with pytest.raises(
        StateMismatchError, match=r"dtype int32, but the module's Variable there holds a Python float"
    ):
        counter.update_state(State({("rate",): Variable("params", jnp.asarray(1, jnp.int32))}))
    with pytest.raises(StateMismatchError, match=r"a Python float, but .* holds a Python int"):
        counter.update_state(State({("count",): Variable("counts", 1.5)}))
    with pytest.raises(StateMismatchError, match=r"shape \(2,\)"):
        counter.update_state(State({("count",): Variable("counts", jnp.zeros(2, jnp.int32))}))
    assert counter.count.value == 0 and counter.rate.value == 0.5
    counter.update_state(State({("count",): Variable("counts", 4), ("rate",): Variable("params", 1)}))
    assert counter.count.value == 4 and counter.rate.value == 1  # an int fits a float placeholder
    counter.update_state(
        State(
            {("count",): Variable("counts", jnp.asarray(5)), ("rate",): Variable("params", jnp.float32(0.1))}
        )
    )
    assert int(counter.count.value) == 5 and float(counter.rate.value) == pytest.approx(0.1)


def test_update_state_inside_jit_checks_traced_values():
    root = arrays()
    state, _ = root.partition()

    @jax.jit
    def step(state):
        inner = arrays()  # a module built inside the trace, updated with traced values
        inner.update_state(jax.tree_util.tree_map(lambda x: x * 2, state.filter("params")))
        return inner.a.w.value

    np.testing.assert_array_equal(step(state), 2 * np.ones((2, 3)))

    @jax.jit
    def bad(state):
        inner = arrays()
        inner.update_state(jax.tree_util.tree_map(lambda x: x.T, state.filter(lambda p, v: p == ("a", "w"))))

    with pytest.raises(StateMismatchError, match=r"shape \(3, 2\)") as info:
        bad(state)
    assert info.value.path == ("a", "w")


def test_update_state_inside_vmap_sees_per_example_shapes():
    stacked = jnp.arange(12.0).reshape(4, 3)

    def per_example(row):
        module = node(w=Variable("params", jnp.zeros(3)))  # per-example Variable, shape (3,)
        module.update_state(State({("w",): Variable("params", row * 2)}))  # row: a (3,) batch tracer
        return module.w.value

    np.testing.assert_array_equal(jax.vmap(per_example)(stacked), 2 * stacked)

    def stacked_write(row):
        module = node(w=Variable("params", jnp.zeros(3)))
        module.update_state(State({("w",): Variable("params", jnp.stack([row, row]))}))

    with pytest.raises(StateMismatchError, match=r"shape \(2, 3\)"):
        jax.vmap(stacked_write)(stacked)


def test_merge_does_not_check_values_it_cannot_know():
    # The ModuleDef records no shapes: merge takes a vmap-stacked or shape-only version of the state.
    state, moduledef = arrays().partition()
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), state.filter("params", "counts"))
    merged = moduledef.merge(stacked | state.filter("cache"))
    assert merged.a.w.value.shape == (2, 2, 3) and merged.s is merged.z.tied
    shapes = moduledef.merge(
        jax.eval_shape(lambda s: s, state.filter("params", "counts")) | state.filter("cache")
    )
    assert shapes.b.n.value.shape == (3,)


# -- ModuleDef: equality, hashing, jit -------------------------------------------------------------------


def test_equal_structures_have_equal_defs_regardless_of_values_and_sharding():
    _, def1 = model().partition()
    other = model()
    other.a.w.value = jnp.ones((5, 5))
    other.a.w.sharding = ("x", None)
    _, def2 = other.partition()
    assert def1 == def2 and hash(def1) == hash(def2) and def1 is not def2


@pytest.mark.parametrize(
    "change",
    [
        lambda r: setattr(r, "a", node(Other, w=p(1.0), s=3)),  # node type
        lambda r: setattr(r.a, "s", 3.0),  # static value type: 3 vs 3.0
        lambda r: setattr(r.a, "s", True),  # ... vs True (True == 1, hash(True) == hash(1))
        lambda r: setattr(r, "n", "y"),  # static value
        lambda r: setattr(r, "v", p(9.0)),  # sharing pattern: an unshared Variable at the same paths
        lambda r: setattr(r.b, "up", r),  # a cycle
        lambda r: setattr(r.a, "w", p(1.0, collection="cache")),  # collection
        lambda r: setattr(r.a, "t", 1),  # attribute set
    ],
    ids=["type", "int-vs-float", "int-vs-bool", "value", "sharing", "cycle", "collection", "attribute"],
)
def test_structural_differences_make_defs_unequal(change):
    _, reference = model().partition()
    changed = model()
    change(changed)
    _, moduledef = changed.partition()
    assert moduledef != reference


def test_static_tuples_compare_with_element_types():
    _, def_int = node(t=(1, (2,))).partition()
    _, def_float = node(t=(1, (2.0,))).partition()
    _, def_frozen = node(t=frozenset({1})).partition()
    _, def_frozen_bool = node(t=frozenset({True})).partition()
    assert def_int != def_float and def_frozen != def_frozen_bool
    assert def_int == node(t=(1, (2,))).partition()[1]


def test_def_equality_with_other_types():
    _, moduledef = model().partition()
    assert moduledef != "def" and moduledef != None  # noqa: E711


def test_jit_traces_once_for_equal_defs():
    traces = []

    def forward(moduledef, state, x):
        traces.append(1)
        return moduledef.merge(state).a.w.value * x

    jitted = jax.jit(forward, static_argnums=0)
    state1, def1 = model().partition()
    state2, def2 = model().partition()
    assert def1 is not def2
    np.testing.assert_allclose(jitted(def1, state1, 2.0), 2.0)
    np.testing.assert_allclose(jitted(def2, state2, 3.0), 3.0)
    assert len(traces) == 1
    different = model()
    different.a.s = 4
    state3, def3 = different.partition()
    jitted(def3, state3, 1.0)
    assert len(traces) == 2


def test_states_and_defs_survive_copy_and_pickle():
    state, moduledef = model().partition()
    for clone in (copy.deepcopy, lambda obj: pickle.loads(pickle.dumps(obj))):
        new_state, new_def = clone(state), clone(moduledef)
        assert new_def == moduledef and hash(new_def) == hash(moduledef)
        assert list(new_state) == list(state)
        merged = new_def.merge(new_state)
        assert merged.v is merged.b.v and float(merged.a.w.value) == 1.0


def test_moduledef_is_immutable_and_not_constructible():
    _, moduledef = model().partition()
    with pytest.raises(AttributeError):
        moduledef._types = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del moduledef._hash
    with pytest.raises(TypeError):
        ModuleDef()


def test_repr_is_short_and_shows_structure():
    _, moduledef = model().partition()
    text = repr(moduledef)
    assert text.startswith("ModuleDef[Node](3 nodes, 3 variables")
    assert "#0 Node(a=#1, b=#2, n='x', v=$1<params>)" in text
    wide = node(**{f"c{i:03d}": node(w=p()) for i in range(200)})
    assert len(repr(wide.partition()[1]).splitlines()) < 20


# -- static values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ([1, 2], "tuple instead of a list"),
        (jnp.zeros(2), "Variable"),
        ({"k": 1}, "hashable"),
        ((1, [2]), "unhashable tuple"),  # hashable container, unhashable inside
        (frozenset({1}) | {2}, None),  # a frozenset is fine: no error expected
    ],
    ids=["list", "array", "dict", "list-in-tuple", "frozenset-ok"],
)
def test_unhashable_static_is_rejected_at_partition_time(value, hint):
    root = node(w=p(), child=node(config=value))
    if hint is None:
        assert root.partition()[1].merge(root.partition()[0]).child.config == value
        return
    with pytest.raises(UnhashableStaticError, match=hint) as info:
        root.partition()
    assert info.value.path == ("child", "config")
    assert "'child/config' (('child', 'config'))" in str(info.value)


def test_unhashable_static_path_is_canonical_in_shared_deep_graphs():
    leaf = node(bad=[1])
    root = node(z=leaf, a=node(b=node(c=leaf)))
    with pytest.raises(UnhashableStaticError) as info:
        root.partition()
    assert info.value.path == ("a", "b", "c", "bad")


def test_graph_objects_hidden_in_static_containers_are_rejected():
    with pytest.raises(NNXError, match="assign each one to its own attribute") as info:
        node(layers=(node(w=p()),)).partition()
    assert info.value.path == ("layers",)
    with pytest.raises(NNXError, match="Variable"):
        node(vs=frozenset({p()})).partition()


# -- the collector pause ---------------------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_is_restored_after_success_and_failure(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        state, moduledef = model().partition()
        moduledef.merge(state).update_state(state)
        assert gc.isenabled() is enabled
        with pytest.raises(UnhashableStaticError):
            node(bad=[1]).partition()
        with pytest.raises(StateMismatchError):
            model().update_state(State({("nope",): p()}))
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


# -- deep graphs ----------------------------------------------------------------------------------------


def chain(depth, var_every=None):
    root = current = Node()
    for i in range(depth):
        nxt = Node()
        current.child = nxt
        current.i = i
        if var_every and i % var_every == 0:
            current.v = p(float(i))
        current = nxt
    current.leaf = p(-1.0)
    return root


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deep_chain_partitions_merges_updates_and_compares(depth):
    root = chain(depth)
    state, moduledef = root.partition()
    [(path, _var)] = list(state.items())
    assert len(path) == depth + 1 and path[-1] == "leaf"
    merged = moduledef.merge(state)
    state2, def2 = merged.partition()
    assert def2 == moduledef and hash(def2) == hash(moduledef) and def2 is not moduledef
    assert list(state2) == [path]
    root.update_state(jax.tree_util.tree_map(lambda x: x + 1, state2))
    current = root
    for _ in range(depth):
        current = current.child
    assert float(current.leaf.value) == 0.0
    assert len(repr(moduledef).splitlines()) < 20


def test_deep_chain_defs_differ_by_depth_and_deep_statics():
    _, moduledef = chain(10_000).partition()
    assert chain(9_999).partition()[1] != moduledef
    changed = chain(10_000)
    current = changed
    for _ in range(9_990):
        current = current.child
    current.i = float(current.i)  # one static, deep down, changes type only
    assert changed.partition()[1] != moduledef


def test_deep_chain_with_variables_along_the_way():
    root = chain(2_000, var_every=7)
    state, moduledef = root.partition()
    assert len(state) == 2_000 // 7 + 2
    assert list(state) == sorted(state)
    assert all(len(path) == int(var.value) + 1 for path, var in state.items() if path[-1] == "v")
    assert moduledef.merge(state).partition()[1] == moduledef


def test_deep_cycle_back_to_root():
    root = chain(5_000)
    current = root
    while hasattr(current, "child"):
        current = current.child
    current.root = root
    state, moduledef = root.partition()
    merged = moduledef.merge(state)
    current = merged
    while hasattr(current, "child"):
        current = current.child
    assert current.root is merged


# -- random graphs (light; the conformance suite does the heavy property testing) ------------------------


@st.composite
def graphs(draw):
    """A random graph: nodes with edges to any node (sharing, cycles), Variables (some shared), statics."""
    n_nodes = draw(st.integers(1, 6))
    n_vars = draw(st.integers(0, 5))
    names = st.sampled_from(["a", "b", "c", "a/b", "x-y", "_z", "B"])
    nodes = [draw(st.sampled_from([Node, Other]))() for _ in range(n_nodes)]
    variables = [p(float(i), collection=draw(st.sampled_from(["params", "stats"]))) for i in range(n_vars)]
    for i in range(1, n_nodes):  # keep everything reachable: a tree edge from an earlier node
        setattr(nodes[draw(st.integers(0, i - 1))], f"t{i}", nodes[i])
    for i, var in enumerate(variables):
        setattr(nodes[draw(st.integers(0, n_nodes - 1))], f"v{i}", var)
    for _ in range(draw(st.integers(0, 6))):
        target = draw(st.sampled_from(["node", "var", "static"]))
        owner = nodes[draw(st.integers(0, n_nodes - 1))]
        name = draw(names)
        if target == "node":
            setattr(owner, name, nodes[draw(st.integers(0, n_nodes - 1))])
        elif target == "var" and variables:
            setattr(owner, name, variables[draw(st.integers(0, n_vars - 1))])
        else:
            setattr(owner, name, draw(st.one_of(st.integers(), st.text(max_size=3), st.none())))
    return nodes[0]


def shape_of(root):
    """Identity-free fingerprint of a graph: (path, kind, target's canonical id) per reachable edge."""
    ids = {}
    out = []
    stack = [((), root)]
    while stack:
        path, obj = stack.pop()
        for name in sorted(vars(obj), reverse=True):
            value = vars(obj)[name]
            if isinstance(value, (Module, Variable)):
                first = id(value) not in ids
                ids.setdefault(id(value), len(ids))
                out.append(((*path, name), type(value).__name__, ids[id(value)]))
                if first and isinstance(value, Module):
                    stack.append(((*path, name), value))
            else:
                out.append(((*path, name), "static", (type(value), value)))
    return out


@settings(max_examples=40, deadline=None)
@given(graphs())
def test_random_graphs_round_trip_isomorphically(root):
    state, moduledef = root.partition()
    merged = moduledef.merge(state)
    assert shape_of(merged) == shape_of(root)
    state2, def2 = merged.partition()
    assert def2 == moduledef and hash(def2) == hash(moduledef)
    assert list(state2) == list(state) == sorted(state)
    assert [v.value for v in state2.values()] == [v.value for v in state.values()]
    root.update_state(state2)


# -- found by benchmarks/mutation.py (mutants of core/ that every other test let through) -----------------


class AllEqual(Module):
    """Every instance equals every other: identity, not ==, must still tell modules apart."""

    def __eq__(self, other):
        return isinstance(other, AllEqual)

    def __hash__(self):
        return 0


class Unhashable(Module):
    """A module type that cannot be hashed at all (``__eq__`` kept, ``__hash__`` removed)."""

    __hash__ = None  # type: ignore[assignment]


class EqVar(Variable):
    """A Variable kind whose instances all compare equal (and hash alike)."""

    def __eq__(self, other):
        return isinstance(other, EqVar)

    def __hash__(self):
        return 0


@pytest.mark.parametrize("cls", [AllEqual, Unhashable])
def test_modules_that_define_eq_or_hash_are_still_told_apart_by_identity(cls):
    first, second = node(cls, w=p(1.0)), node(cls, w=p(2.0))
    root = node(cls, a=first, b=second, c=first)
    root.me = root
    state, moduledef = root.partition()
    assert list(state) == [("a", "w"), ("b", "w")]
    merged = moduledef.merge(state)
    assert type(merged) is cls and merged.me is merged
    assert merged.c is merged.a and merged.a is not merged.b
    assert float(merged.b.w.value) == 2.0
    assert merged.partition()[1] == moduledef
    root.update_state(State({("b", "w"): p(5.0)}))
    assert float(second.w.value) == 5.0 and float(first.w.value) == 1.0


def test_variables_that_define_eq_are_still_told_apart_by_identity():
    first, second = EqVar("params", np.float32(1.0)), EqVar("params", np.float32(2.0))
    root = node(a=first, b=second, c=first)
    state, moduledef = root.partition()
    assert list(state) == [("a",), ("b",)]
    assert all(type(var) is EqVar for var in state.values())
    merged = moduledef.merge(state)
    assert merged.c is merged.a and merged.a is not merged.b and float(merged.b.value) == 2.0
    root.update_state(State({("b",): EqVar("params", np.float32(3.0))}))
    assert float(second.value) == 3.0 and float(first.value) == 1.0


def test_unhashable_static_path_is_found_after_the_walk_backtracks():
    # The bad module comes after finished subtrees, a shared module and a back edge: recovering its path
    # from the def's tables has to backtrack out of each.
    shared = node(w=p())
    root = node(a=node(x=node(y=node(s=shared)), up=None), b=node(s=shared, c=node(bad=[1])))
    root.a.up = root
    with pytest.raises(UnhashableStaticError) as info:
        root.partition()
    assert info.value.path == ("b", "c", "bad")
    assert "'b/c/bad'" in str(info.value)


def test_a_def_equals_itself_with_a_true_bool():
    _, moduledef = model().partition()
    assert (moduledef == moduledef) is True and (moduledef != moduledef) is False
    assert moduledef.__eq__(moduledef) is True and moduledef.__eq__(object()) is NotImplemented


def test_merge_mismatch_message_lists_at_most_three_paths_of_each_kind():
    root = node(**{f"v{i}": p() for i in range(5)})
    _, moduledef = root.partition()
    extra = {(f"x{i}",): p() for i in range(5)}
    with pytest.raises(StateMismatchError) as info:
        moduledef.merge(State(extra))
    message = str(info.value)
    assert [f"'v{i}'" in message for i in range(5)] == [True] * 3 + [False] * 2
    assert [f"'x{i}'" in message for i in range(5)] == [True] * 3 + [False] * 2
    assert info.value.path == ("v0",)


def test_repr_shortens_long_statics_to_24_characters_and_counts_the_nodes_not_shown():
    _, moduledef = node(s="x" * 40, t="y" * 22).partition()
    line = repr(moduledef).splitlines()[1]
    shown = line[line.index("s=") + 2 : line.index(", t=")]
    assert len(shown) == 24 and shown.startswith("'xxx") and "..." in shown
    assert "t='" + "y" * 22 + "'" in line  # 24 characters with the quotes: shown whole
    wide = node(**{f"c{i:03d}": node(w=p()) for i in range(30)})
    lines = repr(wide.partition()[1]).splitlines()
    assert lines[-2] == "  ... 19 more nodes" and lines[-1] == ")"
    assert sum(line.startswith("  #") for line in lines) == 12
