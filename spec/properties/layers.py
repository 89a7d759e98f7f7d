"""Properties of the seed's layers: the ``layers.*`` clauses of ``SPEC.md``.

Layers are built and called only through ``impl.layers`` (:class:`~nnx_conformance.spec.adapter.LayersAdapter`)
and observed only through partition: a layer's state is its paths, collections, shapes, dtypes and values.
BatchNorm's four Variables are found by the last component of their path -- ``scale``/``bias``
(``params``) and ``mean``/``var`` (``batch_stats``) -- the names the protocol gives them.

Shapes come from a tiny fixed set (feature sizes 2 and 3, batch 4; Dropout's rate test uses one 64 x 64
input) so the few compiled functions (the jitted apply, the lifted scan) are reused across examples.
Randomness at call time comes from a fresh context per call, made from a drawn integer seed, so eager and
transformed runs can be given *equal* contexts and must then agree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Path
from nnx_conformance.spec.clauses import clause
from nnx_conformance.spec.properties._helpers import budget, fmt_path, same_array

__all__ = [
    "BATCH",
    "DIMS",
    "KINDS",
    "batch_norm_variables",
    "inputs",
    "make_layer",
    "signature",
    "signature_of",
    "test_batch_norm_in_evaluation_normalises_with_running_statistics_and_keeps_them",
    "test_batch_norm_in_training_moves_running_statistics_towards_batch_statistics",
    "test_calls_keep_state_paths_collections_shapes_and_dtypes",
    "test_dropout_is_the_identity_when_not_training",
    "test_dropout_zeroes_a_fraction_near_its_rate_when_training",
    "test_equal_definitions_trace_the_jitted_apply_once",
    "test_jit_apply_equals_eager_apply",
    "test_scan_over_the_stacked_state_equals_a_loop_over_the_layers",
    "test_vmap_init_stacks_separate_initialisations",
]

BATCH = 4
DIMS = (2, 3)
KINDS = ("linear", "batch_norm", "dropout", "block")
JIT_DIM = 3
"""One feature size for the compiled properties (jitted apply, lifted scan): compiles are per (layer kind,
mode) only."""
DROPOUT_RATE = 0.5
"""Rate of the Dropout built by :func:`make_layer` (the rate test draws its own)."""

SEEDS = st.integers(0, 2**16)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
"""For float32 results computed two ways (eager vs jit, vmap vs separate, scan vs loop)."""


# ---------------------------------------------------------------------------------------------------------
# Helpers (shared with the meta-tests)
# ---------------------------------------------------------------------------------------------------------


def make_layer(impl: Any, kind: str, din: int, dout: int, ctx: Any) -> Any:
    """A layer of ``kind`` built through ``impl.layers`` (BatchNorm and Dropout keep ``din`` features)."""
    layers = impl.layers
    if kind == "linear":
        return layers.linear(din, dout, ctx)
    if kind == "batch_norm":
        return layers.batch_norm(din, ctx)
    if kind == "dropout":
        return layers.dropout(DROPOUT_RATE, ctx)
    if kind == "block":
        return layers.block(din, dout, ctx)
    raise ValueError(f"unknown layer kind {kind!r}")


def inputs(seed: int, din: int, *, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """A ``(BATCH, din)`` float32 input whose per-feature batch mean and (biased) std are exactly ``mean``
    and ``std`` (up to float32 rounding), so batch statistics are known without trusting the layer."""
    z = np.random.default_rng(seed).standard_normal((BATCH, din))
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    return (mean + std * z).astype(np.float32)


def signature(impl: Any, module: Any) -> list[tuple[Path, str, tuple[int, ...], str]]:
    """``(path, collection, shape, dtype)`` of every entry of the module's state, in state order."""
    state, _ = impl.partition(module)
    out = []
    for path, var in impl.state_items(state):
        value = np.asarray(impl.variable_value(var))
        out.append((tuple(path), impl.variable_collection(var), value.shape, str(value.dtype)))
    return out


def _values(impl: Any, state: Any) -> dict[Path, np.ndarray]:
    return {tuple(p): np.asarray(impl.variable_value(v)) for p, v in impl.state_items(state)}


