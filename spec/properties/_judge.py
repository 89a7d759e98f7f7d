"""Running an implementation's operations on a graph and judging what comes back.

Shared by the property modules (:mod:`.graph`, :mod:`.errors`, :mod:`.state`) and by the meta-tests. Two
kinds of helpers:

* wrappers (:func:`attempt`, :func:`built`, :func:`partition`, :func:`merge`, :func:`update`) that turn an
  exception raised on a legal graph into an ``AssertionError`` naming the operation;
* judges (:func:`expect_graph`, :func:`graph_diff`, :func:`compare_states`, :func:`assert_disjoint`...) that
  compare a live graph or a state with what the oracle expects, and say in words, path by path, where they
  differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from nnx_conformance.spec._recording import short_trace
from nnx_conformance.spec.adapter import Path
from nnx_conformance.spec.properties._helpers import E, build, fail, fmt_path, same_array
from nnx_conformance.spec.repro import Expr
from nnx_conformance.strategies import (
    Blueprint,
    NodeRef,
    NodeSpec,
    Oracle,
    Static,
    VarRef,
    VarSpec,
    canonical,
    oracle,
    read,
)


def attempt(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, with any exception turned into an ``AssertionError`` that says which operation failed.

    An implementation that raises on a legal graph breaks the clause as surely as one that returns the
    wrong thing; reporting it as an assertion keeps the failure readable (and the meta-tests count it as a
    catch, not as a crash of the property).

    The message starts with the cause and says where the implementation raised it (its last frames); the
    implementation's own traceback is not chained on, so a run where every example raises reads as one
    short entry per test.
    """
    try:
        return fn(*args)
    except Exception as err:
        raise AssertionError(
            f"{what} raised {type(err).__name__}: {err}\n  (raised at {short_trace(err)})"
        ) from None


def built(impl: Any, bp: Blueprint) -> Any:
    """The root of ``bp`` built through the adapter (recorded as one graph for the reproduction)."""
    return attempt("building the graph (new_module / new_variable / set_attr)", build, bp, impl).root


def partition(impl: Any, root: Any, what: str = "partition(m)") -> tuple[Any, Any]:
    return attempt(what, impl.partition, root)


def merge(impl: Any, graphdef: Any, state: Any, what: str = "merge(graphdef, state)") -> Any:
    return attempt(what, impl.merge, graphdef, state)


def update(impl: Any, root: Any, state: Any, what: str = "update(m, state)") -> None:
    attempt(what, impl.update, root, state)


def at_path(impl: Any, root: Any, path: Sequence[str]) -> Any:
    """The object reached from ``root`` by the attribute names of ``path`` (through ``impl.attrs``); a
    failed check (naming the missing step) if the path is unreachable."""
    obj = root
    for depth, name in enumerate(path):
        here = E.at(root, path[:depth])
        if not impl.is_module(obj):
            fail(
                impl,
                E.observe("is_module", here),
                f"{fmt_path(path[:depth])} is not a module, so {fmt_path(path)} is unreachable",
            )
        attrs = dict(impl.attrs(obj))
        if name not in attrs:
            fail(
                impl,
                E.py("{0} in {1}", E.lit(name), E.observe("attr_names", here)),
                f"the module at {fmt_path(path[:depth])} has no attribute {name!r} "
                f"(it has {sorted(attrs)}), so {fmt_path(path)} is unreachable",
            )
        obj = attrs[name]
    return obj


def _describe_var(var: VarSpec) -> str:
    sharding = "" if var.sharding is None else f", sharding={var.sharding!r}"
    return f"{var.collection}:{var.dtype}{list(var.shape)}={var.array().tolist()!r}{sharding}"


