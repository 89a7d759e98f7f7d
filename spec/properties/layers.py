"""Properties of the seed's layers: the ``layers.*`` clauses of ``SPEC.md``.

Layers are built and called only through ``impl.layers`` (:class:`~nnx_conformance.spec.adapter.LayersAdapter`)
and observed only through partition: a layer's state is its paths, collections, shapes, dtypes and values.
BatchNorm's four Variables are found by the last component of their path -- ``scale``/``bias``
(``params``) and ``mean``/``var`` (``batch_stats``) -- the names the protocol gives them.

Shapes come from a tiny fixed set (feature sizes 2 and 3, batch 4; Dropout's rate test uses one 64 x 64
input; the implementation's own ScanMLP one width and batch of 16 and 3 stacked Blocks) so the few
compiled functions (the jitted apply, the lifted scan, the ScanMLP's scan) are reused across examples.
Randomness at call time comes from a fresh context per call, made from a drawn integer seed, so eager and
transformed runs can be given *equal* contexts and must then agree.

Values are set through the protocol alone (:func:`with_values`): a layer is partitioned, each entry's value
replaced by unflattening a one-entry state (states are pytrees, ``state.pytree``), and the state merged
into a new layer. That is how the exact checks get non-trivial scales, biases and running statistics, and
how the ScanMLP properties make a layer's output independent of its dropout mask (a BatchNorm ``scale`` of
zero) or equal in every layer (rows copied from the first).
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
    "test_batch_norm_in_training_normalises_with_batch_statistics_and_updates_by_momentum",
    "test_calls_keep_state_paths_collections_shapes_and_dtypes",
    "test_dropout_is_the_identity_when_not_training",
    "test_dropout_keeps_each_entry_scaled_by_one_over_one_minus_rate_or_zeroes_it",
    "test_dropout_zeroes_a_fraction_near_its_rate_when_training",
    "test_equal_definitions_trace_the_jitted_apply_once",
    "test_jit_apply_equals_eager_apply",
    "test_scan_mlp_draws_a_different_dropout_mask_in_every_layer",
    "test_scan_mlp_in_evaluation_equals_a_loop_over_its_blocks_and_changes_nothing",
    "test_scan_mlp_in_training_carries_every_layer_s_statistics_out_of_the_scan",
    "test_scan_mlp_stacks_distinct_blocks_and_keeps_its_signature",
    "test_scan_over_the_stacked_state_equals_a_loop_over_the_layers",
    "test_vmap_init_stacks_separate_initialisations",
    "with_values",
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
"""For float32 results computed two ways (eager vs jit, vmap vs separate, one layer's scan vs loop);
outputs that went through a stack of Blocks take :data:`SCAN_TOLERANCE`."""


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


def _assert_states_close(impl: Any, got: Any, want: Any, what: str, **tolerance: float) -> None:
    g, w = _values(impl, got), _values(impl, want)
    assert list(g) == list(w), f"{what}: paths {list(g)}, expected {list(w)}"
    for path in w:
        _assert_close(g[path], w[path], f"{what}, at {fmt_path(path)}", **tolerance)


def _with_value(impl: Any, path: Path, var: Any, value: Any) -> Any:
    """A new Variable like ``var`` (collection, sharding, type) holding ``value``: a one-entry state is
    unflattened with the new leaf, so nothing but the protocol and ``state.pytree`` is assumed."""
    leaves, treedef = jax.tree_util.tree_flatten(impl.make_state([(path, var)]))
    assert len(leaves) == 1, f"a one-entry state at {fmt_path(path)} flattens to {len(leaves)} leaves"
    ((_, new),) = impl.state_items(jax.tree_util.tree_unflatten(treedef, [jnp.asarray(value)]))
    return new


def with_values(impl: Any, module: Any, values: Callable[[Path, str, np.ndarray], Any]) -> Any:
    """A new module merged from ``module``'s definition and its state with each entry's value replaced by
    ``values(path, collection, old_value)`` (``None`` keeps the old value)."""
    state, graphdef = impl.partition(module)
    items = []
    for path, var in impl.state_items(state):
        path = tuple(path)
        value = values(path, impl.variable_collection(var), np.asarray(impl.variable_value(var)))
        items.append((path, var if value is None else _with_value(impl, path, var, value)))
    return impl.merge(graphdef, impl.make_state(items))


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


DROPOUT_SCALE_SHAPE = (16, 16)


@clause("layers.semantics")
@budget(0.2)
@given(rate=st.sampled_from(RATES), seed=SEEDS)
def test_dropout_keeps_each_entry_scaled_by_one_over_one_minus_rate_or_zeroes_it(impl, rate, seed):
    """In training mode, every entry of a ``16 x 16`` input with no zero entry comes out either zero or
    multiplied by ``1 / (1 - rate)`` (float32 rounding: ``rtol=1e-6``), so the output's expectation is
    the input; some entries are kept and some are zeroed."""
    layer = impl.layers.dropout(rate, impl.new_context(seed))
    rng = np.random.default_rng(seed)
    x = (rng.choice([-1.0, 1.0], DROPOUT_SCALE_SHAPE) * rng.uniform(0.5, 2.0, DROPOUT_SCALE_SHAPE)).astype(
        np.float32
    )
    y = np.asarray(impl.layers.call(layer, x, train=True, ctx=impl.new_context(seed + 1)))
    assert y.shape == x.shape, f"Dropout({rate}) returned shape {y.shape} for input {x.shape}"
    kept = y != 0
    scaled = x.astype(np.float64) / (1.0 - rate)
    wrong = kept & ~np.isclose(y, scaled, rtol=1e-6, atol=0.0)
    if wrong.any():
        i = tuple(int(k) for k in np.argwhere(wrong)[0])
        raise AssertionError(
            f"Dropout({rate}) in training mode: {int(wrong.sum())} of {int(kept.sum())} kept entries are not "
            f"the input times 1 / (1 - {rate}) = {1 / (1 - rate):.6g}; at {i}: input {x[i]!r}, output "
            f"{y[i]!r}, expected {scaled[i]:.7g} (ratio {y[i] / x[i]:.6g}), call context seed {seed + 1}"
        )
    # With 256 entries, all kept (or all zeroed) has probability at most 0.9**256 (0.75**256 or below).
    assert kept.any() and not kept.all(), (
        f"Dropout({rate}) in training mode {'kept' if kept.all() else 'zeroed'} all {x.size} entries "
        f"(call context seed {seed + 1})"
    )


BN_EPS = 1e-5
"""The seed's epsilon. The tolerance below admits any epsilon up to ~1e-3: the spec does not fix it."""
MOMENTA = (0.5, 0.9, 0.95, 0.99)
"""BatchNorm momenta passed through the protocol (0.95: the seed's ``mu``); at 0.5 PyTorch's weighting
coincides with the seed's, the others tell them apart."""
STATS_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
"""For running statistics computed by the layer in float32 and here in float64 (on batch statistics of
order 1 to 10): the weighting and variance conventions the spec excludes are off by 1e-3 or more."""


def _random_batch_norm_values(seed: int) -> Callable[[Path, str, np.ndarray], Any]:
    """New values for BatchNorm's entries: scale of either sign and away from zero, any bias and running
    mean, a running variance in ``[0.5, 3)`` (so no formula is satisfied by ones and zeros by accident)."""
    rng = np.random.default_rng(seed)

    def values(path: Path, collection: str, old: np.ndarray) -> Any:
        name = path[-1] if path else ""
        if name == "scale":
            return (rng.choice([-1.0, 1.0], old.shape) * rng.uniform(0.5, 2.0, old.shape)).astype(old.dtype)
        if name in ("bias", "mean"):
            return rng.normal(0.0, 1.0, old.shape).astype(old.dtype)
        if name == "var":
            return rng.uniform(0.5, 3.0, old.shape).astype(old.dtype)
        return None

    return values


@clause("layers.semantics")
@budget(0.3)
@given(din=st.sampled_from(DIMS), steps=st.integers(0, 2), seed=SEEDS)
def test_batch_norm_in_evaluation_normalises_with_running_statistics_and_keeps_them(impl, din, steps, seed):
    """Given random ``scale``, ``bias`` and running statistics, then ``steps`` training calls, an
    evaluation call returns ``(x - mean) / sqrt(var + eps) * scale + bias`` computed from the state's own
    ``mean``, ``var``, ``scale`` and ``bias``, and leaves every Variable of the state bit for bit
    unchanged."""
    bn = with_values(
        impl, impl.layers.batch_norm(din, impl.new_context(seed)), _random_batch_norm_values(seed)
    )
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
@given(din=st.sampled_from(DIMS), momentum=st.sampled_from(MOMENTA), seed=SEEDS)
def test_batch_norm_in_training_normalises_with_batch_statistics_and_updates_by_momentum(
    impl, din, momentum, seed
):
    """A BatchNorm built with ``momentum`` (and given random ``scale``, ``bias`` and running statistics),
    called in training on a batch with per-feature mean 3 and biased variance 4, returns
    ``(x - 3) / sqrt(4 + eps) * scale + bias``, sets each running statistic to
    ``momentum * old + (1 - momentum) * batch`` with the *biased* batch variance, and leaves ``scale``
    and ``bias`` unchanged."""
    built = impl.layers.batch_norm(din, impl.new_context(seed), momentum=momentum)
    bn = with_values(impl, built, _random_batch_norm_values(seed))
    old = {k: a.reshape(-1).astype(np.float64) for k, a in batch_norm_variables(impl, bn).items()}
    x = inputs(seed, din, mean=3.0, std=2.0)
    y = impl.layers.call(bn, x, train=True, ctx=impl.new_context(seed))
    new = {k: a.reshape(-1).astype(np.float64) for k, a in batch_norm_variables(impl, bn).items()}
    xd = x.astype(np.float64)
    batch = {"mean": xd.mean(axis=0), "var": xd.var(axis=0)}
    what = f"BatchNorm({din}, momentum={momentum}) training call"
    want_y = (xd - batch["mean"]) / np.sqrt(batch["var"] + BN_EPS) * old["scale"] + old["bias"]
    _assert_close(y, want_y, f"{what}: output (normalised with the batch statistics)", rtol=1e-3, atol=1e-4)
    for name in ("mean", "var"):
        want = momentum * old[name] + (1 - momentum) * batch[name]
        pytorch = (1 - momentum) * old[name] + momentum * batch[name]
        unbiased = momentum * old[name] + (1 - momentum) * xd.var(axis=0, ddof=1)
        hint = (
            "; that is PyTorch's weighting, (1 - momentum) * old + momentum * batch"
            if np.allclose(new[name], pytorch, rtol=1e-4) and momentum != 0.5
            else "; that is the unbiased (ddof=1) batch variance"
            if name == "var" and np.allclose(new[name], unbiased, rtol=1e-4)
            else ""
        )
        try:
            _assert_close(new[name], want, f"{what}: running {name}", **STATS_TOLERANCE)
        except AssertionError as err:
            raise AssertionError(
                f"{err}\n  (old {old[name].tolist()}, batch {batch[name].tolist()}: expected "
                f"momentum * old + (1 - momentum) * batch{hint})"
            ) from None
    for name in ("scale", "bias"):
        _assert_close(new[name], old[name], f"{what}: {name} (a parameter)", rtol=0.0, atol=0.0)


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
    _assert_close(
        y_scan, y, f"{kind}({d}), train={train}: output of the scan vs the loop over {k} layers", **SCAN_TOLERANCE
    )


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


# ---------------------------------------------------------------------------------------------------------
# layers.scan-mlp
# ---------------------------------------------------------------------------------------------------------

SCAN_HIDDEN = 16
SCAN_BATCH = 16
"""One width and batch for the ScanMLP (compiles per stack length and mode only). 16 x 16 dropout masks
are big enough that two independent ones agree on every column's count of kept entries with probability
below 1e-9 (see :func:`test_scan_mlp_draws_a_different_dropout_mask_in_every_layer`)."""
SCAN_N_LAYERS = 4
"""``n_layers`` of every ScanMLP built here: three stacked Blocks (a second stack length would double the
clause's compile time, which is most of its cost)."""
STACK, HEAD = ("layers",), ("linear",)
"""Where the protocol puts the stacked Blocks and the final Linear of a ScanMLP."""
SCAN_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
"""Scan vs loop through a stack of Blocks (``layers.lifted``, ``layers.scan-mlp``): float32 sums ordered
differently, then amplified by every training-mode BatchNorm, whose batch variance ``mean(x**2) -
mean(x)**2`` cancels (flax 0.11.2 on jax 0.7.1 differs by 5e-5 relative after three Blocks of width 3).

Every check of the clause is exact (or, for the dropout masks, wrong with probability below 1e-9), so
the bugs it targets fail on every example: each property takes 5% of the budget, and the structural one
draws its seed from 16 values, since shrinking an implementation that recompiles its scan on every call
(the seed's) costs seconds per step."""


def _scan_inputs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.5, 1.5, (SCAN_BATCH, SCAN_HIDDEN)).astype(np.float32)


