"""Properties of bad input: the ``errors.*`` clauses of ``SPEC.md``.

``errors.merge-mismatch``: a state that does not fit the graph -- a missing, extra or renamed path, a leaf
that is not a Variable, a Variable of the wrong collection -- must be refused by ``merge`` and by
``update`` with an error naming the offending path, and refused *before* anything is changed.

Each mismatch is made from a state of fresh Variables at the oracle's canonical paths holding *new*
values (:func:`~._mutations.state_at_canonical_paths` of :func:`~._mutations.revalued`), so an ``update``
that applies the good entries before noticing the bad one changes visible values and is caught. A missing
path is an error for ``merge`` only: updating from part of a state is legal (``graph.update``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Path
from nnx_conformance.spec.clauses import clause
from nnx_conformance.spec.properties._helpers import (
    SMALL,
    E,
    budget,
    check,
    fail,
    fmt_path,
    let,
    names_path,
    refuses,
    same_array,
    show,
)
from nnx_conformance.spec.properties._judge import attempt, built, expect_graph, merge, partition
from nnx_conformance.spec.properties._mutations import fresh_name, revalued
from nnx_conformance.spec.properties._sandbox import PLAIN_TREE, jit_plus_one, run_in_sandbox
from nnx_conformance.strategies import (
    COLLECTIONS,
    Blueprint,
    NodeRef,
    Oracle,
    VarRef,
    graphs,
    oracle,
    with_structure,
)

__all__ = [
    "Mismatch",
    "names_path",
    "test_merge_and_update_refuse_a_leaf_that_is_not_a_variable",
    "test_merge_and_update_refuse_a_renamed_path",
    "test_merge_and_update_refuse_a_variable_of_the_wrong_collection",
    "test_merge_and_update_refuse_an_extra_path",
    "test_merge_refuses_a_missing_path",
    "test_partition_refuses_a_cycle_it_disclaims",
    "test_partition_refuses_a_shared_module_it_disclaims",
    "test_partition_refuses_a_shared_variable_it_disclaims",
]


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """A state that does not fit a graph, and the paths an error about it may name."""

    kind: str
    items: tuple[tuple[Path, Any], ...]
    offending: tuple[Path, ...]
    """Any one of these in the message is enough (a rename is a missing *and* an extra path)."""

    def describe(self) -> str:
        return f"{self.kind} at {' / '.join(fmt_path(p) for p in self.offending)}"


def _good_items(impl: Any, new: Blueprint, o: Oracle) -> list[tuple[Path, Any]]:
    items = []
    for j in o.var_order:
        var = new.variables[j]
        items.append((o.var_paths[j], impl.new_variable(var.collection, var.array(), var.sharding)))
    return items


def _node_attr_names(bp: Blueprint, o: Oracle, path: Path) -> set[str]:
    for i in o.node_order:
        if o.node_paths[i] == path:
            return {name for name, _ in bp.nodes[i].attrs}
    raise AssertionError(f"test bug: no node at {path!r}")  # pragma: no cover


def _draw_mismatch(impl: Any, bp: Blueprint, o: Oracle, kind: str, data: st.DataObject) -> Mismatch:
    """One mismatching state of ``kind`` for the graph ``bp`` (new values everywhere else)."""
    new = revalued(bp, o.var_order)
    items = _good_items(impl, new, o)
    if kind == "extra path":
        i = data.draw(st.sampled_from(list(o.node_order)), label="module getting an extra path")
        where = o.node_paths[i]
        path = (*where, fresh_name(impl.capabilities, _node_attr_names(bp, o, where)))
        var = impl.new_variable("params", np.float32(7.0))
        return Mismatch(kind, (*items, (path, var)), (path,))
    k = data.draw(st.integers(0, len(items) - 1), label="entry")
    path, var = items[k]
    rest = items[:k] + items[k + 1 :]
    if kind == "missing path":
        return Mismatch(kind, tuple(rest), (path,))
    if kind == "renamed path":
        renamed = (*path[:-1], fresh_name(impl.capabilities, _node_attr_names(bp, o, path[:-1])))
        return Mismatch(kind, (*rest[:k], (renamed, var), *rest[k:]), (renamed, path))
    if kind == "leaf that is not a Variable":
        return Mismatch(kind, (*rest[:k], (path, impl.variable_value(var)), *rest[k:]), (path,))
    assert kind == "wrong collection"
    collection = impl.variable_collection(var)
    other = data.draw(
        st.sampled_from([c for c in (*COLLECTIONS, "other") if c != collection]), label="collection"
    )
    wrong = impl.new_variable(other, impl.variable_value(var), impl.variable_sharding(var))
    return Mismatch(kind, (*rest[:k], (path, wrong), *rest[k:]), (path,))


def _snapshot(impl: Any, state: Any) -> list[tuple[Path, str, Any]]:
    return [
        (tuple(p), impl.variable_collection(v), np.asarray(impl.variable_value(v)))
        for p, v in impl.state_items(state)
    ]


def _spellings(path: tuple[str, ...]) -> str:
    if len(path) == 1:
        return f"{fmt_path(path)} or {path[0]!r}"
    return f"{fmt_path(path)}, '{'/'.join(path)}' or '{'.'.join(path)}'"


def _expect_refusal(impl: Any, op: str, args: Sequence[Any], mismatch: Mismatch) -> None:
    """``impl.<op>(*args)`` must raise an ``Exception`` whose message names one of the offending paths
    (:func:`names_path`: ``('a', 'b')``, ``['a', 'b']``, ``a/b``, ``a.b``...)."""
    where = mismatch.offending[0]
    message = refuses(
        impl,
        op,
        args,
        mismatch.offending,
        names_path=names_path,
        accepted=f"{op} accepted a state with a {mismatch.describe()} without raising",
        unnamed=f"{op} refused a state with a {mismatch.describe()}, but the error does not name the path "
        f"(as {_spellings(where)}):\n  ",
    )
    note(f"{op} raised {message}")


def _bad_state(impl: Any, mismatch: Mismatch) -> Any:
    """The mismatching state, or ``None`` where the implementation refuses to even build it (a state
    type that only holds Variables cannot carry a raw leaf; nothing can then be merged from it)."""
    try:
        return impl.make_state(list(mismatch.items))
    except Exception as err:
        note(f"make_state refused the mismatching items: {type(err).__name__}: {err}")
        return None


def _check_mismatch(impl: Any, data: st.DataObject, kind: str, *, merge: bool, update: bool) -> None:
    bp = data.draw(graphs(impl.capabilities, **SMALL), label="graph")
    show(impl, bp)
    o = oracle(bp)
    if kind != "extra path" and not o.var_order:
        return  # nothing to drop, rename or replace
    mismatch = _draw_mismatch(impl, bp, o, kind, data)
    note(f"mismatch: {mismatch.describe()}")
    root = built(impl, bp)
    if merge:
        state, graphdef = partition(impl, root)
        before = _snapshot(impl, state)
        bad = _bad_state(impl, mismatch)
        if bad is None:
            return
        _expect_refusal(impl, "merge", (graphdef, bad), mismatch)
        after = _snapshot(impl, state)
        if [(p, c) for p, c, _ in after] != [(p, c) for p, c, _ in before]:
            fail(
                impl,
                E.eq(E.paths(state), E.lit([p for p, _, _ in before])),
                f"a failed merge changed the state: its paths and collections were {[(p, c) for p, c, _ in before]}"
                f", now {[(p, c) for p, c, _ in after]}",
            )
        for (path, _, old), (_, _, now) in zip(before, after):
            if not same_array(now, old):
                fail(
                    impl,
                    E.same_array(E.value(E.entry(state, path)), E.lit(old)),
                    f"a failed merge changed the state's value at {fmt_path(path)} from {old.tolist()!r} to "
                    f"{now.tolist()!r}",
                )
        expect_graph(impl, root, bp, "the partitioned module, after a refused merge")
    if update:
        bad = _bad_state(impl, mismatch)
        if bad is None:
            return
        _expect_refusal(impl, "update", (root, bad), mismatch)
        expect_graph(impl, root, bp, "the module, after a refused update (nothing may change)")


@clause("errors.merge-mismatch")
@budget(0.4)
@given(data=st.data())
def test_merge_refuses_a_missing_path(impl, data):
    """``merge`` with one canonical path left out raises, naming it (``update`` may take part of a state)."""
    _check_mismatch(impl, data, "missing path", merge=True, update=False)


@clause("errors.merge-mismatch")
@budget(0.4)
@given(data=st.data())
def test_merge_and_update_refuse_an_extra_path(impl, data):
    """A path that names no Variable of the graph is refused by merge and by update, unchanged afterwards."""
    _check_mismatch(impl, data, "extra path", merge=True, update=True)


@clause("errors.merge-mismatch")
@budget(0.3)
@given(data=st.data())
def test_merge_and_update_refuse_a_renamed_path(impl, data):
    """One entry moved to a sibling name that does not exist is refused, naming the old or the new path."""
    _check_mismatch(impl, data, "renamed path", merge=True, update=True)


@clause("errors.merge-mismatch")
@budget(0.3)
@given(data=st.data())
def test_merge_and_update_refuse_a_leaf_that_is_not_a_variable(impl, data):
    """A raw array where a Variable belongs is refused by merge and by update."""
    _check_mismatch(impl, data, "leaf that is not a Variable", merge=True, update=True)


@clause("errors.merge-mismatch")
@budget(0.3)
@given(data=st.data())
def test_merge_and_update_refuse_a_variable_of_the_wrong_collection(impl, data):
    """A Variable of another collection at a path is refused by merge and by update."""
    _check_mismatch(impl, data, "wrong collection", merge=True, update=True)


# ---------------------------------------------------------------------------------------------------------
# errors.unsupported-structure
# ---------------------------------------------------------------------------------------------------------
#
# Only an implementation that *disclaims* a structure is judged: for one that claims it, the graph.* clauses
# hold it to handling the structure, and refusing it would be the bug. Each property therefore skips (with
# the reason) where the capability is claimed; for the core, which claims all three, the whole clause is
# "skip", never a vacuous "pass".
#
# One body (check_refusal) judges all three: the refusal, the graph left as it was, and a plain tree still
# partitioned, merged and jitted afterwards. Shared modules and shared Variables are tried in this process
# (a refusal of a finite graph cannot loop). A cycle is tried in the sandbox interpreter (._sandbox): a
# recursive walk of a cycle ends in RecursionError at best, and a RecursionError raised deep inside JAX's
# tree flattening leaves the thread's trace state broken, which would poison every later test of the run.
# The body's recording comes back with its failure, so the reproduction is the same kind of script either
# way, run by the user in a fresh interpreter of their own.

_STRUCTURE_TEXT = {
    "shared_variables": "a shared Variable",
    "shared_modules": "a shared module",
    "cycles": "a cycle",
}


def _keystr_names_path(message: str, path: Sequence[str]) -> bool:
    """Whether ``message`` spells ``path`` the way ``jax.tree_util.keystr`` spells attribute keys:
    ``.a.b``, not part of a longer path (``.a.b.c``, ``x.a.b``). flax's tree mode names paths this way."""
    joined = "".join(f".{name}" for name in path)
    return re.search(r"(?<![\w./\]\)])" + re.escape(joined) + r"(?![\w/\[]|\.\w)", message) is not None


