"""Variable: construction checks, identity semantics, and its pytree behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_conformance.core import Module, ShardingError, Variable


def test_fields_and_defaults():
    value = jnp.ones((2, 3))
    var = Variable("params", value)
    assert var.collection == "params"
    assert var.value is value
    assert var.sharding is None


def test_sharding_is_normalised_to_a_tuple():
    var = Variable("params", np.zeros((2, 2)), sharding=[None, "model"])
    assert var.sharding == (None, "model")
    assert type(var.sharding) is tuple


@pytest.mark.parametrize("collection", [1, None, ("params",)])
def test_collection_must_be_a_string(collection):
    with pytest.raises(TypeError, match="collection must be a str"):
        Variable(collection, 0.0)


def test_sharding_entries_must_be_axis_names_or_none():
    with pytest.raises(TypeError, match="mesh-axis names") as info:
        Variable("params", 0.0, sharding=(None, 3))
    assert isinstance(info.value, ShardingError) and "3 (int) at position 1" in str(info.value)
    with pytest.raises(ShardingError, match=r"\('data', 'model'\)"):
        Variable("params", np.zeros((2, 2)), sharding=(("data", "model"), None))  # no axis tuples


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        (np.zeros(3), "write sharding=('data',)"),
        (jnp.zeros((2, 3)), "write sharding=('data', None)"),
        (1.0, "write sharding=('data',)"),  # no known ndim: one axis is the likely intent
        (np.zeros(()), "write sharding=() (the value is 0-d"),
    ],
    ids=["1d", "2d", "python-float", "0d"],
)
def test_a_string_sharding_is_refused_not_split_into_characters(value, fix):
    # tuple("data") would be ('d', 'a', 't', 'a'): four axes nobody meant.
    with pytest.raises(ShardingError, match=r"got the string 'data'.*\('d', 'a', 't', 'a'\)") as info:
        Variable("params", value, sharding="data")
    assert isinstance(info.value, TypeError) and info.value.path is None
    assert fix in str(info.value)


@pytest.mark.parametrize("sharding", [{"data"}, iter(["data"]), 3, b"da"])
def test_sharding_must_be_a_tuple_or_list(sharding):
    with pytest.raises(ShardingError, match=f"got a {type(sharding).__name__}"):
        Variable("params", np.zeros(3), sharding=sharding)


@pytest.mark.parametrize(
    ("value", "sharding", "fix"),
    [
        (np.zeros((2, 3)), ("data",), "('data', None)"),
        (jnp.zeros(3), (None, "model"), "(None,)"),
        (np.float32(1.0), ("data",), "()"),  # a numpy scalar is an array of ndim 0
        (jax.ShapeDtypeStruct((2, 2), jnp.float32), (), "(None, None)"),
    ],
    ids=["short", "long", "numpy-scalar", "shape-dtype-struct"],
)
def test_sharding_length_must_match_an_arrays_ndim(value, sharding, fix):
    with pytest.raises(ShardingError, match=f"has {len(sharding)} entries, but the value has") as info:
        Variable("params", value, sharding=sharding)
    assert f"sharding={fix}" in str(info.value)


def test_sharding_of_a_value_without_known_ndim_is_not_checked_for_length():
    # Python numbers, None and other placeholders have no ndim: only the entries' types are checked.
    assert Variable("params", 0.0, sharding=("data", "model")).sharding == ("data", "model")
    assert Variable("params", None, sharding=()).sharding == ()
    assert Variable("params", [1.0, 2.0], sharding=("data",)).sharding == ("data",)


def test_sharding_matching_the_ndim_is_accepted_inside_jit_and_vmap():
    def make(x):
        var = Variable("params", x, sharding=(None,) * x.ndim)
        return var.value

    jax.jit(make)(jnp.zeros((2, 3)))
    jax.vmap(make)(jnp.zeros((4, 2, 3)))  # inside vmap the value is per-example: ndim 2


def test_unflatten_keeps_an_annotation_whatever_the_leaf():
    # Only construction checks the length: JAX rebuilds Variables with stacked values (vmap over init),
    # shapes, sentinels; the per-layer annotation rides along unchanged.
    var = Variable("params", jnp.zeros((2, 3)), sharding=(None, "model"))
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), var)
    assert stacked.value.shape == (2, 2, 3) and stacked.sharding == (None, "model")


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
