"""Properties of random streams: the ``rng.*`` clauses of ``SPEC.md``.

Keys are compared by their *full* raw data (``impl.key_data``, every uint32 word), never by a hash or a
first word, since a derivation that truncates somewhere (the seed folds a 32-bit hash into the root key)
is exactly what these clauses must catch. Distinctness over many keys is one ``np.unique`` over the rows
viewed as opaque byte strings, so checking 60,000 keys costs milliseconds; what costs time is drawing
them through the implementation, one eager ``make_rng`` at a time.

Programs of draws, forks and contexts made from drawn keys come from
:func:`~nnx_conformance.strategies.rng_programs` and run through
:func:`~nnx_conformance.strategies.run_program`, whose records say, from the program alone, which context
and which of its counts produced each key, and which context made from a key (by which op) it descends
from: failure messages name the op, the context's root and fork lineage and the draw number, never an index
into a flattened list. A context made from a key is a new root, but its keys belong to the program that
drew that key: every clause below compares them with all the program's other keys.

Named streams, split and contexts rebuilt from a stream (``rng.streams``, ``rng.split``,
``rng.from-stream``) use the optional protocol methods of
:class:`~nnx_conformance.spec.adapter.RngStreams` and :class:`~nnx_conformance.spec.adapter.RngSplit`; an
adapter that does not claim ``rng_streams`` / ``rng_split`` gets those clauses skipped.

The statistics clause needs tail probabilities of the chi-square and normal distributions. The suite
depends on numpy only (no scipy), so they are computed here: the normal tail with :func:`math.erfc`, and the
chi-square tail through the Wilson-Hilferty cube-root transformation (accurate to a few percent of the p-value for 255 degrees of freedom even far in the tail,
which is plenty for thresholds set at ``1e-6`` overall).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nnx_conformance.spec.clauses import clause
from nnx_conformance.spec.properties._helpers import JAX_SETTINGS, E, budget, fail
from nnx_conformance.strategies import RngProgram, RngRecord, rng_programs, run_program

__all__ = [
    "LONG_PROGRAM_DRAWS",
    "STREAM_NAMES",
    "chi2_sf",
    "context_batch",
    "describe_context",
    "describe_draw",
    "duplicate_groups",
    "keys_to_array",
    "normal_two_sided_p",
    "stream_statistics",
    "test_a_context_from_a_key_is_a_function_of_all_of_the_key_s_data",
    "test_a_context_rebuilt_from_a_stream_replays_none_of_its_keys",
    "test_contexts_of_a_program_never_share_a_stream",
    "test_contexts_split_across_vmap_give_distinct_rows",
    "test_different_seeds_give_different_keys",
    "test_every_key_of_a_program_is_distinct",
    "test_fork_keys_never_meet_parent_or_sibling_keys",
    "test_keys_drawn_under_jit_equal_eager_keys",
    "test_named_streams_of_one_context_never_share_keys",
    "test_same_program_and_seed_give_identical_keys",
    "test_sibling_streams_are_jointly_uniform_and_uncorrelated",
    "test_sixty_thousand_draws_from_one_context_are_distinct",
    "test_split_children_never_meet_each_other_or_the_parent",
]

SEEDS = st.integers(0, 2**32 - 1)
"""Seeds as ``rng_programs`` draws them: every 32-bit value is a legal seed."""

LONG_PROGRAM_DRAWS = 60_000
"""Draws in the long-program check. Above 50,160: the seed's root draws #25,650 and #50,160 collide."""


# ---------------------------------------------------------------------------------------------------------
# Helpers (shared with the meta-tests)
# ---------------------------------------------------------------------------------------------------------

_CHUNK = 256
"""Keys converted per call of the jitted converter: one compile, then ~1 ms per 256 keys."""

_converters: dict[int, tuple[Any, Callable[[list[Any]], Any]]] = {}


def _converter(impl: Any) -> Callable[[list[Any]], Any]:
    """``jax.jit`` of "stack ``impl.key_data`` of each of ``_CHUNK`` keys", cached per adapter object."""
    cached = _converters.get(id(impl))
    if cached is None or cached[0] is not impl:
        fn = jax.jit(lambda keys: jnp.stack([jnp.asarray(impl.key_data(k), jnp.uint32) for k in keys]))
        cached = _converters[id(impl)] = (impl, fn)
    return cached[1]


def keys_to_array(impl: Any, keys: Sequence[Any]) -> np.ndarray:
    """The raw data of ``keys`` as one ``(len(keys), words)`` uint32 array, row ``i`` for ``keys[i]``.

    Converting key by key costs two dispatches per key (~70 us, 4 s for 60,000 keys); a jitted converter
    over chunks of 256 (the last chunk padded with its first key, so there is a single compile) costs about
    one millisecond per chunk. An implementation whose ``key_data`` cannot be traced falls back to the
    key-by-key path.
    """
    keys = list(keys)
    if not keys:
        return np.zeros((0, 0), np.uint32)
    try:
        convert = _converter(impl)
        parts = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            n = len(chunk)
            chunk = chunk + [chunk[0]] * (_CHUNK - n)
            parts.append((convert(chunk), n))
        rows = np.concatenate([np.asarray(part)[:n] for part, n in parts])
    except Exception:  # key_data not traceable, keys of mixed kinds...: convert one by one
        rows = np.stack([np.asarray(impl.key_data(k), dtype=np.uint32).ravel() for k in keys])
    return rows.reshape(len(keys), -1).astype(np.uint32, copy=False)