def structure_names_path(message: str, path: Sequence[str]) -> bool:
    """``errors.unsupported-structure``'s reading of "names the path": SPEC.md's Terms
    (:func:`names_path`) or JAX's key-path spelling."""
    return bool(path) and (names_path(message, path) or _keystr_names_path(message, path))


def _disclaimed(impl: Any, structure: str) -> None:
    """Skip unless ``impl`` disclaims ``structure`` (the capability of that name)."""
    if getattr(impl.capabilities, structure):
        pytest.skip(
            f"{impl.name} claims capability {structure}: {_STRUCTURE_TEXT[structure]} is judged by the graph.* "
            "clauses; errors.unsupported-structure applies where it is disclaimed"
        )


def structure_paths(bp: Blueprint, structure: str) -> tuple[Path, ...]:
    """The paths an error about ``bp``'s ``structure`` may name, sorted.

    A shared Variable: every path that holds it. A shared module: every path that reaches it, and every
    path below one of those (an implementation may notice the duplicate only at a Variable inside, as
    flax's tree mode does). A cycle: every path of a back edge, and every other non-empty path to the
    module it closes on.
    """
    o = oracle(bp)
    found: set[Path] = set()
    if structure == "shared_variables":
        for j in o.shared_variables:
            found.update(o.aliases[VarRef(j)])
    elif structure == "shared_modules":
        below = [*(o.node_paths[i] for i in o.node_order), *(o.var_paths[j] for j in o.var_order)]
        for i in o.shared_nodes:
            home = o.node_paths[i]
            for alias in o.aliases[NodeRef(i)]:
                found.update((*alias, *p[len(home) :]) for p in below if p[: len(home)] == home)
    else:
        for edge in o.cycles:
            found.add((*o.node_paths[edge.src], edge.name))
            found.update(o.aliases[edge.dst])
    return tuple(sorted(p for p in found if p))


