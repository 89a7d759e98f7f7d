"""CoreAdapter: the reference core behind the suite's adapter protocol."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nnx_conformance.core import BatchNorm, Linear, Module, State, Variable
from nnx_conformance.spec.adapter import Adapter, LayersAdapter
from nnx_conformance.spec.adapters.core import CoreAdapter


def test_satisfies_the_protocol_and_claims_everything():
    adapter = CoreAdapter()
    assert isinstance(adapter, Adapter) and isinstance(adapter.layers, LayersAdapter)
    assert adapter.name == "core"
    caps = adapter.capabilities
    assert caps.missing(["cycles", "shared_modules", "shared_variables", "hashable_def", "rng"]) == []
    assert {"partition", "update_state"} <= caps.reserved_names
    assert {name for name in dir(Module) if not name.startswith("_")} <= caps.reserved_names


def test_new_module_types_are_cached_by_name():
    adapter = CoreAdapter()
    a, b, c = adapter.new_module("Foo"), adapter.new_module("Foo"), adapter.new_module("Bar")
    assert type(a) is type(b) and type(a) is not type(c) and a is not b
    assert adapter.type_name(a) == "Foo" and adapter.is_module(a)
    assert type(CoreAdapter().new_module("Foo")) is type(a)  # shared across adapter instances


def test_graph_round_trip_through_the_adapter():
    adapter = CoreAdapter()
    root = adapter.new_module("Root")
    var = adapter.new_variable("params", jnp.ones(2), (None,))
    adapter.set_attr(root, "w", var)
    adapter.set_attr(root, "a/b", 3)
    assert dict(adapter.attrs(root)) == {"w": var, "a/b": 3}
    assert adapter.is_variable(var) and not adapter.is_variable(root)
    assert adapter.variable_collection(var) == "params" and adapter.variable_sharding(var) == (None,)
    assert adapter.variable_value(var) is var.value
    state, graphdef = adapter.partition(root)
    assert [p for p, _ in adapter.state_items(state)] == [("w",)]
    merged = adapter.merge(graphdef, adapter.make_state(adapter.state_items(state)))
    assert getattr(merged, "a/b") == 3
    adapter.update(root, State({("w",): Variable("params", jnp.zeros(2))}))
    np.testing.assert_array_equal(root.w.value, jnp.zeros(2))


def test_state_helpers():
    adapter = CoreAdapter()
    a = adapter.make_state([(("b",), Variable("p", 1)), (("a",), Variable("q", 2))])
    assert list(a) == [("a",), ("b",)]
    assert list(adapter.filter(a, "q")) == [("a",)]
    assert adapter.union() == State() and adapter.union(a) == a


def test_rng_helpers_unwrap_typed_keys():
    adapter = CoreAdapter()
    ctx = adapter.new_context(0)
    key = adapter.make_rng(ctx)
    expected = jax.random.key_data(jax.random.fold_in(jax.random.key(0), 0))
    np.testing.assert_array_equal(adapter.key_data(key), expected)
    raw = jax.random.PRNGKey(1)
    assert adapter.key_data(raw) is raw
    child = adapter.fork(ctx)
    assert child.count_path == (1,)
    data = adapter.jit(lambda k: adapter.key_data(k))(key)  # also under a trace
    np.testing.assert_array_equal(data, expected)
    batched = adapter.vmap(adapter.key_data)(jax.random.split(jax.random.key(0), 3))
    assert batched.shape == (3, 2)


def test_layers_adapter_calls_every_layer_uniformly():
    adapter = CoreAdapter()
    layers = adapter.layers
    ctx = adapter.new_context(0)
    x = jnp.ones((2, 3))
    linear = layers.linear(3, 3, ctx, sharding=("a", None))
    assert isinstance(linear, Linear) and linear.w.sharding == ("a", None)
    bn = layers.batch_norm(3, ctx)
    assert isinstance(bn, BatchNorm)
    for module in (linear, bn, layers.dropout(0.5, ctx), layers.block(3, 3, ctx)):
        assert layers.call(module, x, train=True, ctx=ctx).shape == (2, 3)