def duplicate_groups(rows: np.ndarray) -> list[np.ndarray]:
    """Indices of rows that occur more than once, one ascending index array per repeated row.

    Rows are compared as opaque byte strings (every word of the key), in one vectorised ``np.unique``.
    """
    rows = np.ascontiguousarray(rows)
    if len(rows) < 2:
        return []
    flat = rows.reshape(len(rows), -1)
    view = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()
    _, inverse, counts = np.unique(view, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    repeated = np.flatnonzero(counts[inverse] > 1)
    groups: dict[int, list[int]] = {}
    for i in repeated:
        groups.setdefault(int(inverse[i]), []).append(int(i))
    return [np.asarray(g) for g in sorted(groups.values())]


def describe_context(record: RngRecord) -> str:
    """The context an op ran on, located by what the program did: its id, the context made from a key it
    descends from (and the op that made it), its fork lineage below that root."""
    where = "the root context" if record.ctx_id == 0 else f"context {record.ctx_id}"
    if record.root:
        if record.root == record.ctx_id:
            where += f" (made from a key by op #{record.root_op})"
        else:
            where += f" (below context {record.root}, made from a key by op #{record.root_op})"
    lineage = f", fork lineage {record.lineage}" if record.lineage else ""
    return where + lineage


def describe_draw(record: RngRecord) -> str:
    """One key of a program, located by what the program did (not by a list index)."""
    if record.kind == "draw":
        what = f"draw #{record.count}"
    else:
        what = f"the key drawn as op #{record.count} to make context(s) from it ({record.kind})"
    return f"op #{record.op_index}: {what} of {describe_context(record)}"


def _draws(records: Sequence[RngRecord]) -> list[RngRecord]:
    """Every record that drew a key: draws, and the ops that drew a key to make contexts from it."""
    return [r for r in records if r.key_data is not None]


def _key_rows(records: Sequence[RngRecord]) -> np.ndarray:
    return np.stack([np.asarray(r.key_data, np.uint32).ravel() for r in records])


def normal_two_sided_p(z: float) -> float:
    """``P(|Z| >= |z|)`` for a standard normal ``Z``."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def chi2_sf(x: float, df: int) -> float:
    """``P(X >= x)`` for ``X ~ chi2(df)``, by the Wilson-Hilferty approximation.

    ``(X / df) ** (1/3)`` is close to normal with mean ``1 - 2/(9 df)`` and variance ``2/(9 df)``; the
    upper tail of that normal is the p-value. For ``df = 255`` the relative error of the p-value stays
    within a few percent down to ``1e-10``, far below what a Bonferroni threshold needs.
    """
    if x <= 0:
        return 1.0
    v = 2.0 / (9.0 * df)
    z = ((x / df) ** (1.0 / 3.0) - (1.0 - v)) / math.sqrt(v)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# ---------------------------------------------------------------------------------------------------------
# rng.reproducible
# ---------------------------------------------------------------------------------------------------------


@clause("rng.reproducible")
@budget()
@given(data=st.data())
def test_same_program_and_seed_give_identical_keys(impl, data):
    """Running one program twice from one seed gives bit-identical keys, draw by draw.

    Checkpointing and debugging rest on this: a model rebuilt from the same seed must be the same model.
    """
    program = data.draw(rng_programs(max_ops=20), label="program")
    first, second = _draws(run_program(program, impl)), _draws(run_program(program, impl))
    for a, b in zip(first, second):
        if not np.array_equal(a.key_data, b.key_data):
            fail(
                impl,
                E.py("np.array_equal({0}, {1})", a.key_data, b.key_data),
                f"seed {program.seed}, {describe_draw(a)}: the first run drew {a.key_data.tolist()}, "
                f"the second run of the same program drew {b.key_data.tolist()}",
            )


@clause("rng.reproducible")
@budget()
@given(data=st.data())
def test_different_seeds_give_different_keys(impl, data):
    """The same program from two different seeds draws a different key at every draw.

    A context that ignored its seed, or a part of it, would make "different runs" silently identical. Two
    independent 32-bit seeds almost never agree on any part, so the other seed is mostly the first with
    *one bit flipped*: a seed kept to 16 bits, or hashed into fewer bits than it has, then shows.
    """
    program = data.draw(rng_programs(min_ops=1, max_ops=8), label="program")
    flip = st.integers(0, 31).map(lambda bit: program.seed ^ (1 << bit))
    other_seed = data.draw(st.one_of(flip, SEEDS.filter(lambda s: s != program.seed)), label="other_seed")
    other = RngProgram(other_seed, program.ops)
    for a, b in zip(_draws(run_program(program, impl)), _draws(run_program(other, impl))):
        if np.array_equal(a.key_data, b.key_data):
            fail(
                impl,
                E.py("not np.array_equal({0}, {1})", a.key_data, b.key_data),
                f"{describe_draw(a)}: seeds {program.seed} and {other_seed} both drew {a.key_data.tolist()}",
            )


FROM_KEY_DRAWS = 3
"""Keys drawn from each context made from a key in the from-key check."""


def _stream_rows(impl: Any, ctx: Any, n: int) -> np.ndarray:
    return keys_to_array(impl, [impl.make_rng(ctx) for _ in range(n)])


@clause("rng.reproducible")
@budget()
@given(seed=SEEDS, before=st.integers(0, 3), word=st.integers(0, 7), bit=st.integers(0, 31))
def test_a_context_from_a_key_is_a_function_of_all_of_the_key_s_data(impl, seed, before, word, bit):
    """A context made from a drawn key, one made from that key's raw ``uint32`` data and a second one made
    from the same key draw identical keys; one made from the data with one bit flipped draws different keys.

    The key *is* its data: ``Context(key)`` and ``nnx.Rngs(jax.random.wrap_key_data(data))`` are two
    spellings of one seed, so they must agree. A context that keeps only part of the key (its first word,
    a 32-bit hash of it) or none of it (a fixed seed) makes contexts from different keys -- the rows of a
    split, the layers of a ScanMLP -- draw the same keys; a single flipped bit in any word shows it, as a
    flipped seed bit does for integer seeds.
    """
    ctx = impl.new_context(seed)
    for _ in range(before):
        impl.make_rng(ctx)
    key = impl.make_rng(ctx)
    data = np.asarray(impl.key_data(key), dtype=np.uint32)
    flat = data.reshape(-1)
    at = word % flat.size
    flipped = flat.copy()
    flipped[at] ^= np.uint32(1 << bit)
    flipped = flipped.reshape(data.shape)
    from_key = _stream_rows(impl, impl.new_context(key), FROM_KEY_DRAWS)
    again = _stream_rows(impl, impl.new_context(key), FROM_KEY_DRAWS)
    from_data = _stream_rows(impl, impl.new_context(data), FROM_KEY_DRAWS)
    from_flipped = _stream_rows(impl, impl.new_context(flipped), FROM_KEY_DRAWS)
    where = f"seed {seed}, the key of draw #{before} ({data.tolist()})"
    for i in range(FROM_KEY_DRAWS):
        if not np.array_equal(from_key[i], again[i]):
            fail(
                impl,
                E.py("np.array_equal({0}, {1})", from_key[i], again[i]),
                f"{where}: two contexts made from the same key drew {from_key[i].tolist()} and "
                f"{again[i].tolist()} as draw #{i}",
            )
        if not np.array_equal(from_key[i], from_data[i]):
            fail(
                impl,
                E.py("np.array_equal({0}, {1})", from_key[i], from_data[i]),
                f"{where}: a context made from the key drew {from_key[i].tolist()} as draw #{i}, one made from "
                f"its raw data drew {from_data[i].tolist()}",
            )
        if np.array_equal(from_data[i], from_flipped[i]):
            fail(
                impl,
                E.py("not np.array_equal({0}, {1})", from_data[i], from_flipped[i]),
                f"{where}: flipping bit {bit} of word {at} of the key ({flipped.tolist()}) leaves draw #{i} of "
                f"the context made from it unchanged, {from_data[i].tolist()}: the context ignores part of its "
                "key",
            )


# ---------------------------------------------------------------------------------------------------------
# rng.unique
# ---------------------------------------------------------------------------------------------------------


def _assert_distinct(impl: Any, records: Sequence[RngRecord], what: str) -> None:
    draws = _draws(records)
    if len(draws) < 2:
        return
    groups = duplicate_groups(_key_rows(draws))
    if groups:
        lines = [
            "  key "
            + repr(draws[g[0]].key_data.tolist())
            + " drawn by "
            + " and by ".join(describe_draw(draws[i]) for i in g)
            for g in groups[:5]
        ]
        a, b = draws[groups[0][0]], draws[groups[0][1]]
        fail(
            impl,
            E.py("not np.array_equal({0}, {1})", a.key_data, b.key_data),
            f"{what}: {len(groups)} key(s) drawn more than once; first, op #{a.op_index} and op #{b.op_index} "
            "drew the same key\n" + "\n".join(lines),
        )


@clause("rng.unique")
@budget()
@given(data=st.data())
def test_every_key_of_a_program_is_distinct(impl, data):
    """Every key a program of draws and forks produces differs from every other (all words compared)."""
    program = data.draw(rng_programs(max_ops=30), label="program")
    _assert_distinct(impl, run_program(program, impl), f"seed {program.seed}")


@clause("rng.unique")
@budget(0.1)
@given(seed=SEEDS, forks=st.integers(1, 3), draws=st.integers(10, 16))
def test_a_context_and_its_forks_drawing_many_keys_never_meet(impl, seed, forks, draws):
    """A root context forks ``forks`` children, each child forks once, then every one of them draws
    ``draws`` keys: all distinct.

    Counts past 9 beside fork indices are what a derivation that joins the digits of a count path without
    a separator confuses (``(1, 23)`` and ``(12, 3)``; a fork's draw ``(0, 5)`` and the root's ``(5,)``).
    Random programs of a few dozen ops seldom draw ten keys from two related contexts: such a derivation
    escaped two seeds in ten (kill matrix)."""
    root = impl.new_context(seed)
    contexts = [("the root", root)]
    for i in range(forks):
        child = impl.fork(root)
        contexts += [(f"fork #{i}", child), (f"fork #{i}'s fork", impl.fork(child))]
    keys: list[Any] = []
    labels: list[str] = []
    for label, ctx in contexts:
        for n in range(draws):
            keys.append(impl.make_rng(ctx))
            labels.append(f"{label}'s draw #{n}")
    _assert_keys_distinct(
        impl,
        keys,
        labels,
        f"seed {seed}, {forks} fork(s) of the root and one of each, {draws} draws from every context",
    )


@clause("rng.unique")
def test_sixty_thousand_draws_from_one_context_are_distinct(impl):
    """60,000 draws from one root context are pairwise distinct.

    The clause names this program explicitly: a derivation that folds a 32-bit digest of the counter into
    the key (the seed) collides by the birthday bound after ~2**16 draws -- for the seed, root draws
    #25,650 and #50,160 get the same key. A random program of a few dozen ops can never reach that, so the
    check runs once per implementation, not per example. Its cost is the implementation's own eager
    ``make_rng`` (3 s for the core on a loaded 2-core machine); the distinctness check itself is one
    ``np.unique``.
    """
    ctx = impl.new_context(0)
    keys = [impl.make_rng(ctx) for _ in range(LONG_PROGRAM_DRAWS)]
    rows = keys_to_array(impl, keys)
    groups = duplicate_groups(rows)
    if groups:
        lines = [
            f"  draws {' and '.join(f'#{i}' for i in g)} of the root context (seed 0) gave the same key "
            f"{rows[g[0]].tolist()}"
            for g in groups[:5]
        ]
        raise AssertionError(
            f"{len(groups)} key(s) repeated among {LONG_PROGRAM_DRAWS} draws from one context "
            "(reproduce: ctx = impl.new_context(0); keys = [impl.make_rng(ctx) for _ in range(60000)])\n"
            + "\n".join(lines)
        )


# ---------------------------------------------------------------------------------------------------------
# rng.fork-independence
# ---------------------------------------------------------------------------------------------------------


@clause("rng.fork-independence")
@budget()
@given(
    seed=SEEDS,
    before=st.integers(0, 3),
    n_forks=st.integers(1, 3),
    grandchildren=st.integers(0, 2),
    per_stream=st.integers(1, 24),
)
def test_fork_keys_never_meet_parent_or_sibling_keys(impl, seed, before, n_forks, grandchildren, per_stream):
    """Draw ``per_stream`` keys from a parent, each of its forks and some forks of its first fork; no key
    of one stream equals a key of another at any offset.

    Comparing whole sets, not draw ``i`` with draw ``i``, is what catches a fork that merely *shifts* its
    parent's stream (a child whose draw #0 is the parent's draw #1 passes any same-index check).
    """
    parent = impl.new_context(seed)
    for _ in range(before):
        impl.make_rng(parent)
    streams: list[tuple[str, Any]] = [("parent", parent)]
    for f in range(n_forks):
        streams.append((f"fork #{f} of the parent", impl.fork(parent)))
    for g in range(grandchildren):
        streams.append((f"fork #{g} of fork #0", impl.fork(streams[1][1])))
    labels: list[str] = []
    keys: list[Any] = []
    for i in range(per_stream):  # interleaved, so no stream is drained before another starts
        for name, ctx in streams:
            keys.append(impl.make_rng(ctx))
            labels.append(f"{name}, draw #{i}")
    rows = keys_to_array(impl, keys)
    groups = duplicate_groups(rows)
    if groups:
        lines = [f"  {' == '.join(labels[i] for i in g)}: key {rows[g[0]].tolist()}" for g in groups[:5]]
        raise AssertionError(
            f"seed {seed}, {before} parent draws before forking: {len(groups)} key(s) shared between "
            "streams (or repeated within one)\n" + "\n".join(lines)
        )


@clause("rng.fork-independence")
@budget()
@given(data=st.data())
def test_contexts_of_a_program_never_share_a_stream(impl, data):
    """After a program of draws, forks and contexts made from drawn (or split) keys, every context draws
    ``per_stream`` more keys, round by round; no key of any context equals a key of another, nor any key
    the program drew.

    The program's own keys are few per context; the rounds make every stream long enough that a context
    replaying another one *shifted* (a fork on its parent's counter, a context from a key that restarts
    the stream the key came from) meets it, whatever the offset.
    """
    program = data.draw(rng_programs(max_ops=10), label="program")
    per_stream = data.draw(st.integers(1, 6), label="per_stream")
    n = program.n_contexts
    tail = tuple(("draw", c) for _ in range(per_stream) for c in range(n))
    full = RngProgram(program.seed, program.ops + tail)
    _assert_distinct(
        impl,
        run_program(full, impl),
        f"seed {program.seed}, then {per_stream} draw(s) from each of the program's {n} context(s)",
    )


# ---------------------------------------------------------------------------------------------------------
# rng.statistics
# ---------------------------------------------------------------------------------------------------------

STAT_FORKS = 3
STAT_DRAWS = 8
STAT_WORDS = 512
STAT_ALPHA = 1e-6
"""Family-wise false-rejection rate per example; Bonferroni-split over every test of the example."""
STAT_LAGS = (-2, -1, 0, 1, 2)

_KEY_IMPLS = {2: "threefry2x32", 4: "rbg"}


@functools.cache
def _bits_fn(words: int) -> Callable[[Any], Any]:
    """``(streams, draws, words_per_key) uint32`` key data -> ``(streams, draws, STAT_WORDS)`` random bits."""
    impl_name = _KEY_IMPLS[words]

    def bits(data: Any) -> Any:
        keys = jax.random.wrap_key_data(data, impl=impl_name)
        flat = keys.reshape(-1)
        out = jax.vmap(lambda k: jax.random.bits(k, (STAT_WORDS,), jnp.uint32))(flat)
        return out.reshape((*data.shape[:-1], STAT_WORDS))

    return jax.jit(bits)


def stream_statistics(bits: np.ndarray, names: Sequence[str]) -> list[tuple[str, float]]:
    """``(description, p-value)`` of every test on ``bits[stream, draw, word]`` (uint32).

    * per stream, a chi-square of the top 8 bits against uniform (256 bins);
    * per pair of streams, a chi-square of the joint top 4 bits of words at the same (draw, word) position
      against the uniform 16 x 16 grid: it rejects dependence as well as non-uniformity;
    * per pair of streams and lag ``L`` (and per stream, ``L`` = 1, 2), the correlation of the uniforms of
      draw ``d`` of one with draw ``d + L`` of the other, as ``z = r * sqrt(n)``: a fork that replays its
      parent shifted by ``L`` gives ``r = 1``.
    """
    n_streams, n_draws, n_words = bits.shape
    tests: list[tuple[str, float]] = []
    n = n_draws * n_words
    expected = n / 256.0
    top8 = (bits >> 24).astype(np.int64)
    for s in range(n_streams):
        counts = np.bincount(top8[s].ravel(), minlength=256)
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        tests.append((f"uniformity of {names[s]} (chi2={chi2:.1f}, df=255)", chi2_sf(chi2, 255)))
    top4 = (bits >> 28).astype(np.int64)
    u = (bits.astype(np.float64) + 0.5) / 2.0**32 - 0.5
    for s in range(n_streams):
        for t in range(s + 1, n_streams):
            counts = np.bincount((top4[s] * 16 + top4[t]).ravel(), minlength=256)
            chi2 = float(((counts - expected) ** 2 / expected).sum())
            tests.append(
                (
                    f"joint uniformity of {names[s]} and {names[t]} (chi2={chi2:.1f}, df=255)",
                    chi2_sf(chi2, 255),
                )
            )
    for s in range(n_streams):
        for t in range(s, n_streams):
            for lag in STAT_LAGS:
                if s == t and lag <= 0:
                    continue
                lo, hi = max(0, -lag), min(n_draws, n_draws - lag)
                a, b = u[s, lo:hi], u[t, lo + lag : hi + lag]
                r = float((a * b).mean() * 12.0)
                z = r * math.sqrt(a.size)
                tests.append(
                    (
                        f"correlation of {names[s]} draw d with {names[t]} draw d{lag:+d} (r={r:.4f}, z={z:.2f})",
                        normal_two_sided_p(z),
                    )
                )
    return tests


@clause("rng.statistics")
@settings(JAX_SETTINGS, max_examples=max(200, settings().max_examples))
@given(seed=SEEDS, before=st.integers(0, 2))
def test_sibling_streams_are_jointly_uniform_and_uncorrelated(impl, seed, before):
    """A parent and three forks, eight draws each, 512 random words per key: no test rejects.

    Each key is turned into words with ``jax.random.bits`` (the way a layer consumes it), so what is
    tested is the streams of keys the implementation derives, through the PRF that will consume them.
    Thresholds are Bonferroni-corrected: ``STAT_ALPHA`` over all the example's tests, so the reference
    falsely rejects with probability below ``1e-6`` per seed. At least 200 seeds run in every profile.
    """
    parent = impl.new_context(seed)
    for _ in range(before):
        impl.make_rng(parent)
    contexts = [parent] + [impl.fork(parent) for _ in range(STAT_FORKS)]
    names = ["the parent"] + [f"fork #{f}" for f in range(STAT_FORKS)]
    keys = [impl.make_rng(ctx) for _ in range(STAT_DRAWS) for ctx in contexts]
    rows = keys_to_array(impl, keys)
    words = rows.shape[1]
    assert words in _KEY_IMPLS, f"keys of {words} uint32 words: no known JAX PRNG implementation to draw bits"
    data = rows.reshape(STAT_DRAWS, len(contexts), words).transpose(1, 0, 2)
    bits = np.asarray(_bits_fn(words)(jnp.asarray(data)))
    tests = stream_statistics(bits, names)
    threshold = STAT_ALPHA / len(tests)
    rejected = [(desc, p) for desc, p in tests if p < threshold]
    assert not rejected, (
        f"seed {seed} ({before} parent draws before forking): {len(rejected)} of {len(tests)} tests reject "
        f"at p < {threshold:.2g}\n" + "\n".join(f"  {desc}: p={p:.3g}" for desc, p in rejected[:8])
    )


# ---------------------------------------------------------------------------------------------------------
# rng.transforms
# ---------------------------------------------------------------------------------------------------------


def _kd(impl: Any, key: Any) -> Any:
    return jnp.asarray(impl.key_data(key), jnp.uint32)


def _body_draws(impl: Any, ctx: Any) -> Any:
    return jnp.stack([_kd(impl, impl.make_rng(ctx)) for _ in range(3)])


def _body_forks(impl: Any, ctx: Any) -> Any:
    child = impl.fork(ctx)
    first = impl.make_rng(ctx)
    grandchild = impl.fork(child)
    keys = [first, impl.make_rng(child), impl.make_rng(grandchild), impl.make_rng(child), impl.make_rng(ctx)]
    return jnp.stack([_kd(impl, k) for k in keys])


BODIES: dict[str, Callable[[Any, Any], Any]] = {
    "3 draws": _body_draws,
    "fork, draw, fork of the fork, draws from each": _body_forks,
}
"""What a transformed function does with the context it is given (a fixed set: one compile each)."""

PREFIX: tuple[str, ...] = ("draw", "fork")
"""What is done to the context eagerly before it is passed in, so that its counter is not the initial one
(fixed: where the counter is static pytree data, each different counter is one more compile)."""

_jitted: dict[tuple[int, str], tuple[Any, Callable[[Any], Any]]] = {}


def _jitted_body(impl: Any, name: str) -> Callable[[Any], Any]:
    cached = _jitted.get((id(impl), name))
    if cached is None or cached[0] is not impl:
        cached = _jitted[(id(impl), name)] = (impl, impl.jit(functools.partial(BODIES[name], impl)))
    return cached[1]


def _prepared(impl: Any, seed: int, prefix: tuple[str, ...]) -> Any:
    ctx = impl.new_context(seed)
    for op in prefix:
        if op == "draw":
            impl.make_rng(ctx)
        else:
            impl.fork(ctx)
    return ctx


@clause("rng.transforms")
@budget(0.3)
@given(seed=SEEDS, body=st.sampled_from(sorted(BODIES)))
def test_keys_drawn_under_jit_equal_eager_keys(impl, seed, body):
    """A function drawing and forking inside ``impl.jit`` yields the keys it yields eagerly, bit for bit.

    The context is prepared by an eager prefix (so its counter and fork path are not the initial ones);
    an equal context, prepared the same way, runs the same function eagerly.
    """
    prefix = PREFIX
    eager = np.asarray(BODIES[body](impl, _prepared(impl, seed, prefix)))
    jitted = np.asarray(_jitted_body(impl, body)(_prepared(impl, seed, prefix)))
    for i, (e, j) in enumerate(zip(eager, jitted)):
        assert np.array_equal(e, j), (
            f"seed {seed}, eager prefix {prefix}, body {body!r}: key #{i} of the body is {j.tolist()} under "
            f"jit but {e.tolist()} eagerly"
        )


def context_batch(impl: Any, ctx: Any, n: int) -> Any:
    """``n`` contexts split from ``ctx``, batched along a leading axis (what ``impl.vmap`` maps over).

    Expressed with protocol operations only: one key is drawn from ``ctx``, its full data seeds ``n``
    integer seeds (on the host, whatever the key's width), and ``impl.vmap(impl.new_context)`` makes one
    context per seed -- the seed's ``jax.vmap(lambda key: Context(key))`` in ScanMLP, through the adapter.
    This relies on :meth:`~nnx_conformance.spec.adapter.Adapter.new_context` accepting a traced seed.
    """
    words = np.asarray(impl.key_data(impl.make_rng(ctx)), dtype=np.uint32).ravel()
    seeds = np.random.default_rng(words.tolist()).integers(0, 2**31 - 1, size=n)
    return impl.vmap(impl.new_context)(jnp.asarray(seeds, jnp.int32))


def _vmap_body(impl: Any, ctx: Any) -> Any:
    child = impl.fork(ctx)
    keys = [impl.make_rng(ctx), impl.make_rng(child), impl.make_rng(ctx)]
    return jnp.stack([_kd(impl, k) for k in keys])


VMAP_BATCH = 4
"""Contexts per batch (one size: one compile)."""

_mapped: dict[int, tuple[Any, Callable[[Any], Any]]] = {}


def _mapped_body(impl: Any) -> Callable[[Any], Any]:
    """``impl.jit(impl.vmap(body))``, cached per adapter: eager vmap would dispatch every batched op."""
    cached = _mapped.get(id(impl))
    if cached is None or cached[0] is not impl:
        cached = _mapped[id(impl)] = (impl, impl.jit(impl.vmap(functools.partial(_vmap_body, impl))))
    return cached[1]


@clause("rng.transforms")
@budget(0.2)
@given(seed=SEEDS)
def test_contexts_split_across_vmap_give_distinct_rows(impl, seed):
    """Four contexts split from one parent and mapped over with ``impl.vmap`` draw distinct keys: no two
    rows of the batch (nor two draws within a row, one of them from a fork made inside the map) agree.

    The batch of contexts is made eagerly and crosses a ``jit(vmap(...))`` boundary, the way a lifted
    layer receives it.
    """
    n = VMAP_BATCH
    ctxs = context_batch(impl, impl.new_context(seed), n)
    out = np.asarray(_mapped_body(impl)(ctxs))
    assert out.shape[:2] == (n, 3), (
        f"vmap over {n} contexts returned keys of shape {out.shape}, expected ({n}, 3, ...)"
    )
    rows = out.reshape(n * 3, -1)
    groups = duplicate_groups(rows)
    what = ("draw #0", "draw #0 of a fork", "draw #1")
    if groups:
        lines = [
            f"  {' == '.join(f'row {i // 3} {what[i % 3]}' for i in g)}: key {rows[g[0]].tolist()}"
            for g in groups[:5]
        ]
        raise AssertionError(
            f"seed {seed}: keys repeated across the {n} rows of a vmap over split contexts\n"
            + "\n".join(lines)
        )


# ---------------------------------------------------------------------------------------------------------
# rng.streams, rng.split, rng.from-stream (optional capabilities rng_streams, rng_split)
# ---------------------------------------------------------------------------------------------------------

STREAM_NAMES: tuple[str, ...] = ("default", "params", "dropout", "p", "pa", "é")
"""Stream names the stream clauses use: ``"default"`` (the stream ``make_rng`` draws from), flax's usual
names, a name that is a prefix of another (an encoding without lengths confuses ``"p" + "a..."`` with
``"pa" + ...``), and a non-ASCII one. Fixed, so the jitted helpers compile once."""

_MAKE_RNG = "make_rng()"
"""In a stream schedule: a plain ``make_rng(ctx)``, which must share the ``"default"`` stream's counter."""


def _draw_stream(impl: Any, ctx: Any, name: str) -> Any:
    return impl.make_rng(ctx) if name == _MAKE_RNG else impl.make_rng_stream(ctx, name)


def _label_stream(name: str) -> str:
    return "make_rng" if name == _MAKE_RNG else f"stream {name!r}"


def _assert_keys_distinct(impl: Any, keys: Sequence[Any], labels: Sequence[str], what: str) -> None:
    """No two of ``keys`` (key objects, one per label) are equal; the failing check reads them back through
    ``impl.key_data``, so a reproduction recomputes them."""
    _assert_rows_distinct(impl, keys_to_array(impl, keys), labels, what, keys)


def _assert_rows_distinct(
    impl: Any, rows: np.ndarray, labels: Sequence[str], what: str, keys: Sequence[Any] | None = None
) -> None:
    """No two rows of ``rows`` (key data, one row per label) are equal. ``keys``, the key objects the rows
    were converted from, lets the failing check compare the first equal pair through ``impl.key_data``,
    so a reproduction recomputes them (rows alone are literals: the check would prove nothing)."""
    groups = duplicate_groups(rows)
    if not groups:
        return
    lines = [f"  {' == '.join(labels[i] for i in g)}: key {rows[g[0]].tolist()}" for g in groups[:5]]
    a, b = groups[0][:2]
    pair = (impl.key_data(keys[a]), impl.key_data(keys[b])) if keys is not None else (rows[a], rows[b])
    fail(
        impl,
        E.py("not np.array_equal({0}, {1})", *pair),
        f"{what}: {len(groups)} key(s) drawn more than once\n" + "\n".join(lines),
    )


@clause("rng.streams")
@budget()
@given(
    seed=SEEDS,
    before=st.integers(0, 3),
    schedule=st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from((*STREAM_NAMES, _MAKE_RNG))), min_size=0, max_size=16
    ),
    rounds=st.integers(1, 3),
)
def test_named_streams_of_one_context_never_share_keys(impl, seed, before, schedule, rounds):
    """A context and a fork of it draw from named streams in a random order (``make_rng`` among them, as
    the ``"default"`` stream), then ``rounds`` more keys from every stream of both; no key repeats.

    Each stream name must mean its own keys: streams that keep separate counters over one key (or hash the
    name into few bits) hand ``params`` and ``dropout`` the same key at the same count, and a ``make_rng``
    beside a ``"default"`` stream with its own counter draws the default stream's keys twice.
    """
    parent = impl.new_context(seed)
    labels: list[str] = []
    keys: list[Any] = []
    for i in range(before):
        keys.append(impl.make_rng(parent))
        labels.append(f"the context's make_rng #{i} (before the fork)")
    contexts = [("the context", parent), ("its fork", impl.fork(parent))]
    drawn: dict[tuple[int, str], int] = {}

    def draw(c: int, name: str) -> None:
        label, ctx = contexts[c]
        n = drawn.get((c, name), 0)
        drawn[(c, name)] = n + 1
        keys.append(_draw_stream(impl, ctx, name))
        labels.append(f"{label}'s {_label_stream(name)} #{n}")

    for c, name in schedule:
        draw(c, name)
    for _ in range(rounds):
        for c in range(len(contexts)):
            for name in (*STREAM_NAMES, _MAKE_RNG):
                draw(c, name)
    _assert_keys_distinct(
        impl,
        keys,
        labels,
        f"seed {seed}, {before} draw(s) before forking, {len(schedule)} scheduled draw(s) then {rounds} round(s)",
    )


