"""Context: the fold_in derivation, one counter shared by make_rng and fork, collision freedom (the seed's
32-bit hash collided), 32-bit counter limits, both key kinds, and crossing jit/vmap/scan."""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnx_conformance.core import Context, NNXError
from nnx_conformance.core.rng import DEFAULT_STREAM, STREAM_MARK

RAW = jax.random.PRNGKey(0)
TYPED = jax.random.key(0)


def data(key):
    """Full raw key data as numpy (typed keys unwrapped)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def same(a, b):
    return np.array_equal(data(a), data(b))


@pytest.mark.parametrize("key", [RAW, TYPED], ids=["raw", "typed"])
def test_make_rng_is_fold_in_of_the_count(key):
    ctx = Context(key)
    first, second = ctx.make_rng(), ctx.make_rng()
    assert same(first, jax.random.fold_in(key, 0)) and same(second, jax.random.fold_in(key, 1))
    assert ctx.count == 2
    assert first.dtype == key.dtype and first.shape == key.shape  # same key kind out as in


def test_fork_and_make_rng_share_one_counter():
    ctx = Context(RAW)
    ctx.make_rng()
    child = ctx.fork()
    assert (ctx.count, child.count, child.count_path) == (2, 0, (1,))
    assert same(ctx.make_rng(), jax.random.fold_in(RAW, 2))
    grandchild = child.fork()
    assert grandchild.count_path == (1, 0) and child.count == 1
    expected = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(RAW, 1), 0), 0)
    assert same(grandchild.make_rng(), expected)
    assert child.key is RAW  # forks keep the root key; the path does the deriving


def test_same_seed_same_stream_and_explicit_state_resumes_it():
    a, b = Context(RAW), Context(RAW)
    assert all(same(a.make_rng(), b.make_rng()) for _ in range(3))
    resumed = Context(RAW, count=a.count, count_path=a.count_path)
    assert same(resumed.make_rng(), a.make_rng())


def test_the_seeds_colliding_draws_now_differ():
    # The seed derived keys from a 32-bit blake2s prefix of the path: counts 25,650 and 50,160 collide.
    def seed_hash(path):
        digest = hashlib.blake2s(" ".join(map(str, path)).encode()).digest()
        return int.from_bytes(digest[:4], "big")

    assert seed_hash((25_650,)) == seed_hash((50_160,))
    assert not same(Context(RAW, count=25_650).make_rng(), Context(RAW, count=50_160).make_rng())


def test_first_60000_root_draws_are_distinct():
    ctx = Context(RAW)
    keys = [ctx.make_rng() for _ in range(60_000)]
    rows = np.stack([np.asarray(key) for key in keys])  # raw keys: the data is the array itself
    assert rows.shape == (60_000, 2)
    assert len(np.unique(rows, axis=0)) == 60_000
    assert same(keys[50_160], jax.random.fold_in(RAW, 50_160))


def test_forks_and_draws_across_a_tree_are_distinct():
    root = Context(RAW)
    keys = []
    contexts = [root]
    for _ in range(3):
        nxt = []
        for ctx in contexts:
            keys += [ctx.make_rng() for _ in range(3)]
            nxt += [ctx.fork(), ctx.fork()]
        contexts = nxt
    rows = np.stack([data(k) for k in keys])
    assert len(np.unique(rows, axis=0)) == len(keys) == 3 * (1 + 2 + 4)


def test_typed_and_raw_keys_derive_the_same_data():
    raw, typed = Context(RAW).fork(), Context(TYPED).fork()
    assert same(raw.make_rng(), typed.make_rng())


def test_counter_is_32_bit_with_the_top_value_reserved_for_named_streams():
    ctx = Context(RAW, count=2**32 - 2)
    assert same(ctx.make_rng(), jax.random.fold_in(RAW, 2**32 - 2))
    with pytest.raises(NNXError, match="exhausted"):
        ctx.make_rng()
    with pytest.raises(NNXError, match="exhausted"):
        ctx.fork()
    with pytest.raises(NNXError, match="exhausted"):
        ctx.split(2)
    assert ctx.count == STREAM_MARK == 2**32 - 1  # a refused draw does not advance the counter


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"count": -1}, NNXError),
        ({"count": 2**32}, NNXError),
        ({"count_path": (2**32,)}, NNXError),
        ({"count_path": (2**32 - 1,)}, NNXError),  # STREAM_MARK: never a fork path entry
        ({"count": 1.0}, TypeError),
        ({"count_path": (True,)}, TypeError),
    ],
)
def test_constructor_rejects_out_of_range_counts(kwargs, error):
    with pytest.raises(error):
        Context(RAW, **kwargs)


@pytest.mark.parametrize("key", [0, np.zeros(2, np.float32), "key"])
def test_constructor_rejects_non_keys(key):
    with pytest.raises(TypeError, match="PRNG key"):
        Context(key)


def test_is_a_pytree_with_key_child_and_counts_aux():
    ctx = Context(RAW, count=3, count_path=(1, 2), streams={"params": 4})
    leaves, treedef = jax.tree_util.tree_flatten(ctx)
    assert len(leaves) == 1 and leaves[0] is RAW
    rebuilt = treedef.unflatten([object()])  # arbitrary leaves are accepted
    assert (rebuilt.count, rebuilt.count_path, rebuilt.streams) == (3, (1, 2), {"params": 4})
    rebuilt.streams["params"] += 1
    assert ctx.streams == {"params": 4}  # the rebuilt context's counters are its own
    [(path, _)] = jax.tree_util.tree_flatten_with_path(ctx)[0]
    assert path == (jax.tree_util.GetAttrKey("key"),)


@pytest.mark.parametrize("key", [RAW, TYPED], ids=["raw", "typed"])
def test_draws_inside_jit_match_eager_draws(key):
    ctx = Context(key, count=5, count_path=(2,))

    @jax.jit
    def draw(ctx):
        first = ctx.make_rng()
        child = ctx.fork()
        return first, child.make_rng(), ctx

    first, from_child, after = draw(ctx)
    eager = Context(key, count=5, count_path=(2,))
    assert same(first, eager.make_rng())
    assert same(from_child, eager.fork().make_rng())
    assert after.count == 7  # the count comes back out through the returned context


def test_vmap_over_keys_gives_per_example_streams():
    keys = jax.random.split(RAW, 4)
    out = jax.vmap(lambda k: Context(k).make_rng())(keys)
    for i in range(4):
        assert same(out[i], jax.random.fold_in(keys[i], 0))
    batched = jax.vmap(lambda c: c.make_rng())(Context(keys, count=1))
    assert same(batched[3], jax.random.fold_in(keys[3], 1))


def test_scan_over_keys_like_scan_mlp():
    keys = jax.random.split(TYPED, 3)

    def body(carry, key):
        ctx = Context(key)
        return carry, ctx.fork().make_rng()

    _, out = jax.lax.scan(body, 0, keys)
    for i in range(3):
        assert same(out[i], jax.random.fold_in(jax.random.fold_in(keys[i], 0), 0))


def test_repr():
    assert "count=0, count_path=(1,)" in repr(Context(RAW, count_path=(1,)))


# -- contexts from keys ------------------------------------------------------------------------------------


def test_a_context_from_a_drawn_key_is_a_root_and_typed_and_raw_data_agree():
    parent = Context(TYPED)
    key = parent.make_rng()
    typed, raw = Context(key), Context(jax.random.key_data(key))
    assert typed.count_path == raw.count_path == ()
    first = typed.make_rng()
    assert same(first, raw.make_rng()) and same(first, jax.random.fold_in(key, 0))
    assert not same(first, key)


def test_raw_key_data_must_have_a_words_axis():
    with pytest.raises(TypeError, match="uint32 scalar"):
        Context(np.uint32(5))


# -- named streams -----------------------------------------------------------------------------------------


def _words(name):
    raw = name.encode()
    raw += b"\0" * (-len(raw) % 4)
    return [len(name.encode())] + [int.from_bytes(raw[i : i + 4], "little") for i in range(0, len(raw), 4)]


def test_named_stream_key_is_the_reserved_mark_the_encoded_name_and_its_own_count():
    ctx = Context(RAW, count_path=(3,))
    ctx.make_rng("params")
    second = ctx.make_rng("params")
    expected = RAW
    for word in (3, STREAM_MARK, *_words("params"), 1):
        expected = jax.random.fold_in(expected, word)
    assert same(second, expected)
    assert ctx.count == 0 and ctx.streams == {"params": 2}  # the default counter did not move


def test_default_stream_is_make_rng_without_a_name():
    a, b = Context(RAW), Context(RAW)
    assert same(a.make_rng(DEFAULT_STREAM), b.make_rng()) and a.count == b.count == 1 and a.streams == {}


def test_named_streams_do_not_depend_on_draws_from_other_streams():
    a, b = Context(RAW), Context(RAW)
    a.make_rng("dropout")
    a.make_rng()
    a.fork()
    assert same(a.make_rng("params"), b.make_rng("params"))


def test_names_are_encoded_prefix_free():
    # Without the length word, "ab" + count and "a" + "b"-as-a-word could meet; with it they never do.
    names = ["", "a", "ab", "abcd", "abcde", "a\0", "é", "params", "default2"]
    ctx = Context(RAW)
    keys = [ctx.make_rng(name) for name in names for _ in range(3)]
    keys += [ctx.make_rng() for _ in range(3)] + [ctx.fork().make_rng("a") for _ in range(3)]
    rows = np.stack([data(k) for k in keys])
    assert len(np.unique(rows, axis=0)) == len(keys)


def test_stream_names_must_be_str():
    with pytest.raises(TypeError, match="stream name"):
        Context(RAW).make_rng(3)


def test_named_streams_cross_jit_and_come_back_advanced():
    ctx = Context(TYPED, count=1)
    ctx.make_rng("params")

    @jax.jit
    def draw(ctx):
        return ctx.make_rng("params"), ctx

    key, after = draw(ctx)
    eager = Context(TYPED, count=1, streams={"params": 1})
    assert same(key, eager.make_rng("params")) and after.streams == {"params": 2}


# -- split and from_stream -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [RAW, TYPED], ids=["raw", "typed"])
def test_split_is_a_batch_of_roots_keyed_by_the_split_count_and_the_row(key):
    ctx = Context(key)
    ctx.make_rng()
    batch = ctx.split(3)
    assert ctx.count == 2 and batch.count == 0 and batch.count_path == ()
    assert batch.key.shape[0] == 3 and batch.key.dtype == key.dtype
    for i in range(3):
        assert same(batch.key[i], jax.random.fold_in(jax.random.fold_in(key, 1), i))
    rows = jax.vmap(lambda c: c.make_rng())(batch)
    keys = [ctx.make_rng() for _ in range(3)] + [rows[i] for i in range(3)]
    keys += [jax.random.fold_in(key, 0)]  # the draw before the split
    assert len(np.unique(np.stack([data(k) for k in keys]), axis=0)) == len(keys)


@pytest.mark.parametrize("n", [0, -1, True, 2.0])
def test_split_needs_a_positive_int(n):
    with pytest.raises(ValueError, match="n >= 1"):
        Context(RAW).split(n)


@pytest.mark.parametrize("stream", [DEFAULT_STREAM, "params"])
def test_from_stream_spends_one_draw_of_the_stream_and_replays_none(stream):
    ctx = Context(TYPED)
    before = [ctx.make_rng(stream) for _ in range(2)]
    rebuilt = ctx.from_stream(stream)
    after = [ctx.make_rng(stream) for _ in range(3)]
    fresh = [rebuilt.make_rng() for _ in range(5)]
    rows = np.stack([data(k) for k in before + after + fresh])
    assert len(np.unique(rows, axis=0)) == len(rows)
    replay = Context(TYPED)
    for _ in range(2):
        replay.make_rng(stream)
    assert same(rebuilt.make_rng(), jax.random.fold_in(replay.make_rng(stream), 5))  # a root from that key


def test_split_and_from_stream_under_jit_match_eager():
    ctx = Context(TYPED, count=2, count_path=(1,))

    @jax.jit
    def run(ctx):
        batch = ctx.split(3)
        rebuilt = ctx.from_stream("params")
        return jax.vmap(lambda c: c.make_rng())(batch), rebuilt.make_rng(), ctx

    rows, from_rebuilt, after = run(ctx)
    eager = Context(TYPED, count=2, count_path=(1,))
    eager_rows = jax.vmap(lambda c: c.make_rng())(eager.split(3))
    assert all(same(rows[i], eager_rows[i]) for i in range(3))
    assert same(from_rebuilt, eager.from_stream("params").make_rng())
    assert (after.count, after.streams) == (3, {"params": 1})