def batch_norm_variables(impl: Any, bn: Any) -> dict[str, np.ndarray]:
    """BatchNorm's ``scale``, ``bias``, ``mean`` and ``var`` values, found by their path's last name."""
    state, _ = impl.partition(bn)
    found: dict[str, np.ndarray] = {}
    for path, var in impl.state_items(state):
        if path and path[-1] in ("scale", "bias", "mean", "var"):
            found[path[-1]] = np.asarray(impl.variable_value(var))
    missing = {"scale", "bias", "mean", "var"} - set(found)
    assert not missing, (
        f"BatchNorm state has no entry named {sorted(missing)} (paths: "
        f"{[tuple(p) for p, _ in impl.state_items(state)]}); the protocol names its Variables scale/bias "
        "(params) and mean/var (batch_stats)"
    )
    return found


def _assert_close(got: Any, want: Any, what: str, **tolerance: float) -> None:
    g, w = np.asarray(got), np.asarray(want)
    assert g.shape == w.shape, f"{what}: shape {g.shape}, expected {w.shape}"
    tol = {**TOLERANCE, **tolerance}
    if not np.allclose(g, w, rtol=tol["rtol"], atol=tol["atol"]):
        bad = np.abs(g.astype(np.float64) - w) - tol["rtol"] * np.abs(w)
        i = np.unravel_index(int(np.argmax(bad)), g.shape)
        raise AssertionError(
            f"{what}: element {tuple(int(k) for k in i)} is {g[i]!r}, expected {w[i]!r} "
            f"(rtol={tol['rtol']}, atol={tol['atol']})\n  got      {g.tolist()}\n  expected {w.tolist()}"
        )


def _assert_states_close(impl: Any, got: Any, want: Any, what: str) -> None:
    g, w = _values(impl, got), _values(impl, want)
    assert list(g) == list(w), f"{what}: paths {list(g)}, expected {list(w)}"
    for path in w:
        _assert_close(g[path], w[path], f"{what}, at {fmt_path(path)}")


# ---------------------------------------------------------------------------------------------------------
# layers.state-stability
# ---------------------------------------------------------------------------------------------------------


@clause("layers.state-stability")
@budget(0.3)
@given(
    kind=st.sampled_from(KINDS),
    din=st.sampled_from(DIMS),
    dout=st.sampled_from(DIMS),
    modes=st.lists(st.booleans(), min_size=1, max_size=3),
    seed=SEEDS,
)
def test_calls_keep_state_paths_collections_shapes_and_dtypes(impl, kind, din, dout, modes, seed):
    """After each call, in training or evaluation mode, the layer's state has exactly the paths,
    collections, shapes and dtypes it had when built: a state that drifts (the seed's BatchNorm stats turn
    from ``(din,)`` into ``(1, din)``) breaks scan carries, jit caches and checkpoints."""
    layer = make_layer(impl, kind, din, dout, impl.new_context(seed))
    before = signature(impl, layer)
    x = inputs(seed, din, mean=1.0, std=2.0)
    for i, train in enumerate(modes):
        impl.layers.call(layer, x, train=train, ctx=impl.new_context(seed + 1 + i))
        after = signature(impl, layer)
        mode = "training" if train else "evaluation"
        where = f"{kind}({din}, {dout}) after call #{i} (modes {modes}), in {mode} mode"
        assert [e[0] for e in after] == [e[0] for e in before], (
            f"{where}: state paths became {[e[0] for e in after]}, were {[e[0] for e in before]}"
        )
        for (path, *now), (_, *was) in zip(after, before):
            assert now == was, (
                f"{where}: {fmt_path(path)} became (collection, shape, dtype) {tuple(now)}, was {tuple(was)}"
            )


# ---------------------------------------------------------------------------------------------------------
# layers.semantics
# ---------------------------------------------------------------------------------------------------------

DROPOUT_SHAPE = (64, 64)
RATES = (0.1, 0.25, 0.5, 0.75)
DROPOUT_ALPHA = 1e-9
"""False-rejection rate of one binomial check; the bound below is ~6.1 standard deviations."""
_Z_DROPOUT = statistics.NormalDist().inv_cdf(1 - DROPOUT_ALPHA / 2)