def _describe_attrs(bp: Blueprint, o: Oracle, node: NodeSpec) -> str:
    parts = []
    for name, ref in node.attrs:
        if isinstance(ref, NodeRef):
            parts.append(f"{name!r} -> module at {fmt_path(o.node_paths[ref.index])}")
        elif isinstance(ref, VarRef):
            parts.append(f"{name!r} -> Variable at {fmt_path(o.var_paths[ref.index])}")
        else:
            parts.append(f"{name!r} = {ref.value!r} ({type(ref.value).__name__})")
    return "{" + ", ".join(parts) + "}"


def graph_diff(got: Blueprint, want: Blueprint, limit: int = 6) -> str:
    """The first differences between two *canonical* blueprints, each located by its canonical path.

    ``got`` is what the implementation holds (from :func:`read`), ``want`` what the oracle expects.
    """
    o_got, o_want = oracle(got), oracle(want)
    lines: list[str] = []
    for i in range(max(len(got.nodes), len(want.nodes))):
        if len(lines) >= limit:
            break
        if i >= len(got.nodes):
            lines.append(f"  expected module at {fmt_path(o_want.node_paths[i])} is missing")
            continue
        if i >= len(want.nodes):
            lines.append(f"  unexpected module at {fmt_path(o_got.node_paths[i])}: {got.nodes[i].type_name}")
            continue
        g, w = got.nodes[i], want.nodes[i]
        if g == w:
            continue
        where = fmt_path(o_want.node_paths[i])
        if g.type_name != w.type_name:
            lines.append(f"  module at {where}: type {g.type_name!r}, expected {w.type_name!r}")
        if g.attrs != w.attrs:
            lines.append(
                f"  module at {where}: attributes\n      implementation {_describe_attrs(got, o_got, g)}\n"
                f"      expected       {_describe_attrs(want, o_want, w)}"
            )
    for j in range(max(len(got.variables), len(want.variables))):
        if len(lines) >= limit:
            break
        if j >= len(got.variables):
            lines.append(f"  expected Variable at {fmt_path(o_want.var_paths[j])} is missing")
        elif j >= len(want.variables):
            lines.append(f"  unexpected Variable at {fmt_path(o_got.var_paths[j])}")
        elif got.variables[j] != want.variables[j]:
            lines.append(
                f"  Variable at {fmt_path(o_want.var_paths[j])}: implementation "
                f"{_describe_var(got.variables[j])}, expected {_describe_var(want.variables[j])}"
            )
    if len(got.nodes) != len(want.nodes) or len(got.variables) != len(want.variables):
        lines.append(
            f"  ({len(got.nodes)} modules and {len(got.variables)} distinct Variables reachable, expected "
            f"{len(want.nodes)} and {len(want.variables)}: a lost or extra sharing shows up as a count change)"
        )
    return "\n".join(lines) or "  (no difference found by the diff; the blueprints still compare unequal)"


def expect_graph(impl: Any, root: Any, expected: Blueprint, what: str) -> None:
    """Assert that the live graph under ``root`` is isomorphic to ``expected`` (values bit for bit).

    On failure the message starts with the first difference found walking ``expected`` in canonical
    order (the first path that differs, what it holds, what was expected there), then the whole diff; that
    first difference is also the check a reproduction ends with.
    """
    got, want = read(root, impl), canonical(expected)
    if got == want:
        return
    hints = "".join(f"\n  {h}" for h in _identity_problems(impl, root, oracle(expected)))
    found = first_graph_difference(impl, root, expected)
    first = f": {found[1]}" if found else ""
    message = f"{what}: the graph is not the expected one{first}\n{graph_diff(got, want)}{hints}"
    fail(impl, found[0] if found else None, message)


def _static_same(value: Any, expected: Any) -> bool:
    try:
        return Static(value) == Static(expected)
    except TypeError:  # unhashable: not a static at all
        return False


def _var_text(value: Any, collection: str, sharding: Any) -> str:
    array = np.asarray(value)
    extra = "" if sharding is None else f", sharding={tuple(sharding)!r}"
    return f"{collection}:{array.dtype}{list(array.shape)}={array.tolist()!r}{extra}"


