"""The ``seed`` adapter, method by method, on small hand-built graphs, through the protocol only.

These tests pin what the seed *does* (its defects included) so the adapter stays a faithful negative
control: a shared Variable listed under both paths is the seed's behaviour, and asserting it here guards
against the adapter quietly fixing it. The defects proper, side by side with the core, are in
``test_seed_defects.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from protocol_graphs import attr, tree, values, var

from nnx_conformance.spec.adapter import Adapter, LayersAdapter
from nnx_conformance.spec.adapters.seed import SeedAdapter


@pytest.fixture(scope="module")
def impl() -> SeedAdapter:
    return SeedAdapter()


def test_implements_the_protocol(impl):
    assert isinstance(impl, Adapter)
    assert isinstance(impl.layers, LayersAdapter)
    assert impl.name == "seed"
    # The seed disclaims nothing: its defects must surface as failures, not skips.
    caps = impl.capabilities
    assert caps.cycles and caps.shared_modules and caps.shared_variables and caps.separator_in_names
    assert caps.hashable_def and caps.rng and caps.layers and caps.sharding
    assert caps.max_depth == 10_000
    assert {"partition", "update_state"} <= caps.reserved_names


def test_modules_and_attributes(impl):
    m1, m2, other = impl.new_module("T"), impl.new_module("T"), impl.new_module("U")
    assert type(m1) is type(m2) and type(m1) is not type(other)
    assert impl.type_name(m1) == "T" and impl.type_name(other) == "U"
    assert impl.is_module(m1) and not impl.is_module(1) and not impl.is_module(var(impl, 0.0))
    assert list(impl.attrs(m1)) == []
    v = var(impl, 1.0)
    impl.set_attr(m1, "child", m2)
    impl.set_attr(m1, "v", v)
    impl.set_attr(m1, "static", ("a", 1))
    assert dict(impl.attrs(m1)) == {"child": m2, "v": v, "static": ("a", 1)}


def test_variables(impl):
    v = var(impl, [1.0], "cache", sharding=(None,))
    assert (
        impl.is_variable(v)
        and not impl.is_variable(jnp.ones(1))
        and not impl.is_variable(impl.new_module("T"))
    )
    assert impl.variable_collection(v) == "cache"
    assert impl.variable_sharding(v) == (None,)
    assert impl.variable_sharding(var(impl, 0.0)) is None
    np.testing.assert_array_equal(impl.variable_value(v), [1.0])


def test_tree_partition_merge_roundtrip(impl):
    root = tree(impl)
    state, graphdef = impl.partition(root)
    # Insertion order of a sorted DFS: here also sorted order.
    assert values(impl, state) == {("a", "w"): [1.0, 2.0], ("b", "bs"): [0.5], ("b", "w"): [3.0]}
    assert [p for p, _ in impl.state_items(state)] == [("a", "w"), ("b", "bs"), ("b", "w")]
    merged = impl.merge(graphdef, state)
    assert impl.type_name(merged) == "Root" and attr(impl, merged, "n") == 3
    assert impl.variable_sharding(attr(impl, attr(impl, merged, "b"), "bs")) == ("x",)
    state2, graphdef2 = impl.partition(merged)
    assert values(impl, state2) == values(impl, state)
    assert graphdef2 == graphdef  # dataclass equality; the def is not hashable (see test_seed_defects)


def test_partition_and_merge_reuse_the_variable_objects(impl):
    """The seed's state holds the module's own Variables, and merge plants them into the new graph."""
    root = tree(impl)
    state, graphdef = impl.partition(root)
    w = attr(impl, attr(impl, root, "a"), "w")
    assert dict(impl.state_items(state))[("a", "w")] is w
    assert attr(impl, attr(impl, impl.merge(graphdef, state), "a"), "w") is w


def test_shared_module_is_partitioned_once(impl):
    root, shared = impl.new_module("Root"), impl.new_module("S")
    impl.set_attr(shared, "w", var(impl, [1.0]))
    impl.set_attr(root, "left", shared)
    impl.set_attr(root, "right", shared)
    state, graphdef = impl.partition(root)
    assert [p for p, _ in impl.state_items(state)] == [("left", "w")]
    merged = impl.merge(graphdef, state)
    assert attr(impl, merged, "left") is attr(impl, merged, "right")


def test_shared_variable_is_listed_under_every_path(impl):
    root, child = impl.new_module("Root"), impl.new_module("C")
    v = var(impl, [1.0])
    impl.set_attr(root, "c", child)
    impl.set_attr(root, "v", v)
    impl.set_attr(child, "v", v)
    state, graphdef = impl.partition(root)
    items = impl.state_items(state)
    assert [p for p, _ in items] == [("c", "v"), ("v",)]
    assert items[0][1] is items[1][1] is v
    # merge plants the same object twice, so sharing survives a plain round trip ...
    merged = impl.merge(graphdef, state)
    assert attr(impl, merged, "v") is attr(impl, attr(impl, merged, "c"), "v")
    # ... but not a functional update: tree_map builds one new Variable per path.
    impl.update(merged, jax.tree_util.tree_map(lambda x: x + 1, state))
    assert attr(impl, merged, "v") is not attr(impl, attr(impl, merged, "c"), "v")


def test_self_loop_cycle(impl):
    root = impl.new_module("Root")
    impl.set_attr(root, "me", root)
    impl.set_attr(root, "w", var(impl, [2.0]))
    state, graphdef = impl.partition(root)
    assert [p for p, _ in impl.state_items(state)] == [("w",)]
    merged = impl.merge(graphdef, state)
    assert attr(impl, merged, "me") is merged
    np.testing.assert_array_equal(impl.variable_value(attr(impl, merged, "w")), [2.0])


def test_update_replaces_variables_by_path(impl):
    root = tree(impl)
    before = attr(impl, attr(impl, root, "a"), "w")
    state, _ = impl.partition(root)
    new_state = jax.tree_util.tree_map(lambda x: x * 10, impl.filter(state, "params"))
    impl.update(root, new_state)
    after = attr(impl, attr(impl, root, "a"), "w")
    assert after is not before  # replaced, not assigned into
    np.testing.assert_array_equal(impl.variable_value(after), [10.0, 20.0])
    np.testing.assert_array_equal(impl.variable_value(attr(impl, attr(impl, root, "b"), "bs")), [0.5])


def test_state_items_split_keys_and_make_state_joins_them(impl):
    root = tree(impl)
    state, graphdef = impl.partition(root)
    items = impl.state_items(state)
    rebuilt = impl.make_state(list(reversed(items)))
    # Insertion order is kept as given: the seed's state has no canonical order of its own.
    assert [p for p, _ in impl.state_items(rebuilt)] == [p for p, _ in reversed(items)]
    assert values(impl, impl.partition(impl.merge(graphdef, rebuilt))[0]) == values(impl, state)
    # Two paths that join to the same "a/b" key collapse to the last one.
    a, b = var(impl, 1.0), var(impl, 2.0)
    collided = impl.make_state([(("a", "b"), a), (("a/b",), b)])
    assert impl.state_items(collided) == [(("a", "b"), b)]


def test_filter_single_multi_and_predicate(impl):
    state, _ = impl.partition(tree(impl))
    assert list(values(impl, impl.filter(state, "batch_stats"))) == [("b", "bs")]
    assert list(values(impl, impl.filter(state, "params"))) == [("a", "w"), ("b", "w")]
    # Several filters: the union of single filters, ordered filter by filter (not by path).
    both = impl.filter(state, "batch_stats", "params")
    assert [p for p, _ in impl.state_items(both)] == [("b", "bs"), ("a", "w"), ("b", "w")]
    by_path = impl.filter(state, lambda path, v: path[0] == "b")
    assert list(values(impl, by_path)) == [("b", "bs"), ("b", "w")]
    mixed = impl.filter(state, "batch_stats", lambda path, v: path == ("a", "w"))
    assert list(values(impl, mixed)) == [("b", "bs"), ("a", "w")]
    assert impl.state_items(impl.filter(state, "nothing")) == []


def test_union_later_state_wins(impl):
    state, _ = impl.partition(tree(impl))
    params, stats = impl.filter(state, "params"), impl.filter(state, "batch_stats")
    assert values(impl, impl.union(params, stats)) == values(impl, state)
    other = impl.make_state([(("a", "w"), var(impl, [9.0]))])
    assert values(impl, impl.union(params, other))[("a", "w")] == [9.0]
    assert values(impl, impl.union(other, params))[("a", "w")] == [1.0, 2.0]
    assert impl.state_items(impl.union()) == []


def test_rng_draws_forks_and_key_data(impl):
    ctx = impl.new_context(0)
    k0, k1 = impl.make_rng(ctx), impl.make_rng(ctx)
    child = impl.fork(ctx)
    k2 = impl.make_rng(ctx)
    kc = impl.make_rng(child)
    data = [np.asarray(impl.key_data(k)) for k in (k0, k1, k2, kc)]
    assert all(d.dtype == np.uint32 and d.shape == (2,) for d in data)
    assert len({d.tobytes() for d in data}) == 4
    # Reproducible from the seed, different across seeds.
    again = impl.new_context(0)
    np.testing.assert_array_equal(impl.key_data(impl.make_rng(again)), data[0])
    assert not np.array_equal(impl.key_data(impl.make_rng(impl.new_context(1))), data[0])
    # Typed keys are unwrapped too.
    np.testing.assert_array_equal(impl.key_data(jax.random.key(3)), jax.random.key_data(jax.random.key(3)))


def test_jit_and_vmap_carry_contexts_and_states(impl):
    ctx = impl.new_context(0)
    eager = impl.make_rng(impl.new_context(0))
    np.testing.assert_array_equal(impl.key_data(impl.jit(impl.make_rng)(ctx)), impl.key_data(eager))
    # A context's counter is pytree aux data: a draw inside jit does not advance the caller's context.
    np.testing.assert_array_equal(impl.key_data(impl.make_rng(ctx)), impl.key_data(eager))

    state, _ = impl.partition(tree(impl))
    doubled = impl.jit(lambda s: jax.tree_util.tree_map(lambda x: 2 * x, s))(state)
    assert values(impl, doubled)[("a", "w")] == [2.0, 4.0]

    # Contexts are pytrees: three stacked root contexts vmap into three rows, one per seed.
    contexts = [impl.new_context(seed) for seed in range(3)]
    stacked = jax.tree_util.tree_map(lambda *keys: jnp.stack(keys), *contexts)
    rows = impl.vmap(impl.make_rng)(stacked)
    expected = np.stack([np.asarray(impl.key_data(impl.make_rng(c))) for c in contexts])
    np.testing.assert_array_equal(impl.key_data(rows), expected)


def test_layers(impl):
    layers, ctx = impl.layers, impl.new_context(0)
    x = jnp.ones((4, 3), jnp.float32)

    lin = layers.linear(3, 5, ctx, sharding=(None, "model"))
    assert layers.call(lin, x, train=True, ctx=ctx).shape == (4, 5)
    shapes = {
        p: (impl.variable_collection(v), jnp.shape(impl.variable_value(v)))
        for p, v in impl.state_items(impl.partition(lin)[0])
    }
    assert shapes == {("b",): ("params", (5,)), ("w",): ("params", (3, 5))}
    assert impl.variable_sharding(dict(impl.state_items(impl.partition(lin)[0]))[("w",)]) == (None, "model")

    bn = layers.batch_norm(3, ctx)
    cols = {p: impl.variable_collection(v) for p, v in impl.state_items(impl.partition(bn)[0])}
    assert cols == {
        ("bias",): "params",
        ("mean",): "batch_stats",
        ("scale",): "params",
        ("var",): "batch_stats",
    }
    np.testing.assert_allclose(layers.call(bn, x, train=False, ctx=ctx), x / np.sqrt(1 + 1e-5), rtol=1e-6)

    drop = layers.dropout(0.5, ctx)
    np.testing.assert_array_equal(layers.call(drop, x, train=False, ctx=ctx), x)
    assert set(np.unique(np.asarray(layers.call(drop, x, train=True, ctx=ctx)))) <= {0.0, 2.0}

    block = layers.block(3, 2, ctx)
    assert layers.call(block, x, train=False, ctx=ctx).shape == (4, 2)
    with pytest.raises(TypeError, match="not a seed layer"):
        layers.call(impl.new_module("T"), x, train=False, ctx=ctx)
