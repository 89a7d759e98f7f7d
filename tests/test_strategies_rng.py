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
from nnx_conformance.strategies._internal.rng_programs import FROM_KEY_KINDS, SPLIT_WAYS


class Ctx:
    def __init__(self, path: tuple[int, ...]) -> None:
        self.path, self.count = path, 0


class CountingRng:
    """A fake RNG whose key *is* its fork path and counter, so the interpreter's records can be checked.

    A context made from a key starts its path with the key's words; :func:`fake_split` appends the row."""

    def new_context(self, seed: Any) -> Ctx:
        if isinstance(seed, int):
            return Ctx((seed,))
        return Ctx(tuple(int(word) for word in np.asarray(seed).ravel()))

    def make_rng(self, ctx: Ctx) -> tuple[int, ...]:
        ctx.count += 1
        return (*ctx.path, ctx.count - 1)

    def fork(self, ctx: Ctx) -> Ctx:
        ctx.count += 1
        return Ctx((*ctx.path, ctx.count - 1))

    def key_data(self, key: Any) -> np.ndarray:
        return np.array(key, np.uint32)


def fake_split(key: tuple[int, ...], n: int) -> list[tuple[int, ...]]:
    return [(*key, 1000 + row) for row in range(n)]


def run_fake(program: RngProgram) -> list:
    return run_program(program, CountingRng(), split_key=fake_split)


@settings(max_examples=200, deadline=None, database=None)
@given(rng_programs(seeds=st.integers(0, 9)))
def test_records_follow_the_program(program):
    records = run_fake(program)
    assert [r.op_index for r in records] == list(range(len(program.ops)))
    contexts = 1
    prefix = {0: [program.seed]}  # root id -> the words its contexts' keys start with
    for record, (kind, ctx_id) in zip(records, program.ops):
        assert (record.kind, record.ctx_id) == (kind, ctx_id) and ctx_id < contexts
        assert record.root in prefix and (record.root_op is None) == (record.root == 0)
        if kind == "fork":
            assert record.key_data is None and record.child == contexts
            contexts += 1
            continue
        # The fake's key spells out the root's words, the fork path and the counter it used.
        assert record.key_data.tolist() == [*prefix[record.root], *record.lineage, record.count]
        assert record.key_data.dtype == np.uint32
        if kind == "draw":
            assert record.child is None
            continue
        assert record.child == contexts
        if kind == "split":
            for row in range(SPLIT_WAYS):
                prefix[contexts + row] = [*record.key_data.tolist(), 1000 + row]
            contexts += SPLIT_WAYS
        else:  # derive and derive-data: a context from the drawn key itself
            prefix[contexts] = record.key_data.tolist()
            contexts += 1
    assert contexts == program.n_contexts


def test_derived_roots_are_named_by_the_op_that_made_them():
    program = RngProgram(3, (("split", 0), ("fork", 2), ("draw", 3), ("derive", 1), ("draw", 4)))
    records = run_fake(program)
    assert [(r.root, r.root_op, r.lineage) for r in records] == [
        (0, None, ()),
        (2, 0, ()),
        (2, 0, (0,)),  # the fork of context 2 keeps its root
        (1, 0, ()),
        (4, 3, ()),
    ]


def test_programs_fork_switch_and_nest():
    seen: Counter = Counter()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True, phases=[Phase.generate])
    @given(rng_programs())
    def run(program: RngProgram) -> None:
        seen["total"] += 1
        records = run_fake(program)
        seen["forks"] += any(r.kind == "fork" for r in records)
        seen["contexts from keys"] += any(r.kind in FROM_KEY_KINDS for r in records)
        seen["draw from a context from a key"] += any(r.kind == "draw" and r.root > 0 for r in records)
        seen["fork below a context from a key"] += any(r.root > 0 and r.lineage for r in records)
        seen["draw from a fork"] += any(r.kind == "draw" and r.ctx_id > 0 for r in records)
        seen["fork of a fork"] += any(len(r.lineage) >= 2 for r in records)
        seen["switches"] += any(a.ctx_id != b.ctx_id for a, b in itertools.pairwise(records))
        seen["back to parent"] += any(
            r.kind == "draw" and r.ctx_id == 0 and any(q.ctx_id > 0 for q in records[: r.op_index])
            for r in records
        )

    run()
    for feature in ("forks", "draw from a fork", "switches", "back to parent", "contexts from keys"):
        assert seen[feature] >= seen["total"] / 4, seen
    for feature in ("fork of a fork", "draw from a context from a key", "fork below a context from a key"):
        assert seen[feature] > 0, seen


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


def test_a_program_shrinks_to_one_context_from_a_key_and_a_draw_from_it():
    program = find(
        rng_programs(),
        lambda p: any(r.kind == "draw" and r.root > 0 for r in run_fake(p)),
        settings=settings(database=None),
    )
    assert program == RngProgram(0, (("derive", 0), ("draw", 1)))


def test_without_contexts_from_keys_only_draws_and_forks():
    @settings(max_examples=100, deadline=None, database=None)
    @given(rng_programs(from_keys=False))
    def run(program: RngProgram) -> None:
        assert {kind for kind, _ in program.ops} <= {"draw", "fork"}

    run()


def test_a_bad_program_is_refused():
    with pytest.raises(ValueError, match="context 1"):
        run_program(RngProgram(0, (("draw", 1),)), CountingRng())
    with pytest.raises(ValueError, match="unknown kind"):
        run_program(RngProgram(0, (("jump", 0),)), CountingRng())  # type: ignore[arg-type]


@settings(max_examples=10, deadline=None, database=None)
@given(rng_programs(max_ops=6))
def test_core_keys_are_reproducible(program):
    from nnx_conformance.spec.adapters.core import CoreAdapter

    first = run_program(program, CoreAdapter())
    second = run_program(program, CoreAdapter())
    assert [r.kind for r in first] == [kind for kind, _ in program.ops]
    for a, b in zip(first, second):
        assert (a.key_data is None) == (b.key_data is None)
        if a.key_data is not None:
            assert a.key_data.dtype == np.uint32 and np.array_equal(a.key_data, b.key_data)
