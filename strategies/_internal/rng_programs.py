"""RNG programs: sequences of draws, forks and contexts made from drawn keys, and their interpreter.

A program is data (:class:`RngProgram`), so Hypothesis can shrink it; :func:`run_program` executes it
through an adapter and returns one :class:`RngRecord` per operation. Everything in a record except the key
is determined by the program alone (which context, its counter, its fork lineage, which root it descends
from), so properties can group and compare keys by lineage without trusting the implementation's
bookkeeping.

Context 0 is the root, made from the seed. A ``fork`` creates the next context id; so do the ops that make
a context *from a key* (``new_context(key)``, as the seed's ScanMLP writes ``Context(key)``):

* ``derive``: draw a key from the context and make a new context from that key, as ``make_rng`` returned
  it (a typed key, or raw data where the implementation's keys are raw);
* ``derive-data``: the same from the key's raw ``uint32`` data (``key_data``), which flax spells
  ``nnx.Rngs(jax.random.wrap_key_data(data))``;
* ``split``: draw a key, split it with ``jax.random.split`` into :data:`SPLIT_WAYS` keys and make a context
  from each one's raw data (ids ``child``, ``child + 1``, ...): contexts with a common parent key, the
  ScanMLP pattern.

A context made from a key is the *root* of a new tree: its lineage (fork path) restarts at ``()``, and its
records name it as their ``root`` with the op that made it (``root_op``). The key drawn to make it is a key
of the program like any other (its record carries it), since seeding a context consumes a key. An op may
address any existing context, so programs interleave streams (switching context) rather than draining one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from nnx_conformance.spec.adapter import Adapter
from nnx_conformance.strategies._internal._draws import index

__all__ = ["FROM_KEY_KINDS", "SPLIT_WAYS", "RngOp", "RngProgram", "RngRecord", "rng_programs", "run_program"]

OpKind = Literal["draw", "fork", "derive", "derive-data", "split"]
RngOp = tuple[OpKind, int]
"""``(kind, ctx_id)``: ``("draw", 0)``, ``("fork", 2)``, ``("derive", 1)``, ``("derive-data", 0)``,
``("split", 3)``."""

SPLIT_WAYS = 2
"""Contexts a ``split`` op makes (one per row of ``jax.random.split(key, SPLIT_WAYS)``)."""

FROM_KEY_KINDS: tuple[OpKind, ...] = ("derive", "derive-data", "split")
"""The ops that make contexts from a drawn key."""

_NEW_CONTEXTS: dict[str, int] = {"draw": 0, "fork": 1, "derive": 1, "derive-data": 1, "split": SPLIT_WAYS}


@dataclasses.dataclass(frozen=True)
class RngProgram:
    """A seed and a sequence of ops; each op names a context that exists when it runs."""

    seed: int
    ops: tuple[RngOp, ...]

    @property
    def n_contexts(self) -> int:
        return 1 + sum(_NEW_CONTEXTS[kind] for kind, _ in self.ops)


@dataclasses.dataclass(frozen=True)
class RngRecord:
    """What one op did. ``key_data`` (uint32) for every op that draws a key (all but ``fork``); ``child``
    (the first new context id) for the ops that make contexts.

    A frozen dataclass, not a ``NamedTuple``: a tuple's field ``count`` would shadow ``tuple.count``.
    """

    ctx_id: int
    op_index: int
    kind: OpKind
    key_data: np.ndarray | None
    count: int
    """The op's number within its context: every op takes the context's next count."""
    lineage: tuple[int, ...]
    """The context's fork path from its root: the counts at each fork (``()`` for a root)."""
    child: int | None = None
    root: int = 0
    """The context's root: 0 (made from the seed) or the id of the context made from a key it descends
    from by forks."""
    root_op: int | None = None
    """The op that made ``root`` from a key (``None`` for the seed's root)."""


