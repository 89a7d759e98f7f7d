"""Mutants of the RNG context: the ``rng.*`` clauses must catch each one.

Each mutant adapter hands out its own subclass of the core's ``Context`` (registered as its own pytree, so
it crosses ``jit``/``vmap`` like the real one) whose key derivation or forking is wrong in one way. The
core's ``Context`` class and its derivation functions are never touched.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mutants import mutant
from nnx_conformance.core import rng as core_rng
from nnx_conformance.core.rng import Context
from nnx_conformance.spec.adapters.core import CoreAdapter


class _Context(Context):
    """The core's Context with the derivation and the fork as overridable methods (same behaviour)."""

    __slots__ = ()

    def derive(self, path: tuple[int, ...]) -> jax.Array:
        """The key of the operation numbered ``path[-1]`` in a context with fork path ``path[:-1]``."""
        return core_rng._derive(self.key, path)

    def make_rng(self) -> jax.Array:
        return self.derive((*self.count_path, self._take()))

    def fork(self) -> Context:
        return self.child(self._take())

    def child(self, count: int) -> Context:
        """The context a fork numbered ``count`` returns: same key, fork path extended by ``count``."""
        child = type(self).__new__(type(self))
        child.key = self.key
        child.count = 0
        child.count_path = (*self.count_path, count)
        return child


def _register(cls: type[_Context]) -> type[_Context]:
    """Make a Context subclass a pytree of its own (the core registers only ``Context`` itself)."""

    def flatten(ctx: _Context) -> tuple[tuple[jax.Array], tuple[int, tuple[int, ...]]]:
        return (ctx.key,), (ctx.count, ctx.count_path)

    def unflatten(aux: tuple[int, tuple[int, ...]], children: Any) -> _Context:
        ctx = cls.__new__(cls)
        (ctx.key,) = children
        ctx.count, ctx.count_path = aux
        return ctx

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)
    return cls


_register(_Context)


class _ContextAdapter(CoreAdapter):
    context_class: type[_Context] = _Context

    def new_context(self, seed: int) -> Context:
        return self.context_class(jax.random.key(seed))


# ---------------------------------------------------------------------------------------------------------
# rng.reproducible
# ---------------------------------------------------------------------------------------------------------

_DRAWS = itertools.count()


@_register
class _GlobalCounterContext(_Context):
    __slots__ = ()

    def derive(self, path: tuple[int, ...]) -> jax.Array:
        return core_rng._derive(self.key, (*path, next(_DRAWS) % 2**32))


@mutant(catches="rng.reproducible")
class KeysMixInAGlobalCounter(_ContextAdapter):
    """Every key also folds in a process-wide draw counter (like a global NumPy generator): keys are still
    distinct, but running the same program from the same seed twice gives different keys.
    rng.reproducible must catch it."""

    context_class = _GlobalCounterContext


@mutant(catches="rng.reproducible")
class SeedKeptTo16Bits(_ContextAdapter):
    """The seed is reduced to its low 16 bits (stored in a ``uint16`` field), so seeds that differ only in
    their high bits -- 1 and 65537 -- give identical streams. rng.reproducible must catch it."""

    def new_context(self, seed: int) -> Context:
        return super().new_context(seed % 2**16)


# ---------------------------------------------------------------------------------------------------------
# rng.unique
# ---------------------------------------------------------------------------------------------------------


@_register
class _JoinedPathContext(_Context):
    __slots__ = ()

    def derive(self, path: tuple[int, ...]) -> jax.Array:
        return core_rng._derive(self.key, (int("".join(map(str, path))) % 2**32,))


@mutant(catches="rng.unique")
class CountPathJoinedWithoutSeparator(_ContextAdapter):
    """The key of an operation folds in the digits of its fork path and count joined without a separator,
    so ``(1, 23)`` and ``(12, 3)`` -- and a fork's draw ``(0, 5)`` and the root's draw ``(5,)`` -- get the
    same key. rng.unique must catch it."""

    context_class = _JoinedPathContext


@_register
class _ShortDigestContext(_Context):
    __slots__ = ()

    def derive(self, path: tuple[int, ...]) -> jax.Array:
        digest = hashlib.blake2s(repr(path).encode()).digest()
        return core_rng._derive(self.key, (int.from_bytes(digest[:3], "little"),))


