"""Mutants of the RNG context: the ``rng.*`` clauses must catch each one.

Each mutant adapter hands out its own subclass of the core's ``Context`` (registered as its own pytree, so
it crosses ``jit``/``vmap`` like the real one) whose key derivation, forking, named streams, split or
rebuild from a stream is wrong in one way, or an adapter whose ``new_context`` from a key is. The core's
``Context`` class and its derivation functions are never touched.
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
from nnx_conformance.core.rng import DEFAULT_STREAM, STREAM_MARK, Context
from nnx_conformance.spec.adapters.core import CoreAdapter, is_key


class _Context(Context):
    """The core's Context with the derivation and the fork as overridable methods (same behaviour)."""

    __slots__ = ()

    def derive(self, path: tuple[int, ...]) -> jax.Array:
        """The key of the operation numbered ``path[-1]`` in a context with fork path ``path[:-1]``."""
        return core_rng._derive(self.key, path)

    def make_rng(self, stream: str = DEFAULT_STREAM) -> jax.Array:
        if stream == DEFAULT_STREAM:
            return self.derive((*self.count_path, self._take()))
        return self.derive(self._take_named(stream))

    def fork(self) -> Context:
        return self.child(self._take())

    def child(self, count: int) -> Context:
        """The context a fork numbered ``count`` returns: same key, fork path extended by ``count``."""
        return self.copy(self.key, 0, (*self.count_path, count))

    def copy(self, key: jax.Array, count: int, count_path: tuple[int, ...]) -> Context:
        """A context of this mutant's class with the given key, default count and fork path."""
        ctx = type(self).__new__(type(self))
        ctx.key = key
        ctx.count = count
        ctx.count_path = count_path
        ctx.streams = {}
        return ctx

    def from_stream(self, stream: str = DEFAULT_STREAM) -> Context:
        return type(self)(self.make_rng(stream))


_Aux = tuple[int, tuple[int, ...], tuple[tuple[str, int], ...]]


def _register(cls: type[_Context]) -> type[_Context]:
    """Make a Context subclass a pytree of its own (the core registers only ``Context`` itself)."""

    def flatten(ctx: _Context) -> tuple[tuple[jax.Array], _Aux]:
        return (ctx.key,), (ctx.count, ctx.count_path, tuple(sorted(ctx.streams.items())))

    def unflatten(aux: _Aux, children: Any) -> _Context:
        ctx = cls.__new__(cls)
        (ctx.key,) = children
        ctx.count, ctx.count_path, named = aux
        ctx.streams = dict(named)
        return ctx

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)
    return cls


_register(_Context)


class _ContextAdapter(CoreAdapter):
    context_class: type[_Context] = _Context

    def new_context(self, seed: Any) -> Context:
        return self.context_class(seed if is_key(seed) else jax.random.key(seed))


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

    def new_context(self, seed: Any) -> Context:
        return super().new_context(seed if is_key(seed) else seed % 2**16)


# A context made from a key (``new_context(key)``) ---------------------------------------------------------


@mutant(catches="rng.reproducible", by=("test_a_context_from_a_key_is_a_function_of_all_of_the_key_s_data",))
class ContextFromAKeyKeepsItsFirstWord(CoreAdapter):
    """``new_context(key)`` seeds the context with the key's first 32-bit word only
    (``jax.random.key(key_data(key)[0])``): contexts from keys that differ in their other words draw the
    same keys, and half of every key's entropy is gone. rng.reproducible must catch it."""

    def new_context(self, seed: Any) -> Context:
        if not is_key(seed):
            return super().new_context(seed)
        words = jnp.asarray(self.key_data(seed), jnp.uint32).reshape(-1)
        return Context(jax.random.key(words[0]))


# ---------------------------------------------------------------------------------------------------------
# rng.unique
# ---------------------------------------------------------------------------------------------------------