def _reference(
    impl: Any, make: Callable[[Any], Any]
) -> tuple[Any, dict[Path, tuple[str, tuple[int, ...], str]]]:
    """The definition and ``{path: (collection, shape, dtype)}`` of one layer built by ``make(ctx)``."""
    module = make(impl.new_context(0))
    _, graphdef = impl.partition(module)
    return graphdef, {path: (c, shape, dtype) for path, c, shape, dtype in signature(impl, module)}


def _parts(impl: Any, state: Any) -> tuple[list[tuple[Path, Any]], list[tuple[Path, Any]]]:
    """The ScanMLP state's stacked-Block entries and final-Linear entries, paths relative to each."""
    stack: list[tuple[Path, Any]] = []
    head: list[tuple[Path, Any]] = []
    other: list[tuple[Path, Any]] = []
    for path, var in impl.state_items(state):
        path = tuple(path)
        part = stack if path[:1] == STACK else head if path[:1] == HEAD else other
        part.append((path[1:], var))
    assert not other, (
        f"ScanMLP state has entries outside {STACK[0]!r} (the stacked Blocks) and {HEAD[0]!r} (the final "
        f"Linear): {[p for p, _ in other]}"
    )
    return stack, head


def _row(impl: Any, stack: list[tuple[Path, Any]], i: int) -> Any:
    """Layer ``i`` of the stack as a state of one Block."""
    return impl.make_state(
        [(p, _with_value(impl, p, v, np.asarray(impl.variable_value(v))[i])) for p, v in stack]
    )


