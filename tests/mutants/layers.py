"""Mutants of the seed's layers and of the transforms around them: the ``layers.*`` clauses must catch each.

Layer mutants subclass one core layer (BatchNorm, Dropout, ScanMLP) and hand it out through a
``CoreLayers`` subclass -- also inside Blocks, so a Block holds the broken layer too. Transform mutants
override the adapter's ``vmap`` or ``partition``. The core's classes are never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mutants import mutant
from nnx_conformance.core import ModuleDef, State
from nnx_conformance.core.layers import BatchNorm, Block, Dropout, Linear, ScanMLP, _scan_body
from nnx_conformance.core.rng import Context
from nnx_conformance.spec.adapters.core import CoreAdapter, CoreLayers


class _Layers(CoreLayers):
    """Core layers, with BatchNorm and Dropout (also those inside a Block) and ScanMLP of the given
    classes."""

    def __init__(
        self,
        batch_norm: type[BatchNorm] = BatchNorm,
        dropout: type[Dropout] = Dropout,
        scan_mlp: type[ScanMLP] = ScanMLP,
    ) -> None:
        self.batch_norm_class = batch_norm
        self.dropout_class = dropout
        self.scan_mlp_class = scan_mlp

    def batch_norm(self, din: int, ctx: Context, momentum: float = 0.95) -> BatchNorm:
        return self.batch_norm_class(din, mu=momentum)

    def dropout(self, rate: float, ctx: Context) -> Dropout:
        return self.dropout_class(rate)

    def block(self, din: int, dout: int, ctx: Context) -> Block:
        block = Block(din, dout, ctx=ctx)
        block.bn = self.batch_norm_class(dout)
        block.dropout = self.dropout_class(block.dropout.rate)
        return block

    def scan_mlp(self, hidden: int, n_layers: int, ctx: Context) -> ScanMLP:
        return self.scan_mlp_class(hidden, n_layers, ctx=ctx)


# ---------------------------------------------------------------------------------------------------------
# layers.state-stability
# ---------------------------------------------------------------------------------------------------------


class _KeepdimsBatchNorm(BatchNorm):
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if not train:
            return super().__call__(x, train)
        axis = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axis, keepdims=True)  # (1, din): the running stats change shape
        var = jnp.var(x, axis=axis, keepdims=True)
        self.mean.value = self.mu * self.mean.value + (1 - self.mu) * mean
        self.var.value = self.mu * self.var.value + (1 - self.mu) * var
        return (x - mean) / jnp.sqrt(var + 1e-5) * self.scale.value + self.bias.value


@mutant(catches="layers.state-stability")
class BatchNormStatsChangeShape(CoreAdapter):
    """BatchNorm computes batch statistics with ``keepdims=True`` (the seed's bug): after one training call
    the running mean and variance are ``(1, din)`` instead of ``(din,)``; outputs are still right.
    layers.state-stability must catch it."""

    layers = _Layers(batch_norm=_KeepdimsBatchNorm)


# ---------------------------------------------------------------------------------------------------------
# layers.semantics
# ---------------------------------------------------------------------------------------------------------


class _AlwaysDropout(Dropout):
    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        return super().__call__(x, train=True, ctx=ctx)


@mutant(catches="layers.semantics")
class DropoutIgnoresTrainMode(CoreAdapter):
    """Dropout drops (and rescales) whether or not it is training: evaluation outputs are noisy.
    layers.semantics must catch it."""

    layers = _Layers(dropout=_AlwaysDropout)


class _KeepRateDropout(Dropout):
    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        if not train or self.rate in (0.0, 1.0):
            return super().__call__(x, train=train, ctx=ctx)
        keep = jax.random.bernoulli(ctx.make_rng(), self.rate, x.shape)  # rate used as keep probability
        return jnp.where(keep, x / self.rate, 0.0).astype(x.dtype)


@mutant(catches="layers.semantics")
class DropoutRateIsKeepProbability(CoreAdapter):
    """Dropout treats ``rate`` as the probability of *keeping* an element (as ``keep_prob`` APIs do), so
    ``Dropout(0.1)`` zeroes 90% of its input; right only for ``rate == 0.5``. layers.semantics must catch
    it."""

    layers = _Layers(dropout=_KeepRateDropout)


class _BatchStatsInEval(BatchNorm):
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        axis = tuple(range(x.ndim - 1))
        if train:
            return super().__call__(x, train)
        mean, var = jnp.mean(x, axis=axis), jnp.var(x, axis=axis)
        return (x - mean) / jnp.sqrt(var + 1e-5) * self.scale.value + self.bias.value


@mutant(catches="layers.semantics")
class BatchNormEvalUsesBatchStatistics(CoreAdapter):
    """BatchNorm in evaluation mode normalises with the statistics of the batch it is given instead of its
    running statistics (the running ones are kept up to date, but never used). layers.semantics must catch
    it."""

    layers = _Layers(batch_norm=_BatchStatsInEval)


class _UpdatesInEval(BatchNorm):
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if train:
            return super().__call__(x, train)
        y = super().__call__(x, False)  # normalises with the running statistics...
        axis = tuple(range(x.ndim - 1))  # ...then updates them anyway
        self.mean.value = self.mu * self.mean.value + (1 - self.mu) * jnp.mean(x, axis=axis)
        self.var.value = self.mu * self.var.value + (1 - self.mu) * jnp.var(x, axis=axis)
        return y


@mutant(catches="layers.semantics")
class BatchNormEvalUpdatesRunningStatistics(CoreAdapter):
    """BatchNorm in evaluation mode normalises with its running statistics (right) but then also updates
    them with the evaluation batch, so evaluating a model changes it. layers.semantics must catch it."""

    layers = _Layers(batch_norm=_UpdatesInEval)


class _FrozenStats(BatchNorm):
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if not train:
            return super().__call__(x, train)
        axis = tuple(range(x.ndim - 1))
        mean, var = jnp.mean(x, axis=axis), jnp.var(x, axis=axis)
        # The running averages are computed into locals and never written back to the Variables.
        _running = (
            self.mu * self.mean.value + (1 - self.mu) * mean,
            self.mu * self.var.value + (1 - self.mu) * var,
        )
        return (x - mean) / jnp.sqrt(var + 1e-5) * self.scale.value + self.bias.value


@mutant(catches="layers.semantics")
class BatchNormNeverUpdatesRunningStatistics(CoreAdapter):
    """BatchNorm in training normalises with the batch statistics (right) but never writes the new running
    averages back to its Variables, so evaluation always uses the initial statistics. layers.semantics
    must catch it."""

    layers = _Layers(batch_norm=_FrozenStats)


class _UnscaledDropout(Dropout):
    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        if not train or self.rate in (0.0, 1.0):
            return super().__call__(x, train=train, ctx=ctx)
        keep = jax.random.bernoulli(ctx.make_rng(), 1.0 - self.rate, x.shape)
        return jnp.where(keep, x, 0.0).astype(x.dtype)  # no 1 / (1 - rate)


@mutant(
    catches="layers.semantics",
    by="test_dropout_keeps_each_entry_scaled_by_one_over_one_minus_rate_or_zeroes_it",
)
class DropoutWithoutRescale(CoreAdapter):
    """Dropout in training zeroes the right fraction of entries but keeps the others as they are, without
    the ``1 / (1 - rate)`` scale, so a layer's expected output shrinks by ``1 - rate`` between training and
    evaluation. layers.semantics must catch it."""

    layers = _Layers(dropout=_UnscaledDropout)


class _TorchMomentumBatchNorm(BatchNorm):
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if not train:
            return super().__call__(x, train)
        axis = tuple(range(x.ndim - 1))
        mean, var = jnp.mean(x, axis=axis), jnp.var(x, axis=axis)
        # PyTorch's convention: momentum weighs the *batch*, not the old running statistics.
        self.mean.value = (1 - self.mu) * self.mean.value + self.mu * mean
        self.var.value = (1 - self.mu) * self.var.value + self.mu * var
        return (x - mean) / jnp.sqrt(var + 1e-5) * self.scale.value + self.bias.value


@mutant(
    catches="layers.semantics",
    by="test_batch_norm_in_training_normalises_with_batch_statistics_and_updates_by_momentum",
)
class BatchNormMomentumWeighsTheBatch(CoreAdapter):
    """BatchNorm updates its running statistics with PyTorch's weighting, ``(1 - mu) * old + mu *
    batch``, instead of the seed's and flax's ``mu * old + (1 - mu) * batch``: with ``mu = 0.95`` the running
    statistics all but forget their past. layers.semantics must catch it."""

    layers = _Layers(batch_norm=_TorchMomentumBatchNorm)


class _UnbiasedRunningVarBatchNorm(BatchNorm):
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if not train:
            return super().__call__(x, train)
        axis = tuple(range(x.ndim - 1))
        mean, var = jnp.mean(x, axis=axis), jnp.var(x, axis=axis)
        unbiased = jnp.var(x, axis=axis, ddof=1)  # PyTorch's running variance
        self.mean.value = self.mu * self.mean.value + (1 - self.mu) * mean
        self.var.value = self.mu * self.var.value + (1 - self.mu) * unbiased
        return (x - mean) / jnp.sqrt(var + 1e-5) * self.scale.value + self.bias.value


@mutant(
    catches="layers.semantics",
    by="test_batch_norm_in_training_normalises_with_batch_statistics_and_updates_by_momentum",
)
class BatchNormRunningVarianceUnbiased(CoreAdapter):
    """BatchNorm normalises with the biased batch variance but feeds the *unbiased* one (``ddof=1``) into
    its running variance, as PyTorch does; the spec fixes the biased one for both, as the seed and flax
    compute it. layers.semantics must catch it."""

    layers = _Layers(batch_norm=_UnbiasedRunningVarBatchNorm)


class _IgnoresMomentumLayers(_Layers):
    def batch_norm(self, din: int, ctx: Context, momentum: float = 0.95) -> BatchNorm:
        return BatchNorm(din)  # the requested momentum is dropped: always the default 0.95


@mutant(
    catches="layers.semantics",
    by="test_batch_norm_in_training_normalises_with_batch_statistics_and_updates_by_momentum",
)
class BatchNormIgnoresItsMomentum(CoreAdapter):
    """The adapter's ``batch_norm`` accepts ``momentum`` but builds every BatchNorm with the default 0.95,
    so a model configured with another momentum silently trains with this one. layers.semantics must
    catch it."""

    layers = _IgnoresMomentumLayers()


# ---------------------------------------------------------------------------------------------------------
# layers.lifted
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="layers.lifted")
class VmapDoesNotSplitBatchStats(CoreAdapter):
    """The adapter's ``vmap`` lifts only the ``params`` collection: a State it returns has its
    ``batch_stats`` entries taken from the first row instead of stacked (a lifted transform whose
    ``variable_axes`` forgets a collection). Stacked parameters are right. layers.lifted must catch it."""

    def vmap(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        mapped = jax.vmap(fn, **kwargs)

        def call(*args: Any) -> Any:
            return jax.tree_util.tree_map(_unstack_batch_stats, mapped(*args), is_leaf=_is_state)

        return call


def _is_state(x: Any) -> bool:
    return isinstance(x, State)


def _unstack_batch_stats(x: Any) -> Any:
    if not isinstance(x, State):
        return x
    items = []
    for path, var in x.items():
        if var.collection == "batch_stats":
            var = type(var)(var.collection, var.value[0], sharding=var.sharding)
        items.append((path, var))
    return State(items)


class _NoUpdatesUnderTrace(BatchNorm):
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if train and isinstance(x, jax.core.Tracer):
            # Under a transform, the running statistics are left alone ("don't leak tracers into
            # Variables"): the output is right, the update is lost.
            axis = tuple(range(x.ndim - 1))
            mean, var = jnp.mean(x, axis=axis), jnp.var(x, axis=axis)
            return (x - mean) / jnp.sqrt(var + 1e-5) * self.scale.value + self.bias.value
        return super().__call__(x, train)


@mutant(catches="layers.lifted")
class BatchNormSkipsUpdatesUnderTransforms(CoreAdapter):
    """BatchNorm skips its running-statistics update when called on traced values (to avoid leaking
    tracers into Variables), so a layer applied under ``scan`` (or ``jit``) returns an unchanged state in
    training mode while the eager loop updates it. layers.lifted must catch it (layers.jit-apply does
    too)."""

    layers = _Layers(batch_norm=_NoUpdatesUnderTrace)


# ---------------------------------------------------------------------------------------------------------
# layers.jit-apply
# ---------------------------------------------------------------------------------------------------------


class _TraceTimeMaskDropout(Dropout):
    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        if not train or self.rate in (0.0, 1.0) or not isinstance(x, jax.core.Tracer):
            return super().__call__(x, train=train, ctx=ctx)
        # Under a trace the mask is drawn with NumPy at trace time: a constant baked into the compiled code.
        keep = np.random.default_rng(0).random(x.shape) >= self.rate
        return jnp.where(keep, x / (1.0 - self.rate), 0.0).astype(x.dtype)


@mutant(catches="layers.jit-apply")
class DropoutMaskFrozenAtTrace(CoreAdapter):
    """Under ``jit``, Dropout draws its mask with NumPy at trace time (a "faster" path that avoids a PRNG
    call), so the compiled apply uses one fixed mask whatever the context: jitted and eager applies
    disagree in training. layers.jit-apply must catch it."""

    layers = _Layers(dropout=_TraceTimeMaskDropout)


class _IdentityDef:
    """Wraps a definition; equality and hash are by identity (no ``__eq__``/``__hash__`` defined)."""

    __slots__ = ("graphdef",)

    def __init__(self, graphdef: Any) -> None:
        self.graphdef = graphdef

    def __repr__(self) -> str:
        return f"_IdentityDef({self.graphdef!r})"


@mutant(catches="layers.jit-apply", by="test_equal_definitions_trace_the_jitted_apply_once")
class DefinitionComparedByIdentity(CoreAdapter):
    """Each partition returns a new definition object compared by identity (no ``__eq__``/``__hash__``),
    so definitions of two equal layers are unequal and a jitted apply recompiles on every new state.
    layers.jit-apply must catch it (graph.def-equality does too)."""

    def partition(self, module: Any) -> tuple[Any, Any]:
        state, graphdef = super().partition(module)
        return state, _IdentityDef(graphdef)

    def merge(self, graphdef: Any, state: Any) -> Any:
        return super().merge(graphdef.graphdef, state)


# ---------------------------------------------------------------------------------------------------------
# layers.scan-mlp
# ---------------------------------------------------------------------------------------------------------


def _scan(
    mlp: ScanMLP, x: jax.Array, keys: jax.Array, train: bool, *, reverse: bool = False
) -> tuple[jax.Array, State, ModuleDef[Any]]:
    """The core ScanMLP's scan over its stacked Blocks, with the given per-layer keys."""
    state, moduledef = mlp.layers.partition()
    x, state = jax.lax.scan(_scan_body(moduledef, train), x, (keys, state), reverse=reverse)
    return x, state, moduledef


class _OneInitKeyScanMLP(ScanMLP):
    def __init__(self, hidden_size: int, n_layers: int, *, ctx: Context) -> None:
        self.n_layers = n_layers
        key = ctx.make_rng()
        moduledef: ModuleDef[Block] | None = None

        def init_fn(_: jax.Array) -> State:
            nonlocal moduledef
            # Closes over the outer key instead of taking the mapped one: vmap broadcasts one Block.
            state, moduledef = Block(hidden_size, hidden_size, ctx=Context(key)).partition()
            return state

        state = jax.vmap(init_fn)(jnp.arange(n_layers - 1))
        assert moduledef is not None
        self.layers = moduledef.merge(state)
        self.linear = Linear(hidden_size, hidden_size, ctx=ctx)


@mutant(
    catches="layers.scan-mlp",
    by="test_scan_mlp_stacks_distinct_blocks_and_keeps_its_signature",
)
class ScanMLPInitialisesEveryLayerAlike(CoreAdapter):
    """ScanMLP's vmapped init closes over one key instead of taking the mapped one, so ``vmap`` broadcasts
    a single Block: every stacked layer starts with the same weights. Shapes are right. layers.scan-mlp
    must catch it."""

    layers = _Layers(scan_mlp=_OneInitKeyScanMLP)


class _OneDropoutKeyScanMLP(ScanMLP):
    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        keys = jax.random.split(ctx.make_rng(), self.n_layers - 1)
        keys = keys[jnp.zeros(self.n_layers - 1, jnp.int32)]  # every layer gets the first layer's key
        x, state, _ = _scan(self, x, keys, train)
        self.layers.update_state(state)
        return self.linear(x)


@mutant(
    catches="layers.scan-mlp",
    by="test_scan_mlp_draws_a_different_dropout_mask_in_every_layer",
)
class ScanMLPOneDropoutKeyForEveryLayer(CoreAdapter):
    """ScanMLP's call hands every scanned layer the same key, so in training all layers draw the same
    dropout mask (the masks are correlated across depth). Outputs in evaluation, shapes and statistics
    update rules are right. layers.scan-mlp must catch it."""

    layers = _Layers(scan_mlp=_OneDropoutKeyScanMLP)


class _StatelessScanMLP(ScanMLP):
    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        keys = jax.random.split(ctx.make_rng(), self.n_layers - 1)
        x, _state, _ = _scan(self, x, keys, train)  # the scanned state is dropped, not written back
        return self.linear(x)


@mutant(
    catches="layers.scan-mlp",
    by="test_scan_mlp_in_training_carries_every_layer_s_statistics_out_of_the_scan",
)
class ScanMLPDropsTheScannedState(CoreAdapter):
    """ScanMLP's call ignores the state the scan returns, so the batch statistics its layers compute in
    training never leave the scan: the running statistics stay at their initial values. Outputs are
    right. layers.scan-mlp must catch it."""

    layers = _Layers(scan_mlp=_StatelessScanMLP)


class _OneTooManyScanMLP(ScanMLP):
    def __init__(self, hidden_size: int, n_layers: int, *, ctx: Context) -> None:
        super().__init__(hidden_size, n_layers + 1, ctx=ctx)  # "fixes" the seed's n_layers - 1


@mutant(
    catches="layers.scan-mlp",
    by="test_scan_mlp_stacks_distinct_blocks_and_keeps_its_signature",
)
class ScanMLPStacksNLayers(CoreAdapter):
    """ScanMLP stacks ``n_layers`` Blocks instead of the seed's ``n_layers - 1`` (an off-by-one "fixed"
    on one side only), so every stacked Variable has a leading axis one too long and checkpoints of the
    seed's models do not load. layers.scan-mlp must catch it."""

    layers = _Layers(scan_mlp=_OneTooManyScanMLP)


class _ReversedScanMLP(ScanMLP):
    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        keys = jax.random.split(ctx.make_rng(), self.n_layers - 1)
        x, state, _ = _scan(self, x, keys, train, reverse=True)  # the last layer runs first
        self.layers.update_state(state)
        return self.linear(x)


@mutant(
    catches="layers.scan-mlp",
    by="test_scan_mlp_in_evaluation_equals_a_loop_over_its_blocks_and_changes_nothing",
)
class ScanMLPRunsItsLayersBackwards(CoreAdapter):
    """ScanMLP's scan runs with ``reverse=True``, so the input meets the last stacked layer first: the
    model is a different function of its parameters. Shapes and state updates look right.
    layers.scan-mlp must catch it."""

    layers = _Layers(scan_mlp=_ReversedScanMLP)


class _EvalUpdatesScanMLP(ScanMLP):
    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        keys = jax.random.split(ctx.make_rng(), self.n_layers - 1)
        y, state, _ = _scan(self, x, keys, train)
        if not train:  # the output is the evaluation one, but the state comes from a training pass
            _, state, _ = _scan(self, x, keys, True)
        self.layers.update_state(state)
        return self.linear(y)


@mutant(
    catches="layers.scan-mlp",
    by="test_scan_mlp_in_evaluation_equals_a_loop_over_its_blocks_and_changes_nothing",
)
class ScanMLPUpdatesStatisticsInEvaluation(CoreAdapter):
    """ScanMLP in evaluation returns the right output but writes back the batch statistics of a training
    pass over the same input, so evaluating a model changes it. layers.scan-mlp must catch it."""

    layers = _Layers(scan_mlp=_EvalUpdatesScanMLP)