def _forced(impl: Any, data: st.DataObject, structure: str) -> Blueprint:
    base = graphs(impl.capabilities, **SMALL)
    bp = data.draw(with_structure(base, structure, capabilities=impl.capabilities), label="graph")
    show(impl, bp)
    return bp


def _accepted_text(impl: Any, bp: Blueprint, structure: str) -> Callable[[Any], str]:
    """The failure message for a partition that returned: what it made of the structure."""

    def text(result: Any) -> str:
        want = [p for p, _ in oracle(bp).expected_items]
        try:
            got = [tuple(p) for p, _ in impl.state_items(result[0])]
        except Exception as err:  # the message must not hide the verdict
            got_text = f"(its state could not be read: {type(err).__name__}: {err})"
        else:
            got_text = f"with state paths {got} (the canonical entries are {want})"
        return (
            f"partition accepted a graph with {_STRUCTURE_TEXT[structure]} at "
            f"{', '.join(fmt_path(p) for p in structure_paths(bp, structure)[:4])} although {impl.name} "
            f"disclaims {structure} (capabilities.{structure}=False), {got_text}: a disclaimed structure must "
            "be refused with an error naming its path, not duplicated or dropped silently"
        )

    return text


def check_refusal(impl: Any, bp: Blueprint, structure: str, *, say: Callable[[str], None] = note) -> None:
    """Partition of ``bp`` (which has ``structure``) must raise an error naming one of its paths and leave
    the graph as it was; afterwards a plain tree still partitions and merges and ``jax.jit`` still runs.

    The body of all three properties; for a cycle it runs in the sandbox interpreter (:mod:`._sandbox`),
    which is why it takes ``say`` for its notes rather than calling ``hypothesis.note``.
    """
    paths = structure_paths(bp, structure)
    say(f"{_STRUCTURE_TEXT[structure]}; an error may name any of {[fmt_path(p) for p in paths]}")
    root = built(impl, bp)
    message = refuses(
        impl,
        "partition",
        (root,),
        paths,
        names_path=structure_names_path,
        accepted=_accepted_text(impl, bp, structure),
        unnamed=f"partition refused a graph with {_STRUCTURE_TEXT[structure]}, but the error names none of "
        f"its paths {', '.join(fmt_path(p) for p in paths[:4])} (as a tuple, 'a/b', 'a.b' or JAX's "
        "'.a.b'):\n  ",
    )
    say(f"partition raised {message}")
    expect_graph(impl, root, bp, "the module, after a refused partition (nothing may change)")
    healthy = built(impl, PLAIN_TREE)
    state, graphdef = partition(impl, healthy, "partition(m) of a plain tree, after the refusal")
    merged = merge(impl, graphdef, state, "merge(graphdef, state) of a plain tree, after the refusal")
    expect_graph(impl, merged, PLAIN_TREE, "a plain tree partitioned and merged after the refusal")
    two = attempt(
        "jax.jit(lambda x: x + 1)(1.0), after the refusal",
        lambda: let("two", jit_plus_one, source="jax.jit(lambda x: x + 1)(np.float32(1.0))"),
    )
    check(
        impl,
        E.py("float({0}) == 2.0", two),
        lambda: f"jax.jit(lambda x: x + 1)(1.0) is {two!r}, not 2.0, after the refused partition",
    )