@clause("rng.split")
@budget(0.3)
@given(seed=SEEDS, before=st.integers(0, 3), after=st.integers(1, 4))
def test_split_children_never_meet_each_other_or_the_parent(impl, seed, before, after):
    """``split(ctx, 4)``, mapped over with ``impl.jit(impl.vmap(...))``: each child draws, forks and draws
    from the fork and draws again; no key of one child equals a key of another, nor a key the parent drew
    before the split or draws after it.

    The children are the batch a lifted ``vmap`` receives (the rows of a ScanMLP's init): a split that
    broadcasts one context gives every row the same keys, and one that hands out the parent's own stream
    replays what the parent draws next.
    """
    n = VMAP_BATCH
    parent = impl.new_context(seed)
    past = [impl.make_rng(parent) for _ in range(before)]
    batch = impl.split(parent, n)
    future = [impl.make_rng(parent) for _ in range(after)]
    out = np.asarray(_mapped_body(impl)(batch))
    if out.shape[:2] != (n, 3):
        raise AssertionError(
            f"vmap over split(ctx, {n}) returned keys of shape {out.shape}, expected ({n}, 3, ...): the split "
            f"is not a batch of {n} contexts on a leading axis"
        )
    what = ("draw #0", "draw #0 of a fork", "draw #1")
    rows = [keys_to_array(impl, past), out.reshape(n * 3, -1), keys_to_array(impl, future)]
    labels = [f"the parent's draw #{i} before the split" for i in range(before)]
    labels += [f"child {i // 3}'s {what[i % 3]}" for i in range(n * 3)]
    labels += [f"the parent's draw #{i} after the split" for i in range(after)]
    _assert_rows_distinct(
        impl,
        np.concatenate([r for r in rows if r.size]),
        labels,
        f"seed {seed}, split into {n} after {before} parent draw(s)",
    )