@mutant(catches="rng.unique", by="test_sixty_thousand_draws_from_one_context_are_distinct")
class KeysFromA24BitDigest(_ContextAdapter):
    """Keys fold a 24-bit digest of the count path into the root key (the seed's scheme, with a shorter
    digest): distinct for short programs, but 60,000 draws from one context collide by the birthday bound
    (about a hundred pairs). rng.unique must catch it."""

    context_class = _ShortDigestContext


@_register
class _ByteCounterContext(_Context):
    __slots__ = ()

    def derive(self, path: tuple[int, ...]) -> jax.Array:
        return core_rng._derive(self.key, tuple(c % 256 for c in path))


@mutant(catches="rng.unique", by="test_sixty_thousand_draws_from_one_context_are_distinct")
class CounterWrapsAt256(_ContextAdapter):
    """The counter is folded in as a ``uint8``, so draw #256 of a context repeats draw #0: invisible to any
    program of a few dozen operations, obvious over 60,000 draws. rng.unique must catch it."""

    context_class = _ByteCounterContext


# ---------------------------------------------------------------------------------------------------------
# rng.fork-independence
# ---------------------------------------------------------------------------------------------------------


@_register
class _SharedCounterContext(_Context):
    __slots__ = ()

    def child(self, count: int) -> Context:
        child = type(self).__new__(type(self))
        child.key = self.key
        child.count = count + 1
        child.count_path = self.count_path
        return child


@mutant(catches="rng.fork-independence")
class ForkReusesParentCounter(_ContextAdapter):
    """A fork returns a context on the parent's own stream, continuing from the parent's counter instead of
    extending the fork path: the child's draw #0 is the parent's next draw. rng.fork-independence must catch
    it."""

    context_class = _SharedCounterContext


# ---------------------------------------------------------------------------------------------------------
# rng.statistics
# ---------------------------------------------------------------------------------------------------------


@_register
class _LaggedForkContext(_Context):
    __slots__ = ()

    def child(self, count: int) -> Context:
        child = type(self).__new__(type(self))
        child.key = self.key
        child.count = count + 3
        child.count_path = self.count_path
        return child


@mutant(catches="rng.statistics")
class ForkReplaysParentTwoAhead(_ContextAdapter):
    """A fork returns a context on its parent's stream, three operations past the fork (instead of a new
    stream): the child's draw ``d`` is the parent's operation ``fork + 3 + d``, so a parent and its forks
    replay one another at small lags, a perfect correlation. rng.statistics must catch it (as does
    rng.fork-independence: equal keys are the extreme of dependent streams)."""

    context_class = _LaggedForkContext


# ---------------------------------------------------------------------------------------------------------
# rng.transforms
# ---------------------------------------------------------------------------------------------------------


@_register
class _ReversedUnderTraceContext(_Context):
    __slots__ = ()

    def derive(self, path: tuple[int, ...]) -> jax.Array:
        if isinstance(self.key, jax.core.Tracer):  # a separate traced code path, with its own bug
            return core_rng._fold_chain(self.key, tuple(reversed(path)))
        return super().derive(path)


@mutant(catches="rng.transforms")
class TracedDerivationReversesPath(_ContextAdapter):
    """Under a trace the fork path is folded in reverse order (a separate traced code path): a draw from
    the root gives the same key as eagerly, but a draw from a fork differs under ``jit``. rng.transforms
    must catch it."""

    context_class = _ReversedUnderTraceContext


@mutant(catches="rng.transforms")
class VmapBroadcastsFirstContext(CoreAdapter):
    """The adapter's ``vmap`` treats a batch of contexts as broadcast state: every row gets the batch's
    first context (a lifted vmap that does not split RNG state), so contexts split across ``vmap`` all
    draw the same keys. rng.transforms must catch it."""

    def vmap(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        mapped = jax.vmap(fn, **kwargs)

        def call(*args: Any) -> Any:
            return mapped(*(_first_row(a) if isinstance(a, Context) else a for a in args))

        return call


def _first_row(ctx: Context) -> Context:
    """``ctx`` with every row of its batched key replaced by row 0."""
    return jax.tree_util.tree_map(lambda key: key[jnp.zeros(key.shape[0], dtype=jnp.int32)], ctx)