@clause("layers.semantics")
@budget(0.3)
@given(rate=st.sampled_from(RATES), seed=SEEDS)
def test_dropout_is_the_identity_when_not_training(impl, rate, seed):
    """``dropout(x, train=False)`` returns ``x`` unchanged, bit for bit."""
    layer = impl.layers.dropout(rate, impl.new_context(seed))
    x = np.random.default_rng(seed).standard_normal(DROPOUT_SHAPE).astype(np.float32)
    y = impl.layers.call(layer, x, train=False, ctx=impl.new_context(seed + 1))
    assert same_array(y, x), (
        f"Dropout({rate}) in evaluation mode changed its input: {int(np.sum(np.asarray(y) != x))} of "
        f"{x.size} elements differ (first: {np.asarray(y).ravel()[:4].tolist()} vs {x.ravel()[:4].tolist()})"
    )


@clause("layers.semantics")
@budget(0.3)
@given(rate=st.sampled_from(RATES), seed=SEEDS)
def test_dropout_zeroes_a_fraction_near_its_rate_when_training(impl, rate, seed):
    """On an all-ones ``64 x 64`` input, the number of zeros in training mode is within ~6.1 binomial
    standard deviations of ``rate * 4096`` (a false rejection has probability ``1e-9``), and the kept
    elements are not zero."""
    layer = impl.layers.dropout(rate, impl.new_context(seed))
    x = np.ones(DROPOUT_SHAPE, np.float32)
    y = np.asarray(impl.layers.call(layer, x, train=True, ctx=impl.new_context(seed + 1)))
    assert y.shape == x.shape, f"Dropout({rate}) returned shape {y.shape} for input {x.shape}"
    n = x.size
    zeros = int(np.sum(y == 0))
    sd = math.sqrt(n * rate * (1 - rate))
    z = (zeros - n * rate) / sd
    assert abs(z) <= _Z_DROPOUT, (
        f"Dropout({rate}) in training mode zeroed {zeros} of {n} elements ({zeros / n:.4f}); expected about "
        f"{n * rate:.0f} (z = {z:.1f}, bound {_Z_DROPOUT:.1f}), call context seed {seed + 1}"
    )


BN_EPS = 1e-5
"""The seed's epsilon. The tolerance below admits any epsilon up to ~1e-3: the spec does not fix it."""


@clause("layers.semantics")
@budget(0.3)
@given(din=st.sampled_from(DIMS), steps=st.integers(0, 2), seed=SEEDS)
def test_batch_norm_in_evaluation_normalises_with_running_statistics_and_keeps_them(impl, din, steps, seed):
    """After ``steps`` training calls (so the running statistics are not the initial ones), an evaluation
    call returns ``(x - mean) / sqrt(var + eps) * scale + bias`` computed from the state's own ``mean``,
    ``var``, ``scale`` and ``bias``, and leaves every Variable of the state bit for bit unchanged."""
    bn = impl.layers.batch_norm(din, impl.new_context(seed))
    for k in range(steps):
        impl.layers.call(bn, inputs(seed + k, din, mean=2.0, std=3.0), train=True, ctx=impl.new_context(k))
    v = batch_norm_variables(impl, bn)
    before = _values(impl, impl.partition(bn)[0])
    x = inputs(seed + 100, din, mean=-1.0, std=2.0)
    y = impl.layers.call(bn, x, train=False, ctx=impl.new_context(seed))
    flat = {name: value.reshape(-1) for name, value in v.items()}
    note(f"running statistics used: { ({k: a.tolist() for k, a in flat.items()}) }")
    want = (x - flat["mean"]) / np.sqrt(flat["var"] + BN_EPS) * flat["scale"] + flat["bias"]
    _assert_close(
        y, want, f"BatchNorm({din}) in evaluation mode after {steps} training call(s)", rtol=1e-3, atol=1e-4
    )
    after = _values(impl, impl.partition(bn)[0])
    for path, old in before.items():
        assert path in after and same_array(after[path], old), (
            f"BatchNorm({din}) in evaluation mode changed {fmt_path(path)} from {old.tolist()} to "
            f"{after[path].tolist() if path in after else 'nothing (the entry is gone)'}"
        )