@clause("rng.from-stream")
@budget()
@given(
    seed=SEEDS,
    name=st.sampled_from(STREAM_NAMES),
    before=st.integers(0, 3),
    after=st.integers(1, 4),
    rebuilt_draws=st.integers(1, 4),
)
def test_a_context_rebuilt_from_a_stream_replays_none_of_its_keys(
    impl, seed, name, before, after, rebuilt_draws
):
    """``from_stream(ctx, name)`` after ``before`` draws from that stream; then the rebuilt context and
    the original stream draw alternately. No key of the rebuilt context equals one the stream drew before
    the rebuild or draws after it.

    Both halves matter. A rebuild that keeps the stream's key and restarts its counter at 0 (flax 0.12.8's
    ``nnx.Rngs(rngs.default)``) hands out again the keys already used; one that copies key and counter
    hands out the keys the original is about to draw. Either way two "independent" consumers -- dropout
    masks, a re-initialised layer -- get the same randomness. A rebuild that forks the stream (spends one
    of its draws on the new context's key), or that shares the stream object, replays neither.
    """
    ctx = impl.new_context(seed)
    keys: list[Any] = []
    labels: list[str] = []
    for i in range(before):
        keys.append(impl.make_rng_stream(ctx, name))
        labels.append(f"stream {name!r} draw #{i} before the rebuild")
    rebuilt = impl.from_stream(ctx, name)
    for i in range(max(after, rebuilt_draws)):
        if i < rebuilt_draws:
            keys.append(impl.make_rng(rebuilt))
            labels.append(f"the rebuilt context's draw #{i}")
        if i < after:
            keys.append(impl.make_rng_stream(ctx, name))
            labels.append(f"stream {name!r} draw #{i} after the rebuild")
    _assert_keys_distinct(
        impl,
        keys,
        labels,
        f"seed {seed}, a context rebuilt from stream {name!r} after {before} draw(s) of it",
    )