def first_graph_difference(impl: Any, root: Any, expected: Blueprint) -> tuple[Expr, str] | None:
    """The first observation at which the live graph under ``root`` differs from ``expected``: a condition
    (over ``root``) that is false, and what it shows in words; ``None`` if none is found.

    Walks ``expected`` in canonical order: each module's type and attribute names, each static (value and
    type), each Variable at its canonical path (collection, value bit for bit, sharding); then every
    further path to a shared module or Variable must reach the same object, and distinct ones distinct
    objects. If all of that holds the graphs are isomorphic.
    """
    o = oracle(expected)

    def obj_at(path: Path) -> Any:
        obj = root
        for name in path:
            obj = dict(impl.attrs(obj))[name]
        return obj

    for i in o.node_order:
        where, node = o.node_paths[i], expected.nodes[i]
        here = E.at(root, where)
        module = obj_at(where)
        if not impl.is_module(module):
            return E.observe("is_module", here), f"{fmt_path(where)} is not a module"
        type_name = impl.type_name(module)
        if type_name != node.type_name:
            return (
                E.eq(E.observe("type_name", here), E.lit(node.type_name)),
                f"the module at {fmt_path(where)} is a {type_name!r}, expected a {node.type_name!r}",
            )
        attrs = dict(impl.attrs(module))
        names = sorted(name for name, _ in node.attrs)
        if sorted(attrs) != names:
            missing = [n for n in names if n not in attrs]
            extra = [n for n in sorted(attrs) if n not in names]
            detail = "; ".join(
                x for x in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "") if x
            )
            return (
                E.eq(E.observe("attr_names", here), E.lit(names)),
                f"the module at {fmt_path(where)} has attributes {sorted(attrs)}, expected {names} ({detail})",
            )
        for name, ref in sorted(node.attrs, key=lambda kv: kv[0]):
            path, value = (*where, name), attrs[name]
            there = E.at(root, path)
            if isinstance(ref, Static):
                if not _static_same(value, ref.value):
                    return (
                        E.eq(E.py("repr({0})", there), E.lit(repr(ref.value))),
                        f"{fmt_path(path)} is {value!r} ({type(value).__name__}), expected {ref.value!r} "
                        f"({type(ref.value).__name__})",
                    )
            elif isinstance(ref, VarRef) and path == o.var_paths[ref.index]:
                found = _variable_difference(impl, value, there, path, expected.variables[ref.index])
                if found is not None:
                    return found
    owner: dict[int, tuple[Path, NodeRef | VarRef]] = {}
    for ref, paths in o.aliases.items():
        first = obj_at(paths[0])
        for path in paths[1:]:
            if obj_at(path) is not first:
                kind = "module" if isinstance(ref, NodeRef) else "Variable"
                return (
                    E.is_(E.at(root, paths[0]), E.at(root, path)),
                    f"{fmt_path(paths[0])} and {fmt_path(path)} should reach one {kind} but reach two objects",
                )
        seen = owner.setdefault(id(first), (paths[0], ref))
        if seen[1] != ref:
            return (
                E.is_not(E.at(root, seen[0]), E.at(root, paths[0])),
                f"{fmt_path(seen[0])} and {fmt_path(paths[0])} reach one object, but they are two distinct "
                "objects in the expected graph",
            )
    return None


def _variable_difference(impl: Any, var: Any, there: Expr, path: Path, spec: VarSpec) -> tuple[Expr, str] | None:
    if not impl.is_variable(var):
        return E.observe("is_variable", there), f"{fmt_path(path)} holds {type(var).__name__}, not a Variable"
    value = np.asarray(impl.variable_value(var))
    collection = impl.variable_collection(var)
    sharding = impl.variable_sharding(var)
    sharding = None if sharding is None else tuple(sharding)
    got = _var_text(value, collection, sharding)
    want = _var_text(spec.array(), spec.collection, spec.sharding)
    if collection != spec.collection:
        return E.eq(E.collection(there), E.lit(spec.collection)), f"{fmt_path(path)} holds {got}, expected {want}"
    if not same_array(value, spec.array()):
        return E.same_array(E.value(there), E.lit(spec.array())), f"{fmt_path(path)} holds {got}, expected {want}"
    if sharding != spec.sharding:
        return E.eq(E.sharding(there), E.lit(spec.sharding)), f"{fmt_path(path)} holds {got}, expected {want}"
    return None