def _loop(
    impl: Any, mlp: Any, x: Any, *, train: bool, seed: int
) -> tuple[np.ndarray, list[dict[Path, np.ndarray]]]:
    """What the ScanMLP's call should give: each stacked layer merged into a Block of its own (the
    definition of ``impl.layers.block``) and called in turn (with a context from ``seed + i``), then the
    final Linear. Returns the output and every layer's new state values."""
    state, _ = impl.partition(mlp)
    stack, head = _parts(impl, state)
    n = int(np.shape(impl.variable_value(stack[0][1]))[0])
    block_def, _ = _reference(impl, lambda ctx: impl.layers.block(SCAN_HIDDEN, SCAN_HIDDEN, ctx))
    linear_def, _ = _reference(impl, lambda ctx: impl.layers.linear(SCAN_HIDDEN, SCAN_HIDDEN, ctx))
    rows = [_row(impl, stack, i) for i in range(n)]
    linear = impl.merge(
        linear_def, impl.make_state([(p, _with_value(impl, p, v, impl.variable_value(v))) for p, v in head])
    )
    y = jnp.asarray(x)
    new_rows = []
    for i, row in enumerate(rows):
        block = impl.merge(block_def, row)
        y = impl.layers.call(block, y, train=train, ctx=impl.new_context(seed + i))
        new_rows.append(_values(impl, impl.partition(block)[0]))
    y = impl.layers.call(linear, y, train=train, ctx=impl.new_context(seed + n))
    return np.asarray(y), new_rows


