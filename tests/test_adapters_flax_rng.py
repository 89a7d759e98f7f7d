"""``FlaxRngStreams`` (``spec/adapters/_flax_rng.py``): contexts from keys, named streams and split in flax.

The mixin is tested through a small adapter ``_A(FlaxRngStreams, FlaxAdapter)`` that claims ``rng_streams``
and ``rng_split``, so these tests stand whether or not ``FlaxAdapter`` itself has the mixin among its bases
yet. The first part checks the mapping onto ``flax.nnx``; the second runs the ``rng.*`` clauses on it and
pins flax 0.12's verdicts (``TestObservedFlaxRng``, skipped on other flax minors, where the replay may be
fixed): ``nnx.Rngs(rngs.default)`` restarts the stream's counter at 0 and replays its keys
(``rng.from-stream`` fails), as do the streams ``Rngs.split`` passes through unsplit (google/flax PR 5529).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx", reason="flax is not installed (pip install -e '.[flax]')")
flax = pytest.importorskip("flax")

from mutants.harness import run_property  # noqa: E402

from nnx_conformance.spec.adapter import RngSplit, RngStreams  # noqa: E402
from nnx_conformance.spec.adapters._flax_rng import FlaxRngStreams, as_rng_key  # noqa: E402
from nnx_conformance.spec.adapters.flax import FlaxAdapter  # noqa: E402
from nnx_conformance.spec.clauses import properties  # noqa: E402

_BASES: tuple[type, ...] = (
    (FlaxAdapter,) if issubclass(FlaxAdapter, FlaxRngStreams) else (FlaxRngStreams, FlaxAdapter)
)
"""``FlaxAdapter`` once the mixin is among its bases; until then the mixin first, then ``FlaxAdapter``."""


class _A(*_BASES):  # type: ignore[misc]
    """The flax adapter with the mixin first in its bases, claiming the two capabilities it backs."""

    name = "flax-rng"
    capabilities = dataclasses.replace(FlaxAdapter.capabilities, rng_streams=True, rng_split=True)


@pytest.fixture(scope="module")
def impl() -> _A:
    return _A()


def data(impl: _A, key: jax.Array) -> list[int]:
    return np.asarray(impl.key_data(key)).tolist()


def test_the_mixin_implements_the_optional_protocols(impl):
    assert isinstance(impl, RngStreams) and isinstance(impl, RngSplit)
    assert type(impl).new_context is FlaxRngStreams.new_context  # the mixin's, not the int-only one


def test_as_rng_key_takes_seeds_typed_keys_and_raw_data():
    typed = jax.random.key(7)
    assert as_rng_key(typed) is typed
    raw = jax.random.key_data(typed)
    assert jnp.issubdtype(as_rng_key(raw).dtype, jax.dtypes.prng_key)
    assert np.array_equal(jax.random.key_data(as_rng_key(np.asarray(raw))), raw)  # numpy data too
    assert np.array_equal(jax.random.key_data(as_rng_key(7)), raw)
    assert np.array_equal(jax.random.key_data(as_rng_key(jnp.int32(7))), raw)  # an integer scalar is a seed


def test_contexts_from_a_key_or_its_raw_data_draw_the_same_keys(impl):
    key = impl.make_rng(impl.new_context(3))
    raw = np.asarray(impl.key_data(key))
    contexts = [impl.new_context(key), impl.new_context(raw), impl.new_context(jnp.asarray(raw))]
    first = [data(impl, impl.make_rng(c)) for c in contexts]
    assert first[0] == first[1] == first[2] == data(impl, jax.random.fold_in(key, 0))
    assert first[0] != raw.tolist()


def test_new_context_maps_over_split_keys(impl):
    keys = jax.random.split(jax.random.key(0), 3)
    rows = impl.vmap(lambda k: impl.key_data(impl.make_rng(impl.new_context(k))))(keys)
    for i in range(3):
        assert rows[i].tolist() == data(impl, jax.random.fold_in(keys[i], 0))


def test_named_streams_fall_back_to_default(impl):
    """flax's rule for a stream an ``Rngs`` was not given: draw it from ``default``, one counter for all."""
    a, b = impl.new_context(1), nnx.Rngs(1)
    drawn = [data(impl, impl.make_rng_stream(a, name)) for name in ("params", "default", "dropout")]
    assert drawn == [data(impl, b()) for _ in range(3)]


def test_split_is_one_batched_rngs_and_advances_the_parent(impl):
    ctx = impl.new_context(0)
    batch = impl.split(ctx, 4)
    assert batch.default.key.shape == (4,) and batch.default.count.shape == (4,)
    assert int(ctx.default.count[...]) == 1


@pytest.mark.parametrize(
    "clause_id",
    ["rng.reproducible", "rng.unique", "rng.fork-independence", "rng.streams", "rng.split"],
)
def test_flax_passes(impl, clause_id):
    outcomes = [
        run_property(fn, impl, shrink=False, derandomize=True)
        for fn in properties()[clause_id]
        if fn.__name__ != "test_sixty_thousand_draws_from_one_context_are_distinct"  # covered by the spec run
    ]
    failed = [o.describe() for o in outcomes if o.failed or o.skipped]
    assert not failed, failed


@pytest.mark.skipif(
    not flax.__version__.startswith("0.12."), reason="pins flax 0.12 behaviour; re-check on other versions"
)
class TestObservedFlaxRng:
    def test_rebuilding_a_context_from_its_default_stream_replays_its_keys(self, impl):
        """``rng.from-stream`` fails on flax: the rebuilt ``Rngs`` restarts at count 0."""
        [fn] = properties()["rng.from-stream"]
        outcome = run_property(fn, impl, shrink=True, derandomize=True)
        assert outcome.failed and outcome.caught_by()
        assert "the rebuilt context's draw #0 == stream 'default' draw #0" in str(outcome.error)

    def test_the_replay_in_plain_flax(self):
        rngs = nnx.Rngs(0)
        used = [rngs(), rngs()]
        rebuilt = nnx.Rngs(rngs.default)
        assert all(jnp.array_equal(jax.random.key_data(rebuilt()), jax.random.key_data(k)) for k in used)

    def test_split_passes_unsplit_streams_through_with_their_counter_reset(self):
        """google/flax PR 5529: ``{'dropout': None}`` means "don't split dropout", and the new ``Rngs``
        re-emits the dropout keys already used. The protocol's ``split(ctx, n)`` splits every stream, so
        ``rng.split`` does not meet this; ``rng.from-stream`` meets its cause (``Rngs(stream)``)."""
        rngs = nnx.Rngs(params=1, dropout=2)
        used = rngs.dropout()
        again = rngs.split({"params": 5, "dropout": None}).dropout()
        assert jnp.array_equal(jax.random.key_data(again), jax.random.key_data(used))


def test_an_rngs_is_not_mistaken_for_a_path_predicate_in_reproductions():
    """``nnx.Rngs.__getattr__`` answers any name with its default stream, which is callable, so an instance
    lookup of ``repro_source`` found one on every ``Rngs`` and a failing rng.from-stream crashed its
    reproduction ("RngStream.__call__() takes 1 positional argument"); the lookup is on the type."""
    from nnx_conformance.spec._recording import literal

    assert callable(getattr(nnx.Rngs(0), "repro_source", None))  # the trap
    assert literal(nnx.Rngs(0)) is None