def _identity_problems(impl: Any, root: Any, o: Oracle, limit: int = 3) -> list[str]:
    """Pairs of paths that should reach one object but reach two (sharing or a cycle lost)."""
    problems: list[str] = []
    for ref, paths in o.aliases.items():
        try:
            objs = [at_path(impl, root, p) for p in paths]
        except AssertionError:
            continue  # a missing path: the diff above already shows it
        for path, obj in zip(paths[1:], objs[1:]):
            if obj is not objs[0] and len(problems) < limit:
                kind = "module" if isinstance(ref, NodeRef) else "Variable"
                problems.append(
                    f"{fmt_path(paths[0])} and {fmt_path(path)} should reach one {kind} but reach two objects"
                )
    return problems


def definition_hash(impl: Any, graphdef: Any, what: str) -> int:
    """``hash(graphdef)``; a failed check if the definition is not hashable."""
    try:
        return hash(graphdef)
    except TypeError as err:
        message = (
            f"{impl.name}: the {what} definition is not hashable ({type(err).__name__}: {err}); "
            "a definition must be usable as a jax.jit static argument"
        )
    fail(impl, E.py("isinstance({0}, int)", E.observe("hash", graphdef)), message)
    raise AssertionError(message)  # pragma: no cover - fail() raises


def state_entries(impl: Any, state: Any) -> list[tuple[Path, Any]]:
    return [(tuple(path), var) for path, var in impl.state_items(state)]


def compare_states(impl: Any, got: Any, want: Any, what: str) -> None:
    """Same paths in the same order, and per entry the same value, collection and sharding."""
    got_items, want_items = state_entries(impl, got), state_entries(impl, want)
    got_paths, want_paths = [p for p, _ in got_items], [p for p, _ in want_items]
    if got_paths != want_paths:
        fail(
            impl,
            E.eq(E.paths(got), E.paths(want)),
            f"{what}: state paths differ ({first_difference(got_paths, want_paths)})\n"
            f"  got      {got_paths}\n  expected {want_paths}",
        )
    for (path, g), (_, w) in zip(got_items, want_items):
        gv, wv = impl.variable_value(g), impl.variable_value(w)
        if not same_array(gv, wv):
            fail(
                impl,
                E.same_array(E.value(E.entry(got, path)), E.value(E.entry(want, path))),
                f"{what}: value at {fmt_path(path)} is {np.asarray(gv)!r}, expected {np.asarray(wv)!r}",
            )
        gc, wc = impl.variable_collection(g), impl.variable_collection(w)
        if gc != wc:
            fail(
                impl,
                E.eq(E.collection(E.entry(got, path)), E.collection(E.entry(want, path))),
                f"{what}: collection at {fmt_path(path)} is {gc!r}, expected {wc!r}",
            )
        gs, ws = impl.variable_sharding(g), impl.variable_sharding(w)
        if gs != ws:
            fail(
                impl,
                E.eq(E.sharding(E.entry(got, path)), E.sharding(E.entry(want, path))),
                f"{what}: sharding at {fmt_path(path)} is {gs!r}, expected {ws!r}",
            )


