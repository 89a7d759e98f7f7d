"""rng_programs() and run_program(): validity, distribution, shrinking, and the interpreter's bookkeeping."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from nnx_conformance.strategies import RngProgram, rng_programs, run_program


class Ctx:
    def __init__(self, path: tuple[int, ...]) -> None:
        self.path, self.count = path, 0


class CountingRng:
    """A fake RNG whose key *is* its fork path and counter, so the interpreter's records can be checked."""

    def new_context(self, seed: int) -> Ctx:
        return Ctx((seed,))

    def make_rng(self, ctx: Ctx) -> tuple[int, ...]:
        ctx.count += 1
        return (*ctx.path, ctx.count - 1)

    def fork(self, ctx: Ctx) -> Ctx:
        ctx.count += 1
        return Ctx((*ctx.path, ctx.count - 1))

    def key_data(self, key: Any) -> np.ndarray:
        return np.array(key, np.uint32)


@settings(max_examples=200, deadline=None, database=None)
@given(rng_programs(seeds=st.integers(0, 9)))
def test_records_follow_the_program(program):
    records = run_program(program, CountingRng())
    assert [r.op_index for r in records] == list(range(len(program.ops)))
    contexts = 1
    for record, (kind, ctx_id) in zip(records, program.ops):
        assert (record.kind, record.ctx_id) == (kind, ctx_id) and ctx_id < contexts
        if kind == "draw":
            # The fake's key spells out the seed, fork path and counter it used.
            assert record.key_data.tolist() == [program.seed, *record.lineage, record.count]
            assert record.key_data.dtype == np.uint32 and record.child is None
        else:
            assert record.key_data is None and record.child == contexts
            contexts += 1
    assert contexts == program.n_contexts


def test_programs_fork_switch_and_nest():
    seen: Counter = Counter()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True, phases=[Phase.generate])
    @given(rng_programs())
    def run(program: RngProgram) -> None:
        seen["total"] += 1
        records = run_program(program, CountingRng())
        seen["forks"] += any(r.kind == "fork" for r in records)
        seen["draw from a fork"] += any(r.kind == "draw" and r.ctx_id > 0 for r in records)
        seen["fork of a fork"] += any(len(r.lineage) >= 2 for r in records)
        seen["switches"] += any(a.ctx_id != b.ctx_id for a, b in itertools.pairwise(records))
        seen["back to parent"] += any(
            r.kind == "draw" and r.ctx_id == 0 and any(q.ctx_id > 0 for q in records[: r.op_index])
            for r in records
        )

    run()
    for feature in ("forks", "draw from a fork", "switches", "back to parent"):
        assert seen[feature] >= seen["total"] / 4, seen
    assert seen["fork of a fork"] > 0, seen


def test_program_bounds():
    @settings(max_examples=100, deadline=None, database=None)
    @given(rng_programs(min_ops=3, max_ops=5))
    def run(program: RngProgram) -> None:
        assert 3 <= len(program.ops) <= 5

    run()


def test_a_program_shrinks_to_one_fork_and_one_draw():
    program = find(
        rng_programs(),
        lambda p: any(kind == "draw" and ctx > 0 for kind, ctx in p.ops),
        settings=settings(database=None),
    )
    assert program == RngProgram(0, (("fork", 0), ("draw", 1)))


def test_a_bad_program_is_refused():
    with pytest.raises(ValueError, match="context 1"):
        run_program(RngProgram(0, (("draw", 1),)), CountingRng())


@settings(max_examples=10, deadline=None, database=None)
@given(rng_programs(max_ops=6))
def test_core_keys_are_reproducible(program):
    from nnx_conformance.spec.adapters.core import CoreAdapter

    first = run_program(program, CoreAdapter())
    second = run_program(program, CoreAdapter())
    for a, b in zip(first, second):
        assert (a.key_data is None) == (b.key_data is None)
        if a.key_data is not None:
            assert a.key_data.dtype == np.uint32 and np.array_equal(a.key_data, b.key_data)
