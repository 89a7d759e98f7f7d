"""Variable: construction checks, identity semantics, and its pytree behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_conformance.core import Module, Variable


def test_fields_and_defaults():
    value = jnp.ones((2, 3))
    var = Variable("params", value)
    assert var.collection == "params"
    assert var.value is value
    assert var.sharding is None


def test_sharding_is_normalised_to_a_tuple():
    var = Variable("params", 0.0, sharding=[None, "model"])
    assert var.sharding == (None, "model")
    assert type(var.sharding) is tuple


@pytest.mark.parametrize("collection", [1, None, ("params",)])
def test_collection_must_be_a_string(collection):
    with pytest.raises(TypeError, match="collection must be a str"):
        Variable(collection, 0.0)


def test_sharding_entries_must_be_axis_names_or_none():
    with pytest.raises(TypeError, match="mesh-axis names"):
        Variable("params", 0.0, sharding=(None, 3))


def test_mutable_cell_with_identity_semantics():
    a, b = Variable("params", 1.0), Variable("params", 1.0)
    assert a != b and a == a
    assert len({a, b}) == 2
    a.value = 2.0
    assert a.value == 2.0


def test_is_a_pytree_with_value_child_and_metadata_aux():
    var = Variable("batch_stats", jnp.zeros(3), sharding=("data",))
    leaves, treedef = jax.tree_util.tree_flatten(var)
    assert len(leaves) == 1 and leaves[0] is var.value
    rebuilt = jax.tree_util.tree_unflatten(treedef, [jnp.ones(3)])
    assert isinstance(rebuilt, Variable) and rebuilt is not var
    assert rebuilt.collection == "batch_stats" and rebuilt.sharding == ("data",)
    np.testing.assert_array_equal(rebuilt.value, jnp.ones(3))


def test_tree_map_shapes_like_the_seed_notebook():
    var = Variable("params", jnp.zeros((4, 10)))
    shaped = jax.tree_util.tree_map(jnp.shape, var)
    assert shaped.value == (4, 10) and shaped.collection == "params"


def test_key_path_names_the_value_attribute():
    [(path, leaf)] = jax.tree_util.tree_flatten_with_path(Variable("params", 1.0))[0]
    assert path == (jax.tree_util.GetAttrKey("value"),) and leaf == 1.0


@pytest.mark.parametrize("sentinel", [object(), None, "not an array"])
def test_unflatten_accepts_arbitrary_leaves(sentinel):
    # JAX rebuilds pytrees with placeholder objects (e.g. in tree_util helpers and transforms).
    treedef = jax.tree_util.tree_structure(Variable("params", 1.0))
    rebuilt = treedef.unflatten([sentinel])
    assert rebuilt.value is sentinel and rebuilt.collection == "params"


def test_crosses_jit_and_vmap():
    var = Variable("params", jnp.arange(3.0), sharding=("x",))
    out = jax.jit(lambda v: Variable(v.collection, v.value * 2, sharding=v.sharding))(var)
    np.testing.assert_array_equal(out.value, [0.0, 2.0, 4.0])
    assert out.sharding == ("x",)
    batched = jax.vmap(lambda v: v)(Variable("params", jnp.ones((5, 2))))
    assert batched.value.shape == (5, 2)


def test_repr_shows_all_fields():
    text = repr(Variable("params", 3, sharding=(None,)))
    assert text == "Variable(collection='params', value=3, sharding=(None,))"


class Param(Variable):
    """A user-defined Variable kind (registered as a pytree by ``__init_subclass__``)."""


def test_subclasses_are_pytrees_and_survive_partition_and_merge():
    leaves, treedef = jax.tree_util.tree_flatten(Param("params", 2.0))
    assert leaves == [2.0]
    assert type(treedef.unflatten([3.0])) is Param

    class Holder(Module):
        pass

    holder = Holder()
    holder.p = Param("params", jnp.ones(2))
    state, moduledef = holder.partition()
    snapshot = state["p",]
    assert type(snapshot) is Param and snapshot is not holder.p and snapshot.value is holder.p.value
    merged = moduledef.merge(state)
    assert type(merged.p) is Param and merged.p is not snapshot
    holder.update_state(state)
    assert holder.p.value is snapshot.value
