"""Properties of histories: the ``sequence.*`` clauses of ``SPEC.md``, checked by state machines.

Every other property is one shot: build a fresh graph, run one or two operations, compare. Real code is
imperative -- build, partition, mutate, update, merge, jit, mutate again -- and bugs that depend on history
(a definition cached per module and not invalidated, an update writing through an index built on an
earlier call, a counter that stops advancing after a transform) cannot be found one shot. Here a Hypothesis
:class:`~hypothesis.stateful.RuleBasedStateMachine` drives the adapter through random sequences of steps,
keeping a *model* of what the implementation must hold: a mutable blueprint (plain data, judged by the
:func:`~nnx_conformance.strategies.oracle`), never the reference core. After every step the invariants hold.

* ``sequence.graph`` (:func:`graph_machine`): the live graph equals the model; its partition holds the
  oracle's entries in canonical order and a definition equal to that of a fresh build of the model; every
  state kept from an earlier step still holds what it held; every merged module still is what it was.
* ``sequence.rng`` (:func:`rng_machine`): every key drawn so far is distinct, and each context yields
  exactly the keys of its *twin*, an equal context driven eagerly through the same steps.

Capabilities are respected: names come from :func:`~nnx_conformance.strategies.name_pool` (reserved names
never), a step that would make a cycle or a sharing the implementation disclaims is never taken, attributes
are deleted only through the optional ``del_attr`` with ``Capabilities.delete_attrs``
(:func:`~nnx_conformance.spec.adapter.can_delete_attrs`), the jitted step passes the definition as a static
argument only where ``hashable_def`` is claimed.

A failure prints Hypothesis' shrunk steps and one reproduction that replays them and ends in the failing
check: the recorded adapter calls and check (:func:`expect_state` and :func:`expect_definition` record theirs,
as :mod:`._judge` does), rendered in the library's own code where its adapter renders; otherwise the
machine's own adapter-terms script (:mod:`._machine`; a ``jit`` of :func:`jit_step`, a refused update or an
RNG twin comparison is written only there), whose checks are the helpers of this module, so running it fails
where the property failed.

Budget (also in ``docs/architecture.md``): :data:`GRAPH_STEPS` steps per program and ``budget(GRAPH_RUNS)``
programs (25 at the default 100 examples); :data:`RNG_STEPS` steps and ``budget(RNG_RUNS)`` programs (10);
at most :data:`TRANSFORMS_PER_RUN` ``jit``/``vmap`` steps per program (on the core a context's counter is
static pytree data, so a pass through ``jit`` at a new count is a compile).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, initialize, invariant, multiple, precondition, rule

from nnx_conformance.spec.adapter import Path, can_delete_attrs
from nnx_conformance.spec.clauses import clause
from nnx_conformance.spec.properties import _helpers
from nnx_conformance.spec.properties._helpers import E, budget, fail, fmt_path, same_array
from nnx_conformance.spec.properties._judge import assert_disjoint, at_path, attempt, expect_graph
from nnx_conformance.spec.properties._machine import (
    MachineRunner,
    Script,
    ScriptedMachine,
    array_code,
    scripted,
)
from nnx_conformance.spec.properties._mutations import bumped, fresh_name
from nnx_conformance.strategies import (
    TYPE_NAMES,
    Blueprint,
    NodeRef,
    NodeSpec,
    Oracle,
    Ref,
    Static,
    VarRef,
    VarSpec,
    build,
    canonical,
    filters,
    graphs,
    matches,
    name_pool,
    oracle,
    statics,
    variables,
)

__all__ = [
    "GRAPH_RUNS",
    "GRAPH_STEPS",
    "RNG_RUNS",
    "RNG_STEPS",
    "TRANSFORMS_PER_RUN",
    "NewModule",
    "NewStatic",
    "NewVariable",
    "PathIn",
    "draw_twice",
    "expect_definition",
    "expect_refused",
    "expect_state",
    "fork_and_draw",
    "graph_machine",
    "jit_step",
    "rng_machine",
]

GRAPH_STEPS = 20
"""Steps per ``sequence.graph`` program (Hypothesis' ``stateful_step_count``)."""
GRAPH_RUNS = 0.25
"""``sequence.graph`` programs, as a fraction of the run's example budget (25 at the default 100)."""
RNG_STEPS = 15
"""Steps per ``sequence.rng`` program."""
RNG_RUNS = 0.1
"""``sequence.rng`` programs, as a fraction of the run's example budget (10 at the default 100)."""
TRANSFORMS_PER_RUN = 2
"""At most this many ``jit``/``vmap`` steps per program (graph and RNG machines alike): each is usually a
compile (~50-250 ms on CPU), where any other step costs about a millisecond."""
KEPT_CHECKED = 6
"""How many of the latest kept states (and merged modules) the invariant re-checks after every step; an
older one is re-checked whenever a step uses it."""

_SEQUENCE = "nnx_conformance.spec.properties.sequence"
_STRATEGIES = "nnx_conformance.strategies"

# ---------------------------------------------------------------------------------------------------------
# Checks, usable from a reproduction script
# ---------------------------------------------------------------------------------------------------------


def _describe(spec: VarSpec) -> str:
    sharding = "" if spec.sharding is None else f", sharding {spec.sharding!r}"
    return f"{spec.collection} {spec.dtype}{list(spec.shape)} = {spec.array().tolist()!r}{sharding}"


def expect_state(
    impl: Any, state: Any, want: dict[Path, VarSpec], what: str, *, ordered: bool = False
) -> None:
    """``state`` holds exactly ``want`` (values bit for bit, collections, shardings); in canonical (sorted)
    order when ``ordered``. Each check is recorded (:func:`._helpers.fail`), so a reproduction ends in it."""
    items = attempt(f"state_items({what})", impl.state_items, state)
    got_paths = [tuple(p) for p, _ in items]
    want_paths = sorted(want)
    if ordered and got_paths != want_paths:
        fail(
            impl,
            E.eq(E.paths(state), E.lit(want_paths)),
            f"{what}: the state's paths are not the expected ones in canonical order\n"
            f"  got      {got_paths}\n  expected {want_paths}",
        )
    if sorted(got_paths) != want_paths:
        fail(
            impl,
            E.eq(E.py("sorted({0})", E.paths(state)), E.lit(want_paths)),
            f"{what}: the state's paths are not the expected ones\n"
            f"  got      {sorted(got_paths)}\n  expected {want_paths}",
        )
    for path, var in items:
        spec = want[tuple(path)]
        value = impl.variable_value(var)
        entry = E.entry(state, tuple(path))
        if not same_array(value, spec.array()):
            fail(
                impl,
                E.same_array(E.value(entry), E.lit(spec.array())),
                f"{what}: the entry {fmt_path(path)} holds {np.asarray(value)!r}, expected {_describe(spec)}",
            )
        collection = impl.variable_collection(var)
        if collection != spec.collection:
            fail(
                impl,
                E.eq(E.collection(entry), E.lit(spec.collection)),
                f"{what}: the entry {fmt_path(path)} has collection {collection!r}, expected {spec.collection!r}",
            )
        sharding = impl.variable_sharding(var)
        if (None if sharding is None else tuple(sharding)) != spec.sharding:
            fail(
                impl,
                E.eq(E.sharding(entry), E.lit(spec.sharding)),
                f"{what}: the entry {fmt_path(path)} has sharding {sharding!r}, expected {spec.sharding!r}",
            )


def names_path(message: str, path: Sequence[str]) -> bool:
    """Whether an error message names ``path``: as the tuple ``('a', 'b')`` or as ``'a/b'`` in quotes (the
    rule of ``errors.merge-mismatch``)."""
    path = tuple(path)
    joined = "/".join(path)
    return any(form in message for form in (repr(path), str(list(path)), f"'{joined}'", f'"{joined}"'))


def fresh_definition(impl: Any, bp: Blueprint) -> Any:
    """The definition of a fresh build of ``bp``."""
    root = attempt("building a fresh copy of the graph", build, canonical(bp), impl).root
    return attempt("partition(a fresh copy of the graph)", impl.partition, root)[1]


def expect_definition(impl: Any, graphdef: Any, bp: Blueprint, what: str, fresh: Any = None) -> None:
    """``graphdef`` equals the definition of a freshly built copy of ``bp`` (``fresh``, if already made)."""
    fresh = fresh_definition(impl, bp) if fresh is None else fresh
    if graphdef != fresh:
        fail(
            impl,
            E.eq(graphdef, fresh),
            f"{what}: the definition differs from that of a freshly built copy of the same graph (an answer "
            f"that depends on history)\n  live:  {graphdef!r}\n  fresh: {fresh!r}",
        )


def expect_refused(
    impl: Any, call: Callable[[], Any], offending: Sequence[Path], root: Any, bp: Blueprint, what: str
) -> None:
    """``call()`` raises an error naming one of ``offending``, and the graph under ``root`` is still ``bp``."""
    try:
        call()
    except Exception as err:
        named = [p for p in offending if names_path(str(err), p)]
        assert named, (
            f"{what} raised {type(err).__name__}: {err}\n  but the message names none of the paths that do "
            f"not fit: {', '.join(fmt_path(p) for p in offending)}"
        )
        expect_graph(impl, root, bp, f"the graph after the refused {what} (nothing may change)")
        return
    raise AssertionError(
        f"{what} succeeded, but the state does not fit the graph at "
        f"{', '.join(fmt_path(p) for p in offending)} (it must raise an error naming such a path, and change "
        "nothing)"
    )


def _bp_code(bp: Blueprint) -> str:
    nodes = "".join(f"{n!r}, " for n in bp.nodes)
    variables_ = "".join(f"{v!r}, " for v in bp.variables)
    return f"Blueprint(({nodes}), ({variables_}))"


def _merge_check(name: str, what: str, snapshot: Blueprint) -> list[str]:
    return [f"expect_graph(a, {name}, {_bp_code(snapshot)}, {what!r})"]


def _entries_code(entries: dict[Path, VarSpec]) -> str:
    return "{" + ", ".join(f"{p!r}: {v!r}" for p, v in entries.items()) + "}"


# ---------------------------------------------------------------------------------------------------------
# Rule arguments: what a new attribute holds, and a path filter
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NewModule:
    """A new, empty module of type ``type_name``."""

    type_name: str


@dataclasses.dataclass(frozen=True)
class NewVariable:
    """A new Variable holding ``var``'s collection, value and sharding."""

    var: VarSpec


@dataclasses.dataclass(frozen=True)
class NewStatic:
    """A static (hashable, non-module, non-Variable) value."""

    value: Hashable


New = NewModule | NewVariable | NewStatic


@dataclasses.dataclass(frozen=True)
class PathIn:
    """Entries whose path is one of ``paths`` (a predicate filter: it looks at the path only)."""

    paths: frozenset[Path]

    def __call__(self, path: Path, variable: Any) -> bool:
        return tuple(path) in self.paths

    def __repr__(self) -> str:
        return f"PathIn(frozenset({sorted(self.paths)!r}))"


def _selected(entries: dict[Path, VarSpec], fs: Sequence[Any]) -> dict[Path, VarSpec]:
    return {p: v for p, v in entries.items() if any(matches(f, p, v) for f in fs)}


# ---------------------------------------------------------------------------------------------------------
# The graph model: a mutable blueprint beside the live objects
# ---------------------------------------------------------------------------------------------------------


class Model:
    """What the live graph must be: node ``i`` / Variable ``j`` as data, with the live object made for it.

    Nodes and Variables are never removed (a detached one may be attached again); :meth:`blueprint` holds
    them all and the oracle looks only at what the root reaches. Node 0 is the root.
    """

    def __init__(self) -> None:
        self.types: list[str] = []
        self.attrs: list[dict[str, Ref]] = []
        self.variables: list[VarSpec] = []
        self.nodes: list[Any] = []
        self.vars: list[Any] = []
        self._bp: Blueprint | None = None
        self._o: Oracle | None = None

    def add_node(self, type_name: str, live: Any) -> int:
        self.types.append(type_name)
        self.attrs.append({})
        self.nodes.append(live)
        self.changed()
        return len(self.nodes) - 1

    def add_var(self, spec: VarSpec, live: Any) -> int:
        self.variables.append(spec)
        self.vars.append(live)
        self.changed()
        return len(self.vars) - 1

    def changed(self) -> None:
        self._bp = self._o = None

    def blueprint(self, attrs: list[dict[str, Ref]] | None = None) -> Blueprint:
        if attrs is None and self._bp is not None:
            return self._bp
        nodes = tuple(
            NodeSpec(t, tuple(a.items())) for t, a in zip(self.types, self.attrs if attrs is None else attrs)
        )
        bp = Blueprint(nodes, tuple(self.variables))
        if attrs is None:
            self._bp = bp
        return bp

    def oracle(self) -> Oracle:
        if self._o is None:
            self._o = oracle(self.blueprint())
        return self._o

    def with_attr(self, i: int, name: str, ref: Ref | None) -> Blueprint:
        """The blueprint with ``nodes[i].name`` set to ``ref`` (deleted if ``None``), for looking ahead."""
        attrs = [dict(a) for a in self.attrs]
        if ref is None:
            attrs[i].pop(name, None)
        else:
            attrs[i][name] = ref
        return self.blueprint(attrs)

    def entries(self) -> dict[Path, VarSpec]:
        """The canonical ``path -> Variable`` entries a partition must hold, in canonical order."""
        return {path: self.variables[j] for path, j in self.oracle().expected_items}

    def reach(self, path: Path) -> Ref | None:
        """What ``path`` reaches by attribute names from the root (any path, not only canonical ones)."""
        ref: Ref = NodeRef(0)
        for name in path:
            if not isinstance(ref, NodeRef):
                return None
            nxt = self.attrs[ref.index].get(name)
            if nxt is None:
                return None
            ref = nxt
        return ref

    def reaches(self, src: int, dst: int) -> bool:
        """Whether module ``src`` reaches module ``dst`` by attribute edges (``src == dst`` counts)."""
        seen, stack = {src}, [src]
        while stack:
            i = stack.pop()
            if i == dst:
                return True
            for ref in self.attrs[i].values():
                if isinstance(ref, NodeRef) and ref.index not in seen:
                    seen.add(ref.index)
                    stack.append(ref.index)
        return False


@dataclasses.dataclass(eq=False)
class Kept:
    """A state kept from an earlier step: what it must hold, and (for a partition) its definition and graph."""

    name: str
    state: Any
    entries: dict[Path, VarSpec]
    graphdef: Any = None
    snapshot: Blueprint | None = None
    """The canonical graph the state was partitioned from (``None`` for a filtered or united state)."""

    def __repr__(self) -> str:
        return self.name


@dataclasses.dataclass(eq=False)
class Merged:
    """A module merged from a kept partition, and the canonical graph it must stay."""

    name: str
    module: Any
    snapshot: Blueprint
    adopted: bool = False

    def __repr__(self) -> str:
        return self.name


def jit_step(impl: Any, graphdef: Any, state: Any) -> Any:
    """The ``sequence.graph`` step run under ``impl.jit``: merge, partition again, add one to every value."""
    module = impl.merge(graphdef, state)
    again, _ = impl.partition(module)
    return jax.tree_util.tree_map(lambda x: x + 1, again)


_jitted: dict[tuple[int, str], tuple[Any, Any]] = {}


def _cached(impl: Any, key: str, make: Callable[[], Any]) -> Any:
    """One jitted function per adapter and kind (so equal inputs hit the trace cache across programs)."""
    hit = _jitted.get((id(impl), key))
    if hit is None or hit[0] is not impl:
        hit = _jitted[(id(impl), key)] = (impl, make())
    return hit[1]


_CHECK_IMPORTS = (
    f"from {_STRATEGIES} import Blueprint, NodeRef, NodeSpec, Static, VarRef, VarSpec",
    "from nnx_conformance.spec.properties._judge import assert_disjoint, expect_graph",
    f"from {_SEQUENCE} import expect_definition, expect_refused, expect_state",
)


class _GraphMachine(ScriptedMachine):
    """Helpers of the ``sequence.graph`` machine; the rules are made per adapter by :func:`graph_machine`."""

    impl: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.a = self.impl
        self.caps = self.a.capabilities
        self.script = Script(self.a)
        for line in _CHECK_IMPORTS:
            self.script.need(line)
        self.model = Model()
        self.kept: list[Kept] = []
        self.merges: list[Merged] = []
        self.transforms = 0
        self.can_delete = can_delete_attrs(self.a)
        self.fresh_defs: dict[Any, Any] = {}

    # -- names in the script ---------------------------------------------------------------------------
    @property
    def root(self) -> Any:
        return self.model.nodes[0]

    @property
    def root_code(self) -> str:
        return self.script.name(self.root)

    def _code(self, obj: Any, kind: str, index: int) -> str:
        """The script's name for a live object of the model, naming it first if the script never did
        (an object of a merged module: reached from its root by its canonical path)."""
        name = self.script.name(obj)
        if name != "?":
            return name
        o = self.model.oracle()
        path = o.node_paths[index] if kind == "m" else o.var_paths[index]
        self.script.need(
            "def at(module, *path):  # the object reached from module by attribute names\n"
            "    for name in path:\n"
            "        module = dict(a.attrs(module))[name]\n"
            "    return module"
        )
        name = self.script.bind(obj, kind)
        self.script.say(f"{name} = at({', '.join([self.root_code, *map(repr, path)])})")
        return name

    def node_code(self, i: int) -> str:
        return self._code(self.model.nodes[i], "m", i)

    def var_code(self, j: int) -> str:
        return self._code(self.model.vars[j], "v", j)

    def on_failure(self) -> None:
        _helpers.last_shown = canonical(self.model.blueprint())

    def run(self, code: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one operation, written as ``code``: the failing check if it raises, else a script line."""
        self.check(lambda: [code])
        out = attempt(code, fn, *args)
        self.script.say(code)
        return out

    # -- building ----------------------------------------------------------------------------------------
    def new_module(self, type_name: str) -> int:
        name = "root" if not self.model.nodes else self.script.fresh("m")
        live = self.run(f"{name} = a.new_module({type_name!r})", self.a.new_module, type_name)
        self.script.bind(live, "m", name)
        return self.model.add_node(type_name, live)

    def new_variable(self, spec: VarSpec) -> int:
        name = self.script.fresh("v")
        sharding = "" if spec.sharding is None else f", {spec.sharding!r}"
        code = f"{name} = a.new_variable({spec.collection!r}, {array_code(spec.array())}{sharding})"
        live = self.run(code, self.a.new_variable, spec.collection, spec.array(), spec.sharding)
        self.script.bind(live, "v", name)
        return self.model.add_var(spec, live)

    def value_ref(self, value: New | Ref) -> Ref:
        if isinstance(value, NewModule):
            return NodeRef(self.new_module(value.type_name))
        if isinstance(value, NewVariable):
            return VarRef(self.new_variable(value.var))
        if isinstance(value, NewStatic):
            return Static(value.value)
        return value

    def assign(self, i: int, name: str, value: New | Ref, comment: str = "") -> None:
        ref = self.value_ref(value)
        if isinstance(ref, NodeRef):
            live, code = self.model.nodes[ref.index], self.node_code(ref.index)
        elif isinstance(ref, VarRef):
            live, code = self.model.vars[ref.index], self.var_code(ref.index)
        else:
            live, code = ref.value, repr(ref.value)
        self.run(
            f"a.set_attr({self.node_code(i)}, {name!r}, {code}){comment}",
            self.a.set_attr,
            self.model.nodes[i],
            name,
            live,
        )
        self.model.attrs[i][name] = ref
        self.model.changed()

    def allowed(self, bp: Blueprint) -> bool:
        """Whether a graph stays within what the implementation claims (cycles, sharing...)."""
        return not self.caps.missing(oracle(bp).needs)

    def reachable_node(self, k: int) -> int:
        order = self.model.oracle().node_order
        return order[k % len(order)]

    def free_name(self, i: int, start: str) -> str | None:
        """``start`` if node ``i`` has no attribute of that name, else the next free name of the pool."""
        pool = name_pool(self.caps)
        taken = self.model.attrs[i]
        k = pool.index(start) if start in pool else 0
        for name in pool[k:] + pool[:k]:
            if name not in taken:
                return name
        return None

    # -- checks ------------------------------------------------------------------------------------------
    def verify_kept(self, kept: Kept) -> None:
        what = f"the state {kept.name} kept from an earlier step"
        self.check(lambda: [f"expect_state(a, {kept.name}, {_entries_code(kept.entries)}, {what!r})"])
        expect_state(self.a, kept.state, kept.entries, what)

    def verify_merged(self, merged: Merged) -> None:
        what = f"the module {merged.name} merged earlier"
        self.check(lambda: [f"expect_graph(a, {merged.name}, {_bp_code(merged.snapshot)}, {what!r})"])
        expect_graph(self.a, merged.module, merged.snapshot, what)

    def fresh_definition(self, bp: Blueprint) -> Any:
        """:func:`fresh_definition`, cached by structure (steps that change only values reuse it)."""
        c = canonical(bp)
        key = (c.nodes, tuple((v.collection, v.shape, v.dtype, v.sharding) for v in c.variables))
        hit = self.fresh_defs.get(key)
        if hit is None:
            hit = self.fresh_defs[key] = fresh_definition(self.a, c)
        return hit

    def check_graph(self) -> None:
        bp, root = self.model.blueprint(), self.root_code
        what = "the live graph after this step"
        self.check(lambda: [f"expect_graph(a, {root}, {_bp_code(canonical(bp))}, {what!r})"])
        expect_graph(self.a, self.root, bp, what)

    def check_partition(self, state: Any, graphdef: Any, code: str, name: str, g: str) -> None:
        """``state, graphdef`` (made by ``code``, named ``name`` and ``g``) are the oracle's entries and a
        definition equal to a fresh build's."""
        entries, bp = self.model.entries(), self.model.blueprint()
        what = f"partition({self.root_code})"
        self.check(
            lambda: [code, f"expect_state(a, {name}, {_entries_code(entries)}, {what!r}, ordered=True)"]
        )
        expect_state(self.a, state, entries, what, ordered=True)
        self.check(lambda: [code, f"expect_definition(a, {g}, {_bp_code(canonical(bp))}, {what!r})"])
        expect_definition(self.a, graphdef, bp, what, self.fresh_definition(bp))

    def keep_partition(self) -> Kept:
        s = self.script.fresh("s")
        g = "g" + s[1:]
        code = f"{s}, {g} = a.partition({self.root_code})"
        self.check(lambda: [code])
        state, graphdef = attempt(code, self.a.partition, self.root)
        self.check_partition(state, graphdef, code, s, g)
        self.script.say(code)
        self.script.bind(state, "s", s)
        self.script.bind(graphdef, "g", g)
        kept = Kept(s, state, self.model.entries(), graphdef, canonical(self.model.blueprint()))
        self.kept.append(kept)
        return kept

    # -- update ------------------------------------------------------------------------------------------
    def do_update(self, state: Any, entries: dict[Path, VarSpec], code: str, state_code: str) -> None:
        """Update the root from ``state`` (written ``state_code``, holding ``entries``) and judge the outcome.

        Each entry is classified against the graph as it is now: it *fits* (the canonical path of a Variable
        of the same collection, shape and dtype), *may fail* (it reaches a Variable of the same collection by
        a non-canonical path, or the value's shape or dtype differs: implementation-defined), or *must fail*
        (the path reaches nothing, a module or a static, or a Variable of another collection).
        """
        o = self.model.oracle()
        canon = {o.var_paths[j]: j for j in o.var_order}
        must: list[Path] = []
        may: list[Path] = []
        targets: dict[Path, int] = {}
        for path, spec in entries.items():
            j = canon.get(path)
            ref = VarRef(j) if j is not None else self.model.reach(path)
            if not isinstance(ref, VarRef) or self.model.variables[ref.index].collection != spec.collection:
                must.append(path)
                continue
            targets[path] = ref.index
            cur = self.model.variables[ref.index]
            if j is None or (cur.shape, cur.dtype) != (spec.shape, spec.dtype):
                may.append(path)
        before, root = self.model.blueprint(), self.root_code

        def refusal(paths: list[Path]) -> str:
            return (
                f"expect_refused(a, lambda: a.update({root}, {state_code}), {paths!r}, {root}, "
                f"{_bp_code(canonical(before))}, {code!r})"
            )

        if must:
            self.check(lambda: [refusal(must + may)])
            expect_refused(
                self.a, lambda: self.a.update(self.root, state), must + may, self.root, before, code
            )
            self.script.say(refusal(must + may))
            return
        self.check(lambda: [code])
        try:
            self.a.update(self.root, state)
        except Exception as err:
            if not may:
                raise AssertionError(
                    f"{code} raised {type(err).__name__}: {err}\n  but the state fits the graph: every path "
                    "is the canonical path of a Variable of the same collection, shape and dtype"
                ) from err
            self.check(lambda: [refusal(may)])
            named = [p for p in may if names_path(str(err), p)]
            assert named, (
                f"{code} raised {type(err).__name__}: {err}\n  but the message names none of the paths that "
                f"do not fit: {', '.join(fmt_path(p) for p in may)}"
            )
            expect_graph(
                self.a, self.root, before, f"the graph after the refused {code} (nothing may change)"
            )
            self.script.say(f"# {code} is refused (implementation-defined: {', '.join(map(fmt_path, may))})")
            return
        self.script.say(code)
        for path, j in targets.items():
            self.model.variables[j] = entries[path]
        self.model.changed()


def graph_machine(impl: Any) -> type[_GraphMachine]:
    """The ``sequence.graph`` state machine for ``impl`` (strategies follow its capabilities)."""
    cached = _machines.get((id(impl), "graph"))
    if cached is not None and cached[0] is impl:
        return cached[1]
    caps = impl.capabilities
    pool = name_pool(caps)
    index = st.integers(0, 7)
    names = st.sampled_from(pool)
    values = st.one_of(
        st.builds(NewModule, st.sampled_from(TYPE_NAMES)),
        st.builds(NewVariable, variables(sharding=caps.sharding)),
        st.builds(NewStatic, statics()),
    )
    some_filters = st.lists(filters(names=pool), min_size=1, max_size=2)
    links = [
        kind
        for kind, claimed in (
            ("share a module", caps.shared_modules),
            ("share a Variable", caps.shared_variables),
            ("make a cycle", caps.cycles),
        )
        if claimed
    ] or ["share a module"]  # nothing claimed: every candidate is refused by allowed()

    class GraphSequence(_GraphMachine):
        partitions = Bundle("partitions")
        states = Bundle("states")
        """Every kept state: partitions, and the filtered and united states made from kept states."""
        merged = Bundle("merged")

        @initialize(targets=(partitions, states), graph=graphs(caps, max_nodes=3, max_vars=2, max_statics=1))
        @scripted
        def build(self, graph: Blueprint) -> Kept:
            """Build a small drawn graph (modules, then Variables, then attributes, as ``build`` does) and
            keep its first partition (so that steps using a kept state can run from the first step on)."""
            nodes = [self.new_module(node.type_name) for node in graph.nodes]
            variables_ = [self.new_variable(var) for var in graph.variables]
            for i, node in enumerate(graph.nodes):
                for name, ref in node.attrs:
                    if isinstance(ref, NodeRef):
                        ref = NodeRef(nodes[ref.index])
                    elif isinstance(ref, VarRef):
                        ref = VarRef(variables_[ref.index])
                    self.assign(nodes[i], name, ref)
            return self.keep_partition()

        # -- structure -----------------------------------------------------------------------------------
        @rule(node=index, name=names, value=values)
        @scripted
        def add_attr(self, node: int, name: str, value: New) -> None:
            """A new attribute (a new module, Variable or static) on a reachable module."""
            i = self.reachable_node(node)
            free = self.free_name(i, name)
            if free is not None:
                self.assign(i, free, value)

        @rule(node=index, k=index, value=values)
        @scripted
        def replace_attr(self, node: int, k: int, value: New) -> None:
            """An existing attribute set to a new module, Variable or static."""
            i = self.reachable_node(node)
            taken = list(self.model.attrs[i])
            if taken:
                name = taken[k % len(taken)]
                if self.allowed(self.model.with_attr(i, name, Static(None))):
                    self.assign(i, name, value)

        @precondition(lambda self: self.can_delete)
        @rule(node=index, k=index)
        @scripted
        def delete_attr(self, node: int, k: int) -> None:
            """An attribute deleted (``del_attr``); what only it reached is detached, not forgotten."""
            i = self.reachable_node(node)
            taken = [n for n in self.model.attrs[i] if self.allowed(self.model.with_attr(i, n, None))]
            if taken:
                name = taken[k % len(taken)]
                self.run(
                    f"a.del_attr({self.node_code(i)}, {name!r})", self.a.del_attr, self.model.nodes[i], name
                )
                del self.model.attrs[i][name]
                self.model.changed()

        @rule(node=index, name=names, pick=index, kind=st.sampled_from(links))
        @scripted
        def link(self, node: int, name: str, pick: int, kind: str) -> None:
            """A second name for an object of the graph: a reachable module that does not reach the owner
            (``share a module``), a reachable Variable (``share a Variable``), or a module that reaches the
            owner, the owner itself included (``make a cycle``)."""
            i = self.reachable_node(node)
            free = self.free_name(i, name)
            if free is None:
                return
            o = self.model.oracle()
            if kind == "share a module":
                refs: list[Ref] = [
                    NodeRef(t) for t in o.node_order if t != 0 and not self.model.reaches(t, i)
                ]
            elif kind == "make a cycle":
                refs = [NodeRef(t) for t in o.node_order if self.model.reaches(t, i)]
            else:
                refs = [VarRef(j) for j in o.var_order]
            fits = [r for r in refs if self.allowed(self.model.with_attr(i, free, r))]
            if fits:
                self.assign(
                    i, free, fits[pick % len(fits)], "  # cycle" if kind == "make a cycle" else "  # shared"
                )

        @rule(var=index, offset=st.integers(1, 3))
        @scripted
        def change_value(self, var: int, offset: int) -> None:
            """A Variable's value changed in place (through a scratch module holding it: the protocol's only
            setter is update), so that every alias of it must see the new value."""
            order = self.model.oracle().var_order
            if not order:
                return
            j = order[var % len(order)]
            spec = self.model.variables[j]
            new = dataclasses.replace(spec, data=bumped(spec.array(), offset).tobytes())
            h = self.script.fresh("h")
            holder = self.run(f"{h} = a.new_module('Holder')", self.a.new_module, "Holder")
            self.script.bind(holder, "h", h)
            slot = fresh_name(self.caps, (), "v")
            self.run(
                f"a.set_attr({h}, {slot!r}, {self.var_code(j)})",
                self.a.set_attr,
                holder,
                slot,
                self.model.vars[j],
            )
            sharding = "" if spec.sharding is None else f", {spec.sharding!r}"
            fresh = self.run(
                f"fresh = a.new_variable({spec.collection!r}, {array_code(new.array())}{sharding})",
                self.a.new_variable,
                spec.collection,
                new.array(),
                spec.sharding,
            )
            state = self.run(
                f"patch = a.make_state([(({slot!r},), fresh)])", self.a.make_state, [((slot,), fresh)]
            )
            self.run(f"a.update({h}, patch)", self.a.update, holder, state)
            self.model.variables[j] = new
            self.model.changed()

        # -- partition, merge ------------------------------------------------------------------------------
        @rule(targets=(partitions, states))
        @scripted
        def partition(self) -> Kept:
            """Partition the graph and keep the state and definition for later steps."""
            return self.keep_partition()

        @rule(kept=partitions, twice=st.booleans(), target=merged)
        @scripted
        def merge_kept(self, kept: Kept, twice: bool) -> Any:
            """Merge a state kept from an earlier step (maybe twice): each merge is the graph the state was
            taken from, and two merges share no object."""
            self.verify_kept(kept)
            assert kept.snapshot is not None
            snapshot = kept.snapshot
            out = []
            for _ in range(2 if twice else 1):
                m = self.script.fresh("m")
                code = f"{m} = a.merge({self.script.name(kept.graphdef)}, {kept.name})"
                module = self.run(code, self.a.merge, kept.graphdef, kept.state)
                self.script.bind(module, "m", m)
                what = f"{code} (merging {kept.name}, kept from an earlier step)"
                self.check(functools.partial(_merge_check, m, what, snapshot))
                expect_graph(self.a, module, snapshot, what)
                out.append(Merged(m, module, snapshot))
            if twice:
                first, second = out
                self.check(
                    lambda: [
                        f"assert_disjoint(a, {first.name}, {second.name}, 'merge {first.name}', 'merge {second.name}')"
                    ]
                )
                assert_disjoint(
                    self.a, first.module, second.module, f"merge {first.name}", f"merge {second.name}"
                )
            self.merges.extend(out)
            return multiple(*out)

        @rule(merged=merged)
        @scripted
        def continue_with_merged(self, merged: Merged) -> None:
            """Make a merged module the graph the next steps work on."""
            if merged.adopted:
                return
            self.verify_merged(merged)
            merged.adopted = True
            self.merges = [m for m in self.merges if m is not merged]
            bp = merged.snapshot
            o = oracle(bp)
            model = Model()
            for i, node in enumerate(bp.nodes):
                model.add_node(node.type_name, at_path(self.a, merged.module, o.node_paths[i]))
            for j, var in enumerate(bp.variables):
                model.add_var(var, at_path(self.a, merged.module, o.var_paths[j]))
            for i, node in enumerate(bp.nodes):
                model.attrs[i] = dict(node.attrs)
            model.changed()
            self.model = model
            self.script.say(f"# from here on, the steps work on {merged.name}")

        # -- update ------------------------------------------------------------------------------------------
        @rule(
            kept=states,
            how=st.sampled_from(["full", "filtered", "partial"]),
            fs=some_filters,
            mask=st.integers(0, 2**8 - 1),
        )
        @scripted
        def update_from(self, kept: Kept, how: str, fs: list[Any], mask: int) -> None:
            """Update the graph from a kept state (maybe kept before a structural change): the whole state,
            ``filter(state, *fs)``, or the entries picked by the bits of ``mask`` (``make_state``)."""
            self.verify_kept(kept)
            if how == "full":
                state, want, state_code = kept.state, kept.entries, kept.name
            elif how == "filtered":
                self.need_filters(fs)
                state_code = f"a.filter({kept.name}, {', '.join(map(repr, fs))})"
                want = _selected(kept.entries, fs)
                state = self.filtered(kept, fs, state_code, want)
            else:
                items = attempt(f"state_items({kept.name})", self.a.state_items, kept.state)
                chosen = [(tuple(p), v) for k, (p, v) in enumerate(items) if (mask >> (k % 8)) & 1]
                paths = sorted(p for p, _ in chosen)
                state_code = (
                    f"a.make_state([(p, v) for p, v in a.state_items({kept.name}) if p in {paths!r}])"
                )
                state = attempt("make_state(some entries)", self.a.make_state, chosen)
                want = {p: kept.entries[p] for p in paths}
            self.do_update(state, want, f"a.update({self.root_code}, {state_code})", state_code)

        # -- filter, union -----------------------------------------------------------------------------------
        def need_filters(self, fs: Sequence[Any]) -> None:
            kinds = sorted({type(f).__name__ for f in fs if not isinstance(f, str)} - {"PathIn"})
            if kinds:
                self.script.need(f"from {_STRATEGIES} import {', '.join(kinds)}")
            if any(isinstance(f, PathIn) for f in fs):
                self.script.need(f"from {_SEQUENCE} import PathIn")

        def filtered(self, kept: Kept, fs: Sequence[Any], code: str, want: dict[Path, VarSpec]) -> Any:
            self.check(lambda: [f"sub = {code}"])
            sub = attempt(code, self.a.filter, kept.state, *fs)
            self.check(lambda: [f"sub = {code}", f"expect_state(a, sub, {_entries_code(want)}, {code!r})"])
            expect_state(self.a, sub, want, code)
            return sub

        @rule(target=states, kept=states, fs=some_filters)
        @scripted
        def filter_kept(self, kept: Kept, fs: list[Any]) -> Kept:
            """Filter a kept state, and keep the result."""
            self.verify_kept(kept)
            self.need_filters(fs)
            s = self.script.fresh("s")
            code = f"a.filter({kept.name}, {', '.join(map(repr, fs))})"
            want = _selected(kept.entries, fs)
            sub = self.filtered(kept, fs, code, want)
            self.script.say(f"{s} = {code}")
            self.script.bind(sub, "s", s)
            part = Kept(s, sub, want)
            self.kept.append(part)
            return part

        @rule(target=states, first=states, second=states, fs=some_filters)
        @scripted
        def union_kept(self, first: Kept, second: Kept, fs: list[Any]) -> Kept:
            """Unite a kept state with a filtered part of another (paths where the two disagree are left
            out of the second: conflicts are ``state.union-laws``' business), and keep the result."""
            self.verify_kept(first)
            self.verify_kept(second)
            chosen = _selected(second.entries, fs)
            f = PathIn(frozenset(p for p, v in chosen.items() if first.entries.get(p, v) == v))
            self.need_filters([f])
            self.check(lambda: [f"part = a.filter({second.name}, {f!r})"])
            other = attempt(f"a.filter({second.name}, {f!r})", self.a.filter, second.state, f)
            s = self.script.fresh("s")
            code = f"a.union({first.name}, a.filter({second.name}, {f!r}))"
            self.check(lambda: [f"{s} = {code}"])
            united = attempt(code, self.a.union, first.state, other)
            merged_entries = {**first.entries, **{p: chosen[p] for p in f.paths}}
            want = {p: merged_entries[p] for p in sorted(merged_entries)}
            self.check(
                lambda: [
                    f"{s} = {code}",
                    f"expect_state(a, {s}, {_entries_code(want)}, {code!r}, ordered=True)",
                ]
            )
            expect_state(self.a, united, want, code, ordered=True)
            self.script.say(f"{s} = {code}")
            self.script.bind(united, "s", s)
            part = Kept(s, united, want)
            self.kept.append(part)
            return part

        # -- jit -------------------------------------------------------------------------------------------------
        @precondition(lambda self: self.transforms < TRANSFORMS_PER_RUN)
        @rule()
        @scripted
        def jitted_step(self) -> None:
            """Partition, then merge and partition again under ``impl.jit`` adding one to every value (the
            definition a static argument where ``hashable_def`` is claimed), and update the graph from it."""
            self.transforms += 1
            root = self.root_code
            self.script.need("import functools")
            self.script.need(f"from {_SEQUENCE} import jit_step")
            state, graphdef = self.run(f"st, gd = a.partition({root})", self.a.partition, self.root)
            if self.caps.hashable_def:
                fn = _cached(
                    self.a,
                    "graph-step",
                    lambda: self.a.jit(functools.partial(jit_step, self.a), static_argnums=0),
                )
                out = self.run(
                    "out = a.jit(functools.partial(jit_step, a), static_argnums=0)(gd, st)",
                    fn,
                    graphdef,
                    state,
                )
            else:
                out = self.run(
                    "out = a.jit(functools.partial(jit_step, a, gd))(st)",
                    lambda: self.a.jit(functools.partial(jit_step, self.a, graphdef))(state),
                )
            self.run(f"a.update({root}, out)", self.a.update, self.root, out)
            for j in self.model.oracle().var_order:
                spec = self.model.variables[j]
                self.model.variables[j] = dataclasses.replace(spec, data=bumped(spec.array(), 1).tobytes())
            self.model.changed()

        # -- the invariant -----------------------------------------------------------------------------------------
        @invariant()
        @scripted
        def graph_partition_and_earlier_results_are_right(self) -> None:
            if not self.model.nodes:
                return
            self.check_graph()
            code = f"state, graphdef = a.partition({self.root_code})"
            self.check(lambda: [code])
            state, graphdef = attempt(code, self.a.partition, self.root)
            self.check_partition(state, graphdef, code, "state", "graphdef")
            for kept in self.kept[-KEPT_CHECKED:]:
                self.verify_kept(kept)
            for merged_ in self.merges[-KEPT_CHECKED:]:
                self.verify_merged(merged_)

    GraphSequence.impl = impl
    GraphSequence.__name__ = GraphSequence.__qualname__ = f"GraphSequence_{_ident(impl.name)}"
    _machines[(id(impl), "graph")] = (impl, GraphSequence)
    return GraphSequence


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


_machines: dict[tuple[int, str], tuple[Any, Any]] = {}


# ---------------------------------------------------------------------------------------------------------
# The RNG machine
# ---------------------------------------------------------------------------------------------------------


def _kd(impl: Any, key: Any) -> Any:
    return jnp.asarray(impl.key_data(key), jnp.uint32)


def draw_twice(impl: Any, ctx: Any) -> tuple[Any, Any]:
    """Two draws; hands the context back (what ``sequence.rng`` runs under ``jit`` and ``vmap``)."""
    return jnp.stack([_kd(impl, impl.make_rng(ctx)), _kd(impl, impl.make_rng(ctx))]), ctx


def fork_and_draw(impl: Any, ctx: Any) -> tuple[Any, Any, Any]:
    """A fork, then one draw from the parent and one from the child; hands both back."""
    child = impl.fork(ctx)
    keys = jnp.stack([_kd(impl, impl.make_rng(ctx)), _kd(impl, impl.make_rng(child))])
    return keys, ctx, child


BODIES: dict[str, Callable[..., Any]] = {"draw_twice": draw_twice, "fork_and_draw": fork_and_draw}
BATCH = 3
"""Contexts per batch split from one context (one size: one compile per counter)."""


@dataclasses.dataclass(eq=False)
class Ctx:
    """A context under test and its twin: an equal context that only ever runs eagerly."""

    name: str
    live: Any
    twin: Any


@dataclasses.dataclass(eq=False)
class Batch:
    """A batch of contexts (leading axis) and the eager twin of each row."""

    name: str
    live: Any
    twins: list[Any]


class _RngMachine(ScriptedMachine):
    """Helpers of the ``sequence.rng`` machine; the rules are made per adapter by :func:`rng_machine`."""

    impl: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.a = self.impl
        self.script = Script(self.a)
        self.contexts: list[Ctx] = []
        self.batches: list[Batch] = []
        self.seen: dict[bytes, tuple[str, str]] = {}
        """Key data -> (where it was drawn, code giving it in the script)."""
        self.transforms = 0

    def keys_ok(self, code: str, name: str, live: Any, twin: Any, where: str) -> None:
        """Keys ``live`` (the value of ``name`` after ``code``) equal the twin's ``twin`` and are new."""
        live, twin = np.asarray(live, np.uint32), np.asarray(twin, np.uint32)
        self.check(
            lambda: [
                code,
                f"assert np.asarray({name}).tolist() == {twin.tolist()!r}, "
                f"f'{{np.asarray({name}).tolist()}}: an equal context driven eagerly gives other keys'",
            ]
        )
        assert np.array_equal(live, twin), (
            f"{where}: got the key(s) {live.tolist()}, but an equal context driven eagerly through the same "
            f"steps gives {twin.tolist()} (a transform repeated, skipped or changed the context's counter)"
        )
        rows = live.reshape(-1, live.shape[-1])
        for n, row in enumerate(rows):
            key = row.tobytes()
            expr = f"np.asarray({name}).reshape(-1, {rows.shape[-1]})[{n}].tolist()"
            earlier = self.seen.get(key)
            if earlier is not None:
                line = f"assert {expr} != {earlier[1]}, 'a key drawn twice (first by {earlier[0]})'"
                self.check(functools.partial(list, (code, line)))
            assert earlier is None, (
                f"{where} drew the key {row.tolist()}, already drawn by {earlier[0]}: every key drawn in a "
                "sequence must be distinct"
            )
            self.seen[key] = (f"{where}" + (f" (key #{n})" if len(rows) > 1 else ""), expr)

    def pick(self, k: int) -> Ctx:
        return self.contexts[k % len(self.contexts)]

    def add(self, live: Any, twin: Any, name: str) -> Ctx:
        ctx = Ctx(self.script.bind(live, "ctx", name), live, twin)
        self.contexts.append(ctx)
        return ctx

    def draw_key_object(self, ctx: Ctx) -> tuple[Any, Any, str]:
        """Draw one key from ``ctx`` and its twin, checked like :meth:`draw`; the live key, the twin's, and
        the key's name in the script."""
        k = self.script.fresh("key")
        code = f"{k} = a.make_rng({ctx.name})"
        self.check(lambda: [code])
        key = attempt(code, self.a.make_rng, ctx.live)
        twin = self.a.make_rng(ctx.twin)
        live_data = np.asarray(self.a.key_data(key), np.uint32)
        self.keys_ok(
            code,
            f"a.key_data({k})",
            live_data,
            np.asarray(self.a.key_data(twin), np.uint32),
            f"{k}, drawn from {ctx.name}",
        )
        self.script.say(f"{code}  # key data {live_data.tolist()}")
        self.script.bind(key, "key", k)
        return key, twin, k

    def draw(self, ctx: Ctx) -> np.ndarray:
        k = self.script.fresh("k")
        code = f"{k} = a.key_data(a.make_rng({ctx.name}))"
        self.check(lambda: [code])
        live = np.asarray(attempt(code, lambda: self.a.key_data(self.a.make_rng(ctx.live))), np.uint32)
        twin = np.asarray(self.a.key_data(self.a.make_rng(ctx.twin)), np.uint32)
        self.keys_ok(code, k, live, twin, f"{k}, drawn from {ctx.name}")
        self.script.say(f"{code}  # {live.tolist()}")
        return live


def rng_machine(impl: Any) -> type[_RngMachine]:
    """The ``sequence.rng`` state machine for ``impl``."""
    cached = _machines.get((id(impl), "rng"))
    if cached is not None and cached[0] is impl:
        return cached[1]
    index = st.integers(0, 7)

    class RngSequence(_RngMachine):
        @initialize(seed=st.integers(0, 2**32 - 1))
        @scripted
        def start(self, seed: int) -> None:
            """A root context from a seed."""
            name = self.script.fresh("ctx")
            code = f"{name} = a.new_context({seed})"
            self.check(lambda: [code])
            self.add(attempt(code, self.a.new_context, seed), self.a.new_context(seed), name)
            self.script.say(code)

        @rule(c=index)
        @scripted
        def draw_key(self, c: int) -> None:
            """A draw, eagerly."""
            self.draw(self.pick(c))

        @rule(c=index)
        @scripted
        def fork(self, c: int) -> None:
            """A fork, eagerly."""
            parent = self.pick(c)
            name = self.script.fresh("ctx")
            code = f"{name} = a.fork({parent.name})"
            self.check(lambda: [code])
            live = attempt(code, self.a.fork, parent.live)
            self.add(live, self.a.fork(parent.twin), name)
            self.script.say(code)

        @rule(c=index, raw=st.booleans())
        @scripted
        def context_from_a_key(self, c: int, raw: bool) -> None:
            """A new context made from a key just drawn from another, ``new_context(key)`` (the typed key,
            or its raw data), as the seed's ScanMLP writes ``Context(key)``; its draws must be new keys."""
            parent = self.pick(c)
            key, twin_key, k = self.draw_key_object(parent)
            seed, twin_seed, seed_code = (
                (np.asarray(self.a.key_data(key)), np.asarray(self.a.key_data(twin_key)), f"a.key_data({k})")
                if raw
                else (key, twin_key, k)
            )
            name = self.script.fresh("ctx")
            code = f"{name} = a.new_context({seed_code})"
            self.check(lambda: [code])
            self.add(attempt(code, self.a.new_context, seed), self.a.new_context(twin_seed), name)
            self.script.say(code)

        @precondition(lambda self: self.transforms < TRANSFORMS_PER_RUN)
        @rule(c=index, body=st.sampled_from(sorted(BODIES)))
        @scripted
        def through_jit(self, c: int, body: str) -> None:
            """Pass a context through ``impl.jit`` (draws, or a fork and draws, inside) and keep going with
            the context(s) the jitted function hands back: two eager draws from each at once.

            Two, because a context whose counter stopped where the transform left it still gives the right
            first key; its second repeats it. Left to later rules, that second draw came too seldom: a
            context frozen after ``jit`` escaped one seed in ten (kill matrix)."""
            self.transforms += 1
            ctx = self.pick(c)
            fn = _cached(self.a, f"rng-{body}", lambda: self.a.jit(functools.partial(BODIES[body], self.a)))
            self.script.need("import functools")
            self.script.need(f"from {_SEQUENCE} import {body}")
            child = self.script.fresh("ctx") if body == "fork_and_draw" else None
            keys = self.script.fresh("keys")
            code = f"{keys}, {ctx.name}{', ' + child if child else ''} = a.jit(functools.partial({body}, a))({ctx.name})"
            self.check(lambda: [code])
            out = attempt(code, fn, ctx.live)
            eager = BODIES[body](self.a, ctx.twin)
            self.keys_ok(code, keys, out[0], eager[0], f"{keys}, drawn by {body} from {ctx.name} under jit")
            self.script.say(f"{code}  # {np.asarray(out[0]).tolist()}")
            ctx.live, ctx.twin = out[1], eager[1]
            self.script.bind(ctx.live, "ctx", ctx.name)
            handed_back = [ctx]
            if child is not None:
                handed_back.append(self.add(out[2], eager[2], child))
            for returned in handed_back:
                self.draw(returned)
                self.draw(returned)

        @rule(c=index)
        @scripted
        def split(self, c: int) -> None:
            """A batch of contexts made from the rows of ``jax.random.split`` of a drawn key under
            ``vmap(new_context)``, as the seed's ScanMLP initialises its layers; each row's twin is
            ``new_context`` of that row, eagerly. The split keys are consumed by seeding, so they count as
            drawn: no context may draw one of them later."""
            key, twin_key, k = self.draw_key_object(self.pick(c))
            rows, twin_rows = jax.random.split(key, BATCH), jax.random.split(twin_key, BATCH)
            r = self.script.fresh("rows")
            code = f"{r} = jax.random.split({k}, {BATCH})"
            self.script.need("import jax")
            self.check(lambda: [code])
            self.keys_ok(
                code,
                f"a.key_data({r})",
                np.asarray(self.a.key_data(rows)),
                np.asarray(self.a.key_data(twin_rows)),
                f"{r}, split from {k}",
            )
            self.script.say(code)
            self.script.bind(rows, "rows", r)
            b = self.script.fresh("batch")
            code = f"{b} = a.vmap(a.new_context)({r})"
            self.check(lambda: [code])
            live = attempt(code, self.a.vmap(self.a.new_context), rows)
            self.script.bind(live, "batch", b)
            self.script.say(code)
            self.batches.append(Batch(b, live, [self.a.new_context(twin_rows[i]) for i in range(BATCH)]))

        @precondition(lambda self: bool(self.batches) and self.transforms < TRANSFORMS_PER_RUN)
        @rule(b=index)
        @scripted
        def through_vmap(self, b: int) -> None:
            """Pass a batch through ``impl.jit(impl.vmap(draw_twice))`` and keep going with the batch it
            hands back; row ``i`` must equal its twin's eager draws."""
            self.transforms += 1
            batch = self.batches[b % len(self.batches)]
            fn = _cached(
                self.a, "rng-vmap", lambda: self.a.jit(self.a.vmap(functools.partial(draw_twice, self.a)))
            )
            self.script.need("import functools")
            self.script.need(f"from {_SEQUENCE} import draw_twice")
            keys = self.script.fresh("keys")
            code = f"{keys}, {batch.name} = a.jit(a.vmap(functools.partial(draw_twice, a)))({batch.name})"
            self.check(lambda: [code])
            got, live = attempt(code, fn, batch.live)
            got = np.asarray(got, np.uint32)
            assert got.shape[:2] == (BATCH, 2), (
                f"{code} gave keys of shape {got.shape}, expected ({BATCH}, 2, ...)"
            )
            eager = [draw_twice(self.a, twin) for twin in batch.twins]
            want = np.stack([np.asarray(k, np.uint32) for k, _ in eager])
            self.keys_ok(code, keys, got, want, f"{keys}, drawn under vmap from the rows of {batch.name}")
            self.script.say(f"{code}  # {got.tolist()}")
            batch.live, batch.twins = live, [t for _, t in eager]
            self.script.bind(live, "batch", batch.name)

    RngSequence.impl = impl
    RngSequence.__name__ = RngSequence.__qualname__ = f"RngSequence_{_ident(impl.name)}"
    _machines[(id(impl), "rng")] = (impl, RngSequence)
    return RngSequence


# ---------------------------------------------------------------------------------------------------------
# The properties
# ---------------------------------------------------------------------------------------------------------

_GRAPH_RUNNER = MachineRunner(GRAPH_STEPS)
_RNG_RUNNER = MachineRunner(RNG_STEPS)
_PHASES = tuple(p for p in settings().phases if p is not Phase.explain)
"""The loaded profile's phases without ``explain``: explaining a program of a dozen steps replays it hundreds
of times (over a minute on the core), and the printed script already says what each step does. One bug is
shrunk and reported (``report_multiple_bugs=False``): a broken history usually breaks many checks at once."""


@clause("sequence.graph")
@settings(budget(GRAPH_RUNS), report_multiple_bugs=False, phases=_PHASES)
@given(data=st.data())
def test_graph_sequences_keep_the_graph_its_partition_and_earlier_results_right(impl, data):
    """Random sequences of structural changes, value changes, partitions, merges (of states kept from
    earlier steps), updates (from full, filtered and partial kept states, also stale ones), filters,
    unions and jitted steps: after every step the live graph is the model, its partition is the oracle's,
    and every kept state and merged module is unchanged."""
    _GRAPH_RUNNER.run(graph_machine(impl), data)


@clause("sequence.rng")
@settings(budget(RNG_RUNS), report_multiple_bugs=False, phases=_PHASES)
@given(data=st.data())
def test_rng_sequences_draw_distinct_keys_through_transforms(impl, data):
    """Random sequences of draws, forks, contexts seeded from drawn keys, and contexts (and batches of
    contexts) passed through ``jit``/``vmap`` and used again: every key is distinct, and every context
    yields the keys of its eagerly driven twin."""
    _RNG_RUNNER.run(rng_machine(impl), data)