def _stack_rows(impl: Any, mlp: Any) -> list[dict[Path, np.ndarray]]:
    """Every stacked layer's state values, ``{block path: value}`` per layer."""
    stack, _ = _parts(impl, impl.partition(mlp)[0])
    values = {p: np.asarray(impl.variable_value(v)) for p, v in stack}
    n = next(iter(values.values())).shape[0]
    return [{p: a[i] for p, a in values.items()} for i in range(n)]


@clause("layers.scan-mlp")
@budget(0.05)
@given(modes=st.lists(st.booleans(), min_size=1, max_size=3), seed=st.integers(0, 15))
def test_scan_mlp_stacks_distinct_blocks_and_keeps_its_signature(impl, modes, seed):
    """``scan_mlp(16, n_layers)`` holds, under ``layers``, every entry of one Block with a leading axis of
    ``n_layers - 1`` (BatchNorm statistics ``(n_layers - 1, 16)``) and, under ``linear``, the entries of
    one Linear; no two stacked layers are initialised alike; and calls in the drawn modes keep every path,
    collection, shape and dtype."""
    n_layers = SCAN_N_LAYERS
    k = n_layers - 1
    mlp = impl.layers.scan_mlp(SCAN_HIDDEN, n_layers, impl.new_context(seed))
    _, block = _reference(impl, lambda ctx: impl.layers.block(SCAN_HIDDEN, SCAN_HIDDEN, ctx))
    _, linear = _reference(impl, lambda ctx: impl.layers.linear(SCAN_HIDDEN, SCAN_HIDDEN, ctx))
    want = {STACK + p: (c, (k, *shape), dtype) for p, (c, shape, dtype) in block.items()}
    want.update({HEAD + p: entry for p, entry in linear.items()})
    before = signature(impl, mlp)
    got = {path: (c, shape, dtype) for path, c, shape, dtype in before}
    what = f"ScanMLP({SCAN_HIDDEN}, n_layers={n_layers})"
    assert sorted(got) == sorted(want), (
        f"{what}: state paths {sorted(got)}; expected the Block's under {STACK[0]!r} and the Linear's under "
        f"{HEAD[0]!r}: {sorted(want)}"
    )
    for path in sorted(want):
        assert got[path] == want[path], (
            f"{what}: {fmt_path(path)} has (collection, shape, dtype) {got[path]}, expected {want[path]} "
            f"({n_layers - 1} stacked layers)"
        )
    rows = _stack_rows(impl, mlp)
    for i in range(k):
        for j in range(i):
            assert any(not same_array(rows[i][p], rows[j][p]) for p in rows[i]), (
                f"{what}: stacked layers {j} and {i} were initialised alike (every entry equal): one key "
                "for several layers"
            )
    x = _scan_inputs(seed)
    for n, train in enumerate(modes):
        impl.layers.call(mlp, x, train=train, ctx=impl.new_context(seed + 1 + n))
        after = signature(impl, mlp)
        where = f"{what} after call #{n} (modes {modes}), in {'training' if train else 'evaluation'} mode"
        assert [e[0] for e in after] == [e[0] for e in before], (
            f"{where}: state paths became {[e[0] for e in after]}, were {[e[0] for e in before]}"
        )
        for (path, *now), (_, *was) in zip(after, before):
            assert now == was, (
                f"{where}: {fmt_path(path)} became (collection, shape, dtype) {tuple(now)}, was {tuple(was)}"
            )