@clause("layers.semantics")
@budget(0.3)
@given(din=st.sampled_from(DIMS), seed=SEEDS)
def test_batch_norm_in_training_moves_running_statistics_towards_batch_statistics(impl, din, seed):
    """A training call on a batch with per-feature mean 3 and variance 4 (biased; 16/3 unbiased) moves the
    running mean and variance of every feature strictly towards them, without overshooting: the new value
    is ``old + t * (batch - old)`` with ``0 < t <= 1`` (for the variance, with either estimator)."""
    bn = impl.layers.batch_norm(din, impl.new_context(seed))
    old = {k: a.reshape(-1).astype(np.float64) for k, a in batch_norm_variables(impl, bn).items()}
    x = inputs(seed, din, mean=3.0, std=2.0)
    impl.layers.call(bn, x, train=True, ctx=impl.new_context(seed))
    new = {k: a.reshape(-1).astype(np.float64) for k, a in batch_norm_variables(impl, bn).items()}
    xd = x.astype(np.float64)
    targets = {"mean": [xd.mean(axis=0)], "var": [xd.var(axis=0), xd.var(axis=0, ddof=1)]}
    for name, candidates in targets.items():
        for f in range(din):
            steps = [
                (new[name][f] - old[name][f]) / (c[f] - old[name][f])
                for c in candidates
                if abs(c[f] - old[name][f]) > 1e-3
            ]
            if not steps:
                continue
            assert any(0 < t <= 1 + 1e-4 for t in steps), (
                f"BatchNorm({din}) training call: running {name}[{f}] went from {old[name][f]:.6g} to "
                f"{new[name][f]:.6g}; the batch {name} is "
                f"{' or '.join(f'{c[f]:.6g}' for c in candidates)} (fraction of the way moved: "
                f"{', '.join(f'{t:.4g}' for t in steps)}; must be in (0, 1])"
            )


# ---------------------------------------------------------------------------------------------------------
# layers.lifted
# ---------------------------------------------------------------------------------------------------------

LIFTED_KINDS = ("linear", "batch_norm", "block")
"""Layers with state (Dropout has none to stack)."""
LIFTED_K = 3
"""Layers per stack (one size: eager batched ops and the scan compile once per layer shape)."""


def _vmap_init(impl: Any, kind: str, d: int, seeds: np.ndarray) -> tuple[Any, Any]:
    """``impl.vmap`` of "build a layer from a context made from this seed, partition it": the stacked
    state and the (single-layer) definition captured from the trace, as the seed's ScanMLP does."""
    defs: list[Any] = []

    def init(seed: Any) -> Any:
        state, graphdef = impl.partition(make_layer(impl, kind, d, d, impl.new_context(seed)))
        defs.append(graphdef)
        return state

    stacked = impl.vmap(init)(jnp.asarray(seeds, jnp.int32))
    assert defs, "the vmapped init function was never traced"
    return stacked, defs[-1]


@clause("layers.lifted")
@budget(0.2)
@given(kind=st.sampled_from(LIFTED_KINDS), d=st.sampled_from(DIMS), base=SEEDS)
def test_vmap_init_stacks_separate_initialisations(impl, kind, d, base):
    """Initialising under ``vmap`` over three seeds gives, at every path, the states of separate eager
    initialisations from the same seeds, stacked along a new leading axis."""
    k = LIFTED_K
    seeds = np.arange(base, base + k)
    stacked, _ = _vmap_init(impl, kind, d, seeds)
    separate = [impl.partition(make_layer(impl, kind, d, d, impl.new_context(int(s))))[0] for s in seeds]
    got = {tuple(p): v for p, v in impl.state_items(stacked)}
    for i, state in enumerate(separate):
        want = impl.state_items(state)
        assert list(got) == [tuple(p) for p, _ in want], (
            f"{kind}({d}) under vmap has paths {list(got)}; a separate init has {[tuple(p) for p, _ in want]}"
        )
        for path, var in want:
            path = tuple(path)
            g, w = got[path], var
            gc, wc = impl.variable_collection(g), impl.variable_collection(w)
            assert gc == wc, (
                f"{kind}({d}) under vmap: {fmt_path(path)} has collection {gc!r}, expected {wc!r}"
            )
            value, one = np.asarray(impl.variable_value(g)), np.asarray(impl.variable_value(w))
            assert value.shape == (k, *one.shape), (
                f"{kind}({d}) under vmap over {k} seeds: {fmt_path(path)} has shape {value.shape}, expected "
                f"{(k, *one.shape)}"
            )
            _assert_close(
                value[i], one, f"{kind}({d}): row {i} of {fmt_path(path)} vs the init from seed {seeds[i]}"
            )