@mutant(catches="rng.unique", by=("test_every_key_of_a_program_is_distinct",))
class ContextFromAKeyIgnoresTheKey(CoreAdapter):
    """``new_context(key)`` ignores the key and seeds every such context with the same fixed seed (0), as
    code that writes ``Context(jax.random.key(0))`` where it meant ``Context(key)`` does: every context made
    from a key -- the rows of a split, the layers of a ScanMLP -- draws the same keys. rng.unique must catch
    it."""

    def new_context(self, seed: Any) -> Context:
        return super().new_context(0 if is_key(seed) else seed)


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
        return self.copy(self.key, count + 1, self.count_path)


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
        return self.copy(self.key, count + 3, self.count_path)


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


# ---------------------------------------------------------------------------------------------------------
# rng.streams
# ---------------------------------------------------------------------------------------------------------


@_register
class _OneKeyStreamsContext(_Context):
    __slots__ = ()

    def _take_named(self, name: str) -> tuple[int, ...]:
        count = self.streams.get(name, 0)
        self.streams[name] = count + 1
        return (*self.count_path, STREAM_MARK, count)  # the bug: the name is not folded in


@mutant(catches="rng.streams")
class NamedStreamsShareOneKey(_ContextAdapter):
    """Every named stream keeps its own counter but derives its keys from one key, without the name:
    ``params`` draw #0 and ``dropout`` draw #0 are the same key (so a dropout mask repeats an init).
    rng.streams must catch it."""

    context_class = _OneKeyStreamsContext


# ---------------------------------------------------------------------------------------------------------
# rng.split
# ---------------------------------------------------------------------------------------------------------


@_register
class _BroadcastSplitContext(_Context):
    __slots__ = ()

    def split(self, n: int) -> Context:
        # The bug: every row is the parent itself (key, count and fork path), and the parent does not advance.
        return self.copy(jnp.broadcast_to(self.key, (n, *self.key.shape)), self.count, self.count_path)


@mutant(catches="rng.split")
class SplitBroadcastsTheParent(_ContextAdapter):
    """``split(ctx, n)`` broadcasts the parent instead of splitting it: every row is a copy of the parent
    (same key, same counter) and the parent does not advance, so all rows draw the same keys, which are
    also the parent's next keys. rng.split must catch it."""

    context_class = _BroadcastSplitContext


# ---------------------------------------------------------------------------------------------------------
# rng.from-stream
# ---------------------------------------------------------------------------------------------------------


@_register
class _RestartedStreamContext(_Context):
    __slots__ = ()

    def from_stream(self, stream: str = DEFAULT_STREAM) -> Context:
        if stream != DEFAULT_STREAM:
            return super().from_stream(stream)
        return self.copy(self.key, 0, self.count_path)  # the bug: the stream's key with a fresh counter


@mutant(catches="rng.from-stream")
class RebuiltStreamRestartsAtZero(_ContextAdapter):
    """A context rebuilt from the default stream keeps the stream's key and starts its counter at 0 (what
    flax 0.12.8's ``nnx.Rngs(rngs.default)`` does): it draws again the keys the stream already handed out.
    Named streams are rebuilt correctly. rng.from-stream must catch it."""

    context_class = _RestartedStreamContext


@_register
class _CopiedStreamContext(_Context):
    __slots__ = ()

    def from_stream(self, stream: str = DEFAULT_STREAM) -> Context:
        if stream != DEFAULT_STREAM:
            return super().from_stream(stream)
        return self.copy(self.key, self.count, self.count_path)  # the bug: key and counter copied


@mutant(catches="rng.from-stream")
class RebuiltStreamCopiesItsCounter(_ContextAdapter):
    """A context rebuilt from the default stream copies the stream's key *and* counter (the fix that only
    keeps the counts): it replays no past key, but draws exactly the keys the original stream draws next.
    Named streams are rebuilt correctly. rng.from-stream must catch it."""

    context_class = _CopiedStreamContext