@clause("layers.scan-mlp")
@budget(0.05)
@given(trained=st.booleans(), seed=SEEDS)
def test_scan_mlp_in_evaluation_equals_a_loop_over_its_blocks_and_changes_nothing(impl, trained, seed):
    """After zero or one training call (so the running statistics may differ from their initial values),
    an evaluation call of the ScanMLP returns what a Python loop gives over its stacked layers (each
    merged into a Block of its own) and its final Linear, within float32 tolerance, and leaves every
    Variable bit for bit unchanged. In evaluation no key matters, so none is needed."""
    n_layers = SCAN_N_LAYERS
    mlp = impl.layers.scan_mlp(SCAN_HIDDEN, n_layers, impl.new_context(seed))
    if trained:
        impl.layers.call(mlp, _scan_inputs(seed + 1), train=True, ctx=impl.new_context(seed + 2))
    before = _values(impl, impl.partition(mlp)[0])
    x = _scan_inputs(seed + 3)
    want, _ = _loop(impl, mlp, x, train=False, seed=seed + 4)
    y = impl.layers.call(mlp, x, train=False, ctx=impl.new_context(seed + 5))
    what = f"ScanMLP({SCAN_HIDDEN}, n_layers={n_layers}) in evaluation{' after a training call' if trained else ''}"
    _assert_close(
        y, want, f"{what}: output of the call vs the loop over its {n_layers - 1} Block(s)", **SCAN_TOLERANCE
    )
    after = _values(impl, impl.partition(mlp)[0])
    for path, old in before.items():
        assert path in after and same_array(after[path], old), (
            f"{what}: the call changed {fmt_path(path)} from {old.tolist()} to "
            f"{after[path].tolist() if path in after else 'nothing (the entry is gone)'}"
        )


def _is_batch_norm_entry(stack: list[tuple[Path, Any]]) -> Callable[[Path], str | None]:
    """``scale``/``bias``/``mean``/``var`` for a Block path that is one of BatchNorm's (found as the
    siblings of a ``batch_stats`` entry named ``mean``), else ``None``."""
    bn_prefixes = {p[:-1] for p, _ in stack if p and p[-1] == "mean"}
    return lambda path: (
        path[-1] if path[:-1] in bn_prefixes and path[-1] in ("scale", "bias", "mean", "var") else None
    )


