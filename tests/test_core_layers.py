"""Layers: shapes, collections, the seed's call signatures, BatchNorm's stable statistics shapes (the
seed's drifted to (1, din)), Dropout, and ScanMLP's vmap-lifted init and scan-lifted call."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_conformance.core import BatchNorm, Block, Context, Dropout, Linear, ScanMLP, State, Variable


def ctx(seed=0):
    return Context(jax.random.key(seed))


def collections(module):
    state, _ = module.partition()
    return {"/".join(path): (var.collection, var.value.shape) for path, var in state.items()}


def test_linear_shapes_math_and_sharding():
    layer = Linear(3, 4, ctx=ctx(), sharding=(None, "model"))
    assert collections(layer) == {"b": ("params", (4,)), "w": ("params", (3, 4))}
    assert layer.w.sharding == (None, "model") and layer.b.sharding is None
    assert (layer.din, layer.dout) == (3, 4)
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(layer(x), x @ layer.w.value + layer.b.value, rtol=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        Linear(3, 4, ctx=ctx(), sharding=("model",))


def test_linear_draws_its_weight_from_the_context():
    c = ctx(3)
    layer = Linear(2, 2, ctx=c)
    assert c.count == 1
    expected = jax.random.uniform(Context(jax.random.key(3)).make_rng(), (2, 2))
    np.testing.assert_array_equal(layer.w.value, expected)


def test_batch_norm_train_updates_stats_and_keeps_their_shape():
    bn = BatchNorm(4, mu=0.5)
    assert collections(bn) == {
        "bias": ("params", (4,)),
        "mean": ("batch_stats", (4,)),
        "scale": ("params", (4,)),
        "var": ("batch_stats", (4,)),
    }
    x = jax.random.normal(jax.random.key(0), (8, 4)) * 3 + 1
    y = bn(x, train=True)
    np.testing.assert_allclose(bn.mean.value, 0.5 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.var.value, 0.5 + 0.5 * x.var(0), rtol=1e-5)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(0), 1.0, rtol=1e-3)
    for _ in range(3):  # the seed's keepdims made these (1, 4) after the first step
        bn(jnp.ones((2, 5, 4)), train=True)
        assert bn.mean.value.shape == (4,) and bn.var.value.shape == (4,)


def test_batch_norm_momentum_weighs_the_old_statistics_and_the_variance_is_biased():
    bn = BatchNorm(3, mu=0.9)  # 0.5 would not tell the seed's weighting from PyTorch's
    old_mean, old_var = jnp.array([1.0, -1.0, 2.0]), jnp.array([2.0, 0.5, 1.0])
    bn.mean.value, bn.var.value = old_mean, old_var
    x = jax.random.normal(jax.random.key(1), (5, 3)) * 2 + 3
    y = bn(x, train=True)
    np.testing.assert_allclose(bn.mean.value, 0.9 * old_mean + 0.1 * x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(bn.var.value, 0.9 * old_var + 0.1 * np.var(x, axis=0, ddof=0), rtol=1e-6)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(np.var(x, axis=0) + 1e-5), rtol=1e-5, atol=1e-6)


def test_batch_norm_eval_uses_running_stats():
    bn = BatchNorm(2)
    bn.mean.value = jnp.array([1.0, 2.0])
    bn.var.value = jnp.array([4.0, 9.0])
    y = bn(jnp.array([[3.0, 5.0]]), train=False)
    np.testing.assert_allclose(y, [[2.0 / np.sqrt(4 + 1e-5), 3.0 / np.sqrt(9 + 1e-5)]], rtol=1e-6)
    np.testing.assert_array_equal(bn.mean.value, [1.0, 2.0])  # eval does not update


def test_dropout_train_eval_and_edge_rates():
    x = jnp.ones((1000,))
    c = ctx()
    drop = Dropout(0.25)
    assert drop(x, train=False, ctx=c) is x and c.count == 0
    y = drop(x, train=True, ctx=c)
    assert c.count == 1
    kept = np.asarray(y) != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)
    assert Dropout(0.0)(x, train=True, ctx=c) is x and c.count == 1
    np.testing.assert_array_equal(Dropout(1.0)(x, train=True, ctx=c), jnp.zeros_like(x))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="rate"):
            Dropout(bad)


def test_block_structure_and_call():
    block = Block(3, 5, ctx=ctx())
    assert sorted(collections(block)) == [
        "bn/bias",
        "bn/mean",
        "bn/scale",
        "bn/var",
        "linear/b",
        "linear/w",
    ]
    y = block(jnp.ones((2, 3)), train=True, ctx=ctx(1))
    assert y.shape == (2, 5)


def test_scan_mlp_stacked_state_shapes_after_training():
    module = ScanMLP(hidden_size=10, n_layers=5, ctx=ctx(0))
    x = jax.random.normal(jax.random.key(0), (2, 10))
    y = module(x, train=True, ctx=ctx(1))  # the seed's stats were (4, 1, 10) from here on
    assert y.shape == (2, 10)
    state, _ = module.partition()
    shapes = jax.tree_util.tree_map(jnp.shape, state)
    assert {"/".join(p): v.value for p, v in shapes.items()} == {
        "layers/bn/bias": (4, 10),
        "layers/bn/mean": (4, 10),
        "layers/bn/scale": (4, 10),
        "layers/bn/var": (4, 10),
        "layers/linear/b": (4, 10),
        "layers/linear/w": (4, 10, 10),
        "linear/b": (10,),
        "linear/w": (10, 10),
    }
    params, batch_stats = state.filter("params"), state.filter("batch_stats")
    assert list(batch_stats) == [("layers", "bn", "mean"), ("layers", "bn", "var")]
    assert State.union(params, batch_stats) == state
    # the four stacked blocks were initialised from four different keys, and trained separately
    w = np.asarray(state["layers", "linear", "w"].value)
    assert len({w[i].tobytes() for i in range(4)}) == 4
    assert not np.allclose(state["layers", "bn", "mean"].value, 0.0)


def test_scan_mlp_functional_training_step_under_jit_matches_eager():
    module = ScanMLP(hidden_size=10, n_layers=5, ctx=ctx(0))  # the shapes above: JAX's caches are warm
    state, moduledef = module.partition()
    x = jnp.ones((2, 10))

    @jax.jit
    def step(state, key):
        y, (state, _) = moduledef.apply(state)(x, train=True, ctx=Context(key))
        return y, state

    y_jit, new_state = step(state, jax.random.key(7))
    y_eager = module(x, train=True, ctx=Context(jax.random.key(7)))
    np.testing.assert_allclose(y_jit, y_eager, rtol=1e-5)
    eager_state, eager_def = module.partition()
    assert eager_def == moduledef and list(new_state) == list(eager_state)
    for path in eager_state:
        np.testing.assert_allclose(new_state[path].value, eager_state[path].value, rtol=1e-5)


def test_two_scan_mlps_share_a_def_and_need_two_layers():
    first, second = ScanMLP(10, 5, ctx=ctx(0)), ScanMLP(10, 5, ctx=ctx(1))
    assert first.partition()[1] == second.partition()[1]
    second.n_layers = 6
    assert first.partition()[1] != second.partition()[1]
    with pytest.raises(ValueError, match="n_layers"):
        ScanMLP(10, 1, ctx=ctx())


def test_scan_mlp_in_evaluation_equals_a_loop_over_its_unstacked_blocks():
    module = ScanMLP(hidden_size=10, n_layers=5, ctx=ctx(0))
    module(jax.random.normal(jax.random.key(2), (2, 10)), train=True, ctx=ctx(1))  # move the statistics
    state, _ = module.partition()
    x = jax.random.normal(jax.random.key(3), (2, 10))
    y = module(x, train=False, ctx=ctx(4))
    _, block_def = Block(10, 10, ctx=ctx()).partition()
    stack = state.filter(lambda path, _: path[0] == "layers")
    h = x
    for i in range(4):
        row = State([(path[1:], Variable(v.collection, v.value[i])) for path, v in stack.items()])
        h = block_def.merge(row)(h, train=False, ctx=ctx(9))
    np.testing.assert_allclose(y, module.linear(h), rtol=1e-5, atol=1e-6)
    after, _ = module.partition()
    for path, var in state.items():  # evaluation changes nothing
        np.testing.assert_array_equal(after[path].value, var.value)
