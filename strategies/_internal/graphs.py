"""``graphs()``: module graphs with sharing and cycles, drawn as blueprints.

How a graph is drawn, and why that way:

1. **A spanning tree first.** Node ``i > 0`` gets a parent among the nodes ``< i`` (an *index* draw, so
   every choice is valid; nothing is filtered or assumed). Every node is therefore reachable, and deleting
   a node while shrinking never disconnects the graph.
2. **Variables and statics** each get an owner node by index.
3. **Extra edges**, a few index draws each, of the kinds the capabilities allow: *back edges* from a node
   to one of its tree ancestors or to itself (cycles), *forward edges* ``src < dst`` (shared modules;
   forward, so that without back edges the graph stays acyclic), and further references to an existing
   Variable (shared Variables).
4. **Names**, per node, one index into a table of distinct-name sequences (unique by construction).

No generality is lost: numbering the nodes of any graph whose nodes are reachable from the root in
reverse post-order of a depth-first search makes every tree, forward and cross edge go from a lower to a
higher index and every other edge go back to an ancestor, which is exactly the form above.

Shrinking is designed in. Every list (nodes, Variables, statics, extra edges) is drawn the way
``st.lists`` draws, with one "one more?" choice per element (folded into the element's first choice
where possible), so the shrinker can delete any element on its own. A full list still draws its "one
more?" choice and ignores it: after a deletion that choice, shrunk to "stop", ends the shorter list,
where otherwise the next list would read its first choice as the missing "stop". Every index shrinks
towards 0 (the root, the first name, the simplest kind). A bug that needs a cycle therefore shrinks to
the one-node graph ``root.a = root``, one that needs a shared Variable to ``root.a = v; root.b = v``,
one that needs a shared module to ``root.a = m1; root.b = m1``.

Cost is designed in too: each recorded choice costs Hypothesis tens of microseconds, so values are not
drawn (Variable ``j`` holds ``10j, 10j + 1, ...``), a weighted ``sampled_from`` replaces a coin plus an
index where it can (a Variable's kind and "one more?", a node's type and "one more?", a node's attribute
names), and a draw with a single possible outcome is skipped (except a node choice, which stays recorded
so that deleting a node does not shift every later choice). A default graph takes about 27 choices.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random
from collections.abc import Iterable, Sequence

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.strategies._internal._draws import index, node
from nnx_conformance.strategies._internal.blueprint import (
    Blueprint,
    NodeRef,
    NodeSpec,
    Ref,
    Static,
    VarRef,
    VarSpec,
)
from nnx_conformance.strategies._internal.names import DEFAULT_CAPABILITIES, allowed, name_pool
from nnx_conformance.strategies._internal.variables import (
    COLLECTIONS,
    STATIC_VALUES,
    Head,
    KindTables,
    kind_tables,
)

__all__ = ["TYPE_NAMES", "graphs"]

TYPE_NAMES: tuple[str, ...] = ("A", "B", "C")
"""Module type names (same name = same type); few, so graph definitions repeat and shrink to ``"A"``."""

# Weighted choices: ``sampled_from`` shrinks to its first entry, so "stop" (or False) goes first and each
# list shrinks to empty; repeating an entry sets its weight (and so a list's mean length, geometric).
# A node's type or "stop" ("one more node?" and its type in one choice); "stop" has a quarter of the weight.
_NEXT_NODE = st.sampled_from((None, *TYPE_NAMES))
# Per graph, one choice: "deep" or "bushy" (see _draw_graph), and the root's type in graphs of mixed types
# or None in graphs of "A"s only; each half the weight, shrinking to (bushy, all "A").
_STYLE = st.sampled_from(
    ((False, None), (True, None)) * len(TYPE_NAMES) + tuple((d, t) for t in TYPE_NAMES for d in (False, True))
)
_EXTEND = st.sampled_from((False, True, True, True))
_TWIN = st.sampled_from((False, True, True, True))
_TWIN_SEPARATOR = st.sampled_from(("/", "/", "-"))
_TYPES = st.sampled_from(TYPE_NAMES)
# A static attribute or "stop", in one choice: "stop" first (so the list shrinks to empty), half the weight.
_STOP = object()
_NEXT_STATIC = st.sampled_from((_STOP,) * len(STATIC_VALUES) + STATIC_VALUES)


@dataclasses.dataclass(frozen=True)
class _Config:
    min_nodes: int
    max_nodes: int
    max_depth: int
    max_vars: int
    max_statics: int
    max_extras: int
    names: tuple[str, ...]
    reserved: frozenset[str]
    cycles: bool
    shared_modules: bool
    shared_variables: bool
    twins: bool
    kinds: KindTables
    next_variable: st.SearchStrategy[Head | None]


def _flag(name: str, value: bool | None, capabilities: Capabilities) -> bool:
    claimed = bool(getattr(capabilities, name))
    if value is None:
        return claimed
    if value and not claimed:
        raise InvalidArgument(f"{name}=True, but the capabilities disclaim {name}")
    return value


@functools.lru_cache(maxsize=128)
def _config(
    capabilities: Capabilities,
    min_nodes: int,
    max_nodes: int,
    max_depth: int | None,
    max_vars: int,
    max_statics: int,
    max_extras: int,
    names: tuple[str, ...] | None,
    collections: tuple[str, ...],
    cycles: bool | None,
    shared_modules: bool | None,
    shared_variables: bool | None,
    sharding: bool | None,
) -> _Config:
    if not 1 <= min_nodes <= max_nodes:
        raise InvalidArgument(f"need 1 <= min_nodes <= max_nodes, got {min_nodes=}, {max_nodes=}")
    if max_depth is None:
        max_depth = min(capabilities.max_depth, max_nodes - 1)
    if max_depth < 0 or (max_depth == 0 and min_nodes > 1):
        raise InvalidArgument(f"max_depth={max_depth} leaves no room for {min_nodes} nodes")
    if min(max_vars, max_statics, max_extras) < 0:
        raise InvalidArgument(f"bounds must be >= 0, got {max_vars=}, {max_statics=}, {max_extras=}")
    if names is None:
        names = name_pool(capabilities)
    bad = [n for n in names if not isinstance(n, str) or not allowed(n, capabilities)]
    if bad or not names or len(set(names)) != len(names):
        raise InvalidArgument(
            f"names must be distinct, non-empty and allowed by the capabilities; bad: {bad}"
        )
    if not collections:
        raise InvalidArgument("collections must not be empty")
    kinds = kind_tables(collections, sharding=_flag("sharding", sharding, capabilities))
    return _Config(
        min_nodes=min_nodes,
        max_nodes=max_nodes if max_depth > 0 else 1,
        max_depth=max_depth,
        max_vars=max_vars,
        max_statics=max_statics,
        max_extras=max_extras,
        names=names,
        reserved=capabilities.reserved_names,
        cycles=_flag("cycles", cycles, capabilities),
        shared_modules=_flag("shared_modules", shared_modules, capabilities),
        shared_variables=_flag("shared_variables", shared_variables, capabilities),
        twins=capabilities.separator_in_names,
        kinds=kinds,
        next_variable=_next_variable(kinds.heads),
    )


@st.composite
def graphs(
    draw: st.DrawFn,
    capabilities: Capabilities = DEFAULT_CAPABILITIES,
    *,
    min_nodes: int = 1,
    max_nodes: int = 8,
    max_depth: int | None = None,
    max_vars: int = 6,
    max_statics: int = 3,
    max_extras: int = 4,
    names: Sequence[str] | None = None,
    collections: Sequence[str] = COLLECTIONS,
    cycles: bool | None = None,
    shared_modules: bool | None = None,
    shared_variables: bool | None = None,
    sharding: bool | None = None,
) -> Blueprint:
    """A valid :class:`Blueprint` using only what ``capabilities`` claims.

    ``cycles``, ``shared_modules``, ``shared_variables`` and ``sharding`` default to the capability of the
    same name; ``False`` switches the feature off, ``True`` where the capabilities disclaim it is an error.
    ``max_depth`` (default: ``min(capabilities.max_depth, max_nodes - 1)``) bounds how many attribute
    accesses separate any node from the root. ``names`` is the pool of attribute names (default
    :func:`~.names.name_pool`); it must hold only names the capabilities allow, and it need not be large:
    a node that runs out gets ``n0``, ``n1``, ... Where ``capabilities.separator_in_names`` holds, some
    nodes also get a *twin* attribute ``"x/y"`` (or ``"x-y"``) next to an attribute ``x`` whose module has
    an attribute ``y``: the pair that makes ``"/"``-joined keys collide or sort differently from paths.

    Sizes: at most ``max_nodes`` modules, ``max_vars`` Variables, ``max_statics`` static attributes and
    ``max_extras`` extra edges (back edges, shared modules, shared Variables together). Variables draw
    their collection from ``collections`` and their shape and dtype from :data:`~.variables.SHAPES` and
    :data:`~.variables.DTYPES`.
    """
    cfg = _config(
        capabilities,
        min_nodes,
        max_nodes,
        max_depth,
        max_vars,
        max_statics,
        max_extras,
        None if names is None else tuple(names),
        tuple(collections),
        cycles,
        shared_modules,
        shared_variables,
        sharding,
    )
    return _draw_graph(draw, cfg)


def _draw_graph(draw: st.DrawFn, cfg: _Config) -> Blueprint:
    # 1. The spanning tree. ``open_`` holds the nodes that may still take children (depth < max_depth).
    # A per-graph coin picks the shape (swarm-style): "bushy" graphs attach each node to any open node;
    # "deep" ones mostly extend the newest open node, so chains and the depth bound are common. Both
    # shrink to "bushy" and every parent to the root.
    parent, depth, open_ = [-1], [0], [0]
    slots: list[list[Ref]] = [[]]
    deep, root_type = draw(_STYLE)
    mixed = root_type is not None  # mixed types in half the graphs; the rest (and shrunk ones) all "A"
    types = [root_type or TYPE_NAMES[0]]
    type_: str | None  # the next node's type; ``None`` from _NEXT_NODE ends the tree
    while True:
        if len(parent) < cfg.min_nodes:
            type_ = draw(_TYPES) if mixed else TYPE_NAMES[0]
        elif (type_ := draw(_NEXT_NODE)) is None or len(parent) == cfg.max_nodes:
            break
        if deep and cfg.max_nodes > 2 and len(open_) > 1 and draw(_EXTEND):
            p = open_[-1]
        else:
            p = open_[index(draw, len(open_))]
        child = len(parent)
        parent.append(p)
        depth.append(depth[p] + 1)
        types.append(type_ if mixed else TYPE_NAMES[0])
        slots.append([])
        slots[p].append(NodeRef(child))
        if depth[child] < cfg.max_depth:
            open_.append(child)
    n = len(parent)
    tree_slots = [len(refs) for refs in slots]  # tree edges come first in each node's slots

    # 2. Variables and statics, each owned by one node.
    # Each element is the head of its kind (or "stop"), its owner, and with sharding its shape and
    # annotation: consecutive choices, which the shrinker deletes as a run.
    specs: list[VarSpec] = []
    while cfg.max_vars and (head := draw(cfg.next_variable)) is not None and len(specs) < cfg.max_vars:
        owner = node(draw, n)
        slots[owner].insert(tree_slots[owner], VarRef(len(specs)))  # home slots stay up front
        tree_slots[owner] += 1
        # Values are not drawn: Variable j holds 10j, 10j + 1, ... -- distinct by construction, and
        # readable in a snippet (Hypothesis would spend a choice per Variable to find the same).
        specs.append(cfg.kinds.finish(draw, head, base=10 * len(specs)))
    n_statics = 0
    while cfg.max_statics and (value := draw(_NEXT_STATIC)) is not _STOP and n_statics < cfg.max_statics:
        slots[node(draw, n)].append(Static(value))
        n_statics += 1

    # 3. Extra edges, one list of mixed kinds: each element's kind doubles as the "one more?" choice
    # ("stop" first, so the list shrinks to empty), and the shrinker can delete any edge of any kind. The
    # kinds on offer depend on the capabilities only, never on this graph: were "shared module" dropped
    # from the list when the graph shrinks to one node, every later kind index would change meaning and
    # the shrinker would lose the example. A kind that does not apply (a shared module with one node, a
    # shared Variable with none) adds nothing.
    kinds = _extra_kinds(cfg.cycles, cfg.shared_modules, cfg.shared_variables)
    n_extras = 0
    while kinds is not None and cfg.max_extras:
        kind = draw(kinds)
        if kind == "stop" or n_extras == cfg.max_extras:
            break
        n_extras += 1
        if kind == "cycle":  # a back edge to an ancestor of ``src`` or to ``src`` itself
            src = node(draw, n)
            ancestors = [src]  # itself first: the simplest back edge is a self-loop
            while parent[ancestors[-1]] >= 0:
                ancestors.append(parent[ancestors[-1]])
            slots[src].append(NodeRef(ancestors[index(draw, len(ancestors))]))
        elif kind == "shared module" and n > 1:  # a forward edge: without back edges, no cycle
            dst = 1 + index(draw, n - 1)
            slots[index(draw, dst)].append(NodeRef(dst))
        elif kind == "shared variable" and specs:
            var = VarRef(index(draw, len(specs)))
            slots[node(draw, n)].append(var)

    # 4. Names, unique per node by construction; then maybe one separator twin.
    names = [_draw_names(draw, cfg, len(refs)) for refs in slots]
    if cfg.twins:
        _plant_twin(draw, cfg, names, slots, tree_slots)

    nodes = tuple(NodeSpec(t, tuple(zip(nm, refs))) for t, nm, refs in zip(types, names, slots))
    return Blueprint(nodes, tuple(specs))


@functools.lru_cache(maxsize=64)
def _next_variable(options: tuple[Head, ...]) -> st.SearchStrategy[Head | None]:
    """A Variable's head or ``None`` ("stop") in one choice; "stop" first, with a quarter of the weight."""
    return st.sampled_from((None,) * (len(options) // 3) + options)


@functools.cache
def _extra_kinds(cycles: bool, shared_modules: bool, shared_variables: bool) -> st.SearchStrategy[str] | None:
    on = [
        k
        for k, f in (
            ("cycle", cycles),
            ("shared variable", shared_variables),
            ("shared module", shared_modules),
        )
        if f
    ]
    # Each kind listed twice and the sharing kinds once more: an edge comes before "stop" with probability
    # 8/9 when all are on, and sharing, which needs more than one node or a Variable to take effect, is
    # weighted up so that each feature shows in about a third of default graphs.
    sharing = [k for k in on if k != "cycle"]
    return st.sampled_from(("stop", *on, *on, *sharing)) if on else None


def _draw_names(draw: st.DrawFn, cfg: _Config, k: int) -> list[str]:
    """``k`` distinct names for one node: one choice into :func:`_name_table`, then ``n0``, ``n1``, ..."""
    if k == 0:
        return []
    chosen = list(draw(_names_of(cfg.names, min(k, len(cfg.names)))))
    fresh = (f"n{i}" for i in itertools.count())
    while len(chosen) < k:
        chosen.append(next(n for n in fresh if n not in chosen and n not in cfg.reserved))
    return chosen


_NAME_TABLE = 210
"""Name sequences per table: every ordered pair of the default 15-name pool, and few enough that
Hypothesis draws an index into them evenly (see :data:`~.variables._MAX_TABLE`)."""


@functools.lru_cache(maxsize=256)
def _name_table(pool: tuple[str, ...], k: int) -> tuple[tuple[str, ...], ...]:
    """Sequences of ``k`` distinct pool names, simplest first, for one ``sampled_from``.

    One choice per node instead of one per attribute: names are a third of a graph's choices otherwise.
    Where the pool has at most :data:`_NAME_TABLE` such sequences the table holds them all (so every
    ordered pair of names meets in a two-attribute node); otherwise a fixed sample of them, the same in
    every process. Entries are ordered by their names' positions in the pool, so an index shrinks to
    ``pool[:k]`` (``a``, ``b``, ``z``, ...).
    """
    positions = range(len(pool))
    if math.perm(len(pool), k) <= _NAME_TABLE:
        table = list(itertools.permutations(positions, k))
    else:
        rng = random.Random(len(pool) * 1_000 + k)  # an int seed: independent of PYTHONHASHSEED
        picked = {tuple(positions[:k])}
        while len(picked) < _NAME_TABLE:
            picked.add(tuple(rng.sample(positions, k)))
        table = sorted(picked)
    return tuple(tuple(pool[i] for i in entry) for entry in table)


@functools.lru_cache(maxsize=256)
def _names_of(pool: tuple[str, ...], k: int) -> st.SearchStrategy[tuple[str, ...]]:
    return st.sampled_from(_name_table(pool, k))


def _plant_twin(
    draw: st.DrawFn, cfg: _Config, names: list[list[str]], slots: list[list[Ref]], homes: list[int]
) -> None:
    """Maybe rename one attribute of one node to ``x/y`` (or ``x-y``), where the node's attribute ``x`` is a
    child module with an attribute ``y``: ``("x/y",)`` and ``("x", "y")`` then join to the same string (or
    sort one way as strings and the other as tuples).

    One coin per graph. Both ends are Variables where the nodes own any, so that the two paths collide
    as *state* keys. Only *home* slots take part -- the first ``homes[i]`` slots of node ``i``: its
    spanning-tree children, then the Variables it owns -- because those usually carry the canonical path,
    so both paths of the pair tend to appear in the state rather than hide behind an alias.
    """

    def carriers(i: int) -> list[int]:
        return [s for s in range(homes[i]) if isinstance(slots[i][s], NodeRef) and homes[slots[i][s].index]]  # type: ignore[union-attr]

    hosts = [i for i in range(len(slots)) if homes[i] > 1 and carriers(i)]
    if not hosts or not draw(_TWIN):
        return
    host = hosts[index(draw, len(hosts))]
    mine, options = names[host], carriers(host)
    s = options[index(draw, len(options))]
    child = slots[host][s].index  # type: ignore[union-attr]
    ys = _variables_first(slots[child], range(homes[child]))
    twin = f"{mine[s]}{draw(_TWIN_SEPARATOR)}{names[child][ys[index(draw, len(ys))]]}"
    others = _variables_first(slots[host], (t for t in range(homes[host]) if t != s))
    target = others[index(draw, len(others))]
    if twin not in mine and twin not in cfg.reserved:
        mine[target] = twin


def _variables_first(refs: list[Ref], candidates: Iterable[int]) -> list[int]:
    """The candidate slots holding Variables, or all candidates if none does."""
    candidates = list(candidates)
    return [t for t in candidates if isinstance(refs[t], VarRef)] or candidates
