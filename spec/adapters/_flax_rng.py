"""``FlaxRngStreams``: the ``flax.nnx`` side of contexts made from keys, named streams and split.

A mixin for :class:`~nnx_conformance.spec.adapters.flax.FlaxAdapter` (``class FlaxAdapter(FlaxRngStreams,
...)``: first in the bases, so its ``new_context`` is the one used). It backs

* ``new_context`` from a key (the protocol's ``new_context`` accepts a typed key or raw uint32 key data
  besides an integer seed): ``nnx.Rngs(key)`` for a typed key, ``nnx.Rngs(jax.random.wrap_key_data(data))``
  for raw data (flax 0.12.8's ``RngStream`` wraps uint32 data itself, but wrapping here keeps the adapter
  independent of that, and of which flax version accepts raw data);
* :attr:`~nnx_conformance.spec.adapter.Capabilities.rng_streams`: ``make_rng_stream(ctx, name)`` is
  ``ctx[name]()`` and ``from_stream(ctx, name)`` is ``nnx.Rngs(ctx[name])``, flax's own spelling of "a
  context rebuilt from an existing stream" (``nnx.Rngs(rngs.default)``). The adapter's contexts hold one
  stream, ``default``; flax draws any other name from ``default`` (its documented fallback), so named
  streams of one context are one counter and never share keys;
* :attr:`~nnx_conformance.spec.adapter.Capabilities.rng_split`: ``split(ctx, n)`` is ``ctx.split(n)``, an
  ``nnx.Rngs`` whose stream keys and counts have a leading axis of ``n``, mapped over by ``nnx.vmap``.

What flax does with these (0.12.8): ``nnx.Rngs(stream)`` keeps the stream's key and starts a new counter
at 0, so the rebuilt context draws ``fold_in(key, 0), fold_in(key, 1), ...``: the very keys the original
stream drew first (``rng.from-stream`` fails; google/flax PR 5529 reports the same reset for the streams
``Rngs.split``/``Rngs.broadcast`` pass through unsplit). ``Rngs.split(n)`` with an int splits every stream,
one draw of each, and passes ``rng.split``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_conformance.spec.adapters._flax_features import FEATURES

__all__ = ["FlaxRngStreams", "as_rng_key"]


def as_rng_key(seed: Any) -> jax.Array:
    """What ``nnx.Rngs`` is given for a protocol ``new_context`` argument: a typed key as is, raw uint32 key
    data (words on the last axis) wrapped with ``jax.random.wrap_key_data``, an integer seed as
    ``jax.random.key(seed)`` (``nnx.Rngs`` refuses a traced integer that is not already a key).

    Decided by dtype and rank only, so tracers (``vmap`` of ``new_context`` over keys) take the same path.
    """
    dtype = getattr(seed, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return seed
    if dtype is not None and dtype == jnp.uint32 and getattr(seed, "ndim", 0) >= 1:
        return jax.random.wrap_key_data(seed)
    return jax.random.key(seed)


class FlaxRngStreams:
    """Backs ``new_context`` from keys and the optional capabilities ``rng_streams``
    (``make_rng_stream``, ``from_stream``) and ``rng_split`` (``split``) with ``flax.nnx.Rngs``.

    A mixin: it defines no capabilities itself. The adapter that inherits it claims
    ``Capabilities(rng_streams=True, rng_split=True)``; the methods are stateless, so one mixin serves any
    adapter whose contexts are ``nnx.Rngs``.
    """

    def new_context(self, seed: Any) -> nnx.Rngs:
        """``nnx.Rngs`` of :func:`as_rng_key` of ``seed``: an integer seed, a typed key or raw key data."""
        return nnx.Rngs(as_rng_key(seed))

    def make_rng_stream(self, ctx: Any, name: str) -> jax.Array:
        """``ctx[name]()``: a key from the stream ``name`` (flax's fallback: ``default`` if there is none)."""
        return ctx[name]()

    def from_stream(self, ctx: Any, name: str) -> nnx.Rngs:
        """``nnx.Rngs(ctx[name])``: a new ``Rngs`` whose default stream is built from that ``RngStream``."""
        return nnx.Rngs(ctx[name])

    def split(self, ctx: Any, n: int) -> nnx.Rngs:
        """``ctx.split(n)``: every stream split into ``n`` keys (one draw of each), batched on axis 0;
        ``ctx.fork(split=n)``, the same, where ``Rngs.split`` is missing (before 0.12)."""
        if FEATURES.rngs_split:
            return ctx.split(n)
        return ctx.fork(split=n)