@clause("layers.scan-mlp")
@budget(0.05)
@given(seed=SEEDS)
def test_scan_mlp_in_training_carries_every_layer_s_statistics_out_of_the_scan(impl, seed):
    """With random parameters and running statistics in every layer, and every BatchNorm ``scale`` and
    ``bias`` zero (so each Block outputs zeros whatever its dropout mask), a training call leaves in
    each stacked layer the state a training loop over the unstacked Blocks computes -- the first layer's
    statistics from the input, the others' from their Linear's bias -- and returns the loop's output."""
    n_layers = SCAN_N_LAYERS
    built = impl.layers.scan_mlp(SCAN_HIDDEN, n_layers, impl.new_context(seed))
    stack, _ = _parts(impl, impl.partition(built)[0])
    bn_name = _is_batch_norm_entry(stack)
    rng = np.random.default_rng(seed)

    def values(path: Path, collection: str, old: np.ndarray) -> Any:
        name = bn_name(path[1:]) if path[:1] == STACK else None
        if name in ("scale", "bias"):
            return np.zeros_like(old)
        if name == "var":
            return rng.uniform(0.5, 3.0, old.shape).astype(old.dtype)
        return rng.normal(0.0, 0.5, old.shape).astype(old.dtype)

    mlp = with_values(impl, built, values)
    x = _scan_inputs(seed + 1)
    want, want_rows = _loop(impl, mlp, x, train=True, seed=seed + 2)
    y = impl.layers.call(mlp, x, train=True, ctx=impl.new_context(seed + 3))
    what = f"ScanMLP({SCAN_HIDDEN}, n_layers={n_layers}) training call (BatchNorm scale and bias zero)"
    for i, (got, row) in enumerate(zip(_stack_rows(impl, mlp), want_rows)):
        assert sorted(got) == sorted(row), f"{what}: layer {i} has paths {sorted(got)}, a Block {sorted(row)}"
        for path in sorted(row):
            _assert_close(
                got[path],
                row[path],
                f"{what}: layer {i}'s {fmt_path(path)} after the call vs a training loop over the Blocks",
                **SCAN_TOLERANCE,
            )
    _assert_close(y, want, f"{what}: output vs the loop", **SCAN_TOLERANCE)


@clause("layers.scan-mlp")
@budget(0.05)
@given(seed=SEEDS)
def test_scan_mlp_draws_a_different_dropout_mask_in_every_layer(impl, seed):
    """A ScanMLP of three stacked layers made identical (every row a copy of the first) whose BatchNorms
    have ``scale`` 0 and ``bias`` 1 (so layer ``i`` outputs its dropout mask times a constant) is called
    in training: layer ``i + 1``'s running statistics then depend on layer ``i``'s mask alone, and must
    differ between layers 1 and 2. Equal masks from independent keys would need every column of two
    ``16 x 16`` masks (keep probability 0.9) to keep as many entries: probability below 1e-9."""
    built = impl.layers.scan_mlp(SCAN_HIDDEN, SCAN_N_LAYERS, impl.new_context(seed))
    stack, _ = _parts(impl, impl.partition(built)[0])
    bn_name = _is_batch_norm_entry(stack)

    def values(path: Path, collection: str, old: np.ndarray) -> Any:
        if path[:1] != STACK:
            return None
        name = bn_name(path[1:])
        row = np.broadcast_to(old[:1], old.shape)
        return np.zeros_like(old) if name == "scale" else np.ones_like(old) if name == "bias" else row.copy()

    mlp = with_values(impl, built, values)
    impl.layers.call(mlp, _scan_inputs(seed + 1), train=True, ctx=impl.new_context(seed + 2))
    rows = _stack_rows(impl, mlp)
    stats = [p for p in rows[0] if bn_name(p) in ("mean", "var")]
    same = all(np.allclose(rows[1][p], rows[2][p], rtol=1e-6, atol=1e-7) for p in stats)
    assert not same, (
        f"ScanMLP({SCAN_HIDDEN}, n_layers={SCAN_N_LAYERS}), three identical layers, training call: the running statistics "
        f"of layers 1 and 2 are equal ({ {fmt_path(p): rows[1][p].tolist() for p in stats} }), so layers 0 "
        "and 1 drew the same dropout mask: one key for several layers (call context seed "
        f"{seed + 2})"
    )
