"""The seed's layers, fixed: Linear, BatchNorm, Dropout, Block and the scan-over-layers ScanMLP.

They exist to exercise the core the way a model does: Variables of two collections, state mutated during a
call (batch statistics), randomness at construction and at call time, and the two lifted transforms the
seed demonstrates (``jax.vmap`` over construction, ``jax.lax.scan`` over a stack of identical blocks).

Behaviour follows the seed (including its ``uniform(0, 1)`` weight initialisation), except where the seed
was wrong: BatchNorm's running statistics keep shape ``(din,)`` (the seed's ``keepdims=True`` mean turned
them into ``(1, din)`` after one training step, and ``(4, 1, 10)`` once stacked by ScanMLP).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from .graph import Module, ModuleDef
from .rng import Context
from .state import State
from .variable import Sharding, Variable

__all__ = ["BatchNorm", "Block", "Dropout", "Linear", "ScanMLP"]


class Linear(Module):
    """``x @ w + b`` with ``w: (din, dout)`` and ``b: (dout,)``, both ``"params"``.

    ``sharding`` annotates ``w`` (one mesh-axis name or ``None`` per axis, e.g. ``(None, "model")``); the
    annotation is metadata carried through partition/merge, not applied by the layer.
    """

    def __init__(self, din: int, dout: int, *, ctx: Context, sharding: Sharding | None = None) -> None:
        if sharding is not None and len(sharding) != 2:
            raise ValueError(f"Linear sharding annotates the 2-D weight, got {sharding!r}")
        self.din = din
        self.dout = dout
        key = ctx.make_rng()
        self.w = Variable("params", jax.random.uniform(key, (din, dout)), sharding=sharding)
        self.b = Variable("params", jnp.zeros((dout,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w.value + self.b.value


class BatchNorm(Module):
    """Batch normalisation over every axis but the last; ``mu`` is the running-average momentum.

    ``scale``/``bias`` are ``"params"``; ``mean``/``var`` are ``"batch_stats"``, updated in place when
    ``train`` is true, and always of shape ``(din,)``. A training call normalises with the batch's mean and
    *biased* variance (``ddof=0``) and sets ``new = mu * old + (1 - mu) * batch`` (the seed's and flax's
    convention: ``mu`` weighs the old statistics, where PyTorch's ``momentum`` weighs the batch).
    """

    def __init__(self, din: int, mu: float = 0.95) -> None:
        self.mu = mu
        self.scale = Variable("params", jnp.ones((din,)))
        self.bias = Variable("params", jnp.zeros((din,)))
        self.mean = Variable("batch_stats", jnp.zeros((din,)))
        self.var = Variable("batch_stats", jnp.ones((din,)))

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if train:
            axis = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axis)  # (din,): no keepdims, so the running stats keep their shape
            var = jnp.var(x, axis=axis)
            self.mean.value = self.mu * self.mean.value + (1 - self.mu) * mean
            self.var.value = self.mu * self.var.value + (1 - self.mu) * var
        else:
            mean, var = self.mean.value, self.var.value
        return (x - mean) / jnp.sqrt(var + 1e-5) * self.scale.value + self.bias.value


class Dropout(Module):
    """Zero each element with probability ``rate`` when training, scaling the rest by ``1 / (1 - rate)``.

    The identity when not training, and also for ``rate == 0`` (which then draws no key).
    """

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1], got {rate}")
        self.rate = rate

    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        if self.rate == 1.0:
            return jnp.zeros_like(x)
        keep = jax.random.bernoulli(ctx.make_rng(), 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), 0.0).astype(x.dtype)


class Block(Module):
    """Linear -> BatchNorm -> gelu -> Dropout(0.1), as in the seed."""

    def __init__(self, din: int, dout: int, *, ctx: Context) -> None:
        self.linear = Linear(din, dout, ctx=ctx)
        self.bn = BatchNorm(dout)
        self.dropout = Dropout(0.1)

    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        x = self.linear(x)
        x = self.bn(x, train=train)
        x = jax.nn.gelu(x)
        return self.dropout(x, train=train, ctx=ctx)


class ScanMLP(Module):
    """``n_layers - 1`` identical Blocks stored *stacked* (leading axis), applied with ``jax.lax.scan``,
    then a final Linear.

    Construction is lifted with ``jax.vmap``: one Block is built per key inside the vmapped function and
    partitioned, so every Variable of ``self.layers`` gets a leading axis of size ``n_layers - 1`` while
    the ModuleDef (captured from the trace) is that of a single Block. The call is lifted with
    ``jax.lax.scan`` over the stacked state, and whatever the blocks mutate (batch statistics) is written
    back with ``update_state``.
    """

    def __init__(self, hidden_size: int, n_layers: int, *, ctx: Context) -> None:
        if n_layers < 2:
            raise ValueError(f"ScanMLP needs n_layers >= 2 (n_layers - 1 scanned blocks), got {n_layers}")
        self.n_layers = n_layers
        keys = jax.random.split(ctx.make_rng(), n_layers - 1)
        moduledef: ModuleDef[Block] | None = None

        def init_fn(key: jax.Array) -> State:
            nonlocal moduledef
            state, moduledef = Block(hidden_size, hidden_size, ctx=Context(key)).partition()
            return state

        state = jax.vmap(init_fn)(keys)
        assert moduledef is not None
        self.layers = moduledef.merge(state)
        self.linear = Linear(hidden_size, hidden_size, ctx=ctx)

    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        keys = jax.random.split(ctx.make_rng(), self.n_layers - 1)
        state, moduledef = self.layers.partition()
        x, state = jax.lax.scan(_scan_body(moduledef, train), x, (keys, state))
        self.layers.update_state(state)
        return self.linear(x)


@functools.lru_cache(maxsize=64)
def _scan_body(moduledef: ModuleDef[Block], train: bool) -> Callable[..., tuple[jax.Array, State]]:
    """The scan body for one block structure, one function object per (equal) ModuleDef.

    The seed defined this closure inside ``__call__``; a fresh function per call means ``jax.lax.scan``
    re-traces and, eagerly, recompiles on every call (~0.7 s on CPU for the notebook's model). Since
    ModuleDefs hash by structure, equal blocks share one body and later calls hit JAX's caches (~2 ms).
    """

    def scan_fn(x: jax.Array, inputs: tuple[jax.Array, State]) -> tuple[jax.Array, State]:
        key, state = inputs
        x, (state, _) = moduledef.apply(state)(x, train=train, ctx=Context(key))
        return x, state

    return scan_fn