def _scan_apply(impl: Any, graphdef: Any, train: bool, x: Any, seeds: Any, stacked: Any) -> tuple[Any, Any]:
    def step(carry: Any, xs: tuple[Any, Any]) -> tuple[Any, Any]:
        seed, state = xs
        layer = impl.merge(graphdef, state)
        y = impl.layers.call(layer, carry, train=train, ctx=impl.new_context(seed))
        new_state, _ = impl.partition(layer)
        return y, new_state

    return jax.lax.scan(step, x, (seeds, stacked))


_scans: dict[Any, Callable[..., Any]] = {}


def _scan_fn(impl: Any, graphdef: Any, train: bool) -> Callable[..., Any]:
    """A jitted scan per (adapter, definition, mode) when the definition is hashable, so examples that
    meet an equal definition reuse the compiled loop; otherwise a plain (eager) scan."""
    try:
        key = (id(impl), impl, graphdef, train)
        hash(key)
    except TypeError:
        return lambda *args: _scan_apply(impl, graphdef, train, *args)
    fn = _scans.get(key)
    if fn is None:
        fn = _scans[key] = jax.jit(lambda *args: _scan_apply(impl, graphdef, train, *args))
    return fn


@clause("layers.lifted")
@budget(0.1)
@given(train=st.booleans(), base=SEEDS)
def test_scan_over_the_stacked_state_equals_a_loop_over_the_layers(impl, train, base):
    """``jax.lax.scan`` of merge -> call -> partition over a vmap-initialised stack of 3 Blocks gives the
    output, and the new per-layer states, of a Python loop over the unstacked layers (each merged from
    its row of the stack and called with an equal context).

    Block only: it holds the other three layers (parameters, batch statistics updated in training, a
    random mask), and every extra layer kind here costs compiles, not coverage.
    """
    kind, k, d = "block", LIFTED_K, JIT_DIM
    stacked, graphdef = _vmap_init(impl, kind, d, np.arange(base, base + k))
    x = inputs(base, d, mean=0.5, std=1.5)
    call_seeds = np.arange(base + 1000, base + 1000 + k)
    y_scan, states_scan = _scan_fn(impl, graphdef, train)(x, jnp.asarray(call_seeds, jnp.int32), stacked)
    y = jnp.asarray(x)
    for i in range(k):
        row = jax.tree_util.tree_map(lambda a, i=i: a[i], stacked)
        layer = impl.merge(graphdef, row)
        y = impl.layers.call(layer, y, train=train, ctx=impl.new_context(int(call_seeds[i])))
        state_i, _ = impl.partition(layer)
        scanned_i = jax.tree_util.tree_map(lambda a, i=i: a[i], states_scan)
        _assert_states_close(
            impl, scanned_i, state_i, f"{kind}({d}), train={train}: state of layer {i}, scan vs loop"
        )
    _assert_close(y_scan, y, f"{kind}({d}), train={train}: output of the scan vs the loop over {k} layers")


# ---------------------------------------------------------------------------------------------------------
# layers.jit-apply
# ---------------------------------------------------------------------------------------------------------

TRACES: dict[str, int] = {}
"""Traces of :func:`_apply` per adapter name (incremented while tracing, i.e. once per compile)."""


def _apply(impl: Any, graphdef: Any, train: bool, state: Any, x: Any, seed: Any) -> tuple[Any, Any]:
    """A definition's apply: merge, call with a context made from ``seed``, partition."""
    layer = impl.merge(graphdef, state)
    y = impl.layers.call(layer, x, train=train, ctx=impl.new_context(seed))
    new_state, _ = impl.partition(layer)
    return y, new_state