_KIND: st.SearchStrategy[OpKind] = st.sampled_from(("draw", "fork"))
_KIND_FROM_KEYS: st.SearchStrategy[OpKind] = st.sampled_from(
    ("draw", "fork", "draw", "derive", "fork", "draw", "derive-data", "fork", "split")
)
"""Draws 4/9, forks 2/9, each way of making a context from a key 1/9: contexts from keys in about half the
programs, while enough draws remain for programs to come back to the root after using other contexts
(``tests/test_strategies_rng.py`` counts both)."""
_MORE_OPS = st.sampled_from((False, True, True, True, True, True, True, True))


@st.composite
def rng_programs(
    draw: st.DrawFn,
    *,
    min_ops: int = 0,
    max_ops: int = 20,
    seeds: st.SearchStrategy[int] | None = None,
    from_keys: bool = True,
) -> RngProgram:
    """A program of up to ``max_ops`` ops; each op's context is an index into those existing.

    Ops are drawn like ``st.lists`` elements (a "one more?" choice each), so the shrinker can delete any
    op; kinds shrink to ``draw`` and context ids to 0 (the root). Seeds default to ``0 .. 2**32 - 1``.
    ``from_keys=False`` leaves out the ops that make contexts from keys (draws and forks only).
    """
    if not 0 <= min_ops <= max_ops:
        raise InvalidArgument(f"need 0 <= min_ops <= max_ops, got {min_ops=}, {max_ops=}")
    seed = draw(st.integers(0, 2**32 - 1) if seeds is None else seeds)
    kinds = _KIND_FROM_KEYS if from_keys else _KIND
    ops: list[RngOp] = []
    contexts = 1
    while len(ops) < max_ops and (len(ops) < min_ops or draw(_MORE_OPS)):
        kind = draw(kinds)
        ops.append((kind, index(draw, contexts)))
        contexts += _NEW_CONTEXTS[kind]
    return RngProgram(seed, tuple(ops))


def _jax_split(key: Any, n: int) -> Sequence[Any]:
    return list(jax.random.split(key, n))


def run_program(
    program: RngProgram, adapter: Adapter, *, split_key: Callable[[Any, int], Sequence[Any]] = _jax_split
) -> list[RngRecord]:
    """Run ``program`` with ``adapter`` (``new_context``, ``make_rng``, ``fork``, ``key_data``).

    ``split_key(key, n)`` splits a drawn key for the ``split`` op (``jax.random.split``; a test's fake
    adapter with keys of its own passes its own).
    """
    contexts: list[Any] = [adapter.new_context(program.seed)]
    counts = [0]
    lineages: list[tuple[int, ...]] = [()]
    roots: list[tuple[int, int | None]] = [(0, None)]
    records = []
    for op_index, (kind, ctx_id) in enumerate(program.ops):
        if not 0 <= ctx_id < len(contexts):
            raise ValueError(f"op {op_index} addresses context {ctx_id}; only {len(contexts)} exist")
        if kind not in _NEW_CONTEXTS:
            raise ValueError(f"op {op_index}: unknown kind {kind!r}")
        ctx, count = contexts[ctx_id], counts[ctx_id]
        counts[ctx_id] += 1
        root, root_op = roots[ctx_id]
        base = RngRecord(ctx_id, op_index, kind, None, count, lineages[ctx_id], None, root, root_op)
        if kind == "fork":
            contexts.append(adapter.fork(ctx))
            counts.append(0)
            lineages.append((*lineages[ctx_id], count))
            roots.append(roots[ctx_id])
            records.append(dataclasses.replace(base, child=len(contexts) - 1))
            continue
        key = adapter.make_rng(ctx)
        data = np.asarray(adapter.key_data(key), dtype=np.uint32)
        if kind == "draw":
            records.append(dataclasses.replace(base, key_data=data))
            continue
        if kind == "derive":
            seeds: list[Any] = [key]
        elif kind == "derive-data":
            seeds = [data]
        else:
            seeds = [np.asarray(adapter.key_data(k), dtype=np.uint32) for k in split_key(key, SPLIT_WAYS)]
        child = len(contexts)
        for offset, seed in enumerate(seeds):
            contexts.append(adapter.new_context(seed))
            counts.append(0)
            lineages.append(())
            roots.append((child + offset, op_index))
        records.append(dataclasses.replace(base, key_data=data, child=child))
    return records
