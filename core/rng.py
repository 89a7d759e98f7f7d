"""Context: explicit, splittable randomness for module construction and stochastic layers.

A Context holds one root key and a counter. Every ``make_rng()`` and every ``fork()`` takes the next count,
so no two operations on one context ever share a number, and a forked child extends the fork path with the
count it took. The key for an operation numbered ``c`` in a context with fork path ``(c0, ..., ck)`` is::

    fold_in(fold_in(...fold_in(key, c0)..., ck), c)

Distinctness therefore rests on JAX's PRF (``fold_in``) applied to *distinct inputs*: two different
(path, count) sequences differ at some first position, where the same parent key is folded with two
different 32-bit counts. (The seed hashed the whole path to a 32-bit blake2s prefix instead, which collides
by the birthday bound: root draws #25,650 and #50,160 got the same key.) Counts are 32-bit values below
``2**32 - 1``, so running past them is an error rather than a silent wrap-around; the top value is reserved.

*Named streams* (``make_rng("params")``; ``"default"`` is the context's own counter above) each have their
own counter, kept per context, and their keys are named by the stream, not by the order streams were first
used, so adding a dropout draw never changes what ``params`` draws. The key of draw ``c`` of stream ``name``
in a context with fork path ``p`` folds in ``(*p, STREAM_MARK, len(b), *words(b), c)``, with ``b`` the
name's UTF-8 bytes packed into 32-bit words: ``STREAM_MARK = 2**32 - 1`` is the reserved value that no count
or fork path entry takes, so no named-stream sequence is a default-stream one, and the length word makes
the encoding prefix-free, so two names never meet.

*Split* (``split(n)``) takes one count like a fork and returns ``n`` contexts batched along a leading axis
(for ``jax.vmap``, as the seed's ScanMLP maps ``Context(key)`` over split keys): row ``i`` is a root context
whose key folds in ``(*p, c, i)``. The count ``c`` was spent on the split, so no fork or draw ever
reaches those sequences another way.

*From a stream* (``from_stream(name)``): a context rebuilt from one of this context's streams is a root
made from that stream's next key. It spends a count of the stream, so the rebuilt context meets neither
the keys the stream drew before nor those it draws after (copying the stream's key and counter, or its
key with a fresh counter, would replay one or the other).

A Context is a pytree (child: ``key``; aux: ``(count, count_path, named stream counts)``) so it crosses ``jax.jit``,
``jax.vmap`` and ``jax.lax.scan`` like any other argument. As in the seed, the count is static: a context
mutated inside a transform must be returned from it to carry the new count out.

Eager draws go through a cached ``jax.jit`` of the fold-in chain (one dispatch, ~10 us) instead of
op-by-op ``fold_in`` (~100-200 us each on CPU); under a trace the chain is emitted inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from .errors import NNXError

__all__ = ["DEFAULT_STREAM", "STREAM_MARK", "Context"]

STREAM_MARK = 2**32 - 1
"""The 32-bit value that starts a named stream's fold-in sequence; no count or fork path entry takes it."""
_COUNT_LIMIT = STREAM_MARK
DEFAULT_STREAM = "default"
"""The name of a context's own counter (what ``make_rng()`` and ``fork()`` use)."""


def _fold_chain(key: jax.Array, data: Any) -> jax.Array:
    for i in range(len(data)):
        key = jax.random.fold_in(key, data[i])
    return key


_fold_chain_jit = jax.jit(_fold_chain)


def _derive(key: jax.Array, path: tuple[int, ...]) -> jax.Array:
    if isinstance(key, jax.core.Tracer):
        return _fold_chain(key, path)
    return _fold_chain_jit(key, np.asarray(path, dtype=np.uint32))


def _stream_words(name: str) -> tuple[int, ...]:
    """``(len(b), *words(b))`` for ``b`` the UTF-8 bytes of ``name`` (little-endian, zero-padded words):
    a prefix-free encoding, since the length says how many words follow."""
    if not isinstance(name, str):
        raise TypeError(f"a stream name is a str, got {type(name).__name__}")
    raw = name.encode("utf-8")
    if len(raw) >= _COUNT_LIMIT:
        raise NNXError(f"stream name of {len(raw)} bytes is longer than a 32-bit length word can say")
    padded = raw + b"\0" * (-len(raw) % 4)
    return (len(raw), *(int.from_bytes(padded[i : i + 4], "little") for i in range(0, len(padded), 4)))


def _derive_rows(key: jax.Array, path: tuple[int, ...], n: int) -> jax.Array:
    """The keys of ``(*path, i)`` for ``i < n``, stacked: ``fold_in`` of the path's key with each row."""
    base = _derive(key, path)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, jax.numpy.arange(n, dtype=np.uint32))


def _check_key(key: Any) -> None:
    dtype = getattr(key, "dtype", None)
    if dtype is None or not (dtype == np.uint32 or jax.numpy.issubdtype(dtype, jax.dtypes.prng_key)):
        raise TypeError(
            "Context needs a JAX PRNG key: jax.random.key(seed) (typed) or jax.random.PRNGKey(seed) "
            f"(raw uint32); got {type(key).__name__}" + (f" with dtype {dtype}" if dtype is not None else "")
        )
    if dtype == np.uint32 and not getattr(key, "ndim", 0):
        raise TypeError(
            "Context got a uint32 scalar: raw key data has the key's words on its last axis (jax.random."
            "PRNGKey(seed) is uint32[2]); for an integer seed write Context(jax.random.key(seed))"
        )


