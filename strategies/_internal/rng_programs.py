"""RNG programs: sequences of draws and forks over a growing set of contexts, and their interpreter.

A program is data (:class:`RngProgram`), so Hypothesis can shrink it; :func:`run_program` executes it
through an adapter and returns one :class:`RngRecord` per operation. Everything in a record except the key
is determined by the program alone (which context, its counter, its fork lineage), so properties can group
and compare keys by lineage without trusting the implementation's bookkeeping.

Context 0 is the root, made from the seed; every ``fork`` creates the next context id. An op may address
any existing context, so programs interleave streams (switching context) rather than draining one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from nnx_conformance.spec.adapter import Adapter
from nnx_conformance.strategies._internal._draws import index

__all__ = ["RngOp", "RngProgram", "RngRecord", "rng_programs", "run_program"]

OpKind = Literal["draw", "fork"]
RngOp = tuple[OpKind, int]
"""``("draw", ctx_id)`` or ``("fork", ctx_id)``."""


@dataclasses.dataclass(frozen=True)
class RngProgram:
    """A seed and a sequence of ops; each op names a context that exists when it runs."""

    seed: int
    ops: tuple[RngOp, ...]

    @property
    def n_contexts(self) -> int:
        return 1 + sum(kind == "fork" for kind, _ in self.ops)


@dataclasses.dataclass(frozen=True)
class RngRecord:
    """What one op did. ``key_data`` (uint32) for draws; ``child`` (the new context id) for forks.

    A frozen dataclass, not a ``NamedTuple``: a tuple's field ``count`` would shadow ``tuple.count``.
    """

    ctx_id: int
    op_index: int
    kind: OpKind
    key_data: np.ndarray | None
    count: int
    """The op's number within its context: draws and forks share one counter per context."""
    lineage: tuple[int, ...]
    """The context's fork path: the parent's counts at each fork from the root (``()`` for the root)."""
    child: int | None = None


_KIND: st.SearchStrategy[OpKind] = st.sampled_from(("draw", "fork"))
_MORE_OPS = st.sampled_from((False, True, True, True, True, True, True, True))


@st.composite
def rng_programs(
    draw: st.DrawFn, *, min_ops: int = 0, max_ops: int = 20, seeds: st.SearchStrategy[int] | None = None
) -> RngProgram:
    """A program of up to ``max_ops`` draws and forks; each op's context is an index into those existing.

    Ops are drawn like ``st.lists`` elements (a "one more?" choice each), so the shrinker can delete any
    op; kinds shrink to ``draw`` and context ids to 0 (the root). Seeds default to ``0 .. 2**32 - 1``.
    """
    if not 0 <= min_ops <= max_ops:
        raise InvalidArgument(f"need 0 <= min_ops <= max_ops, got {min_ops=}, {max_ops=}")
    seed = draw(st.integers(0, 2**32 - 1) if seeds is None else seeds)
    ops: list[RngOp] = []
    contexts = 1
    while len(ops) < max_ops and (len(ops) < min_ops or draw(_MORE_OPS)):
        kind = draw(_KIND)
        ops.append((kind, index(draw, contexts)))
        contexts += kind == "fork"
    return RngProgram(seed, tuple(ops))


def run_program(program: RngProgram, adapter: Adapter) -> list[RngRecord]:
    """Run ``program`` with ``adapter`` (``new_context``, ``make_rng``, ``fork``, ``key_data``)."""
    contexts: list[Any] = [adapter.new_context(program.seed)]
    counts = [0]
    lineages: list[tuple[int, ...]] = [()]
    records = []
    for op_index, (kind, ctx_id) in enumerate(program.ops):
        if not 0 <= ctx_id < len(contexts):
            raise ValueError(f"op {op_index} addresses context {ctx_id}; only {len(contexts)} exist")
        ctx, count = contexts[ctx_id], counts[ctx_id]
        counts[ctx_id] += 1
        if kind == "draw":
            data = np.asarray(adapter.key_data(adapter.make_rng(ctx)), dtype=np.uint32)
            records.append(RngRecord(ctx_id, op_index, kind, data, count, lineages[ctx_id]))
        elif kind == "fork":
            contexts.append(adapter.fork(ctx))
            counts.append(0)
            lineages.append((*lineages[ctx_id], count))
            records.append(
                RngRecord(ctx_id, op_index, kind, None, count, lineages[ctx_id], len(contexts) - 1)
            )
        else:
            raise ValueError(f"op {op_index}: unknown kind {kind!r}")
    return records