def expect_entry(impl: Any, path: Path, var: Any, spec: VarSpec) -> None:
    """Assert that the state entry ``path: var`` holds ``spec``'s value (bitwise), collection and sharding."""
    value = impl.variable_value(var)
    if not same_array(value, spec.array()):
        fail(
            impl,
            E.same_array(E.value(var), E.lit(spec.array())),
            f"state entry {fmt_path(path)} holds {np.asarray(value)!r}, expected {spec.array()!r}",
        )
    collection = impl.variable_collection(var)
    if collection != spec.collection:
        fail(
            impl,
            E.eq(E.collection(var), E.lit(spec.collection)),
            f"state entry {fmt_path(path)} has collection {collection!r}, expected {spec.collection!r}",
        )
    sharding = impl.variable_sharding(var)
    if (None if sharding is None else tuple(sharding)) != spec.sharding:
        fail(
            impl,
            E.eq(E.sharding(var), E.lit(spec.sharding)),
            f"state entry {fmt_path(path)} has sharding {sharding!r}, expected {spec.sharding!r}",
        )


def alias_map(o: Oracle) -> dict[Path, NodeRef | VarRef]:
    """Every path of every attribute edge (``Oracle.aliases``) -> the object it reaches."""
    return {path: ref for ref, paths in o.aliases.items() for path in paths}


def pytree_leaves(state: Any) -> tuple[list[str], list[Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    return [jax.tree_util.keystr(k) for k, _ in flat], [leaf for _, leaf in flat]


def first_difference(a: Sequence[Any], b: Sequence[Any]) -> str:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first at position {k}: {x!r} vs {y!r}"
    return f"lengths {len(a)} vs {len(b)}"


def structure(bp: Blueprint) -> tuple[Any, ...]:
    """What a definition must capture: the canonical graph with every Variable reduced to its collection.

    Sharding annotations are left out on purpose. ``SPEC.md`` counts them in "isomorphic", but whether a
    definition or the state carries them is a layout choice (the core keeps them in the state, flax in the
    definition's Variable metadata); these properties never compare graphs that differ only there.
    """
    c = canonical(bp)
    return c.nodes, tuple(v.collection for v in c.variables)


def shardings_of(bp: Blueprint) -> tuple[Any, ...]:
    return tuple(v.sharding for v in canonical(bp).variables)


def _reachable_objects(impl: Any, root: Any) -> dict[int, tuple[Path, Any]]:
    """``id -> (first path, object)`` for every module and Variable reachable from ``root``."""
    found: dict[int, tuple[Path, Any]] = {id(root): ((), root)}
    stack: list[tuple[Path, Any]] = [((), root)]
    while stack:
        path, module = stack.pop()
        for name, value in sorted(impl.attrs(module), key=lambda kv: kv[0]):
            if (impl.is_module(value) or impl.is_variable(value)) and id(value) not in found:
                found[id(value)] = ((*path, name), value)
                if impl.is_module(value):
                    stack.append(((*path, name), value))
    return found


def assert_disjoint(impl: Any, a: Any, b: Any, what_a: str, what_b: str) -> None:
    objs_a, objs_b = _reachable_objects(impl, a), _reachable_objects(impl, b)
    common = sorted(set(objs_a) & set(objs_b), key=lambda k: objs_a[k][0])
    if common:
        shown = [
            f"the {'Variable' if impl.is_variable(objs_a[k][1]) else 'module'} at {fmt_path(objs_a[k][0])} of "
            f"the {what_a} is the one at {fmt_path(objs_b[k][0])} of the {what_b}"
            for k in common[:4]
        ]
        first = common[0]
        fail(
            impl,
            E.is_not(E.at(a, objs_a[first][0]), E.at(b, objs_b[first][0])),
            f"the {what_a} and the {what_b} share objects:\n  " + "\n  ".join(shown),
        )


def check_partition_and_roundtrip(impl: Any, bp: Blueprint) -> None:
    root = built(impl, bp)
    state, graphdef = partition(impl, root)
    paths = sorted(p for p, _ in state_entries(impl, state))
    want = sorted(p for p, _ in oracle(bp).expected_items)
    if paths != want:
        fail(
            impl,
            E.eq(E.py("sorted({0})", E.paths(state)), E.lit(want)),
            f"state paths do not spell the attribute names ({first_difference(paths, want)})\n"
            f"  got      {paths}\n  expected {want}",
        )
    expect_graph(impl, merge(impl, graphdef, state), bp, "merge(partition(m))")