def _check_count(count: Any, what: str) -> None:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"Context {what} must be an int, got {type(count).__name__}")
    if not 0 <= count < _COUNT_LIMIT:
        raise NNXError(f"Context {what} {count} is outside the 32-bit range [0, 2**32) that fold_in takes")


class Context:
    """A key plus a shared counter: ``make_rng()`` draws a key, ``fork()`` makes an independent child.

    ``key`` may be a typed key (``jax.random.key``) or a raw ``uint32`` key (``jax.random.PRNGKey``, or the
    data of any key: ``Context(jax.random.key_data(k))`` draws the same data as ``Context(k)``); derived
    keys have the same kind. A context made from a key is a root: its fork path starts empty. ``streams``
    holds the counters of the named streams used so far (see the module docstring).
    """

    __slots__ = ("count", "count_path", "key", "streams")

    key: jax.Array
    count: int
    count_path: tuple[int, ...]
    streams: dict[str, int]

    def __init__(
        self,
        key: jax.Array,
        count: int = 0,
        count_path: tuple[int, ...] = (),
        streams: Mapping[str, int] | None = None,
    ) -> None:
        _check_key(key)
        count_path = tuple(int(c) if isinstance(c, np.integer) else c for c in count_path)
        for c in count_path:
            _check_count(c, "fork path entry")
        if count != _COUNT_LIMIT:  # a spent context may be rebuilt (e.g. unflattened); drawing raises
            _check_count(count, "count")
        named = dict(streams or {})
        for name, c in named.items():
            _stream_words(name)
            if name == DEFAULT_STREAM:
                raise ValueError(f"the {DEFAULT_STREAM!r} stream's counter is count, not an entry of streams")
            if c != _COUNT_LIMIT:
                _check_count(c, f"count of stream {name!r}")
        self.key = key
        self.count = int(count)
        self.count_path = count_path
        self.streams = {name: int(c) for name, c in named.items()}

    def _take(self) -> int:
        count = self.count
        if count >= _COUNT_LIMIT:
            raise NNXError(
                f"Context counter exhausted: {count} operations were already numbered with 32-bit counts "
                "(fork() the context earlier to spread draws over child contexts)"
            )
        self.count = count + 1
        return count

    def _take_named(self, name: str) -> tuple[int, ...]:
        """The fold-in sequence of stream ``name``'s next draw (advancing that stream only)."""
        words = _stream_words(name)
        count = self.streams.get(name, 0)
        if count >= _COUNT_LIMIT:
            raise NNXError(f"Context stream {name!r} exhausted: {count} keys were already drawn from it")
        self.streams[name] = count + 1
        return (*self.count_path, STREAM_MARK, *words, count)

    def make_rng(self, stream: str = DEFAULT_STREAM) -> jax.Array:
        """A fresh key, distinct from every other key this context or its forks ever produce.

        ``stream`` names the stream to draw from: ``"default"`` is the counter ``fork()`` shares; any other
        name is a stream of its own, whose keys do not depend on draws from the others.
        """
        if stream == DEFAULT_STREAM:
            count = self._take()
            return _derive(self.key, (*self.count_path, count))
        return _derive(self.key, self._take_named(stream))

    def fork(self) -> Context:
        """A child context with its own stream (extends the fork path; advances this context's count)."""
        count = self._take()
        child = Context.__new__(Context)
        child.key = self.key
        child.count = 0
        child.count_path = (*self.count_path, count)
        child.streams = {}
        return child

    def split(self, n: int) -> Context:
        """``n`` independent contexts batched along a leading key axis, for ``jax.vmap`` (one count).

        Row ``i`` is a root context keyed by ``(*fork path, count, i)``; the rows differ from each other and
        from everything this context drew before or draws after.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n < _COUNT_LIMIT:
            raise ValueError(f"split takes a number of contexts n >= 1, got {n!r}")
        count = self._take()
        batch = Context.__new__(Context)
        batch.key = _derive_rows(self.key, (*self.count_path, count), int(n))
        batch.count = 0
        batch.count_path = ()
        batch.streams = {}
        return batch

    def from_stream(self, stream: str = DEFAULT_STREAM) -> Context:
        """A new root context rebuilt from this context's ``stream``: made from that stream's next key.

        It spends one draw of the stream, so neither the keys the stream drew nor those it draws later
        ever come out of the new context.
        """
        return Context(self.make_rng(stream))

    def __repr__(self) -> str:
        named = getattr(self, "streams", None)
        extra = f", streams={named}" if named else ""
        return f"Context(key={self.key!r}, count={self.count}, count_path={self.count_path}{extra})"


_Aux = tuple[int, tuple[int, ...], tuple[tuple[str, int], ...]]


def _aux(ctx: Context) -> _Aux:
    return ctx.count, ctx.count_path, tuple(sorted(ctx.streams.items()))


def _flatten(ctx: Context) -> tuple[tuple[jax.Array], _Aux]:
    return (ctx.key,), _aux(ctx)


def _flatten_with_keys(ctx: Context) -> tuple[tuple[tuple[Any, jax.Array]], _Aux]:
    return ((jax.tree_util.GetAttrKey("key"), ctx.key),), _aux(ctx)


def _unflatten(aux: _Aux, children: Any) -> Context:
    # No validation: JAX rebuilds pytrees with tracers, batched values and placeholder objects.
    ctx = Context.__new__(Context)
    (ctx.key,) = children
    ctx.count, ctx.count_path, named = aux
    ctx.streams = dict(named)
    return ctx


jax.tree_util.register_pytree_with_keys(Context, _flatten_with_keys, _unflatten, flatten_func=_flatten)
