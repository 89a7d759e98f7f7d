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
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Path
from nnx_conformance.spec.clauses import clause
from nnx_conformance.spec.properties._helpers import (
    SMALL,
    E,
    budget,
    fail,
    fmt_path,
    names_path,
    refuses,
    same_array,
    show,
)
from nnx_conformance.spec.properties._judge import built, expect_graph, partition
from nnx_conformance.spec.properties._mutations import fresh_name, revalued
from nnx_conformance.strategies import COLLECTIONS, Blueprint, Oracle, graphs, oracle

__all__ = [
    "Mismatch",
    "names_path",
    "test_merge_and_update_refuse_a_leaf_that_is_not_a_variable",
    "test_merge_and_update_refuse_a_renamed_path",
    "test_merge_and_update_refuse_a_variable_of_the_wrong_collection",
    "test_merge_and_update_refuse_an_extra_path",
    "test_merge_refuses_a_missing_path",
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