def _counted_apply(impl: Any, graphdef: Any, train: bool, state: Any, x: Any, seed: Any) -> tuple[Any, Any]:
    """:func:`_apply`, counting how often ``jax.jit`` traces it (its body runs only while tracing)."""
    TRACES[impl.name] = TRACES.get(impl.name, 0) + 1
    return _apply(impl, graphdef, train, state, x, seed)


_jit_apply = jax.jit(_counted_apply, static_argnums=(0, 1, 2))


def _jitted(impl: Any, graphdef: Any, train: bool, state: Any, x: Any, seed: int) -> tuple[Any, Any]:
    try:
        hash(graphdef)
    except TypeError as err:
        raise AssertionError(
            f"{impl.name}: the layer's definition is not hashable ({err}), so it cannot be a jax.jit static "
            "argument"
        ) from err
    return _jit_apply(impl, graphdef, train, state, x, jnp.asarray(seed, jnp.int32))


def _copy(state: Any) -> Any:
    """New Variables holding the same values (eager apply may mutate the Variables it merges)."""
    return jax.tree_util.tree_map(lambda a: a, state)


@clause("layers.jit-apply")
@budget(0.3)
@given(kind=st.sampled_from(KINDS), train=st.booleans(), seed=SEEDS)
def test_jit_apply_equals_eager_apply(impl, kind, train, seed):
    """``jax.jit`` of merge -> call -> partition (definition static) returns the eager output and the
    eager new state, within float32 tolerance, for every layer in both modes."""
    d = JIT_DIM
    layer = make_layer(impl, kind, d, d, impl.new_context(seed))
    state, graphdef = impl.partition(layer)
    x = inputs(seed, d, mean=1.0, std=2.0)
    y_jit, state_jit = _jitted(impl, graphdef, train, _copy(state), x, seed + 1)
    y_eager, state_eager = _apply(impl, graphdef, train, _copy(state), jnp.asarray(x), seed + 1)
    what = f"{kind}({d}), train={train}"
    _assert_close(y_jit, y_eager, f"{what}: jitted apply output vs eager")
    _assert_states_close(impl, state_jit, state_eager, f"{what}: jitted apply's new state vs eager")


@clause("layers.jit-apply")
@budget(0.3)
@given(
    kind=st.sampled_from(KINDS),
    train=st.booleans(),
    seeds=st.lists(SEEDS, min_size=3, max_size=3, unique=True),
)
def test_equal_definitions_trace_the_jitted_apply_once(impl, kind, train, seeds):
    """Two layers built separately (equal definitions, different values) and the state the first call
    returns all go through the jitted apply with at most one trace: equal definitions hit the cache, and
    an apply's output state fits its input's signature."""
    d = JIT_DIM
    a = make_layer(impl, kind, d, d, impl.new_context(seeds[0]))
    b = make_layer(impl, kind, d, d, impl.new_context(seeds[1]))
    (state_a, def_a), (state_b, def_b) = impl.partition(a), impl.partition(b)
    x = inputs(seeds[2], d)
    _, out_state = _jitted(impl, def_a, train, state_a, x, seeds[2])
    first = TRACES.get(impl.name, 0)
    calls: Sequence[tuple[str, Any, Any]] = (
        ("a second layer with an equal definition", def_b, state_b),
        ("the state returned by the first call", def_a, out_state),
    )
    for what, graphdef, state in calls:
        _jitted(impl, graphdef, train, state, x, seeds[2])
        traces = TRACES.get(impl.name, 0) - first
        assert traces == 0, (
            f"{kind}({d}), train={train}: calling the jitted apply with {what} traced it again "
            f"(definitions equal: {graphdef == def_a}; signatures {signature_of(impl, state)} vs "
            f"{signature_of(impl, state_a)})"
        )


def signature_of(impl: Any, state: Any) -> list[tuple[Path, tuple[int, ...], str]]:
    """``(path, shape, dtype)`` of a state's entries, for messages."""
    out = []
    for path, var in impl.state_items(state):
        value = np.asarray(impl.variable_value(var))
        out.append((tuple(path), value.shape, str(value.dtype)))
    return out