@clause("errors.unsupported-structure")
@budget(0.3)
@given(data=st.data())
def test_partition_refuses_a_shared_variable_it_disclaims(impl, data):
    """Without ``shared_variables``, a Variable held by two attributes is refused, naming one of them."""
    _disclaimed(impl, "shared_variables")
    check_refusal(impl, _forced(impl, data, "shared_variables"), "shared_variables")


@clause("errors.unsupported-structure")
@budget(0.3)
@given(data=st.data())
def test_partition_refuses_a_shared_module_it_disclaims(impl, data):
    """Without ``shared_modules``, a module reached by two attributes is refused, naming a path to it or
    below it; a shared module holding no Variable must be refused too, not flattened twice."""
    _disclaimed(impl, "shared_modules")
    check_refusal(impl, _forced(impl, data, "shared_modules"), "shared_modules")


@clause("errors.unsupported-structure")
@budget(0.3)
@given(data=st.data())
def test_partition_refuses_a_cycle_it_disclaims(impl, data):
    """Without ``cycles``, a graph with a back edge is refused with an error naming a path of the cycle, in
    a child interpreter; the graph is unchanged and the calling thread still builds, partitions and merges a
    plain tree and runs ``jax.jit`` afterwards (a RecursionError inside JAX's flattening breaks that)."""
    _disclaimed(impl, "cycles")
    run_in_sandbox(impl, check_refusal, _forced(impl, data, "cycles"), "cycles")
